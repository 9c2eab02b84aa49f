"""`rocmforge serve`: an OpenAI-compatible HTTP server (chat and text completions, streaming, tokenize,
health, Prometheus metrics) with continuous batching of up to --parallel sequences. It listens at once and loads
the model in the background: /health answers 503 until the model is ready. See docs/SERVING.md."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

from rocmforge_core.cli.generation import checked_options
from rocmforge_core.cli.options import add_model_options, placement_profile
from rocmforge_core.cli.speculation import add_speculation_options, check_speculation_options
from rocmforge_core.errors import RocmforgeError


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API",
                       description=__doc__.split("\n\n")[1] if "\n\n" in __doc__ else __doc__)
    add_model_options(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (8080; 0 = any free port)")
    add_server_options(p)
    p.set_defaults(func=run)


def add_server_options(p) -> None:
    """The options of one server (its model options apart), shared with `serve-ray`'s replicas."""
    p.add_argument("--parallel", type=int, default=4, metavar="N", help="sequences decoded together at most (4)")
    p.add_argument("--kv-size", type=int, metavar="N",
                   help="tokens of KV cache shared by all sequences (default: parallel x context); requests wait "
                        "for room when it is full")
    p.add_argument("--api-key", metavar="KEY", help="require 'Authorization: Bearer KEY' on API endpoints (default: "
                                                    "$ROCMFORGE_API_KEY)")
    p.add_argument("--api-key-file", metavar="FILE", help="read the API key from FILE (kept out of the process list)")
    p.add_argument("--allowed-hosts", metavar="NAMES", default="",
                   help="comma-separated names the Host header may give besides the listening address and "
                        "localhost, e.g. a reverse proxy's ('*': any; the check guards against DNS rebinding)")
    p.add_argument("--max-queue", type=int, default=64, metavar="N",
                   help="requests waiting for a slot at most; more get 503 (64)")
    p.add_argument("--prefill-chunk", type=int, default=256, metavar="N",
                   help="prompt tokens per prefill step at most, so long prompts do not stall streams (256)")
    p.add_argument("--no-prefix-cache", action="store_true",
                   help="compute every prompt in full instead of reusing the KV blocks of prefixes seen before")
    p.add_argument("--read-timeout", type=float, default=30.0, metavar="S",
                   help="seconds a request's headers, and then its body, may take to arrive (30)")
    p.add_argument("--max-connections", type=int, default=512, metavar="N",
                   help="open connections at most; more are answered 503 and closed (512)")
    p.add_argument("--time-limit", type=float, metavar="S",
                   help="seconds a request may generate for at most, from admission; it then ends with "
                        "finish_reason 'length' (default: no limit)")
    p.add_argument("-n", "--n-predict", "--max-tokens", dest="max_tokens", type=int, default=-1, metavar="N",
                   help="tokens a request generates at most when it gives no max_tokens; -1: up to the context (-1)")
    p.add_argument("--temp", "--temperature", dest="temperature", type=float, default=None, metavar="T",
                   help="temperature of requests that give none; 0 = greedy (0.8)")
    p.add_argument("--no-warm-up", action="store_true",
                   help="serve at once instead of compiling kernels and capturing every decode batch size first")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    add_speculation_options(p)


def server_options(args):
    """The ServeOptions of the command line, every option checked (before any model loads)."""
    from rocmforge_core.default_model import default_model_path
    from rocmforge_core.serve import ServeOptions
    from rocmforge_core.serve.security import api_key

    model = Path(args.model) if args.model else default_model_path()
    if not model.is_file():
        raise RocmforgeError(f"model file {model} does not exist")
    for name in ("parallel", "max_queue", "prefill_chunk", "kv_size", "threads", "max_connections"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise RocmforgeError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("read_timeout", "time_limit"):
        value = getattr(args, name)
        if value is not None and not 0 < value < float("inf"):
            raise RocmforgeError(f"--{name.replace('_', '-')} must be a number of seconds > 0, got {value}")
    if args.max_tokens < -1:
        raise RocmforgeError(f"-n takes a number of tokens >= 0, or -1 for no limit, got {args.max_tokens}")
    if args.temperature is not None:
        checked_options(temperature=args.temperature)  # refused before the model loads, as `run` does
    check_speculation_options(args)
    if not 0 <= args.port < 65536:
        raise RocmforgeError(f"--port must be in [0, 65535], got {args.port}")
    allowed = tuple(h.strip() for h in args.allowed_hosts.split(",") if h.strip())
    return ServeOptions(model=model, backend=args.backend, profile=placement_profile(args), ctx_size=args.ctx_size,
                        parallel=args.parallel, kv_size=args.kv_size, api_key=api_key(args.api_key, args.api_key_file),
                        max_queue=args.max_queue, prefill_chunk=args.prefill_chunk,
                        prefix_cache=not args.no_prefix_cache, threads=args.threads,
                        warm_up=not args.no_warm_up, host=args.host, allowed_hosts=allowed,
                        read_timeout=args.read_timeout, max_connections=args.max_connections,
                        time_limit=args.time_limit, max_tokens=None if args.max_tokens == -1 else args.max_tokens,
                        temperature=args.temperature, lookup_ngram=args.lookup_ngram, model_draft=args.model_draft,
                        draft_max=args.draft_max)


def run(args) -> int:
    try:
        from rocmforge_core.serve import ServerState
        from rocmforge_core.serve.security import API_KEY_ENV, is_loopback
        from rocmforge_core.serve.server import Server, bind
    except ImportError as exc:
        raise RocmforgeError(f"serving needs the 'serve' extra ({exc.name} is missing): "
                             "pip install 'rocmforge[serve]'") from None
    options = server_options(args)
    key = options.api_key
    state = ServerState(options)
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        raise RocmforgeError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    logging.basicConfig(level=args.log_level.upper(), format="%(message)s")  # rocmforge's own loggers
    server = Server(state, args.log_level)

    def stop_if_load_fails() -> None:
        state.loaded.wait()
        if state.error:
            server.should_exit = True

    threading.Thread(target=stop_if_load_fails, daemon=True).start()
    host, port = sock.getsockname()[:2]
    print(f"rocmforge: listening on http://{host}:{port} (model {state.model_id} loading)", file=sys.stderr)
    if key is None and not is_loopback(args.host):
        print(f"rocmforge: warning: {args.host} is reachable from other machines and no API key is set: anyone who "
              f"can reach it can use this server (--api-key-file FILE or ${API_KEY_ENV})", file=sys.stderr)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on: the normal way to stop a server
        pass
    if state.error:
        raise RocmforgeError(f"the model failed to load: {state.error}")
    return 0
