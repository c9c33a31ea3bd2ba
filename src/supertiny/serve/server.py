"""`supertiny serve`: load a model into a backend and serve it over HTTP (blocking).

    supertiny serve --model student --port 8000          # the CLI verb (wired in cli.py)
    python -m supertiny.serve --model student --port 8000  # the same, as a module

`serve()` resolves the model through `supertiny.models.resolve_gguf` (a bundled alias
such as "teacher" or "student", or a path), loads it with the backend named in
`BACKENDS`, and runs the app of `serve/app.py` under uvicorn until interrupted
(Ctrl-C or SIGTERM), then frees the model.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from supertiny.serve.llamacpp import LlamaCppBackend

BACKENDS: dict[str, type] = {
    "llamacpp": LlamaCppBackend,
}
"""Backend name -> class; each is built as `cls(model_path, n_ctx=..., n_threads=...)`
and imports its own runtime (llama-cpp-python, torch) only when built."""


def load_backend(model: str, backend: str = "llamacpp", n_ctx: int = 4096, n_threads=None):
    """Resolve `model` (alias or path) and load it into the backend named `backend`."""
    from supertiny.models import resolve_gguf

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    path = resolve_gguf(model)
    return BACKENDS[backend](path, n_ctx=n_ctx, n_threads=n_threads)


def default_name(model: str) -> str:
    """The model id to serve under: the alias itself, or a path's file stem."""
    return Path(model).stem if model.endswith(".gguf") else Path(model).name


def serve(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str | None = None,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    backend: str = "llamacpp",
    log_level: str = "info",
    strict_model: bool = False,
) -> None:
    """Serve `model` on an OpenAI-compatible endpoint at http://HOST:PORT/v1 (blocks).

    model: a bundled alias ("teacher", "student") or a GGUF path.
    name: the model id clients see in /v1/models (default: the alias or file stem).
    n_ctx: context length in tokens (prompt + completion).
    n_threads: CPU threads (default: half the cores; see `llamacpp.default_threads`).
    backend: one of BACKENDS.
    strict_model: answer 404 to a request naming another model (default: accept any).
    """
    import uvicorn

    from supertiny.serve.app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s: %(name)s: %(message)s")
    log = logging.getLogger(__name__)
    engine = load_backend(model, backend=backend, n_ctx=n_ctx, n_threads=n_threads)
    served = name or default_name(model)
    log.info("loaded %s (%s backend, context %d) as '%s'", model, backend, engine.n_ctx, served)
    app = create_app(engine, served, strict_model=strict_model)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        engine.close()


def add_arguments(parser) -> None:
    """The command-line options of `supertiny serve` (and `python -m supertiny.serve`)."""
    parser.add_argument(
        "--model", required=True, help="bundled alias (teacher, student) or GGUF path"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--name", default=None, help="model id shown to clients (default: alias or file stem)"
    )
    parser.add_argument("--n-ctx", type=int, default=4096, help="context length in tokens")
    parser.add_argument(
        "--n-threads", type=int, default=None, help="CPU threads (default: half the cores)"
    )
    parser.add_argument("--backend", default="llamacpp", choices=sorted(BACKENDS))
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument(
        "--strict-model", action="store_true", help="answer 404 to another model name"
    )


def serve_from_args(args) -> int:
    """Run `serve` with parsed `add_arguments` options; a model that cannot load exits 1."""
    try:
        serve(
            args.model,
            host=args.host,
            port=args.port,
            name=args.name,
            n_ctx=args.n_ctx,
            n_threads=args.n_threads,
            backend=args.backend,
            log_level=args.log_level,
            strict_model=args.strict_model,
        )
    except (OSError, ValueError, ImportError) as exc:
        print(f"supertiny serve: error: {exc}", file=sys.stderr)
        return 1
    return 0
