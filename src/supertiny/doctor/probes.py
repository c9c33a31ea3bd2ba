"""The checks of ``supertiny doctor`` that can crash, each run in a child process.

    python -m supertiny.doctor.probes llama_build     # prints one JSON object and exits 0

A probe that segfaults (llama.cpp's AMX kernel on some Xeons), aborts or hangs takes only
its child with it: ``checks.py`` reads the exit status and names the signal. Every probe
prints a single JSON line ``{"ok": bool, "detail": str, ...}`` on success; anything else on
stdout is ignored. Kept free of supertiny's heavier imports so a probe starts in a second.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any


def llama_build() -> dict[str, Any]:
    """The installed llama-cpp-python: version and the instruction sets it was built with."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    return {"ok": True, "version": llama_cpp.__version__, "system_info": info}


def llama_decode(model_path: str) -> dict[str, Any]:
    """Load a GGUF with llama.cpp, evaluate a short prompt and decode one token."""
    from llama_cpp import Llama

    started = time.perf_counter()
    llm = Llama(model_path=model_path, n_ctx=256, n_threads=2, verbose=False)
    loaded = time.perf_counter()
    out = llm.create_completion("The capital of France is", max_tokens=2, temperature=0.0)
    done = time.perf_counter()
    text = out["choices"][0]["text"]
    return {
        "ok": True,
        "detail": f"loaded in {loaded - started:.1f} s, decoded {text!r} in {done - loaded:.2f} s",
    }


def torch_matmul() -> dict[str, Any]:
    """Import torch and time a float32 and a bfloat16 matmul (GFLOP/s, 2 threads)."""
    import torch

    torch.set_num_threads(2)
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(512, 512, dtype=dtype)
        b = torch.randn(512, 512, dtype=dtype)
        (a @ b).sum().item()  # warm-up
        count, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < 0.3 and count < 200:
            a @ b
            count += 1
        rates[str(dtype).removeprefix("torch.")] = 2 * 512**3 * count / elapsed / 1e9
    return {"ok": True, "version": torch.__version__, "gflops": rates}


PROBES: dict[str, Callable[..., dict[str, Any]]] = {
    "llama_build": llama_build,
    "llama_decode": llama_decode,
    "torch_matmul": torch_matmul,
}


def main(argv: list[str] | None = None) -> int:
    name, *args = argv if argv is not None else sys.argv[1:]
    result = PROBES[name](*args)
    sys.stdout.flush()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
