"""Run directories, the manifest, and crash-safe JSONL records: the only hand-off between stages.

A run lives in ``runs/<name>/``; each stage writes into ``runs/<name>/<stage>/`` and records
itself in ``runs/<name>/manifest.json`` (its config, package versions, start and end times,
status, artifacts). Records are appended one JSON line at a time and flushed to disk, so an
interrupted stage keeps everything it produced; on resume, a torn last line is cut off and
the ids already written are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supertiny import __version__


class RunError(RuntimeError):
    """A run directory cannot be used as asked (config changed, artifacts missing, ...)."""


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
    """Write records atomically (temp file + rename); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    Path(tmp).replace(path)
    return count


def write_json(path: Path, data: Any) -> None:
    """Write a JSON document atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2, ensure_ascii=False, default=str)
        out.write("\n")
    Path(tmp).replace(path)


class RecordLog:
    """An append-only JSONL file that survives crashes.

    Opening repairs a torn final line (a crash mid-write) by truncating it; ``ids`` holds the
    ids already written so a resumed stage can skip them. Each ``append`` is flushed and
    fsync'ed: a record that was reported written is on disk.
    """

    def __init__(self, path: Path, key: str = "id"):
        self.path = Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ids: set[str] = set()
        self.count = 0
        self._repair_and_index()
        self._handle = self.path.open("a", encoding="utf-8")

    def _repair_and_index(self) -> None:
        if not self.path.exists():
            return
        good_end = 0
        with self.path.open("rb") as handle:
            for raw in handle:
                try:
                    record = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    break
                if not raw.endswith(b"\n"):
                    break
                good_end += len(raw)
                self.count += 1
                if isinstance(record, dict) and self.key in record:
                    self.ids.add(str(record[self.key]))
        if good_end != self.path.stat().st_size:
            with self.path.open("r+b") as handle:
                handle.truncate(good_end)

    def append(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        if self.key in record:
            self.ids.add(str(record[self.key]))
        self.count += 1

    def __contains__(self, record_id: object) -> bool:
        return str(record_id) in self.ids

    def close(self) -> None:
        self._handle.close()

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

    >>> run = Run("runs/demo")
    >>> stage = run.begin("label", config_dict)   # resumes if the config is unchanged
    >>> ...; run.finish("label", artifacts={"labeled": "label/labeled.jsonl"})
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.root / "manifest.json"

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

        Returns the stage directory. With ``restart`` the stage's previous records are moved
        aside to ``<stage>.old-<time>/`` (never deleted). ``check=False`` is for stages that
        keep what is still valid themselves (the train stage compares each step's settings).
        ``volatile`` names the dotted keys that do not change a record (how many inputs, how
        fast): a change to them alone resumes the stage with its records.
        """
        manifest = self.manifest()
        digest = config_hash(config)
        previous = manifest["stages"].get(stage)
        stage_path = self.root / stage
        if restart and stage_path.exists() and any(stage_path.iterdir()):
            stage_path.rename(self.root / f"{stage}.old-{time.strftime('%Y%m%d-%H%M%S')}")
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
            "config_hash": digest,
            "versions": _versions(),
            "started": _now(),
            "resumed": bool(previous),
            "artifacts": (previous or {}).get("artifacts", {}),
        }
        if previous:
            entry["first_started"] = previous.get("first_started", previous.get("started"))
        manifest["stages"][stage] = entry
        self._save(manifest)
        return self.stage_dir(stage)

    def finish(
        self,
        stage: str,
        artifacts: dict[str, str],
        status: str = "finished",
        summary: dict[str, Any] | None = None,
    ) -> None:
        manifest = self.manifest()
        entry = manifest["stages"].setdefault(stage, {})
        entry.update(status=status, finished=_now(), artifacts=artifacts)
        if summary is not None:
            entry["summary"] = summary
        self._save(manifest)

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


def _changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(prefix + key)
    return keys


# ----- stages made of steps (train, compress) ---------------------------------------------
# A step writes ``NN-kind/`` with ``started.json`` (its settings hash) at the start and
# ``step.json`` (hash, metrics, the artifact it made) at the end. A re-run keeps the finished
# steps whose hash is unchanged and moves every other step folder aside, never deleting it.


def step_name(index: int, kind: str) -> str:
    return f"{index + 1:02d}-{kind}"


def finished_step(step_dir: Path, digest: str) -> dict[str, Any] | None:
    """The step's ``step.json`` if it finished with settings ``digest`` and its artifact exists."""
    marker = step_dir / "step.json"
    if not marker.is_file():
        return None
    info = json.loads(marker.read_text(encoding="utf-8"))
    artifact = step_dir / info.get("artifact", "model/config.json")
    if info.get("hash") != digest or not artifact.exists():
        return None
    return info


def finish_step(step_dir: Path, info: dict[str, Any]) -> None:
    """Mark a step finished and drop its trainer checkpoints, kept only to resume it.

    A full fine-tune's checkpoint holds the optimizer state, twice the model's size; once
    ``step.json`` says the step's model is complete, nothing reads it again."""
    import shutil

    write_json(step_dir / "step.json", info)
    shutil.rmtree(step_dir / "checkpoints", ignore_errors=True)


def set_aside_steps(stage_dir: Path, keep: dict[str, str]) -> None:
    """Move step folders aside unless their name and settings hash are in ``keep``."""
    from supertiny.progress import console

    stamp = time.strftime("%Y%m%d-%H%M%S")
    for path in sorted(stage_dir.glob("[0-9][0-9]-*")):
        if not path.is_dir() or "." in path.name:
            continue
        marker = path / "started.json"
        digest = (
            json.loads(marker.read_text(encoding="utf-8")).get("hash") if marker.is_file() else None
        )
        if keep.get(path.name) == digest:
            continue
        target = stage_dir / f"{path.name}.old-{stamp}"
        path.rename(target)
        console.print(f"set aside {path} -> {target.name} (its settings changed)")
