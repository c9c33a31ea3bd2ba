"""The HTML run report: sections from whatever reports exist, escaping, Pareto front, CLI."""

import argparse
import json
import shutil
from html.parser import HTMLParser

import pytest

from supertiny.report import command
from supertiny.report import page as report
from supertiny.report.plots import pareto_front


def _model(name, kind, exact, p50, size, cost, **extra):
    scaled = lambda factor: None if p50 is None else p50 * factor  # noqa: E731
    return {
        "name": name,
        "kind": kind,
        "runtime": "llama.cpp" if kind != "hf" else "PyTorch",
        "path": name,
        "n": 40,
        "exact": exact,
        "valid": 0.9,
        "f1": 0.5,
        "similarity": 0.55,
        "by_category": {"alarm": {"n": 3, "exact": exact}, "group": {"n": 3, "exact": 0.0}},
        "latency_s": {"p50": p50, "p95": scaled(2), "p99": scaled(3), "mean": scaled(1.2)},
        "concurrency": 4,
        "requests_per_s": 1 / p50 if p50 else None,
        "params": 360_000_000,
        "bytes": size,
        "tokens_in": 120.0,
        "tokens_out": 30.5,
        "requests_per_input": 1.0,
        "cost_per_1k_usd": cost,
        "cost_basis": "measured",
        "errors": [
            {
                "id": f"{name}-1",
                "input": "Kill every light in the eating area",
                "gold": "set_power(device_id=light.dining, on=false)",
                "prediction": "set_power(device_id=light.kitchen, on=false)",
                "reason": "wrong argument device_id",
            }
        ],
        **extra,
    }


def _models():
    return [
        _model("teacher", "teacher", 0.275, 6.0, 1_117_320_768, 0.22),
        _model("student (trained)", "hf", 0.05, 4.9, 2_520_702_368, 0.14),
        _model("compressed q8_0", "gguf", 0.075, 0.79, 383_336_320, 0.0055),
        _model("compressed q4_k_m", "gguf", 0.0, None, 249_582_112, None, valid=None),
    ]


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


LABEL = {
    "task": "smart_home",
    "accepted": 89,
    "rejected": 7,
    "accept_rate": 0.9271,
    "rejection_reasons": {"invalid": 7},
    "agreement_histogram": {"0.0-0.2": 7, "0.2-0.4": 0, "0.8-1.0": 89},
    "preference_pairs": 0,
    "usage_labeling": {"requests": 147, "prompt_tokens": 452934, "latency_s_per_input_p50": 6.6},
    "teacher_test_n": 60,
    "teacher_test_exact": 0.2667,
}


