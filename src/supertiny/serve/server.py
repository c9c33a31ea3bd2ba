"""`supertiny serve`: load a model into a backend and serve it over HTTP (blocking).

    supertiny serve --model student --port 8000          # the CLI verb (wired in cli.py)
    python -m supertiny.serve --model student --port 8000  # the same, as a module (`main`)

`serve()` loads the model with the backend named in `BACKENDS` (`runtime/backends.py`: by
default a checkpoint folder goes to the torch backend, and a GGUF path or a bundled alias
such as "teacher" or "student", resolved by `supertiny.core.models.resolve_gguf`, to
llama.cpp), and runs the app of `serve/app.py` under uvicorn until interrupted (Ctrl-C or
SIGTERM), then frees the model. `main(argv)` is `python -m supertiny.serve`.

Limits and the key (`serve/limits.py`, `serve/auth.py`):

    supertiny serve --model student --api-key "$KEY" --max-queue 16 --request-timeout 120

`limits_from_args` turns the options into one `Limits`; `--max-concurrency` defaults to what
the backend runs at once (`default_concurrency`: 1 for llama.cpp, `--max-batch-size` for
torch). The key comes from `--api-key`, else from the environment variable
`SUPERTINY_API_KEY` (so that it need not show in `ps`); it is never logged.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from supertiny.runtime.backends import BACKENDS, load_backend, pick_backend
from supertiny.serve.auth import ENV_VAR
from supertiny.serve.limits import Limits


def default_concurrency(backend: str, max_batch_size: int = 8) -> int:
    """Requests to run at once on `backend`: what it really runs together. llama.cpp holds one
    lock per generation (more admitted requests would only queue on it, each holding a thread);
    the torch backend decodes up to `max_batch_size` requests in one batch."""
    return max(1, max_batch_size) if backend == "torch" else 1


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
    backend: str = "auto",
    log_level: str = "info",
    strict_model: bool = False,
    task: str | None = None,
    max_batch_size: int = 8,
    limits: Limits | None = None,
    api_key: str | None = None,
) -> None:
    """Serve `model` on an OpenAI-compatible endpoint at http://HOST:PORT/v1 (blocks).

    model: a bundled alias ("teacher", "student"), a GGUF path, or a checkpoint folder
        (transformers or torchao; served by the torch backend).
    name: the model id clients see in /v1/models (default: the alias or file stem).
    n_ctx: context length in tokens (prompt + completion).
    n_threads: CPU threads (default: half the cores; see `llamacpp.default_threads`).
    backend: one of BACKENDS, or "auto" (a folder -> torch, otherwise llamacpp).
    strict_model: answer 404 to a request naming another model (default: accept any).
    task: a task file; requests are rewritten into its student prompt (`serve/profile.py`).
    max_batch_size: most concurrent requests the torch backend decodes together.
    limits: what the server admits (default: `Limits` with `default_concurrency`).
    api_key: the Bearer key every `/v1/*` request must send (default: none needed).
    """
    import uvicorn

    from supertiny.serve.app import create_app
    from supertiny.serve.profile import TaskProfile

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s: %(name)s: %(message)s")
    log = logging.getLogger(__name__)
    profile = TaskProfile.load(task) if task else None
    chosen = pick_backend(model, backend)
    limits = limits or Limits(max_concurrency=default_concurrency(chosen, max_batch_size))
    options = {"max_batch_size": max_batch_size} if chosen == "torch" else {}
    engine = load_backend(model, backend=chosen, n_ctx=n_ctx, n_threads=n_threads, **options)
    served = name or default_name(model)
    log.info("loaded %s (%s backend, context %d) as '%s'", model, chosen, engine.n_ctx, served)
    if profile is not None:
        log.info("requests use the student prompt of %s", task)
    log.info(
        "%d request(s) at once, %d more may wait; %s; %s",
        limits.max_concurrency,
        limits.max_queue,
        f"{limits.request_timeout_s:g} s per request"
        if limits.request_timeout_s
        else "no request timeout",
        "an API key is required on /v1/*" if api_key else "no API key required",
    )
    app = create_app(
        engine, served, strict_model=strict_model, profile=profile, limits=limits, api_key=api_key
    )
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        engine.close()


def add_arguments(parser) -> None:
    """The command-line options of `supertiny serve` (and `python -m supertiny.serve`)."""
    parser.add_argument(
        "--model",
        required=True,
        help="bundled alias (teacher, student), GGUF path, or checkpoint folder (torch backend)",
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
    parser.add_argument(
        "--backend",
        default="auto",
        choices=["auto", *sorted(BACKENDS)],
        help="auto: a folder is served by torch, a GGUF file or alias by llamacpp",
    )
    parser.add_argument(
        "--task",
        default=None,
        help="task file: serve its student prompt and tools (what a trained student expects)",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=8,
        help="torch backend: most concurrent requests decoded together",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"require 'Authorization: Bearer KEY' on /v1/* (default: ${ENV_VAR}, else none)",
    )
    _add_limit_arguments(parser)
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument(
        "--strict-model", action="store_true", help="answer 404 to another model name"
    )
    from supertiny.runtime.process import WatchParent

    parser.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        action=WatchParent,
        metavar="PID",
        help="exit when process PID exits (the stages that start a server pass their own)",
    )


def _add_limit_arguments(parser) -> None:
    """The options of `Limits` (`serve/limits.py`, where each is explained)."""
    d = Limits()
    options = [
        (
            "--max-concurrency",
            None,
            "requests running at once (default: 1 for llama.cpp, --max-batch-size for torch)",
        ),
        ("--max-queue", d.max_queue, "requests waiting for a place; more get 429 + Retry-After"),
        ("--retry-after", d.retry_after_s, "seconds in the Retry-After header of a 429"),
        (
            "--request-timeout",
            d.request_timeout_s,
            "seconds to answer a request, queueing included; then it is stopped: 504 (0: none)",
        ),
        ("--max-body-bytes", d.max_body_bytes, "bytes of one request body"),
        ("--max-messages", d.max_messages, "messages in one request"),
        ("--max-tools", d.max_tools, "tools in one request"),
        ("--max-schema-chars", d.max_schema_chars, "characters of one JSON schema"),
        ("--max-schema-depth", d.max_schema_depth, "nesting depth of one JSON schema"),
        (
            "--max-schema-repeat",
            d.max_schema_repeat,
            "largest maxLength/maxItems/minLength/minItems or regex {m,n} bound in a schema",
        ),
    ]
    for flag, default, text in options:
        kind = float if flag == "--request-timeout" else int
        shown = "" if default is None else f" (default: {default:g})"
        parser.add_argument(flag, type=kind, default=default, help=text + shown)


def limits_from_args(args) -> Limits:
    """The `Limits` of parsed `add_arguments` options."""
    backend = pick_backend(args.model, args.backend)
    return Limits(
        max_concurrency=args.max_concurrency or default_concurrency(backend, args.max_batch_size),
        max_queue=args.max_queue,
        retry_after_s=args.retry_after,
        request_timeout_s=args.request_timeout or None,
        max_body_bytes=args.max_body_bytes,
        max_messages=args.max_messages,
        max_tools=args.max_tools,
        max_schema_chars=args.max_schema_chars,
        max_schema_depth=args.max_schema_depth,
        max_schema_repeat=args.max_schema_repeat,
    )


def serve_from_args(args) -> int:
    """Run `serve` with parsed `add_arguments` options; a model that cannot load exits 1."""
    from supertiny.core.errors import SupertinyError

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
            task=args.task,
            max_batch_size=args.max_batch_size,
            limits=limits_from_args(args),
            api_key=args.api_key or os.environ.get(ENV_VAR) or None,
        )
    except (OSError, ValueError, ImportError, SupertinyError) as exc:
        print(f"supertiny serve: error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m supertiny.serve ...`: the same options, output and exit codes as
    `supertiny serve ...` (SIGTERM is uvicorn's graceful shutdown)."""
    from supertiny.core.exits import configure_logging, run_verb

    parser = argparse.ArgumentParser(
        prog="supertiny serve", description=(__doc__ or "").splitlines()[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging(verbose=False)
    return run_verb(serve_from_args, args, own_sigterm=True)
