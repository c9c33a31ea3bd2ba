"""`supertiny run PIPELINE.yaml`: the whole pipeline on the tiny task and a tiny random student.

The teacher is a scripted OpenAI-compatible endpoint (the teacher is always a URL to the
pipeline; `tests/unit/label/test_label.py`'s rule teacher answers the tiny task correctly); the
student trains, is compressed to GGUF, is served and measured, and the report is written.

    python -m pytest tests/unit/test_pipeline.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("trl")
pytest.importorskip("llama_cpp")
pytest.importorskip("xgrammar")

from tests.scripted_server import scripted_server  # noqa: E402
from tests.tiny_models import tiny_student  # noqa: E402
from tests.unit.label.test_label import rule_teacher  # noqa: E402

from supertiny import pipeline  # noqa: E402
from supertiny.cli import main  # noqa: E402
from supertiny.core.config import ConfigError  # noqa: E402

TASK = Path("tests/assets/tiny_task/task.yaml").resolve()


def write_pipeline(tmp_path: Path, url: str, student: Path, **changes) -> Path:
    data = {
        "task": str(TASK),
        "run_dir": str(tmp_path / "run"),
        "label": {"teacher": {"url": url, "model": "scripted"}, "quality": {"samples": 1}},
        "train": {
            "student": {"model": str(student), "lora": None},
            "steps": [{"kind": "sft", "epochs": 6, "learning_rate": 3e-3, "batch_size": 2}],
            "eval": {"before": False, "max_new_tokens": 40},
        },
        "compress": {
            "steps": [{"kind": "gguf", "quant": "f32"}],
            "eval": {"max_new_tokens": 40},
            "latency": {"requests": 2, "max_new_tokens": 6, "threads": 1},
        },
        "eval": {"throughput_requests": 2, "concurrency": 2, "max_tokens": 60, "n_threads": 1},
    }
    data.update(changes)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_whole_pipeline_runs_resumes_and_redoes_a_stage(tmp_path, capsys):
    student = tiny_student(tmp_path / "student", seed=3, vocab_size=1000)
    with scripted_server([], default=rule_teacher) as teacher:
        path = write_pipeline(tmp_path, teacher.url, student)
        assert main(["run", str(path)]) == 0
        out = "".join(capsys.readouterr())
        run_dir = tmp_path / "run"
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert [manifest["stages"][s]["status"] for s in pipeline.STAGES] == ["finished"] * 4
        report = json.loads((run_dir / "eval" / "eval_report.json").read_text())
        names = [m["name"] for m in report["models"]]
        assert names == ["teacher", "student (untrained)", "student (trained)", "compressed (gguf)"]
        assert (run_dir / "report.html").is_file()
        assert "supertiny serve --model" in out and "--task" in out and "report.html" in out

        # the same command again: every stage is complete and unchanged, nothing runs
        requests = len(teacher.requests)
        result = pipeline.run(path)
        assert result["ran"] == [] and result["skipped"] == list(pipeline.STAGES)
        assert len(teacher.requests) == requests

        # --only eval measures again (the old measurements are set aside, not deleted)
        result = pipeline.run(path, only="eval")
        assert result["ran"] == ["eval"]
        assert list(run_dir.glob("eval.old-*"))

        # a changed compress section re-runs compress and the stages after it
        changed = write_pipeline(
            tmp_path,
            teacher.url,
            student,
            compress={
                "steps": [{"kind": "gguf", "quant": "q8_0"}],
                "eval": {"max_new_tokens": 40},
                "latency": {"requests": 2, "max_new_tokens": 6, "threads": 1},
            },
        )
        result = pipeline.run(changed)
        assert result["ran"] == ["compress", "eval"]
        assert result["skipped"] == ["label", "train"]

        # more labels keep the ones made; another sample count would mix records: restart
        from supertiny.core.task import Task

        def label_stage(**keys):
            label = {"teacher": {"url": teacher.url, "model": "scripted"}, **keys}
            conf, task_path = pipeline.load(
                write_pipeline(tmp_path, teacher.url, student, label=label)
            )
            return pipeline.stages(conf, Task.load(task_path), path)[0]

        the_run = pipeline.Run(run_dir)
        assert not pipeline._changed(the_run, label_stage(quality={"samples": 1}, limit=50))
        assert pipeline._changed(the_run, label_stage(quality={"samples": 2}))


def test_bad_pipeline_files_name_the_key(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("task: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="task: file not found"):
        pipeline.run(path)
    path.write_text(f"task: {TASK}\ntrain: {{preset: huge}}\n")
    with pytest.raises(ConfigError, match="train: unknown preset 'huge'"):
        pipeline.run(path)
    path.write_text(f"task: {TASK}\ncompres: {{}}\n")
    with pytest.raises(ConfigError, match="compres"):
        pipeline.run(path)
    path.write_text(f"task: {TASK}\ncompress: null\neval: null\n")
    with pytest.raises(ConfigError, match="--from compress: not a stage"):
        pipeline.run(path, from_stage="compress")
    # a model that is not there stops the run before the label stage starts
    path.write_text(
        f"task: {TASK}\nrun_dir: {tmp_path / 'run'}\ntrain: {{student: {{model: ./nowhere}}}}\n"
    )
    with pytest.raises(ConfigError, match=r"train.student.model: model not found: ./nowhere"):
        pipeline.run(path)
    path.write_text(f"task: {TASK}\ncompress: {{model: runs/x/model.gguf}}\n")
    with pytest.raises(ConfigError, match=r"compress.model: model not found"):
        pipeline.run(path)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "path", sorted(Path("examples").glob("*/pipeline*.yaml")), ids=lambda p: str(p)
)
def test_every_shipped_pipeline_loads(path):
    from supertiny.core.task import Task

    conf, task_path = pipeline.load(path)
    stages = pipeline.stages(conf, Task.load(task_path), path)
    assert [s.name for s in stages] == list(pipeline.STAGES)
