"""``supertiny doctor``: is this machine ready to run the pipeline, and if not, what fixes it.

    supertiny doctor            # every check; exit 1 if one fails
    supertiny doctor --fix      # rebuild llama-cpp-python portably, assemble the bundled models

Checks (the ones that load native code run in a child process, so a crash is caught and
named instead of taking the doctor down):
- cpu: model, the instruction sets that matter (AVX2, AVX-512, AMX), cores this process may use;
- disk: free space where the run directories and the model cache live;
- torch: imports and runs a float32 and a bfloat16 matmul (their GFLOP/s tell which dtype
  trains faster on this CPU);
- models: the bundled GGUF parts are installed, assembled, and match their pinned SHA-256;
- llama.cpp build: the installed llama-cpp-python has no AMX kernels and needs no
  instruction the CPU lacks;
- llama.cpp decode: a bundled model loads and decodes a token.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from supertiny.core import models
from supertiny.doctor import llama_build

FIX_LLAMA = "supertiny doctor --fix   (or: python -m supertiny.doctor.llama_build)"

# llama_print_system_info name -> /proc/cpuinfo flag.
_SYSTEM_INFO_FLAGS = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX_VNNI": "avx_vnni",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}
MIN_FREE_GB = 8.0


@dataclass
class Check:
    """One line of the doctor's table. ``status`` is "ok", "warn" or "fail"."""

    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class ProbeResult:
    """What a child probe returned: its JSON, or how it died."""

    data: dict | None
    problem: str


def run_probe(name: str, *args: str, timeout_s: float = 180.0) -> ProbeResult:
    """Run ``probes.<name>(*args)`` in a child Python; a crash or hang is described."""
    return run_child([sys.executable, "-m", "supertiny.doctor.probes", name, *args], timeout_s)