def _full_run(tmp_path, models=None):
    run = tmp_path / "full"
    _write(
        run / "manifest.json",
        {
            "run": "full",
            "created": "2026-11-24T22:49:58+0000",
            "stages": {
                "label": {
                    "status": "finished",
                    "config": {"task": "examples/sh/task.yaml"},
                    "started": "2026-11-24T22:49:58+0000",
                    "finished": "2026-11-24T22:58:01+0000",
                    "summary": {
                        "accept_rate": 0.9271,
                        "teacher": {"exact": 0.3333, "p50_s": 129.6},
                    },
                }
            },
        },
    )
    _write(run / "label/label_report.json", LABEL)
    steps = [
        {
            "name": "01-sft",
            "kind": "sft",
            "metrics": {"optimizer_steps": 24},
            "eval": {"exact": 0.05},
            "gain_exact": 0.05,
        },
        {
            "name": "02-kd",
            "kind": "kd",
            "metrics": {"optimizer_steps": 12, "loss_first": 0.23, "loss_last": 0.08},
            "eval": {"exact": 0.05},
            "gain_exact": 0.0,
        },
    ]
    _write(
        run / "train/train_report.json",
        {
            "task": "smart_home",
            "student": "student",
            "labels": 89,
            "test_n": 40,
            "teacher": {"exact": 0.275},
            "student_before": {"exact": 0.0},
            "steps": steps,
        },
    )
    _write(
        run / "train/01-sft/metrics.json",
        {
            "optimizer_steps": 24,
            "train_seconds": 362.76,
            "tokens_per_s": 34.64,
            "loss_curve": [[1, 3.9], [12, 1.0], [24, 0.2]],
        },
    )
    _write(
        run / "compress/compress_report.json",
        {
            "task": "smart_home",
            "model": "m",
            "test_n": 40,
            "teacher": {"exact": 0.275},
            "input": {
                "name": "input",
                "kind": "input",
                "form": "float",
                "bytes": 2520702368,
                "params": {"total": 630167424, "non_embedding": 357898112},
                "eval": {"exact": 0.05, "valid": 0.825},
                "latency": {"p50_s": 4.8967},
            },
            "steps": [
                {
                    "name": "03-gguf",
                    "kind": "gguf",
                    "form": "gguf",
                    "info": {"quant": "q8_0"},
                    "bytes": 383336320,
                    "params": {"total": 360532352},
                    "eval": {"exact": 0.075},
                    "latency": {"p50_s": 0.7925, "decode_tok_s": 53.47},
                    "vs_input": {"p50_speedup": 6.1788},
                    "notes": ["a note"],
                }
            ],
        },
    )
    _write(
        run / "eval/eval_report.json",
        {
            "task": "smart_home",
            "test_n": 40,
            "created": "2026-11-25T10:00:00",
            "machine": {"cpu": "AMD EPYC", "cores": 2, "gpu": None},
            "settings": {"concurrency": 4, "hourly_price_usd": 0.1},
            "models": models if models is not None else _models(),
        },
    )
    return run


class _Tables(HTMLParser):
    """Counts tables and their rows, and checks that tags close in order (void tags aside)."""

    VOID = {"br", "meta", "img", "hr", "input", "link", "col", "wbr"}

    def __init__(self):
        super().__init__()
        self.stack, self.tables, self.rows, self.errors = [], 0, [], []

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        self.stack.append(tag)
        if tag == "table":
            self.tables += 1
            self.rows.append(0)
        if tag == "tr":
            self.rows[-1] += 1

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()


def _parse(text):
    parser = _Tables()
    parser.feed(text)
    parser.close()
    return parser


def test_full_report_has_every_section_and_its_numbers(tmp_path):
    out = report.write_report(_full_run(tmp_path))
    assert out == tmp_path / "full" / "report.html"
    text = out.read_text()
    parsed = _parse(text)
    assert parsed.errors == [] and parsed.stack == []
    assert parsed.tables >= 6 and all(rows >= 2 for rows in parsed.rows)
    for name in ("teacher", "student (trained)", "compressed q8_0", "compressed q4_k_m"):
        assert name in text
    for shown in (
        "27.5%",
        "7.5%",
        "792 ms",
        "6.00 s",
        "366 MB",
        "$0.0055",
        "$0.22",
        "92.7%",
        "6.2x",
        "40x",
        "01-sft",
        "gguf q8_0",
        "a note",
        "6.0 min",
    ):
        assert shown in text, shown
    assert text.count("<svg") >= 5  # 2 scatters, cost, histogram, 2 loss curves
    assert "no curve recorded" not in text and "first and last loss only" in text
    assert "accept rate 92.7%, teacher (exact 33.3%, p50 2.2 min)" in text  # manifest summary
    assert "No eval stage yet" not in text and "No label stage yet" not in text
    assert "http://" not in text and "https://" not in text and "<script" not in text


def test_verdict_names_best_student_and_teacher(tmp_path):
    data = report.load_run(_full_run(tmp_path))
    sentences, tone = report.verdict(data)
    first = sentences[0]
    assert "compressed q8_0" in first and "7.5%" in first and "teacher's 27.5%" in first
    assert (
        "−20.0 points" in first and "7.6x lower p50 latency" in first and "40x lower cost" in first
    )
    assert tone == "bad" and "not within 1 point" in sentences[1]


