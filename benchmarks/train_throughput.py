"""Benchmark training throughput of every stage-2 step type, and our SFT against plain TRL.

    python benchmarks/train_throughput.py                      # tiny random model, tiny task
    python benchmarks/train_throughput.py --model student --task examples/smart_home/task.yaml
    python benchmarks/train_throughput.py --steps sft --threads 1 --json sft.json

Each step kind (sft, kd, dpo, rft, grpo) runs once through its ``run(ctx, step)`` on a fresh
copy of the model (LoRA added with ``student.add_lora`` as the train stage does), on the
first ``--examples`` training records with their gold answers as labels, in its own folder.
Then a plain TRL ``SFTTrainer`` trains the same model on the same encoded examples (same
batch size, epochs, learning rate, max_length, LoRA config, precision; TRL defaults for the
rest), and the ratio of the two SFT rates shows our layer's overhead. "train s" is the wall
time of ``trainer.train()`` alone for every row; "wall s" is the whole step call (data,
sampling, teacher log-probs, trainer set-up). Model loading is never counted. Prints a table.
On a CPU shared with other jobs, torch's default threads stall each other; ``--threads 1``
gives steady figures.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from supertiny.core.task import Task
from supertiny.runtime import hf as st
from supertiny.train import config as tc
from supertiny.train.data import encode_all
from supertiny.train.stage import STEPS
from supertiny.train.trainers import StepContext, as_dataset

ROOT = Path(__file__).parents[1]
TINY_TASK = ROOT / "tests" / "assets" / "tiny_task" / "task.yaml"
KINDS = (tc.SftStep, tc.RftStep, tc.DpoStep, tc.GrpoStep, tc.KdStep)
STEP_CLASSES = {c.model_fields["kind"].default: c for c in KINDS}
# What the "tokens" column counts, per row (printed under the table).
COUNTED = {
    "sft": "prompt+answer input_ids x epochs (the step's own tokens_per_s)",
    "rft": "input_ids of the kept (record, answer) pairs x epochs (the step's own)",
    "kd": "prompt+answer input_ids x epochs (the step's own; teacher pass not counted)",
    "dpo": "TRL num_tokens: non-pad prompt+chosen and prompt+rejected; examples = pairs",
    "grpo": "TRL num_tokens: non-pad prompts+completions; examples = prompts",
    "plain sft": "prompt+answer input_ids x epochs, as for sft",
}


def tiny_models(root: Path) -> tuple[str, str]:
    """A tiny random student (seed 0) and a tiny teacher with the same vocabulary (seed 1)."""
    sys.path.insert(0, str(ROOT))
    from tests.tiny_models import tiny_student

    return tuple(str(tiny_student(root / f"tiny-{seed}", seed=seed)) for seed in (0, 1))


def labeled_records(task: Task, n: int) -> list[dict[str, Any]]:
    """The first ``n`` training records with gold, gold as label; cycled (new ids) if too few."""
    gold = [r for r in task.records("unlabeled") if r.get("gold")]
    if not gold:
        raise SystemExit(f"{task.path}: no training record has a gold answer")
    out = []
    for i in range(n):
        record = dict(gold[i % len(gold)], label=gold[i % len(gold)]["gold"])
        if i >= len(gold):
            record["id"] = f"{record['id']}#{i // len(gold)}"
        out.append(record)
    return out


def make_step(kind: str, args, teacher: str):
    values = {"epochs": args.epochs, "batch_size": args.batch_size, "max_length": args.max_length}
    if kind in ("rft", "dpo", "grpo"):
        values.update(samples=args.samples, max_new_tokens=args.max_new_tokens)
    if kind == "kd":
        values["teacher"] = teacher
    return STEP_CLASSES[kind](**values)


def trl_tokens(log_history: list[dict]) -> int | None:
    """TRL's running ``num_tokens`` (tokens seen in training) from a trainer's logs."""
    counts = [e["num_tokens"] for e in log_history if "num_tokens" in e]
    return int(counts[-1]) if counts else None


def checkpoint_log(step_dir: Path) -> list[dict]:
    """The log history in the step's last checkpoint (the trainer saves one at the end)."""
    states = step_dir.glob("checkpoints/checkpoint-*/trainer_state.json")
    last = max(states, key=lambda p: int(p.parent.name.rsplit("-", 1)[1]), default=None)
    return json.loads(last.read_text())["log_history"] if last else []


def row(name: str, examples: int, tokens, seconds: float, steps: int, wall: float) -> dict:
    return {
        "step": name,
        "examples": examples,
        "tokens": tokens,
        "tokens_counted": COUNTED[name],
        "train_s": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1) if tokens and seconds else None,
        "optimizer_steps": steps,
        "steps_per_s": round(steps / seconds, 3) if seconds else None,
        "step_wall_s": round(wall, 3),
    }


def run_step(kind: str, args, task, records, root: Path, teacher: str) -> dict:
    """One step through its ``run(ctx, step)`` on a fresh model (LoRA added as train.py does)."""
    model, tok = st.load(args.model_path, args.device, args.dtype)
    if args.lora:
        model = st.add_lora(model, st.LoraConfig())
    ctx = StepContext(
        task=task,
        model=model,
        tokenizer=tok,
        labels=records,
        step_dir=root / kind,
        label_dir=root / "label",
        device=model.device.type,
        dtype=model.dtype,
        seed=args.seed,
    )
    ctx.step_dir.mkdir(parents=True)
    start = time.perf_counter()
    metrics = importlib.import_module(STEPS[kind]).run(ctx, make_step(kind, args, teacher))
    wall = time.perf_counter() - start
    tokens = metrics.get("tokens") or trl_tokens(checkpoint_log(ctx.step_dir))
    examples = metrics.get("examples") or metrics.get("pairs") or metrics.get("prompts")
    seconds, steps = metrics["train_seconds"], metrics["optimizer_steps"]
    return row(kind, examples, tokens, seconds, steps, wall) | {"metrics": metrics}


