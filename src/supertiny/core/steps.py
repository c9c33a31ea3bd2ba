"""The steps of a stage (train, compress, eval): each in its own ``NN-kind/`` folder, resumable.

A step writes ``NN-kind/`` with ``started.json`` (its settings hash) at the start and
``step.json`` (hash, metrics, the artifact it made) at the end. A re-run keeps the finished
steps whose hash is unchanged and moves every other step folder aside, never deleting it.
``fingerprint`` is what a step's hash says about a model on disk (names, sizes, times).

    names = [step_name(i, s.kind) for i, s in enumerate(conf.steps)]
    set_aside_steps(stage_dir, dict(zip(names, hashes)))
    info = finished_step(stage_dir / names[0], hashes[0])   # None: run it, then finish_step()
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from supertiny.core.runs import set_aside, write_json


def fingerprint(path: Path) -> list[Any]:
    """Names, sizes and times of a model folder's files: changes when the model is rewritten."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]


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
    from supertiny.core.progress import console

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
        target = set_aside(path, stamp=stamp)
        console.print(f"set aside {path} -> {target.name} (its settings changed)")