def test_verdict_within_one_point_and_ties(tmp_path):
    models = [
        _model("teacher", "endpoint", 0.50, 6.0, 1e9, 0.2),
        _model("big", "hf", 0.495, 2.0, 2e9, 0.1),
        _model("small", "gguf", 0.495, 2.0, 3e8, 0.1),
    ]
    teacher, best = report.pick_models(models)
    assert teacher["name"] == "teacher" and best["name"] == "small"
    sentences, tone = report.verdict(report.load_run(_full_run(tmp_path, models)))
    assert tone == "good" and "within 1 point" in sentences[1]
    models[2]["latency_s"]["p50"] = None  # not measured: the verdict leaves latency out
    sentences, _ = report._eval_verdict(*report.pick_models(models))
    assert "latency" not in sentences[0] and "2.0x lower cost per 1k requests" in sentences[0]


def test_prediction_is_escaped(tmp_path):
    models = _models()
    models[1]["errors"][0]["prediction"] = "<script>alert(1)</script>"
    models[1]["name"] = "a <b>bold</b> & model"
    text = report.write_report(_full_run(tmp_path, models)).read_text()
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "a &lt;b&gt;bold&lt;/b&gt; &amp; model" in text


def test_null_values_show_a_dash_and_stay_out_of_plots(tmp_path):
    text = report.write_report(_full_run(tmp_path)).read_text()
    assert "—" in text
    data = report.load_run(tmp_path / "full")
    models = data.get("eval")["models"]
    colors = report.model_colors(models, models[0])
    assert "compressed q4_k_m" not in report._accuracy_card(models, colors, models[0], "latency")
    assert "compressed q4_k_m" in report._accuracy_card(models, colors, models[0], "size")


def test_label_only_run_names_the_missing_stages(tmp_path):
    run = tmp_path / "label_only"
    _write(run / "label/label_report.json", LABEL)
    text = report.write_report(run, tmp_path / "out" / "r.html").read_text()
    assert (tmp_path / "out" / "r.html").is_file()
    for missing in (
        "No eval stage yet",
        "No train stage yet",
        "No compress stage yet",
        "No manifest.json",
    ):
        assert missing in text, missing
    assert "supertiny eval" in text and "Only the label stage has run" in text
    assert "26.7%" in text and "<svg" in text
    assert _parse(text).errors == []


def test_empty_run_still_writes_a_page(tmp_path):
    text = report.write_report(tmp_path).read_text()
    assert "Nothing to report yet" in text and "No label stage yet" in text


def test_pareto_front():
    points = [(1.0, 0.1), (2.0, 0.3), (3.0, 0.2), (0.5, 0.05), (2.0, 0.3), (5.0, 0.4), (5.0, 0.35)]
    # (3.0, 0.2) is beaten by (2.0, 0.3); (5.0, 0.35) by (5.0, 0.4); equal points both stay
    assert pareto_front(points) == [3, 0, 1, 4, 5]
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 0.5)]) == [0]


def test_preliminary_verdict_from_compress(tmp_path):
    run = _full_run(tmp_path)
    (run / "eval/eval_report.json").unlink()
    sentences, tone = report.verdict(report.load_run(run))
    assert tone == "neutral" and "03-gguf" in sentences[0] and "7.5%" in sentences[0]
    assert "supertiny eval examples/sh/task.yaml" in sentences[1]


def _args(run_dir, **kw):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(
        [str(run_dir)] + [x for k, v in kw.items() for x in (f"--{k}", str(v))]
    )


def test_run_from_args(tmp_path):
    assert command.run_from_args(_args(tmp_path / "nope")) == 2
    assert command.run_from_args(_args(tmp_path)) == 2  # exists, holds no report
    run = _full_run(tmp_path)
    assert command.run_from_args(_args(run, out=tmp_path / "r.html")) == 0
    assert (tmp_path / "r.html").is_file()


@pytest.mark.skipif(
    not any(shutil.which(b) for b in command.BROWSERS), reason="no chromium to take screenshots"
)
def test_screenshot(tmp_path):
    out = report.write_report(_full_run(tmp_path))
    png = command.screenshot(out, tmp_path / "shot.png", width=800, height=600)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_screenshot_without_browser(tmp_path, monkeypatch):
    monkeypatch.setattr(command.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install chromium"):
        command.screenshot(tmp_path / "r.html", tmp_path / "r.png")
