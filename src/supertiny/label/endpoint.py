"""The teacher endpoint of the label stage: a configured URL, or the bundled teacher served on
127.0.0.1 for the run, and the client that talks to it.

    with endpoint(conf.teacher, out / "teacher_server.log") as (url, model, check):
        client = make_client(conf.teacher, url, model, out / "cache.sqlite", check)

``check`` raises ``ServerDied`` once a local server has exited (None for a URL).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from supertiny.core.progress import console
from supertiny.label.client import Prices, TeacherClient
from supertiny.label.config import EndpointConfig


@contextlib.contextmanager
def endpoint(conf: EndpointConfig, log_path: Path):
    """(base URL, model, liveness check): the configured URL (no check), or a local server
    on the bundled teacher whose check raises ``ServerDied`` once it has exited."""
    if conf.url:
        yield conf.url, conf.model, None
        return
    from supertiny.runtime.backend import available_cores
    from supertiny.runtime.process import ServerProcess

    console.print(f"[bold]starting the local teacher server[/] ({conf.model}); log: {log_path}")
    threads = available_cores() if conf.n_threads == "all" else conf.n_threads
    with ServerProcess(
        conf.model, n_ctx=conf.n_ctx, n_threads=threads, log_path=log_path
    ) as server:
        yield server.base_url, conf.model, server.check_alive


def make_client(
    conf: EndpointConfig,
    base_url: str,
    model: str,
    cache_path: Path,
    check_server: Callable[[], None] | None = None,
) -> TeacherClient:
    return TeacherClient(
        base_url,
        model,
        api_key_env=conf.api_key_env,
        concurrency=conf.concurrency,
        timeout_s=conf.timeout_s,
        max_retries=conf.max_retries,
        cache_path=cache_path,
        prices=Prices(conf.price_input_per_million, conf.price_output_per_million),
        extra_body=conf.extra_body or None,
        check_server=check_server,
    )