def run_child(command: list[str], timeout_s: float) -> ProbeResult:
    """Run a probe command; its last JSON line, or how it died (signal, exit code, hang)."""
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return ProbeResult(None, f"did not finish within {timeout_s:.0f} s")
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        return ProbeResult(None, f"crashed: killed by {sig}{_last_line(proc.stderr)}")
    if proc.returncode != 0:
        return ProbeResult(None, f"failed (exit {proc.returncode}){_last_line(proc.stderr)}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return ProbeResult(json.loads(line), "")
    return ProbeResult(None, "printed no result")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return f": {lines[-1].strip()}" if lines else ""


def check_cpu(flags: set[str] | None = None) -> Check:
    flags = llama_build.cpu_flags() if flags is None else flags
    name = _cpu_model() or platform.processor() or platform.machine()
    sets = [s for s in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_int8") if s in flags]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    detail = f"{name}; {cores} cores usable; {' '.join(sets) or 'no AVX2'}"
    if platform.machine().lower() in ("x86_64", "amd64") and "avx2" not in flags:
        return Check("cpu", "warn", detail + " (llama.cpp runs, slowly, without AVX2)")
    return Check("cpu", "ok", detail)


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else ""


def check_disk(paths: list[Path] | None = None) -> Check:
    paths = paths or [Path.cwd(), models.cache_dir()]
    worst: tuple[float, Path] | None = None
    for path in paths:
        existing = next(p for p in [path, *path.parents] if p.exists())
        free_gb = shutil.disk_usage(existing).free / 1e9
        if worst is None or free_gb < worst[0]:
            worst = (free_gb, path)
    free_gb, path = worst
    detail = f"{free_gb:.1f} GB free at {path}"
    if free_gb < MIN_FREE_GB:
        return Check(
            "disk",
            "fail",
            detail + f" (the demo needs about {MIN_FREE_GB:.0f} GB: models, checkpoints, GGUFs)",
            "free space: old outputs set aside as runs/*/*.old-*, other runs, ~/.cache/pip",
        )
    return Check("disk", "ok", detail)


def check_torch() -> Check:
    result = run_probe("torch_matmul", timeout_s=120)
    if result.data is None:
        return Check("torch", "fail", f"torch {result.problem}", 'pip install "torch==2.13.0"')
    rates = result.data["gflops"]
    faster = "bfloat16" if rates["bfloat16"] > rates["float32"] else "float32"
    detail = (
        f"torch {result.data['version']}: matmul {rates['float32']:.0f} GFLOP/s float32, "
        f"{rates['bfloat16']:.1f} bfloat16 ({faster} is faster here)"
    )
    return Check("torch", "ok", detail)


def check_models(verify: Callable[[Path], str] | None = None) -> list[Check]:
    verify = verify or _sha256
    checks = []
    for alias, model in models.BUNDLED.items():
        name = f"model {alias}"
        if not models.is_installed(alias):
            fix = "pip install 'supertiny[demo]'"
            checks.append(Check(name, "warn", "parts not installed", fix))
            continue
        path = models.cache_dir() / model.filename
        if not path.exists():
            detail = "parts installed, not assembled yet (done on first use)"
            checks.append(Check(name, "ok", detail, "supertiny models --assemble"))
            continue
        digest = verify(path)
        if digest != model.sha256:
            detail = f"{path} has SHA-256 {digest[:12]}..., expected {model.sha256[:12]}..."
            fix = f"rm {path} && supertiny models --assemble"
            checks.append(Check(name, "fail", detail, fix))
            continue
        checks.append(
            Check(name, "ok", f"{path} ({path.stat().st_size / 2**20:,.0f} MiB, hash ok)")
        )
    return checks


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def build_features(system_info: str) -> set[str]:
    """The instruction sets a llama.cpp build uses, from ``llama_print_system_info``."""
    return {name for name, value in re.findall(r"(\w+) = (\d+)", system_info) if value == "1"}


def check_llama_build(flags: set[str] | None = None, system_info: str | None = None) -> Check:
    """The installed build has no AMX kernels and needs nothing this CPU lacks."""
    flags = llama_build.cpu_flags() if flags is None else flags
    version = ""
    if system_info is None:
        result = run_probe("llama_build", timeout_s=60)
        if result.data is None:
            fix = "pip install 'supertiny[llama]' after " + FIX_LLAMA
            return Check("llama.cpp build", "fail", f"import llama_cpp {result.problem}", fix)
        system_info, version = result.data["system_info"], result.data["version"]
    used = build_features(system_info)
    missing = sorted(
        n for n in used if n in _SYSTEM_INFO_FLAGS and _SYSTEM_INFO_FLAGS[n] not in flags
    )
    prefix = f"llama-cpp-python {version}: " if version else ""
    if any(name.startswith("AMX") for name in used):
        detail = (
            f"{prefix}built with llama.cpp's AMX kernels (a native build), which segfault at "
            "the first decode on Xeon VMs that advertise AMX"
        )
        return Check("llama.cpp build", "fail", detail, FIX_LLAMA)
    if missing:
        detail = (
            f"{prefix}built for instructions this CPU lacks ({', '.join(missing)}): it will crash"
        )
        return Check("llama.cpp build", "fail", detail, FIX_LLAMA)
    sets = sorted(n for n in used if n in _SYSTEM_INFO_FLAGS)
    wanted = set(llama_build.enabled_sets(llama_build.cmake_options(flags)))
    if "AVX512" in wanted and "AVX512" not in used:
        detail = f"{prefix}portable build without AVX-512 on a CPU that has it (prefill slower)"
        return Check("llama.cpp build", "warn", detail, FIX_LLAMA)
    return Check("llama.cpp build", "ok", f"{prefix}{' '.join(sets)}; no AMX")


def check_llama_decode() -> Check:
    alias = next((a for a in ("student", "teacher") if models.is_installed(a)), None)
    if alias is None:
        return Check(
            "llama.cpp decode",
            "warn",
            "no bundled model installed to try",
            "pip install 'supertiny[demo]'",
        )
    path = models.resolve_gguf(alias)
    result = run_probe("llama_decode", str(path), timeout_s=300)
    if result.data is None:
        detail = f"the bundled {alias} in llama.cpp {result.problem}"
        return Check("llama.cpp decode", "fail", detail, FIX_LLAMA)
    return Check("llama.cpp decode", "ok", f"bundled {alias}: {result.data['detail']}")


def run_checks() -> list[Check]:
    """Every check, cheapest first."""
    checks = [check_cpu(), check_disk(), check_torch(), *check_models(), check_llama_build()]
    if checks[-1].status != "fail" or "import" not in checks[-1].detail:
        checks.append(check_llama_decode())
    return checks


def fix() -> None:
    """Rebuild llama-cpp-python for this CPU (never native, never AMX); assemble the models."""
    llama_build.build_and_install()
    for alias in models.BUNDLED:
        if models.is_installed(alias):
            models.resolve_gguf(alias)
