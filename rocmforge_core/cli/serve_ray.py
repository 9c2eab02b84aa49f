"""`rocmforge serve-ray`: several `rocmforge serve` replicas behind Ray Serve, one per GPU (or per CPU slot),
one OpenAI-compatible address in front of them (Ray's HTTP proxy), streaming included. Starts a local Ray
instance unless --address names a running cluster. See docs/SERVING.md, "Scale-out"."""

from __future__ import annotations

import sys
import time

from rocmforge_core.cli.options import add_model_options
from rocmforge_core.cli.serve import add_server_options, server_options
from rocmforge_core.errors import RocmforgeError


def add_parser(sub) -> None:
    p = sub.add_parser("serve-ray", help="serve a model from several replicas behind Ray Serve",
                       description=__doc__.split("\n\n")[0])
    add_model_options(p)
    p.add_argument("--host", default="127.0.0.1", help="address Ray's HTTP proxy listens on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port Ray's HTTP proxy listens on (8080)")
    p.add_argument("--replicas", type=int, metavar="N",
                   help="servers to run (default: one per --gpus-per-replica GPUs the cluster has, else one per "
                        "--cpus-per-replica CPUs)")
    p.add_argument("--gpus-per-replica", type=float, default=0.0, metavar="G",
                   help="GPUs Ray gives each replica, visible only to it (0: a CPU replica; 1 for --backend hip)")
    p.add_argument("--cpus-per-replica", type=float, default=1.0, metavar="C", help="CPUs Ray reserves per replica (1)")
    p.add_argument("--address", metavar="ADDR", help="a running Ray cluster to join (default: start a local one)")
    add_server_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        import ray
        from ray import serve

        from rocmforge_core.serve.ray_deploy import application, slots
    except ImportError as exc:
        raise RocmforgeError(f"serve-ray needs the 'ray' extra ({exc.name} is missing): "
                             "pip install 'rocmforge[ray]'") from None
    if args.gpus_per_replica < 0 or args.cpus_per_replica < 0:
        raise RocmforgeError("--gpus-per-replica and --cpus-per-replica must be >= 0")
    if args.replicas is not None and args.replicas < 1:
        raise RocmforgeError(f"--replicas must be >= 1, got {args.replicas}")
    options = server_options(args)
    ray.init(address=args.address, include_dashboard=False, log_to_driver=args.log_level == "debug")
    try:
        replicas = args.replicas or slots(args.gpus_per_replica, args.cpus_per_replica)
        if replicas < 1:
            raise RocmforgeError(f"the Ray cluster has no room for a replica of {args.gpus_per_replica:g} GPUs and "
                                 f"{args.cpus_per_replica:g} CPUs")
        serve.start(http_options={"host": args.host, "port": args.port})
        print(f"rocmforge: starting {replicas} replicas of {options.model}", file=sys.stderr)
        serve.run(application(options, replicas=replicas, num_gpus=args.gpus_per_replica,
                              num_cpus=args.cpus_per_replica), name="rocmforge", route_prefix="/")
        print(f"rocmforge: serving on http://{args.host}:{args.port} ({replicas} replicas)", file=sys.stderr)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0
