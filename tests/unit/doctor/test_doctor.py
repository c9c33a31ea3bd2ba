"""supertiny doctor: the llama.cpp build flags, crash detection in probes, the checks."""

from __future__ import annotations

import sys

import pytest

from supertiny.doctor import checks, llama_build

AMD_AVX2 = {"pni", "ssse3", "sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"}
XEON_AMX = AMD_AVX2 | {
    "avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw", "avx512vbmi", "avx512_vnni",
    "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
}  # fmt: skip
NATIVE_XEON_INFO = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
    "AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | "
    "LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |"
)


def test_cpu_flags_are_read_from_cpuinfo():
    text = "processor\t: 0\nflags\t\t: fpu avx2 amx_tile\n\nprocessor\t: 1\nflags\t: fpu\n"
    assert llama_build.cpu_flags(text) == {"fpu", "avx2", "amx_tile"}


def test_xeon_with_amx_gets_avx512_and_never_amx_or_native():
    options = llama_build.cmake_options(XEON_AMX, machine="x86_64")
    assert options["GGML_NATIVE"] == "OFF"
    assert all(options[f"GGML_AMX_{kind}"] == "OFF" for kind in ("TILE", "INT8", "BF16"))
    for name in ("GGML_AVX2", "GGML_AVX512", "GGML_AVX512_VNNI", "GGML_AVX512_BF16"):
        assert options[name] == "ON"
    assert "-DGGML_NATIVE=OFF" in llama_build.cmake_args(options)
    assert "-DGGML_AMX_INT8=OFF" in llama_build.cmake_args(options)


def test_avx2_machine_gets_no_avx512():
    options = llama_build.cmake_options(AMD_AVX2, machine="x86_64")
    assert options["GGML_AVX2"] == "ON" and options["GGML_AVX512"] == "OFF"
    assert "AVX512" not in llama_build.enabled_sets(options)


def test_cpu_without_avx2_falls_back_to_sse42():
    options = llama_build.cmake_options({"sse4_2", "avx"}, machine="x86_64")
    assert options["GGML_AVX2"] == "OFF" and options["GGML_AVX"] == "OFF"
    assert options["GGML_SSE42"] == "ON"


def test_other_architectures_only_turn_native_off():
    options = llama_build.cmake_options({"asimd"}, machine="aarch64")
    assert options["GGML_NATIVE"] == "OFF" and "GGML_AVX2" not in options


def test_a_wheel_is_cached_per_instruction_set_list():
    amd = llama_build.cache_key(llama_build.cmake_options(AMD_AVX2, "x86_64"))
    xeon = llama_build.cache_key(llama_build.cmake_options(XEON_AMX, "x86_64"))
    assert amd != xeon
    assert amd == llama_build.cache_key(llama_build.cmake_options(set(AMD_AVX2), "x86_64"))
    assert amd.startswith(llama_build.LLAMA_CPP_PYTHON_VERSION)


def test_print_builds_nothing(capsys):
    assert llama_build.main(["--print"]) == 0
    out = capsys.readouterr().out
    assert "CMAKE_ARGS=" in out and "-DGGML_NATIVE=OFF" in out and "wheel cache:" in out


def test_a_crashing_probe_is_named_by_its_signal():
    code = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    result = checks.run_child([sys.executable, "-c", code], timeout_s=30)
    assert result.data is None and "SIGSEGV" in result.problem


def test_a_hanging_probe_is_stopped():
    result = checks.run_child([sys.executable, "-c", "import time; time.sleep(30)"], 1)
    assert result.data is None and "did not finish within 1 s" in result.problem


def test_a_failing_probe_shows_its_last_error_line():
    result = checks.run_child([sys.executable, "-c", "raise ImportError('no llama_cpp')"], 30)
    assert "exit 1" in result.problem and "no llama_cpp" in result.problem


def test_a_native_build_with_amx_fails_with_the_fix():
    check = checks.check_llama_build(flags=XEON_AMX, system_info=NATIVE_XEON_INFO)
    assert check.status == "fail" and "AMX" in check.detail
    assert "doctor --fix" in check.fix


def test_a_build_needing_instructions_the_cpu_lacks_fails():
    info = NATIVE_XEON_INFO.replace("AMX_INT8 = 1", "AMX_INT8 = 0")
    check = checks.check_llama_build(flags=AMD_AVX2, system_info=info)
    assert check.status == "fail" and "AVX512" in check.detail and "lacks" in check.detail


def test_a_portable_build_passes_and_an_avx2_build_on_avx512_warns():
    info = NATIVE_XEON_INFO.replace("AMX_INT8 = 1", "AMX_INT8 = 0")
    assert checks.check_llama_build(flags=XEON_AMX, system_info=info).status == "ok"
    avx2 = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 0 |"
    assert checks.check_llama_build(flags=XEON_AMX, system_info=avx2).status == "warn"
    assert checks.check_llama_build(flags=AMD_AVX2, system_info=avx2).status == "ok"


def test_low_disk_fails_with_what_to_free(tmp_path, monkeypatch):
    usage = type("Usage", (), {"free": int(2e9), "total": int(1e12), "used": 0})
    monkeypatch.setattr(checks.shutil, "disk_usage", lambda _: usage)
    check = checks.check_disk([tmp_path])
    assert check.status == "fail" and "2.0 GB free" in check.detail and ".old-" in check.fix


def test_a_corrupt_assembled_model_fails_with_the_command(tmp_path, monkeypatch):
    from supertiny.core import models

    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(models, "is_installed", lambda alias: True)
    for model in models.BUNDLED.values():
        (models.cache_dir()).mkdir(parents=True, exist_ok=True)
        (models.cache_dir() / model.filename).write_bytes(b"not the model")
    results = checks.check_models()
    assert [c.status for c in results] == ["fail"] * len(models.BUNDLED)
    assert "models --assemble" in results[0].fix


@pytest.mark.integration
def test_doctor_passes_on_this_machine(capsys):
    pytest.importorskip("llama_cpp")
    from supertiny.cli import main

    code = main(["doctor"])
    out = capsys.readouterr()
    assert code == 0, out.err
    for name in ("llama.cpp build", "llama.cpp decode", "torch", "disk"):
        assert name in out.err
