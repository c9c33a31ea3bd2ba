"""Start and stop `supertiny serve` as a subprocess, for the stages that need a server.

    with ServerProcess("teacher") as server:       # picks a free port, waits for /health
        client = TeacherClient(base_url=server.base_url, ...)   # http://127.0.0.1:PORT/v1

The label stage uses it when the task config names no teacher URL. The child is
`sys.executable -m supertiny.serve ...`; its output goes to `log_path` (a temporary
file by default, removed after a clean stop). If the child exits before `/health`
answers, or does not answer within `startup_timeout_s`, `ServerStartError` is raised
at once with the end of its log. On exit the child gets SIGTERM, then SIGKILL after
a grace period.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import supertiny


class ServerStartError(RuntimeError):
    """The server process exited or never became healthy; the message has its log tail."""


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
            )
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

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after `stop_grace_s`; removes a temporary log."""
        self._terminate()
        if self._own_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=self.stop_grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else "stopped"
        return f"ServerProcess(model={self.model!r}, url={self.url!r}, {state})"


def _child_env() -> dict[str, str]:
    """This environment, with this `supertiny` importable in the child even when it is
    not installed (e.g. run from a source tree)."""
    env = dict(os.environ)
    root = str(Path(supertiny.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env