def plain_sft(args, task, records, root: Path) -> dict:
    """TRL's SFTTrainer on the same encoded examples, with only the shared settings given."""
    import torch
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    model, tok = st.load(args.model_path, args.device, args.dtype)
    start = time.perf_counter()
    step = make_step("sft", args, "")
    examples, _ = encode_all(tok, task, [(r, r["label"]) for r in records], step.max_length)
    ours = st.LoraConfig()
    lora = LoraConfig(
        r=ours.r,
        lora_alpha=ours.alpha,
        lora_dropout=ours.dropout,
        target_modules=ours.target_modules,
        task_type="CAUSAL_LM",
    )
    config = SFTConfig(
        output_dir=str(root / "plain-sft"),
        num_train_epochs=step.epochs,
        learning_rate=step.learning_rate,
        per_device_train_batch_size=step.batch_size,
        max_length=step.max_length,
        seed=args.seed,
        report_to="none",
        bf16=model.dtype == torch.bfloat16,
        fp16=model.dtype == torch.float16,
        use_cpu=model.device.type == "cpu",
    )
    data = as_dataset([{k: e[k] for k in ("input_ids", "labels")} for e in examples])
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=data,
        processing_class=tok,
        peft_config=lora if args.lora else None,
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    wall = time.perf_counter() - start
    tokens = int(sum(len(e["input_ids"]) for e in examples) * step.epochs)
    steps = trainer.state.global_step
    return row("plain sft", len(examples), tokens, seconds, steps, wall) | {
        "trl_num_tokens": trl_tokens(trainer.state.log_history)
    }


def print_table(rows: list[dict], ratio: float | None, title: str) -> None:
    table = Table(title=title)
    headers = ("step", "examples", "tokens", "train s", "tokens/s", "opt steps", "steps/s")
    fields = ("step", "examples", "tokens", "train_s", "tokens_per_s", "optimizer_steps")
    fields += ("steps_per_s", "step_wall_s")
    formats = ("{}", "{}", "{}", "{:.2f}", "{:.1f}", "{}", "{:.2f}", "{:.2f}")
    for header in (*headers, "wall s"):
        table.add_column(header, justify="right", no_wrap=header == "step")
    for r in rows:
        cells = zip(fields, formats, strict=True)
        table.add_row(*("-" if r[k] is None else f.format(r[k]) for k, f in cells))
    if ratio is not None:
        table.add_row("ours/plain sft", "", "", "", f"{ratio:.2f}x", "", "", "")
    console = Console()
    console.print(table)
    console.print("train s: trainer.train() only; wall s: the whole step call. Tokens counted:")
    for r in rows:
        console.print(f"  {r['step']}: {r['tokens_counted']}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--model", default="tiny", help="tiny (random, built here), student, or a model path")
    add("--teacher", help="kd teacher (default: a tiny seed-1 model for tiny, else teacher)")
    add("--task", default=str(TINY_TASK))
    add("--examples", type=int, default=16, help="training records (cycled if fewer)")
    add("--steps", default="sft,kd,dpo,rft,grpo")
    add("--lora", action=argparse.BooleanOptionalAction, default=True)
    add("--epochs", type=float, default=1.0)
    add("--batch-size", type=int, default=4)
    add("--max-length", type=int, default=512)
    add("--samples", type=int, default=4, help="rft/dpo samples per input, grpo group size")
    add("--max-new-tokens", type=int, default=64, help="sampled answer length (steps: 128)")
    add("--device", default="auto")
    add("--dtype", default="auto")
    add("--seed", type=int, default=0)
    add("--threads", type=int, help="torch CPU threads (1 is steadiest on a busy machine)")
    add("--json", help="also write the figures to this file")
    return parser.parse_args()


def main() -> None:
    import torch

    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    kinds = [k.strip() for k in args.steps.split(",") if k.strip()]
    if unknown := [k for k in kinds if k not in STEP_CLASSES]:
        raise SystemExit(f"unknown step kind(s): {', '.join(unknown)}")
    root = Path(tempfile.mkdtemp(prefix="supertiny-bench-train-"))
    args.model_path, teacher = args.model, args.teacher or "teacher"
    if args.model == "tiny":
        args.model_path, tiny_teacher = tiny_models(root)
        teacher = args.teacher or tiny_teacher
    task = Task.load(args.task)
    records = labeled_records(task, args.examples)
    rows = [run_step(kind, args, task, records, root, teacher) for kind in kinds]
    rows.append(plain_sft(args, task, records, root))
    ours, plain = next((r for r in rows if r["step"] == "sft"), None), rows[-1]
    ratio = None
    if ours and ours["tokens_per_s"] and plain["tokens_per_s"]:
        ratio = ours["tokens_per_s"] / plain["tokens_per_s"]
    print_table(
        rows,
        ratio,
        f"{args.model} on {task.name}: {args.examples} examples, {args.epochs:g} epoch(s), "
        f"batch {args.batch_size}, {'LoRA' if args.lora else 'full'}, "
        f"{torch.get_num_threads()} CPU thread(s)",
    )
    if args.json:
        figures = {"settings": vars(args), "rows": rows, "ours_over_plain_sft": ratio}
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
    Console().print(f"runs kept in {root}")


if __name__ == "__main__":
    main()
