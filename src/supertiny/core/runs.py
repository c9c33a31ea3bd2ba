"""Run directories, the manifest, and crash-safe JSONL records: the only hand-off between stages.

A run lives in ``runs/<name>/``; each stage writes into ``runs/<name>/<stage>/`` and records
itself in ``runs/<name>/manifest.json`` (its config, package versions, start and end times,
status, artifacts). Records are appended one JSON line at a time and fsync'ed, so an
interrupted stage keeps everything it produced, and on resume the ids already written are
skipped. No good record is ever removed: reopening a log cuts off only a torn last line (a
crash mid-write), with a warning; an unreadable line before the end is an error that names
the file and line and leaves the file as it is. An append that fails half-way (a full disk)
is cut back off before the error goes on, so the next one starts on a clean line.

One process at a time runs a stage on a run directory: ``Run.begin`` takes the lock
``runs/<name>/.<stage>.lock`` (which names the holder's pid and command) and holds it until
``Run.finish`` or the end of the process; a second run of the stage stops at once, naming
the holder. Manifest updates hold ``.manifest.lock``, so two stages that finish together
keep both their entries. Files are replaced atomically and fsync'ed with their folder;
folders are never deleted, only set aside as ``<name>.old-<time>``. ``SERVED_OUTPUTS`` names
the model outputs a stage's manifest entry lists, in the order they are served. The steps of
a stage (train, compress, eval) are kept in ``core/steps.py``.

One file of ~580 lines, on purpose: the record logs, the manifest and the locks share one set
of atomic-write, fsync and set-aside rules, and are read together when a crash is reasoned about.

    python -m pytest tests/unit/core/test_runs.py -q
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from supertiny import __version__
from supertiny.core.errors import SupertinyError


class RunError(SupertinyError, RuntimeError):
    """A run directory cannot be used as asked (config changed, artifacts missing, ...)."""


class StageBusy(RunError):
    """Another process is running this stage on this run directory (it holds the lock)."""


class CorruptRecords(RunError):
    """A record log has an unreadable line before its end: only a person can tell what it was."""


@dataclass
class BadLine:
    """A JSONL line that could not be read: where, and why."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def iter_jsonl(path: Path, bad: list[BadLine] | None = None) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file; unreadable lines go to ``bad`` (or raise)."""
    for _, record in iter_numbered(path, bad):
        yield record


