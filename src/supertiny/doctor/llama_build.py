"""Build and install llama-cpp-python for this CPU, portably: never native, never AMX.

Why this exists: pip builds llama-cpp-python from source with ``-march=native`` unless told
otherwise. On Intel Xeons that advertise AMX (``amx_tile``/``amx_int8``), that build's AMX
matmul kernel segfaults at the first decode (``ldtilecfg`` in ``ggml_backend_amx_mul_mat``),
and pip's wheel cache then hands the crashing wheel to every later install whatever
``CMAKE_ARGS`` says (its cache key is the sdist's URL, not the build flags).

So the build is chosen here, not by the compiler:
- ``GGML_NATIVE=OFF`` and an explicit instruction-set list: AVX2/FMA/F16C/BMI2 as the x86-64
  baseline, AVX-512 (F/CD/VL/DQ/BW, VBMI, VNNI, BF16) and AVX-VNNI only where /proc/cpuinfo
  lists them, and the AMX kernels always off;
- the wheel is built with pip's cache off and kept in our own cache under a key made of
  the llama-cpp-python version, the Python tag and that instruction-set list, so a wheel is
  only ever reused on a CPU that has every instruction it was built with;
- ``LLAVA_BUILD=OFF``: supertiny runs text models only, and the multimodal library is a
  fifth of the compile.

Run it before the project's own install (it needs nothing but the standard library):

    python src/supertiny/doctor/llama_build.py            # build (once per CPU kind) + install
    python src/supertiny/doctor/llama_build.py --print    # the flags and cache key, no build
    supertiny doctor --fix                                # the same, from an installed supertiny

``supertiny doctor`` checks the installed build (``llama_print_system_info``) against this.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

LLAMA_CPP_PYTHON_VERSION = "0.3.36"

# /proc/cpuinfo flag -> the ggml CMake option it enables. Every option needs the AVX2
# baseline; GGML_AVX512 stands for the five foundation sets ggml compiles it with.
_BASELINE = ("avx", "avx2", "fma", "f16c", "bmi2")
_BASELINE_OPTIONS = ("GGML_SSE42", "GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_BMI2")
_AVX512_FOUNDATION = ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")
_AVX512_EXTRAS = (
    ("avx512vbmi", "GGML_AVX512_VBMI"),
    ("avx512_vnni", "GGML_AVX512_VNNI"),
    ("avx512_bf16", "GGML_AVX512_BF16"),
)
# Always off: llama.cpp's AMX kernels crash on the Xeon VMs these runs land on (see above).
_NEVER = ("GGML_NATIVE", "GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The instruction-set flags the kernel reports for this CPU (empty where unknown)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cmake_options(flags: set[str], machine: str | None = None) -> dict[str, str]:
    """The ggml CMake options for a CPU with these flags: ``{"GGML_AVX2": "ON", ...}``.

    x86-64 without the AVX2 baseline gets SSE4.2 only; other architectures keep ggml's
    generic defaults with native detection off.
    """
    machine = (machine or platform.machine()).lower()
    options = {name: "OFF" for name in _NEVER}
    if machine not in ("x86_64", "amd64"):
        return options
    if not all(flag in flags for flag in _BASELINE):
        options.update(dict.fromkeys(_BASELINE_OPTIONS, "OFF"))
        options["GGML_SSE42"] = "ON" if "sse4_2" in flags else "OFF"
        return options
    options.update(dict.fromkeys(_BASELINE_OPTIONS, "ON"))
    options["GGML_AVX_VNNI"] = "ON" if "avx_vnni" in flags else "OFF"
    avx512 = all(flag in flags for flag in _AVX512_FOUNDATION)
    options["GGML_AVX512"] = "ON" if avx512 else "OFF"
    for flag, name in _AVX512_EXTRAS:
        options[name] = "ON" if avx512 and flag in flags else "OFF"
    return options


def cmake_args(options: dict[str, str]) -> str:
    """The ``CMAKE_ARGS`` string for llama-cpp-python's build."""
    defines = [f"-D{name}={value}" for name, value in sorted(options.items())]
    return " ".join([*defines, "-DLLAVA_BUILD=OFF"])


def enabled_sets(options: dict[str, str]) -> list[str]:
    """The instruction sets a build uses, e.g. ``["AVX", "AVX2", "AVX512", ...]``."""
    return sorted(name.removeprefix("GGML_") for name, value in options.items() if value == "ON")


def cache_key(options: dict[str, str], version: str = LLAMA_CPP_PYTHON_VERSION) -> str:
    """One wheel per llama-cpp-python version, Python and instruction-set list."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    digest = hashlib.sha256(cmake_args(options).encode()).hexdigest()[:12]
    return f"{version}-{tag}-{platform.machine().lower()}-{digest}"


def wheel_dir(key: str) -> Path:
    base = os.environ.get("SUPERTINY_CACHE") or Path.home() / ".cache" / "supertiny"
    return Path(base) / "llama-wheels" / key


def _pip(*args: str, env: dict[str, str] | None = None) -> None:
    command = [sys.executable, "-m", "pip", *args]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, env=env)


def build_and_install(version: str = LLAMA_CPP_PYTHON_VERSION, rebuild: bool = False) -> Path:
    """Build the wheel for this CPU once (cached by key), then install it over any other."""
    options = cmake_options(cpu_flags())
    key = cache_key(options, version)
    folder = wheel_dir(key)
    wheels = sorted(folder.glob("llama_cpp_python-*.whl")) if folder.is_dir() else []
    if rebuild or not wheels:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in wheels:
            stale.unlink()
        env = dict(os.environ, CMAKE_ARGS=cmake_args(options), FORCE_CMAKE="1")
        env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        print(
            f"building llama-cpp-python {version} for {', '.join(enabled_sets(options))} "
            f"(no AMX, not native; 2.5-9 minutes on 2 cores)",
            flush=True,
        )
        _pip(
            "wheel",
            "--no-cache-dir",
            "--no-deps",
            "--no-binary",
            "llama-cpp-python",
            "--progress-bar",
            "off",
            "-w",
            str(folder),
            f"llama-cpp-python=={version}",
            env=env,
        )
        wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
        if not wheels:
            raise SystemExit(f"pip wheel wrote no llama-cpp-python wheel into {folder}")
    else:
        print(
            f"llama-cpp-python {version} for {', '.join(enabled_sets(options))}: "
            f"using the wheel built earlier ({wheels[-1]})",
            flush=True,
        )
    # --force-reinstall --no-deps: replace whatever build is installed (a native one from
    # pip's cache included) without touching its dependencies.
    _pip("install", "--force-reinstall", "--no-deps", "--progress-bar", "off", str(wheels[-1]))
    _pip("install", "--progress-bar", "off", str(wheels[-1]))  # its dependencies, if missing
    return wheels[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--print", action="store_true", help="print flags and key; build nothing")
    parser.add_argument("--rebuild", action="store_true", help="build again even if cached")
    parser.add_argument("--version", default=LLAMA_CPP_PYTHON_VERSION)
    args = parser.parse_args(argv)
    options = cmake_options(cpu_flags())
    if args.print:
        print(f"instruction sets: {', '.join(enabled_sets(options))}")
        print(f"CMAKE_ARGS={cmake_args(options)}")
        print(f"wheel cache: {wheel_dir(cache_key(options, args.version))}")
        return 0
    build_and_install(args.version, rebuild=args.rebuild)
    return 0


if __name__ == "__main__":
    sys.exit(main())
