"""What the server runs on: its options, the model loaded in the background (/health says 503 until it is), the
engine and the batcher that owns it."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rocmforge_core.serve.metrics import Metrics

log = logging.getLogger("rocmforge.serve")


@dataclass
class ServeOptions:
    model: str | Path
    backend: str | None = None      # None: the profile's default, else "cpu" when installed, else "reference"
    profile: str | None = None
    threads: int | None = None      # CPU threads of host backends' kernels (None: their default)
    ctx_size: int | None = None     # per-sequence context (default: the model's, at most 4096)
    parallel: int = 4               # sequences decoded together at most
    kv_size: int | None = None      # tokens of KV cache shared by all sequences (default: parallel x context)
    api_key: str | None = None
    max_queue: int = 64             # requests waiting for admission at most; beyond: 503
    prefill_chunk: int = 256        # prompt tokens per prefill step at most
    prefix_cache: bool = True       # share full KV blocks of common prompt prefixes across requests
    max_body_bytes: int = 8 << 20   # request bodies larger than this get 413
    warm_up: bool = True            # run every decode batch size once before serving (Engine.warm_up)
    host: str = "127.0.0.1"         # the address listened on: Host headers must name it (security.py)
    allowed_hosts: tuple[str, ...] = ()  # more names Host headers may give; "*": any
    read_timeout: float = 30.0      # seconds for a request's headers to arrive, and again for its body
    max_connections: int = 512      # open connections at most; more are answered 503 and closed
    time_limit: float | None = None  # seconds a request may generate (from admission) before it ends as "length"
    max_tokens: int | None = None   # a request's max_tokens when it gives none (None: up to the context limit)
    temperature: float | None = None  # a request's temperature when it gives none (None: SamplingParams' default)
    shutdown_grace: float = 5.0     # seconds running requests may finish in once the server is told to stop
    lookup_ngram: int | None = None  # speculative decoding by prompt lookup of n-grams up to this size
    model_draft: str | Path | None = None  # speculative decoding with this draft model
    draft_max: int | None = None    # draft tokens per sequence and step at most (speculative.DRAFT_MAX)


class ServerState:
    def __init__(self, options: ServeOptions):
        if options.parallel < 1:
            raise ValueError("parallel must be >= 1")
        if options.time_limit is not None and not options.time_limit > 0:
            raise ValueError("time_limit must be > 0 seconds")
        if options.max_tokens is not None and options.max_tokens < 0:
            raise ValueError("max_tokens must be >= 0")
        if options.temperature is not None:
            from rocmforge_core.engine.sampling import SamplingError, SamplingParams
            try:
                SamplingParams(temperature=options.temperature)  # the range check requests get
            except SamplingError as exc:
                raise ValueError(str(exc)) from None
        self.options = options
        self.metrics = Metrics()
        self.model = self.engine = self.tokenizer = self.batcher = self.speculation = None
        self.grammars = None  # compiles structured-output grammars against the model's vocabulary
        self.model_id = Path(options.model).name.removesuffix(".gguf")
        self.created = int(time.time())
        self.error: str | None = None  # why loading failed
        self.loaded = threading.Event()  # set when loading ended, either way
        self._loader: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        return self.batcher is not None

    def start_loading(self) -> None:
        """Load the model and then run the engine loop, in one thread: a GPU backend's device context belongs to
        the thread that created it, so the engine must run where the model was loaded."""
        self._loader = threading.Thread(target=self._load_and_serve, name="rocmforge-engine", daemon=True)
        self._loader.start()

    def _load_and_serve(self) -> None:
        self._load()
        if self.batcher is not None:
            self.batcher.run()

    def _load(self) -> None:
        from rocmforge_core.engine import Engine, Model
        from rocmforge_core.engine.backend_setup import configure_threads, pick_backend
        from rocmforge_core.engine.draft_model import speculation_for
        from rocmforge_core.engine.engine import PACK_ROWS
        from rocmforge_core.engine.grammar import Grammars
        from rocmforge_core.serve.batcher import Batcher

        o = self.options
        try:
            configure_threads(o.threads)  # per calling thread (numba): this one runs the model
            model = Model(o.model, backend=pick_backend(o.backend, o.profile), profile=o.profile)
            engine = Engine(model, n_ctx=o.ctx_size, max_seqs=o.parallel, kv_tokens=o.kv_size,
                            prefill_chunk=o.prefill_chunk, prefix_cache=o.prefix_cache)
            tokenizer = model.tokenizer
            self.speculation = spec = speculation_for(model, engine, lookup_ngram=o.lookup_ngram,
                                                      model_draft=o.model_draft, draft_max=o.draft_max)
            if o.warm_up:  # compile kernels and capture every decode batch size before /health says ok
                start = time.perf_counter()
                rows = min(PACK_ROWS, o.parallel * (spec.draft_max + 1)) if spec else None
                steps = engine.warm_up(max_rows=rows)
                log.info("rocmforge: warmed up %d step shapes in %.1f s", steps, time.perf_counter() - start)
            batcher = Batcher(engine, max_queue=o.max_queue, metrics=self.metrics, time_limit=o.time_limit,
                              speculation=spec)
            self.grammars = Grammars(tokenizer, model.config.vocab_size)
            self.model, self.engine, self.tokenizer, self.batcher = model, engine, tokenizer, batcher
            log.info("rocmforge: serving %s on %s (%d parallel, context %d)", self.model_id,
                     model.planner.preferred, o.parallel, engine.n_ctx)
        except Exception as exc:  # reported by /health and by the CLI, which exits
            self.error = str(exc) or type(exc).__name__
            log.error("rocmforge: loading %s failed: %s", o.model, self.error)
        finally:
            self.loaded.set()

    def drain(self) -> None:
        """The server was told to stop: refuse new requests, give running ones ``shutdown_grace`` seconds."""
        if self.batcher is not None:
            self.batcher.drain(self.options.shutdown_grace)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.stop()
        if self.speculation is not None:
            self.speculation.drafter.close()
        if self.model is not None:
            self.model.close()
