"""Run the OpenAI-compatible server: `python -m supertiny.serve --model student --port 8000`.

The same as `supertiny serve`; `serve/process.py` starts servers this way.
"""

from __future__ import annotations

import argparse
import sys

from supertiny.serve.server import BACKENDS, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m supertiny.serve", description=serve.__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--model", required=True, help="bundled alias (teacher, student) or GGUF path"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--name", default=None, help="model id shown to clients")
    parser.add_argument("--n-ctx", type=int, default=4096, help="context length in tokens")
    parser.add_argument(
        "--n-threads", type=int, default=None, help="CPU threads (default: half the cores)"
    )
    parser.add_argument("--backend", default="llamacpp", choices=sorted(BACKENDS))
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--strict-model", action="store_true", help="404 on another model name")
    args = parser.parse_args(argv)
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
    except (OSError, ValueError, ImportError) as exc:  # a model that cannot be loaded
        print(f"supertiny serve: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
