"""The compress stage on tiny random models: every step, the report, resume, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("llama_cpp")
pytest.importorskip("torchao")

from tests.tiny_models import tiny_student  # noqa: E402

from supertiny.cli import main  # noqa: E402
from supertiny.compress import CompressError  # noqa: E402
from supertiny.compress import stage as compress  # noqa: E402
from supertiny.compress.config import GGUF_QUANTS, load_config  # noqa: E402
from supertiny.core.config import ConfigError  # noqa: E402
from supertiny.core.runs import iter_jsonl  # noqa: E402
from supertiny.core.task import Task  # noqa: E402

TASK = Path("tests/assets/tiny_task/task.yaml")
FAST = {
    "eval": {"max_new_tokens": 40, "batch_size": 4},
    "latency": {"requests": 2, "max_new_tokens": 6, "threads": 1},
    "calibration": {"samples": 8, "max_length": 128},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run whose label and train stages are done: a tiny student (1,000-token vocabulary, of
    which the tiny task uses a few hundred; 3 blocks to prune) fitted to the task's answers."""
    from supertiny.train import stage as train
    from supertiny.train.config import load_config as train_config

    root = tmp_path_factory.mktemp("compress")
    model = tiny_student(root / "student", seed=3, vocab_size=1000, num_hidden_layers=3)
    task = Task.load(TASK)
    label = root / "run" / "label"
    label.mkdir(parents=True)
    records = [dict(r, label=r["gold"]) for r in task.records("unlabeled")]
    (label / "labeled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    steps = [{"kind": "sft", "epochs": 12, "learning_rate": 3e-3, "batch_size": 2}]
    student = {"model": str(model), "lora": None}
    conf = train_config(
        None,
        overrides={
            "student": student,
            "steps": steps,
            "eval": {"before": False, "max_new_tokens": 40},
        },
    )
    train.run(task, conf, root / "run")
    return root / "run"


@pytest.fixture
def task():
    return Task.load(TASK)


@pytest.fixture
def run_dir(trained, tmp_path):
    """A fresh copy of the trained run for each test."""
    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture
def model(run_dir):
    return run_dir / "train" / "01-sft" / "model"


def conf(steps, **extra):
    return load_config(None, overrides={"steps": steps, **FAST, **extra})


def outputs(folder: Path) -> dict[str, str]:
    return {row["id"]: row["output"] for row in iter_jsonl(folder / "eval.jsonl")}


ALL_STEPS = [
    {"kind": "vocab", "test_inputs": True},
    {"kind": "depth", "layers": 2},
    {"kind": "width", "intermediate_size": 96, "heads": 2},
    {"kind": "recover", "epochs": 1, "batch_size": 4, "top_k": 8, "save_steps": 1},
    {"kind": "torchao", "scheme": "int8_weight"},
    {"kind": "gguf", "quant": "f32"},
    {"kind": "gguf", "quant": "q8_0"},
]


def test_every_step_is_measured_and_reported(model, task, run_dir):
    artifacts = compress.run(task, conf(ALL_STEPS), run_dir)
    stage = run_dir / "compress"
    report = json.loads((stage / "compress_report.json").read_text())
    names = [s["name"] for s in report["steps"]]
    assert names == [
        "01-vocab",
        "02-depth",
        "03-width",
        "04-recover",
        "05-torchao",
        "06-gguf",
        "07-gguf",
    ]
    rows = [report["input"], *report["steps"]]
    for row in rows:
        assert row["eval"]["n"] == len(list(task.records("test")))
        assert row["latency"]["p50_s"] > 0 and row["latency"]["requests"] == 2
        assert row["bytes"] > 0 and row["params"]["total"] > row["params"]["non_embedding"] > 0
    total = [r["params"]["total"] for r in rows]
    assert total[1] < total[0]  # vocabulary pruned
    assert total[2] < total[1] and total[3] < total[2]  # a block, then channels and heads
    assert total[4] == total[3]  # recovery trains, it does not change shapes
    assert report["steps"][0]["info"]["vocab_after"] < 1000
    assert report["steps"][1]["info"]["dropped"] and len(report["steps"][1]["info"]["dropped"]) == 1
    # recovery distils from the model before depth and width pruning
    assert report["steps"][3]["info"]["teacher"].endswith("01-vocab/model")
    # on in-domain text the pruned vocabulary answers exactly as the full one did
    assert outputs(stage / "01-vocab") == outputs(stage / "00-input")
    # an F32 GGUF in llama.cpp answers as the PyTorch model it was exported from
    float_answers = outputs(stage / "04-recover")
    gguf_answers = outputs(stage / "06-gguf")
    same = sum(gguf_answers[k] == v for k, v in float_answers.items())
    assert same >= len(float_answers) - 1, (float_answers, gguf_answers)
    assert report["steps"][5]["latency"]["backend"] == "llama.cpp"
    assert report["steps"][4]["latency"]["backend"] == "pytorch"
    assert rows[-1]["bytes"] < rows[-2]["bytes"]  # Q8_0 < F32
    assert artifacts["gguf"].endswith("07-gguf/model.gguf")
    assert artifacts["model"].endswith("04-recover/model")
    assert (run_dir / artifacts["gguf"]).is_file()

    # A re-run keeps every step and measurement; a changed last step alone is redone.
    stamps = {p: p.stat().st_mtime_ns for p in stage.glob("*/step.json")}
    compress.run(task, conf(ALL_STEPS), run_dir)
    assert {p: p.stat().st_mtime_ns for p in stage.glob("*/step.json")} == stamps
    changed = [*ALL_STEPS[:-1], {"kind": "gguf", "quant": "q4_0"}]
    compress.run(task, conf(changed), run_dir)
    assert len(list(stage.glob("07-gguf.old-*"))) == 1
    q4 = json.loads((stage / "compress_report.json").read_text())["steps"][-1]["info"]
    assert q4["quant"] == "q4_0" and q4["gptq_tensors"] > 0 and q4["imatrix_tensors"] > 0
    assert not list(stage.glob("00-input.old-*"))  # the input model is measured once
    assert (stage / "06-gguf" / "step.json").stat().st_mtime_ns == stamps[
        stage / "06-gguf" / "step.json"
    ]


def test_the_cli_prints_the_table_and_how_to_serve(model, run_dir, capsys):
    steps = json.dumps([{"kind": "vocab"}, {"kind": "gguf", "quant": "f16"}])
    code = main(
        ["compress", str(TASK), "--run-dir", str(run_dir), "--model", str(model)]
        + ["--set", f"steps={steps}", "--set", "eval.limit=2", "--set", "latency.requests=1"]
        + ["--set", "latency.max_new_tokens=4", "--set", "eval.max_new_tokens=8"]
    )
    out = capsys.readouterr().err
    assert code == 0
    assert "01-vocab" in out and "02-gguf f16" in out and "llama.cpp" in out
    assert "p50 vs input" in out
    assert "supertiny serve --model" in out
    # the vocabulary step says when held-out prompts use tokens it did not keep
    report = json.loads((run_dir / "compress" / "compress_report.json").read_text())
    assert 0 <= report["steps"][0]["info"]["test_prompts_covered"] <= 1


def test_without_a_trained_model_the_error_says_what_to_run(task, tmp_path):
    with pytest.raises(CompressError, match="supertiny train"):
        compress.run(task, load_config(None), tmp_path / "empty")


def test_recover_needs_a_pruning_step_before_it(model, task, run_dir):
    steps = [{"kind": "recover", "epochs": 1}]
    with pytest.raises(CompressError, match="depth or width"):
        compress.run(task, conf(steps), run_dir)


def test_bad_step_orders_and_targets_are_config_errors(model, run_dir, capsys):
    with pytest.raises(ConfigError, match="quantization steps"):
        load_config(None, overrides={"steps": [{"kind": "gguf"}, {"kind": "depth", "layers": 2}]})
    with pytest.raises(ConfigError, match="steps\\[0\\].layer: unknown key"):
        load_config(None, overrides={"steps": [{"kind": "depth", "layer": 2}]})
    with pytest.raises(ConfigError, match="steps\\[0\\].quant"):
        load_config(None, overrides={"steps": [{"kind": "gguf", "quant": "q3_xyz"}]})
    steps = json.dumps([{"kind": "depth", "layers": 0}])
    code = main(["compress", str(TASK), "--run-dir", str(run_dir), "--set", f"steps={steps}"])
    assert code == 2 and "layers" in capsys.readouterr().err


def test_a_failed_step_keeps_the_models_before_it(model, task, run_dir):
    steps = [{"kind": "vocab"}, {"kind": "depth", "layers": 2}, {"kind": "width", "heads": 3}]
    with pytest.raises(CompressError, match="multiple"):
        compress.run(task, conf(steps), run_dir)
    stage = run_dir / "compress"
    assert (stage / "01-vocab" / "step.json").is_file()
    assert (stage / "02-depth" / "model" / "config.json").is_file()
    assert not (stage / "03-width" / "step.json").exists()


def test_gguf_types_match_the_exporter():
    from supertiny.compress.gguf import export as gguf_export

    assert set(GGUF_QUANTS) <= set(gguf_export.QUANT_TYPES)


def test_parameter_budgets_choose_depth_and_width(task, run_dir):
    from supertiny.runtime.measure import config_param_counts

    source = config_param_counts(run_dir / "train" / "01-sft" / "model")["total"]
    budget = source - 40_000  # more than one block of the tiny model (37k), less than two
    steps = [
        {"kind": "depth", "params": budget},
        {"kind": "width", "heads": 2, "params": budget - 40_000},
    ]
    compress.run(task, conf(steps), run_dir)
    report = json.loads((run_dir / "compress" / "compress_report.json").read_text())
    depth, width = report["steps"]
    assert depth["params"]["total"] <= budget and len(depth["info"]["dropped"]) == 2
    assert width["params"]["total"] <= budget - 40_000
    assert (
        width["info"]["heads"] == [4, 2]
        and width["info"]["params_before"] == depth["params"]["total"]
    )
