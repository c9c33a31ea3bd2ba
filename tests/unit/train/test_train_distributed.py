"""`supertiny train` under `accelerate launch` with two processes (gloo on CPU, tiny models).

Every step type trains data-parallel; sampling, evaluation, saving and the reports happen once,
in the main process, and a second launch resumes with nothing to do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("accelerate")

from tests.tiny_models import tiny_student  # noqa: E402
from tests.unit.train.test_train import TASK, labeled  # noqa: E402

from supertiny.core.task import Task  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]


def launch(config: Path, run_dir: Path) -> subprocess.CompletedProcess:
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate, "accelerate's launcher is installed with the train extra"
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["-m", "supertiny.cli", "train", str(TASK), "--config", str(config)]
    command += ["--run-dir", str(run_dir)]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_every_step_trains_in_two_processes_and_writes_once(tmp_path):
    student = tiny_student(tmp_path / "student", seed=0)
    run_dir = tmp_path / "run"
    label_dir = run_dir / "label"
    label_dir.mkdir(parents=True)
    records = labeled(Task.load(TASK))
    (label_dir / "labeled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = tmp_path / "train.yaml"
    config.write_text(
        f"student: {{model: {student}}}\n"
        "steps:\n"
        "  - {kind: sft, epochs: 2, learning_rate: 3.0e-3, batch_size: 2}\n"
        "  - {kind: rft, epochs: 1, samples: 2, batch_size: 2}\n"
        f"  - {{kind: kd, epochs: 1, teacher: {student}, batch_size: 2}}\n"
        "  - {kind: dpo, epochs: 1, batch_size: 2}\n"
        "  - {kind: grpo, epochs: 1, samples: 2, batch_size: 2}\n"
        "eval: {max_new_tokens: 24}\n"
    )

    done = launch(config, run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr  # the console writes to stderr
    train_dir = run_dir / "train"
    names = ["01-sft", "02-rft", "03-kd", "04-dpo", "05-grpo"]
    for name in names:
        assert (train_dir / name / "model" / "config.json").is_file(), name
        assert len((train_dir / name / "eval.jsonl").read_text().splitlines()) == 3, name
    # 6 examples, 2 per process and step: 2 optimizer steps per epoch instead of 3
    sft = json.loads((train_dir / "01-sft" / "metrics.json").read_text())
    assert sft["optimizer_steps"] == 4
    # the main process sampled once; the other read its log
    samples = (train_dir / "02-rft" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == len(records)
    assert (train_dir / "03-kd" / "teacher_topk.pt").is_file()
    report = json.loads((train_dir / "train_report.json").read_text())
    assert [s["name"] for s in report["steps"]] == names
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["train"]["status"] == "finished"
    assert out.count("gold test records") == 1  # one table, from the main process

    again = launch(config, run_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "5 finished step(s) kept" in again.stdout + again.stderr
    assert not list(train_dir.glob("*.old-*"))
