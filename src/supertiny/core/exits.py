"""How a command ends: one clear line and an exit code for every way it can stop.

    return run_verb(function, args, own_sigterm=False)   # cli.main and serve.server.main

- a ``SupertinyError`` (bad config, data, endpoint, model, a dead server): ``error: ...``, 2;
- a full disk anywhere in the chain of causes (``ENOSPC``): what to free, 2;
- SIGTERM (systemd, ``docker stop``, a CI timeout): raised as ``Terminated`` in the main
  thread, so every ``with ServerProcess(...)`` and ``finally`` runs; ``terminated.``, 143;
- Ctrl-C: ``interrupted.``, 130.

Every record written before stays on disk, and the same command continues. Any other
exception is a bug and goes up with its traceback.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import Any

from supertiny.core.errors import SupertinyError
from supertiny.core.progress import console


def configure_logging(verbose: bool) -> None:
    """WARNING (DEBUG with ``verbose``) to stderr; import-time notices of unused kernels hidden."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not verbose:  # import-time notices of optional kernels this machine does not use
        for name in ("torchao", "torch.utils._pytree"):
            logging.getLogger(name).setLevel(logging.ERROR)


def disk_full(exc: BaseException | None) -> bool:
    """``exc``, or an exception it was raised from, says the disk is full (``ENOSPC``;
    libraries that wrap it, such as safetensors and torch.save, keep the message)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class Terminated(KeyboardInterrupt):
    """SIGTERM (systemd, `docker stop`, a CI timeout, a job scheduler), raised in the main
    thread so that it unwinds like Ctrl-C: every `with ServerProcess(...)` and `finally` runs."""


def raise_on_sigterm() -> Callable[[], None]:
    """Turn the first SIGTERM into `Terminated` (later ones are ignored, so the clean-up they
    would cut short finishes); returns the function that puts the old handler back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # only the main thread may set signal handlers
    received = []

    def handler(signum: int, frame: object) -> None:
        if not received:
            received.append(signum)
            raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def run_verb(function: Callable[[Any], int], args: Any, own_sigterm: bool = False) -> int:
    """``function(args)``, with every way it can stop turned into a line and an exit code.

    ``own_sigterm``: the command handles SIGTERM itself (``serve``: uvicorn's graceful
    shutdown), so it is not turned into ``Terminated``."""
    restore_sigterm = (lambda: None) if own_sigterm else raise_on_sigterm()
    try:
        return function(args)
    except SupertinyError as exc:
        from rich.markup import escape  # a server's log tail may hold "[/]" or "[INFO]"

        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    except Exception as exc:
        if not disk_full(exc):
            raise
        console.print(
            f"[red]error:[/] the disk is full ({exc}). Everything written before is kept: "
            "free space (old outputs set aside as *.old-*, other runs) and run the same "
            "command again to continue.",
            highlight=False,
        )
        return 2
    except Terminated:
        console.print(
            "[yellow]terminated.[/] Every record written so far is kept; "
            "run the same command again to continue where it stopped."
        )
        return 143
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted.[/] Every record written so far is kept; "
            "run the same command again to continue where it stopped."
        )
        return 130
    finally:
        restore_sigterm()
