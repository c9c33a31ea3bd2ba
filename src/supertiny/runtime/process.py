"""Start and stop `supertiny serve` as a subprocess, for the stages that need a server.

    with ServerProcess("teacher") as server:       # picks a free port, waits for /health
        client = TeacherClient(base_url=server.base_url, ...)   # http://127.0.0.1:PORT/v1

The label stage uses it when the task config names no teacher URL, the eval stage for
every local model. The child is `sys.executable -m supertiny.serve ...`; its output goes
to `log_path` (a temporary file by default, removed after a clean stop). If the child
exits before `/health` answers, or does not answer within `startup_timeout_s`,
`ServerStartError` is raised at once with the end of its log. On exit the child gets
SIGTERM, then SIGKILL after a grace period.

The parent owns the child, and the child never outlives it:
- `check_alive()` raises `ServerDied` (how it ended, its log tail, what to run next) once
  the child has exited; clients call it on a connection error instead of retrying a dead
  port (`TeacherClient(check_server=server.check_alive)`);
- the child runs in its own session, so a Ctrl-C in the terminal reaches only the parent,
  which stops the child on its way out (`with`, plus an `atexit` safety net);
- the child gets `--parent-pid` (this process) and exits by itself within a second of
  the parent's death, even a SIGKILL (`watch_parent`, a thread in the child; unlike
  `PR_SET_PDEATHSIG` it does not fire when the thread that started the child ends).

    python -m pytest tests/unit/runtime/test_supervision.py -q
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

import supertiny
from supertiny.core.errors import SupertinyError


class ServerStartError(SupertinyError, RuntimeError):
    """The server process exited or never became healthy; the message has its log tail."""


class ServerDied(SupertinyError, RuntimeError):
    """The server process exited while a stage was using it; the message says how (exit code
    or signal), shows its log tail and what to run next."""

    def __init__(self, message: str, *, returncode: int, log_path: Path | None) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.log_path = log_path


def describe_exit(returncode: int) -> str:
    """How a child ended, from its `returncode`: "exited with code 1", "was killed by SIGKILL"."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    hint = {
        "SIGKILL": " (as the kernel's out-of-memory killer does: `dmesg` tells if it did)",
        "SIGSEGV": " (a crash in the model runtime)",
        "SIGILL": " (an instruction this CPU lacks: a runtime built for another CPU)",
    }.get(name, "")
    return f"was killed by {name}{hint}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now (another process could still take it before us)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A `supertiny serve` child process, as a context manager."""

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        name: str | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        backend: str = "auto",
        task: str | os.PathLike[str] | None = None,
        log_path: Path | None = None,
        startup_timeout_s: float = 300.0,
        stop_grace_s: float = 10.0,
    ):
        self.model = str(model)
        self.host = host
        self.port = port or free_port(host)
        self.name = name
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.backend = backend
        self.task = str(task) if task else None
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self._own_log = log_path is None
        self.log_path = Path(log_path) if log_path else None
        self._proc: subprocess.Popen | None = None
        self._died: ServerDied | None = None

    @property
    def url(self) -> str:
        """The server root, e.g. http://127.0.0.1:8000."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. http://127.0.0.1:8000/v1."""
        return f"{self.url}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "supertiny.serve", "--model", self.model]
        cmd += ["--host", self.host, "--port", str(self.port), "--n-ctx", str(self.n_ctx)]
        cmd += ["--backend", self.backend, "--log-level", "info"]
        cmd += ["--parent-pid", str(os.getpid())]
        if self.name:
            cmd += ["--name", self.name]
        if self.n_threads:
            cmd += ["--n-threads", str(self.n_threads)]
        if self.task:
            cmd += ["--task", self.task]
        return cmd

    def start(self) -> ServerProcess:
        """Start the child and wait until `/health` answers; `ServerStartError` if not."""
        if self._proc is not None:
            raise RuntimeError("server already started")
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="supertiny-serve-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_child_env(),
                start_new_session=True,  # a terminal's Ctrl-C goes to us; we stop the child
            )
        self._died = None
        atexit.register(self._terminate)
        try:
            self._wait_healthy()
        except BaseException:
            self._terminate()
            raise
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while True:
                code = self._proc.poll()
                if code is not None:
                    raise ServerStartError(
                        f"supertiny serve --model {self.model} exited with code {code} before "
                        f"it was ready; last lines of {self.log_path}:\n{self.log_tail()}"
                    )
                try:
                    if http.get(f"{self.url}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        f"supertiny serve --model {self.model} was not ready after "
                        f"{self.startup_timeout_s:.0f} s; last lines of {self.log_path}:\n"
                        f"{self.log_tail()}"
                    )
                time.sleep(0.2)

    def log_tail(self, lines: int = 30) -> str:
        """The last `lines` lines of the child's output."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def check_alive(self, settle_s: float = 0.2) -> None:
        """Raise `ServerDied` if the started child has exited; return if it runs.

        A connection error can come a moment before the exit status does (a dying process
        closes its sockets first), so a live-looking child gets `settle_s` to finish dying."""
        proc = self._proc
        if proc is None:
            return
        try:
            code = proc.wait(timeout=settle_s)
        except subprocess.TimeoutExpired:
            return
        if self._died is None:
            self._died = ServerDied(
                f"the server (supertiny serve --model {self.model}, pid {proc.pid}, {self.url}) "
                f"{describe_exit(code)} while in use; last lines of {self.log_path}:\n"
                f"{self.log_tail()}\n"
                "Every record written so far is kept. Run `supertiny doctor` to check this "
                "machine, then run the same command again to continue.",
                returncode=code,
                log_path=self.log_path,
            )
        raise self._died

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after `stop_grace_s`; removes a temporary log, unless the
        child died on its own (its log is what tells why)."""
        self._terminate()
        if self._own_log and self.log_path is not None and self._died is None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None

    def _terminate(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=self.stop_grace_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            if proc.poll() is None:  # a second interrupt cut the grace period short
                proc.kill()
            self._proc = None
            atexit.unregister(self._terminate)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else "stopped"
        return f"ServerProcess(model={self.model!r}, url={self.url!r}, {state})"


def watch_parent(pid: int, interval_s: float = 0.25, grace_s: float = 3.0) -> threading.Thread:
    """Stop this process soon after process `pid` exits: a daemon thread polls, then sends
    this process SIGTERM (a clean shutdown) and exits anyway after `grace_s`.

    When `pid` is our parent, a change of `os.getppid()` tells (no pid-reuse race);
    otherwise the process's existence (POSIX `kill(pid, 0)`)."""
    ours = os.getppid() == pid

    def gone() -> bool:
        if ours:
            return os.getppid() != pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # exists, owned by another user
            return False
        return False

    def watch() -> None:
        while not gone():
            time.sleep(interval_s)
        print(f"supertiny serve: parent process {pid} exited; stopping", file=sys.stderr)
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(1)

    thread = threading.Thread(target=watch, name=f"watch-parent-{pid}", daemon=True)
    thread.start()
    return thread


class WatchParent(argparse.Action):
    """`--parent-pid PID`: starts `watch_parent(PID)` as the option is parsed, so the watch
    is on while the model loads (minutes for a big one), before anything else runs."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        if values is not None and os.name == "posix":
            watch_parent(int(values))


def _child_env() -> dict[str, str]:
    """This environment, with this `supertiny` importable in the child even when it is
    not installed (e.g. run from a source tree), and without `SUPERTINY_API_KEY`."""
    env = dict(os.environ)
    # The child listens on loopback for this process only; a key meant for a server the
    # user runs would make it refuse our own client.
    env.pop("SUPERTINY_API_KEY", None)
    root = str(Path(supertiny.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env
