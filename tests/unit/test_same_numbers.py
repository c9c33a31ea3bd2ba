"""One model, one number: the train, compress and eval reports agree on the same model.

The three stages score a model through ``runtime/scoring.py`` and the serving backends (train
and compress in process, eval over HTTP behind ``supertiny serve --task``), with the same
request, decoding and reading of the answer. A tiny student is trained, compressed (its
float model measured as the compress stage's input, then exported to GGUF) and evaluated;
each model's figures must be identical in every report that measures it.

    python -m pytest tests/unit/test_same_numbers.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("xgrammar")
pytest.importorskip("llama_cpp")

from tests.tiny_models import tiny_student  # noqa: E402

from supertiny.core.task import Task  # noqa: E402

TASK = Path("tests/assets/tiny_task/task.yaml")
KEYS = ("n", "exact", "valid", "similarity", "f1")
MAX_TOKENS = 40


def _scores(row: dict) -> dict:
    return {k: row[k] for k in KEYS}


def test_the_same_model_gets_the_same_numbers_in_every_report(tmp_path):
    from supertiny.compress import stage as compress
    from supertiny.compress.config import load_config as compress_config
    from supertiny.evaluate import stage as evaluate
    from supertiny.evaluate.config import load_config as eval_config
    from supertiny.train import stage as train
    from supertiny.train.config import load_config as train_config

    task = Task.load(TASK)
    run = tmp_path / "run"
    (run / "label").mkdir(parents=True)
    records = [dict(r, label=r["gold"]) for r in task.records("unlabeled")]
    (run / "label" / "labeled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    model = tiny_student(tmp_path / "student", seed=3, vocab_size=1000)
    steps = [{"kind": "sft", "epochs": 12, "learning_rate": 3e-3, "batch_size": 2}]
    train.run(
        task,
        train_config(
            None,
            overrides={
                "student": {"model": str(model), "lora": None},
                "steps": steps,
                "eval": {"before": False, "max_new_tokens": MAX_TOKENS},
            },
        ),
        run,
    )
    compress.run(
        task,
        compress_config(
            None,
            overrides={
                "steps": [{"kind": "gguf", "quant": "f32"}],
                "eval": {"max_new_tokens": MAX_TOKENS},
                "latency": {"requests": 2, "max_new_tokens": 6, "threads": 1},
            },
        ),
        run,
    )
    models = [{"name": "trained", "model": "train"}, {"name": "gguf", "model": "compress:gguf"}]
    evaluate.run(
        task,
        eval_config(
            None,
            overrides={"models": models, "max_tokens": MAX_TOKENS, "throughput_requests": 0},
        ),
        run,
    )

    train_report = json.loads((run / "train" / "train_report.json").read_text())
    compress_report = json.loads((run / "compress" / "compress_report.json").read_text())
    eval_report = json.loads((run / "eval" / "eval_report.json").read_text())
    trained, gguf = eval_report["models"]

    in_train = _scores(train_report["steps"][-1]["eval"])
    in_compress = _scores(compress_report["input"]["eval"])
    assert in_train["n"] == len(list(task.records("test"))) == 3
    assert in_train == in_compress == _scores(trained)  # PyTorch, three stages
    assert in_train["valid"] == 1.0  # forced calls under the grammar, in every stage
    assert _scores(compress_report["steps"][0]["eval"]) == _scores(gguf)  # llama.cpp, two
    assert compress_report["input"]["path"] == str(run / "train" / "01-sft" / "model")
