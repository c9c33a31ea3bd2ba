"""The eval stage: its metrics, its errors, and a whole run on tiny models behind real servers.

python -m pytest tests/unit/evaluate/test_eval.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supertiny.core.runs import Run
from supertiny.core.task import Task
from supertiny.evaluate import metrics
from supertiny.evaluate import stage as evaluate
from supertiny.evaluate.config import EvalConfig, ModelEntry, load_config

TASK = Path("tests/assets/tiny_task/task.yaml")


def answer(id_, exact, seconds, category="booking", cost=0.0):
    gold = {"tool_calls": [{"name": "book_table", "arguments": {"city_id": "rom", "people": 5}}]}
    return {
        "id": id_,
        "input": "reserve for 5 in Rome",
        "category": category,
        "gold": gold,
        "prediction": gold if exact else {"tool_calls": [], "content": "sorry"},
        "score": {
            "exact": exact,
            "valid": True,
            "f1": 1.0 if exact else 0.0,
            "similarity": 1.0 if exact else 0.0,
            "reason": None if exact else "no call",
        },
        "latency_s": seconds,
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "requests": 1,
        "cost_usd": cost,
    }


# ----- metrics ---------------------------------------------------------------------------------


def test_latency_percentiles():
    stats = metrics.latency_stats([float(s) for s in range(1, 101)])
    assert stats == {"p50": 51.0, "p95": 95.0, "p99": 99.0, "mean": 50.5}
    assert metrics.latency_stats([]) == {"p50": None, "p95": None, "p99": None, "mean": None}


def test_cost_uses_endpoint_prices_when_paid_else_machine_time():
    paid = [answer("a", True, 1.0, cost=0.002), answer("b", True, 1.0, cost=0.004)]
    assert metrics.cost(paid, None, 1.0, 0.10)["cost_per_1k_usd"] == 3.0
    free = [answer("a", True, 1.0)]
    # 2 requests/s: 0.5 s of a $0.36/h machine per request = $0.05 per 1k
    result = metrics.cost(free, 2.0, 9.0, 0.36)
    assert result["cost_per_1k_usd"] == pytest.approx(0.05)
    assert "0.50 s" in result["cost_basis"]
    # without a throughput run: the mean latency, one request at a time
    assert metrics.cost(free, None, 1.0, 0.36)["cost_per_1k_usd"] == pytest.approx(0.1)
    assert metrics.cost(free, None, None, 0.36)["cost_per_1k_usd"] is None


def test_categories_and_error_samples():
    answers = [answer("a", True, 1.0), answer("b", False, 1.0), answer("c", False, 2.0, "other")]
    assert metrics.by_category(answers) == {
        "booking": {"n": 2, "exact": 0.5},
        "other": {"n": 1, "exact": 0.0},
    }
    errors = metrics.sample_errors(answers, 1)
    assert [e["id"] for e in errors] == ["b"]
    assert errors[0]["gold"] == "book_table(city_id=rom, people=5)"
    assert errors[0]["prediction"] == "sorry" and errors[0]["reason"] == "no call"


def test_a_row_has_every_column():
    target = metrics.Target("m", "gguf", Path("m.gguf"), "m.gguf")
    answers = [answer("a", True, 1.0), answer("b", False, 3.0)]
    throughput = {"requests": 4, "concurrency": 2, "seconds": 2.0, "requests_per_s": 2.0}
    row = metrics.summarize(target, answers, throughput, {"params": 10, "bytes": 20}, EvalConfig())
    assert row["exact"] == 0.5 and row["valid"] == 1.0 and row["f1"] == 0.5
    assert row["latency_s"]["p50"] in (1.0, 3.0) and row["requests_per_s"] == 2.0
    assert row["tokens_in"] == 100 and row["runtime"] == "llama.cpp"
    assert row["cost_per_1k_usd"] == pytest.approx(1000 * 0.5 * 0.10 / 3600, rel=1e-3)


# ----- what is measured, and errors ----------------------------------------------------------------


def test_stage_outputs_that_do_not_exist_say_what_to_run(tmp_path):
    run = Run(tmp_path / "run")
    with pytest.raises(evaluate.EvalError, match="supertiny train"):
        evaluate.resolve(ModelEntry(name="x", model="train"), run)
    with pytest.raises(evaluate.EvalError, match="not a file"):
        evaluate.resolve(ModelEntry(name="x", model="nowhere.gguf"), run)
    assert evaluate.default_lineup(run) == []
    with pytest.raises(evaluate.EvalError, match="run the label/train/compress stages"):
        evaluate.run(Task.load(TASK), EvalConfig(), tmp_path / "run")


def test_a_teacher_without_answers_on_the_test_set_is_a_clear_error(tmp_path):
    (tmp_path / "run" / "label").mkdir(parents=True)
    (tmp_path / "run" / "label" / "teacher_test.jsonl").write_text("")
    conf = load_config(None, overrides={"models": [{"name": "t", "model": "teacher"}]})
    with pytest.raises(evaluate.EvalError, match="answered 0 of the 3 test records"):
        evaluate.run(Task.load(TASK), conf, tmp_path / "run")


def test_config_keys_are_checked(tmp_path):
    from supertiny.core.config import ConfigError

    with pytest.raises(ConfigError, match="concurency"):
        load_config(None, overrides={"concurency": 2})
    assert load_config(None, "quick").limit == 10


# ----- a whole run: the teacher's answers and tiny models behind `supertiny serve` ---------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run with teacher answers on the test set and a tiny student trained on the task (so
    its answers are calls), plus that student exported to GGUF."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("trl")
    pytest.importorskip("xgrammar")
    from tests.tiny_models import tiny_student

    from supertiny.compress.gguf.export import export_gguf
    from supertiny.train import stage as train
    from supertiny.train.config import load_config as train_config

    root = tmp_path_factory.mktemp("eval")
    model = tiny_student(root / "student", seed=3, vocab_size=1000)
    run = root / "run"
    (run / "label").mkdir(parents=True)
    task = Task.load(TASK)
    records = [dict(r, label=r["gold"]) for r in task.records("unlabeled")]
    (run / "label" / "labeled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with (run / "label" / "teacher_test.jsonl").open("w") as out:
        for index, record in enumerate(task.records("test")):
            label = record["gold"] if index % 2 == 0 else {"tool_calls": [], "content": "no"}
            meta = {
                **record.get("meta", {}),
                "latency_s": 2.0 + index,
                "prompt_tokens": 900,
                "completion_tokens": 30,
                "requests": 2,
                "cost_usd": 0.001,
            }
            out.write(json.dumps({**record, "label": label, "meta": meta}) + "\n")
    steps = [{"kind": "sft", "epochs": 12, "learning_rate": 3e-3, "batch_size": 2}]
    conf = train_config(
        None,
        overrides={
            "student": {"model": str(model), "lora": None},
            "steps": steps,
            "eval": {"before": False, "max_new_tokens": 40},
        },
    )
    train.run(task, conf, run)
    export_gguf(run / "train" / "01-sft" / "model", root / "trained.gguf", "f32")
    return run


def test_eval_compares_the_teacher_and_served_students(run_dir, capsys):
    from supertiny.cli import main

    gguf = run_dir.parent / "trained.gguf"
    models = (
        "[{name: teacher, model: teacher}, {name: untrained, model: base}, "
        f"{{name: trained, model: train}}, {{name: trained gguf, model: '{gguf}'}}]"
    )
    argv = [
        "eval",
        str(TASK),
        "--run-dir",
        str(run_dir),
        "--set",
        f"models={models}",
        "--set",
        "throughput_requests=4",
        "--set",
        "concurrency=2",
        "--set",
        "max_tokens=60",
    ]
    assert main(argv) == 0
    out = "".join(capsys.readouterr())  # the table and messages go to stderr
    assert "trained gguf" in out and "teacher" in out and "supertiny report" in out
    report = json.loads((run_dir / "eval" / "eval_report.json").read_text())
    teacher, untrained, trained, exported = report["models"]
    assert report["test_n"] == 3 and report["settings"]["tool_choice"] == "required"
    assert teacher["exact"] == pytest.approx(2 / 3) and teacher["requests_per_input"] == 2
    assert teacher["cost_per_1k_usd"] == pytest.approx(1.0)  # $0.001 per input
    assert teacher["latency_s"]["p50"] == 3.0 and teacher["requests_per_s"] is None
    assert (untrained["runtime"], trained["runtime"], exported["runtime"]) == (
        "PyTorch",
        "PyTorch",
        "llama.cpp",
    )
    for row in (trained, exported):  # constrained decoding: every answer is a valid call
        assert row["valid"] == 1.0 and row["n"] == 3
        assert row["requests_per_s"] > 0 and row["concurrency"] == 2
        assert row["latency_s"]["p99"] >= row["latency_s"]["p50"] > 0
        assert row["tokens_in"] > 0 and row["cost_per_1k_usd"] > 0 and row["params"] > 0
        assert row["by_category"] and len(row["errors"]) <= 5
    assert exported["bytes"] == gguf.stat().st_size
    assert exported["exact"] == trained["exact"]  # the same model in two runtimes
    lines = (run_dir / "eval" / "04-trained-gguf" / "answers.jsonl").read_text().splitlines()
    assert len(lines) == 3

    # a second run keeps every measurement: no server is started
    assert main(argv) == 0
    assert "starting the server" not in "".join(capsys.readouterr())
    # a changed setting measures again and sets the old folders aside
    assert main([*argv[:-1], "max_tokens=50"]) == 0
    assert list((run_dir / "eval").glob("04-trained-gguf.old-*"))
