"""Benchmark how a GGUF export rounds a fine-tuned student: to nearest, with llama.cpp's
importance matrix from the task, or with GPTQ, side by side on the same float model.

    supertiny compress examples/smart_home/task.yaml --preset small     # makes the float model
    python benchmarks/gguf_rounding.py --run-dir runs/smart_home --quants q4_k_m q8_0 --limit 40

For each quant type and each rounding, the float model the run's compress stage exported is
written again and measured on the first ``--limit`` gold test records:

- size on disk and how many tensors llama.cpp stored in a 32-weight block format;
- the negative log-likelihood of the gold answers given the prompts (teacher-forced, nats per
  answer, summed over its tokens so that tokenizers compare), and how much it exceeds the
  float model's; the untrained student's for scale;
- greedy answers: how many are identical to the float model's, and exact match against gold.

The float model runs in PyTorch, the files in llama.cpp; ``--threads`` for both.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from supertiny.core.records import load_labels, test_records
from supertiny.core.task import Task
from supertiny.runtime import hf as st
from supertiny.runtime.render import answer_text, prompt_text
from supertiny.runtime.runners import LlamaCppRunner, TorchRunner

MODES = {  # rounding name -> export_gguf keywords (moments added where calibrated)
    "nearest": {"calibrate": False, "rounding": "nearest"},
    "imatrix": {"calibrate": True, "rounding": "nearest"},
    "gptq": {"calibrate": True, "rounding": "gptq"},  # every block format, Q8_0 too
}


def float_model_dir(run_dir: Path) -> Path:
    """The float model the run's compress stage quantized (its first gguf step's input)."""
    report = json.loads((run_dir / "compress" / "compress_report.json").read_text())
    for row in report["steps"]:
        if row["form"] == "gguf":
            return Path(row["info"]["from"])
    raise SystemExit(f"{run_dir}: the compress stage has no gguf step; pass --model")


def gguf_answer_nll(path: Path, pairs: list[tuple[str, str]], threads: int) -> float:
    """Mean over (prompt, answer) pairs of -log p(answer | prompt), nats, in llama.cpp."""
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=2048, n_threads=threads, logits_all=True, verbose=False)
    total = 0.0
    for prompt, answer in pairs:
        head = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        ids = llm.tokenize((prompt + answer).encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        logits = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
        total += _nll(logits, ids, len(head))
    llm.close()
    return total / len(pairs)


def torch_answer_nll(model, tok, pairs: list[tuple[str, str]]) -> float:
    import torch

    total = 0.0
    for prompt, answer in pairs:
        head = tok(prompt, add_special_tokens=False)["input_ids"]
        ids = tok(prompt + answer, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double().numpy()
        total += _nll(logits, ids, len(head))
    return total / len(pairs)


def _nll(logits, ids: list[int], start: int) -> float:
    """-sum log p(ids[i] | ids[:i]) for i >= start, from logits [len(ids), vocab]."""
    import numpy as np

    rows = logits[start - 1 : len(ids) - 1]
    top = rows.max(-1, keepdims=True)
    log_z = (top + np.log(np.exp(rows - top).sum(-1, keepdims=True)))[:, 0]
    return float(-(rows[np.arange(len(rows)), ids[start:]] - log_z).sum())


def score(task: Task, records: list[dict[str, Any]], answers: list[str]) -> float:
    hits = [
        task.evaluate(a, r["gold"], task.tools_for(r)).exact
        for r, a in zip(records, answers, strict=True)
    ]
    return sum(hits) / len(hits)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a run whose compress stage finished")
    parser.add_argument("--task", default="examples/smart_home/task.yaml")
    parser.add_argument("--model", help="the float model folder (default: the run's)")
    parser.add_argument("--untrained", default="student", help="the untrained student")
    parser.add_argument("--quants", nargs="+", default=["q4_k_m", "q8_0"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--limit", type=int, default=40, help="gold test records")
    parser.add_argument("--calibration", type=int, default=64, help="labelled examples")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    import torch

    from supertiny.compress.gguf import export as gguf_export
    from supertiny.compress.gguf.calibrated import tensor_types
    from supertiny.compress.gguf.gptq import input_hessians
    from supertiny.compress.prune.importance import calibration_batches
    from supertiny.core.models import resolve_gguf

    torch.set_num_threads(args.threads)
    console = Console(width=170)
    run_dir = Path(args.run_dir)
    task = Task.load(args.task)
    model_dir = Path(args.model) if args.model else float_model_dir(run_dir)
    model, tok = st.load(str(model_dir), "cpu", "float32")
    records = test_records(task, args.limit)
    prompts = [prompt_text(tok, task, r) for r in records]
    pairs = [
        (p, answer_text(tok, task, r, r["gold"])) for p, r in zip(prompts, records, strict=True)
    ]
    labels = load_labels(run_dir / "label" / "labeled.jsonl", task)[: args.calibration]
    texts = [prompt_text(tok, task, r) + answer_text(tok, task, r, r["label"]) for r in labels]
    batches = calibration_batches(tok, texts, 256, 8)

    def moments(names, full):
        return input_hessians(model, batches, names, full)[0]

    rows = []
    untrained = Path(resolve_gguf(args.untrained))
    base_nll = gguf_answer_nll(untrained, pairs, args.threads)
    rows.append({"model": "untrained student (GGUF)", "nll": base_nll, "path": str(untrained)})
    float_nll = torch_answer_nll(model, tok, pairs)
    float_answers = TorchRunner(model, tok, args.max_new_tokens, 8).generate(prompts)
    rows.append(
        {
            "model": "float32 (PyTorch)",
            "nll": float_nll,
            "bytes": sum(p.stat().st_size for p in model_dir.glob("*.safetensors")),
            "same": len(records),
            "exact": score(task, records, float_answers),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        for quant in args.quants:
            for mode in args.modes:
                out = Path(tmp) / f"{quant}-{mode}.gguf"
                keywords = dict(MODES[mode])
                calibrate = keywords.pop("calibrate")
                start = time.perf_counter()
                info = gguf_export.export_gguf(
                    model_dir, out, quant, moments=moments if calibrate else None, **keywords
                )
                seconds = time.perf_counter() - start
                types = tensor_types(out)
                blocky = sum(t in ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0") for t in types.values())
                runner = LlamaCppRunner(out, tok, args.max_new_tokens, args.threads)
                answers = runner.generate(prompts)
                runner.close()
                rows.append(
                    {
                        "model": f"{quant} {mode}",
                        "nll": gguf_answer_nll(out, pairs, args.threads),
                        "bytes": info["bytes"],
                        "block_tensors": blocky,
                        "export_s": round(seconds, 1),
                        "same": sum(a == b for a, b in zip(answers, float_answers, strict=True)),
                        "exact": score(task, records, answers),
                    }
                )
                console.log(rows[-1])
    table = Table(
        title=f"GGUF rounding: {model_dir} on {len(records)} gold test records "
        f"({args.threads} threads; calibration: {len(labels)} labelled examples)"
    )
    for column in (
        "model",
        "size",
        "block tensors",
        "export",
        "answer NLL",
        "vs float",
        "same as float",
        "exact",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in rows:
        table.add_row(
            r["model"],
            f"{r['bytes'] / 2**20:,.0f} MiB" if r.get("bytes") else "",
            str(r.get("block_tensors", "")),
            f"{r['export_s']:.0f} s" if "export_s" in r else "",
            f"{r['nll']:.2f}",
            f"{r['nll'] - float_nll:+.2f}",
            f"{r['same']}/{len(records)}" if "same" in r else "",
            f"{r['exact']:.1%}" if "exact" in r else "",
        )
    console.print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