def iter_numbered(
    path: Path, bad: list[BadLine] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Like ``iter_jsonl``, with each object's line number (1-based)."""
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                problem = BadLine(Path(path), number, f"not JSON ({exc.msg} at column {exc.colno})")
            else:
                if isinstance(record, dict):
                    yield number, record
                    continue
                problem = BadLine(
                    Path(path), number, f"expected a JSON object, got {type(record).__name__}"
                )
            if bad is None:
                raise RunError(str(problem))
            bad.append(problem)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All records of a JSONL file (strict: a bad line is an error naming file and line)."""
    return list(iter_jsonl(path))


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Write records atomically (temp file + rename, both fsync'ed); returns the count."""
    count = 0

    def write(out: IO[str]) -> None:
        nonlocal count
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1

    _replace(Path(path), write)
    return count


def write_json(path: Path, data: Any) -> None:
    """Write a JSON document atomically (temp file + rename, both fsync'ed)."""

    def write(out: IO[str]) -> None:
        json.dump(data, out, indent=2, ensure_ascii=False, default=str)
        out.write("\n")

    _replace(Path(path), write)


def _replace(path: Path, write: Callable[[IO[str]], None]) -> None:
    """Put what ``write`` writes at ``path`` all at once: into a temp file beside it, fsync'ed,
    renamed over ``path``, then the folder fsync'ed so that the rename survives a power cut.
    On any failure ``path`` keeps its old content and the temp file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the folder's entries (a created or renamed file) durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems (a few network ones) cannot sync a folder
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


class RecordLog:
    """An append-only JSONL file that survives crashes and full disks.

    Opening indexes the records already there (``ids``, ``count``) so that a resumed stage can
    skip them. A torn final line (no newline and not JSON: a crash mid-write) is cut off, with
    a warning; an unreadable line anywhere before it raises ``CorruptRecords`` naming the file
    and line, and the file is left as it is. Each ``append`` is written and fsync'ed: a record
    reported written is on disk. An append that fails half-way (a full disk) is cut back off
    before the error goes on, so nothing torn is left for the next append to join. One writer
    per file: the stage lock keeps other processes out.
    """

    def __init__(self, path: Path, key: str = "id"):
        self.path = Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ids: set[str] = set()
        self.count = 0
        existed = self.path.exists()
        if existed:
            self._index()
        # Records go straight to this handle's file descriptor, never through its buffer: a
        # failed write then leaves nothing buffered that could reach the file later.
        self._handle: IO[str] | None = self.path.open("a", encoding="utf-8")
        if not existed:
            _fsync_folder(self.path.parent)

    def _index(self) -> None:
        """Read the records written so far; repair a torn last line, refuse a bad earlier one."""
        good_end, last = 0, b""
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                problem = self._take(raw)
                if problem is None:
                    good_end, last = good_end + len(raw), raw
                elif raw.endswith(b"\n"):  # not a write cut short: cutting could lose records
                    raise CorruptRecords(
                        f"{self.path}:{number}: {problem}. Only a torn last line (no newline at "
                        "its end) is cut off on its own; this file is left as it is, with every "
                        "record after that line. Edit the line by hand into one JSON object, or "
                        "delete it (its record is then made again), and run the same command "
                        "again."
                    )
                else:
                    self._cut_torn_line(good_end, number, problem)
                    return
        if last and not last.endswith(b"\n"):  # a whole last record whose newline is missing
            with self.path.open("ab") as handle:
                handle.write(b"\n")
                handle.flush()
                os.fsync(handle.fileno())

    def _take(self, raw: bytes) -> str | None:
        """Index one line; returns why it cannot be read, or None (a record, or blank)."""
        if not raw.strip():
            return None
        try:
            record = json.loads(raw)
        except UnicodeDecodeError:
            return "not UTF-8 text"
        except json.JSONDecodeError as exc:
            return f"not JSON ({exc.msg} at column {exc.colno})"
        if not isinstance(record, dict):
            return f"expected a JSON object, got {type(record).__name__}"
        self.count += 1
        if self.key in record:
            self.ids.add(str(record[self.key]))
        return None

    def _cut_torn_line(self, good_end: int, number: int, problem: str) -> None:
        from supertiny.core.progress import warn

        size = self.path.stat().st_size
        with self.path.open("r+b") as handle:
            handle.truncate(good_end)
            os.fsync(handle.fileno())
        warn(
            f"{self.path}:{number}: cut off a torn last line ({size - good_end} bytes, "
            f"{problem}), left by a write that was cut short; the {self.count} records "
            "before it are kept"
        )

    def append(self, record: dict[str, Any]) -> None:
        """Write one record durably, or (on any error) leave the file as it was and raise."""
        if self._handle is None:
            raise RunError(f"{self.path}: the record log is closed")
        data = memoryview((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        fd = self._handle.fileno()
        size = os.fstat(fd).st_size
        try:
            while data:  # a full disk can take part of a line and refuse the rest
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        except BaseException:
            self._undo(fd, size)
            raise
        if self.key in record:
            self.ids.add(str(record[self.key]))
        self.count += 1

    def _undo(self, fd: int, size: int) -> None:
        """Cut the file back to ``size`` after a failed append."""
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError:  # no further appends: the next open cuts the torn line off (the last)
            self.close()

    def __contains__(self, record_id: object) -> bool:
        return str(record_id) in self.ids

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> RecordLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def config_hash(config: dict[str, Any]) -> str:
    """A stable digest of a config dict (used to tell whether a finished stage is still valid)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _versions() -> dict[str, str]:
    import importlib.metadata as metadata

    out = {
        "supertiny": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    for name in ("torch", "transformers", "llama-cpp-python", "pydantic", "httpx"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Run:
    """A run directory and its manifest.

    >>> with Run("runs/demo") as run:                 # on leaving: the stage locks let go
    ...     stage = run.begin("label", config_dict)   # locks the stage; resumes if unchanged
    ...     ...; run.finish("label", artifacts={"labeled": "label/labeled.jsonl"})
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.root / "manifest.json"
        self._locks: dict[str, int] = {}  # stage -> the open lock file (a descriptor)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Let go of the stage locks still held (a stage that stopped before ``finish``)."""
        for stage in list(self._locks):
            self.release(stage)

    def lock(self, stage: str) -> None:
        """Take ``stage``'s lock for this process, or raise ``StageBusy`` naming its holder.

        The lock is an flock on ``.<stage>.lock``, outside the stage folder (which ``begin``
        may set aside): the kernel lets go of it when the process ends, however it ends, so a
        crashed run never leaves a stale lock behind. It is not let go of when this object is
        dropped: ``with Run(...)`` (or ``close``) lets go of it."""
        if stage in self._locks:
            return
        path = self.root / f".{stage}.lock"
        for _ in range(20):
            fd = _flock(path, wait=False)
            if fd is not None:
                break
            holder = _holder(path)
            if holder:
                break
            time.sleep(0.05)  # the holder writes who it is just after it takes the lock
        if fd is None:
            raise StageBusy(_busy_message(self.root, stage, path, holder))
        holder = {"pid": os.getpid(), "command": shlex.join(sys.orig_argv), "since": _now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
        self._locks[stage] = fd

    def release(self, stage: str) -> None:
        """Let go of ``stage``'s lock if this object holds it."""
        fd = self._locks.pop(stage, None)
        if fd is not None:
            try:
                os.ftruncate(fd, 0)  # the file names a holder only while there is one
            finally:
                os.close(fd)

    @contextlib.contextmanager
    def _update(self) -> Iterator[dict[str, Any]]:
        """The manifest, read and saved under ``.manifest.lock``: two stages that finish at
        the same time both keep their entries. Nothing is saved if the block raises."""
        fd = _flock(self.root / ".manifest.lock", wait=True)
        try:
            manifest = self.manifest()
            yield manifest
            self._save(manifest)
        finally:
            if fd is not None:
                os.close(fd)

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"run": self.root.name, "created": _now(), "stages": {}}
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RunError(
                f"{self.manifest_path}: manifest is not JSON ({exc.msg}); "
                "fix or delete it (records in the stage folders are kept)"
            ) from None

    def _save(self, manifest: dict[str, Any]) -> None:
        write_json(self.manifest_path, manifest)

    def stage_dir(self, stage: str) -> Path:
        path = self.root / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def stage(self, stage: str) -> dict[str, Any] | None:
        return self.manifest()["stages"].get(stage)

    def begin(
        self,
        stage: str,
        config: dict[str, Any],
        restart: bool = False,
        check: bool = True,
        volatile: tuple[str, ...] = (),
    ) -> Path:
        """Mark ``stage`` started; refuse to mix records made under a different config.

        Returns the stage directory. First takes the stage's lock (``lock``), held until
        ``finish`` (or ``close``, or the end of the process). With ``restart`` the stage's
        previous records are moved aside to ``<stage>.old-<time>/`` (never deleted).
        ``check=False`` is for stages that keep what is still valid themselves (the train
        stage compares each step's settings). ``volatile`` names the dotted keys that do not
        change a record (how many inputs, how fast): a change to them alone resumes the stage
        with its records.
        """
        held = stage in self._locks
        self.lock(stage)
        try:
            with self._update() as manifest:
                self._enter(manifest, stage, config, restart, check, volatile)
        except BaseException:
            if not held:
                self.release(stage)
            raise
        return self.stage_dir(stage)

    def _enter(
        self,
        manifest: dict[str, Any],
        stage: str,
        config: dict[str, Any],
        restart: bool,
        check: bool,
        volatile: tuple[str, ...],
    ) -> None:
        """``begin``'s change to the manifest: the stage's new entry."""
        previous = manifest["stages"].get(stage)
        stage_path = self.root / stage
        if restart and stage_path.exists() and any(stage_path.iterdir()):
            set_aside(stage_path)
            previous = None
        elif check and stage_path.exists():
            changed = self.changed_keys(stage, config, volatile)
            if changed:
                raise RunError(
                    f"{self.root}: stage '{stage}' was run with a different config "
                    f"(changed: {', '.join(changed)}); its records would mix. "
                    "Use a new run directory, or --restart to set the old records aside."
                )
        entry = {
            "status": "running",
            "config": config,
            "config_hash": config_hash(config),
            "versions": _versions(),
            "started": _now(),
            "resumed": bool(previous),
            "artifacts": (previous or {}).get("artifacts", {}),
        }
        if previous:
            entry["first_started"] = previous.get("first_started", previous.get("started"))
        manifest["stages"][stage] = entry

    def finish(
        self,
        stage: str,
        artifacts: dict[str, str],
        status: str = "finished",
        summary: dict[str, Any] | None = None,
    ) -> None:
        """Record the stage's outcome in the manifest and let go of its lock."""
        try:
            with self._update() as manifest:
                entry = manifest["stages"].setdefault(stage, {})
                entry.update(status=status, finished=_now(), artifacts=artifacts)
                if summary is not None:
                    entry["summary"] = summary
        finally:
            self.release(stage)

    def changed_keys(
        self, stage: str, config: dict[str, Any], volatile: tuple[str, ...] = ()
    ) -> list[str]:
        """The keys, outside ``volatile``, in which ``config`` differs from the settings
        ``stage`` last ran with (empty when it never ran)."""
        previous = self.stage(stage)
        if not previous or previous.get("config_hash") == config_hash(config):
            return []
        changed = _changed_keys(previous.get("config", {}), config)
        return [key for key in changed if key not in volatile] if changed else ["unknown"]

    def is_complete(self, stage: str, config: dict[str, Any]) -> bool:
        entry = self.stage(stage)
        return bool(
            entry
            and entry.get("status") == "finished"
            and entry.get("config_hash") == config_hash(config)
            and all((self.root / p).exists() for p in entry.get("artifacts", {}).values())
        )


def _flock(path: Path, wait: bool) -> int | None:
    """``path`` opened (a descriptor) with an exclusive flock on it; None if another process
    holds it (``wait=False``). Closing it, or the end of the process, lets go of the lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _holder(path: Path) -> dict[str, Any]:
    """Who holds the lock file ``path``, as it wrote itself there (empty if not yet)."""
    with contextlib.suppress(OSError, ValueError):
        holder = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(holder, dict) and "pid" in holder:
            return holder
    return {}


def _busy_message(root: Path, stage: str, path: Path, holder: dict[str, Any]) -> str:
    if holder:
        pid = holder["pid"]
        who = f"process {pid} ({holder.get('command')}, since {holder.get('since')})"
        stop = f"stop it (kill {pid})"
    else:
        who, stop = f"another process (it holds {path})", "stop it"
    return (
        f"{root}: the {stage} stage is already running on this run directory, in {who}. Two "
        f"runs of one stage would write over each other's records: wait for it to end, or "
        f"{stop}, then run this command again."
    )


def set_aside(
    path: Path, tag: str = "old", stamp: str | None = None, into: Path | None = None
) -> Path:
    """Rename folder ``path`` to ``<name>.<tag>-<time>`` beside it (or in folder ``into``),
    never over another folder; returns the new path.

    A second set-aside within the same second gets ``-02``, ``-03``, ...: the names sort in
    the order the set-asides happened."""
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    name = f"{path.name}.{tag}-{stamp}"
    target = (into or path.parent) / name
    number = 1
    while True:
        try:
            target.mkdir()  # claims the name: it fails if anything has it
            break
        except FileExistsError:
            number += 1
            target = target.with_name(f"{name}-{number:02d}")
    try:
        path.rename(target)  # a folder may replace an empty folder
    except BaseException:
        target.rmdir()
        raise
    return target


def _changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(prefix + key)
    return keys


SERVED_OUTPUTS = {"compress": ("gguf", "torchao", "model"), "train": ("model",)}
"""A stage's model outputs, the one to serve first: llama.cpp, then torchao, then float."""


def served_output(stage: str, artifacts: dict[str, str]) -> str | None:
    """The key of the model a stage's ``artifacts`` would be served from, if any."""
    return next((k for k in SERVED_OUTPUTS.get(stage, ()) if k in artifacts), None)
