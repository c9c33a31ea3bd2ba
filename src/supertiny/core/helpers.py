"""A task's helper tools, run where a hang or a crash cannot stop the stage, and the import of
a task's Python files.

    helpers = HelperProcess(Path("examples/smart_home/tools.py"), "smart_home_tools")
    helpers.call("find_devices", {"room": "kitchen"}, timeout_s=5.0)  # ToolError: raised, hung
    helpers.stop()

``HelperProcess`` runs the helper module in one child Python process (``helper_worker_main``)
and bounds every call; ``import_file`` imports a file whose folder is not a package (task
modules, the examples' own files: ``from supertiny.core.task import import_file``). The Task
(``task.py``) owns one ``HelperProcess``; what a task folder may do is in its docstring.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

from supertiny.core.errors import SupertinyError


def import_file(path: Path, module_name: str, reuse: bool = True):
    """Import the Python file ``path`` as module ``module_name``; its folder need not be a package.

    With ``reuse`` a module already imported under that name is returned as it is, so files
    that import each other share one copy. A file that fails to import leaves nothing behind.
    """
    if reuse and module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


class ToolError(SupertinyError, RuntimeError):
    """A helper tool raised, hung or was called wrongly; the message is fed back to the teacher.

    ``invalid`` is True when the function itself raised a ``ValueError`` (its verdict on the
    arguments: the contract of a final tool's dry-run), False for every other failure (another
    exception, a timeout, a dead process, arguments that do not fit or are not JSON)."""

    def __init__(self, message: str, invalid: bool = False):
        super().__init__(message)
        self.invalid = invalid


HELPER_START_TIMEOUT_S = 60.0  # Python start-up + importing supertiny and the helper module
_WORKER_CODE = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from supertiny.core.helpers import helper_worker_main; "
    "helper_worker_main(sys.argv[2], sys.argv[3])"
)


class HelperProcess:
    """Runs a task's helper calls in one long-lived child Python process, each call bounded.

    The child imports the helper module once, then answers one JSON request per line; a call
    that does not answer within its timeout has the child killed (the next call starts a new
    one), so a hang really ends, whether a ``while True`` loop or a read that never returns.
    Why this and not the alternatives: a thread per call (or a thread pool with a wait
    timeout) gives the answer back on time but cannot stop the helper, since Python has no
    way to kill a thread, so every hang keeps a thread, and a spinning one a share of the
    CPU, until the run ends; a fresh process per call stops it too, but pays a Python
    start-up and the module's import each time (0.27 s measured here, against 2-3 ms for a
    smart_home ``find_devices`` call), where this pays one pipe round trip per call (0.5 ms
    measured here) and the start-up once, at the first call and after each timeout.

    Its costs: calls run one at a time (a lock; the label stage's concurrency overlaps the
    teacher's requests, seconds each, not helper calls, milliseconds); the module's
    import-time code runs in both processes and its module-level state lives in the child
    (started afresh after a timeout or a crash); arguments and results cross as JSON.
    Thread-safe; the child is killed when this object is collected or the interpreter exits.
    """

    def __init__(self, path: Path, module_name: str):
        self.path, self.module_name = path, module_name
        self._process: subprocess.Popen[str] | None = None
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._stop_child: weakref.finalize | None = None
        self._lock = threading.Lock()

    def call(
        self, name: str, arguments: dict[str, Any], timeout_s: float, what: str = "helper"
    ) -> Any:
        """``name(**arguments)`` in the child; a raise, a hang or a dead child is a ``ToolError``
        (``what`` names the call in the timeout message: "helper NAME timed out after N s")."""
        try:
            request = json.dumps({"name": name, "arguments": arguments})
        except (TypeError, ValueError) as exc:
            raise ToolError(f"{name}: arguments are not JSON: {exc}") from None
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start(name)
            self._send(request)
            reply = self._receive(name, timeout_s, f"{what} {name} timed out after {timeout_s:g} s")
        if "error" in reply:
            raise ToolError(f"{name} failed: {reply['error']}", bool(reply.get("invalid")))
        return reply["result"]

    def stop(self) -> None:
        """Kill the child, if one runs; the next call starts a new one."""
        if self._stop_child is not None:
            self._stop_child()
        self._process, self._stop_child = None, None

    def _start(self, name: str) -> None:
        self.stop()
        command = [sys.executable, "-c", _WORKER_CODE, json.dumps(sys.path), str(self.path)]
        process = subprocess.Popen(
            [*command, self.module_name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self._process, self._replies = process, queue.Queue()
        self._stop_child = weakref.finalize(self, _kill, process)
        threading.Thread(target=_pump, args=(process.stdout, self._replies), daemon=True).start()
        ready = self._receive(
            name,
            HELPER_START_TIMEOUT_S,
            f"{name}: the helper process did not start within {HELPER_START_TIMEOUT_S:g} s",
        )
        if "error" in ready:
            self.stop()
            raise ToolError(
                f"{name}: the helper process could not import {self.path}: {ready['error']}"
            )

    def _send(self, line: str) -> None:
        assert self._process is not None and self._process.stdin is not None
        with contextlib.suppress(OSError):  # a child that just ended: _receive reports it
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()

    def _receive(self, name: str, timeout_s: float, timeout_message: str) -> dict[str, Any]:
        try:
            line = self._replies.get(timeout=timeout_s)
        except queue.Empty:
            self.stop()
            raise ToolError(timeout_message) from None
        if line is None:
            assert self._process is not None
            code = self._process.wait()
            self.stop()
            raise ToolError(f"{name}: the helper process ended (exit code {code}) during the call")
        return json.loads(line)


def _pump(stream: Any, replies: queue.Queue[str | None]) -> None:
    """Move the child's reply lines into ``replies``; ``None`` marks its end."""
    with stream:
        for line in stream:
            replies.put(line)
    replies.put(None)


def _kill(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait()
    with contextlib.suppress(OSError):
        process.stdin.close()


def helper_worker_main(path: str, module_name: str) -> None:
    """The child of ``HelperProcess``: import the helper module, then answer calls until EOF.

    Requests come one JSON line at a time on stdin; replies go to the original stdout, which
    is kept for them alone: the helpers' own prints (fd 1) are sent to stderr instead.
    Ctrl-C is ignored here: the parent owns this process and ends it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    try:
        module = import_file(Path(path), module_name, reuse=False)
    except BaseException as exc:
        _reply(replies, {"error": f"{type(exc).__name__}: {exc}"})
        return
    _reply(replies, {"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            result = getattr(module, request["name"])(**request["arguments"])
        except BaseException as exc:  # SystemExit too: a helper cannot end the worker by raising
            text = _error_line(exc, invalid=isinstance(exc, ValueError))
        else:
            try:
                text = json.dumps({"result": result})
            except BaseException as exc:  # a result that is not JSON is the helper's fault
                text = _error_line(exc, invalid=False)
        replies.write(text + "\n")
        replies.flush()


def _reply(replies: Any, message: dict[str, Any]) -> None:
    replies.write(json.dumps(message) + "\n")
    replies.flush()


def _error_line(exc: BaseException, invalid: bool) -> str:
    """A reply for a call that failed; ``invalid``: the function raised ``ValueError``."""
    return json.dumps({"error": f"{type(exc).__name__}: {exc}", "invalid": invalid})
