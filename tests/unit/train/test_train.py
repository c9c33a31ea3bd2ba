"""The train stage on tiny random models: every step, resume, the report, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.tiny_models import tiny_student  # noqa: E402

from supertiny.cli import main  # noqa: E402
from supertiny.core import records  # noqa: E402
from supertiny.core.config import ConfigError  # noqa: E402
from supertiny.core.task import Task  # noqa: E402
from supertiny.runtime import hf as st  # noqa: E402
from supertiny.runtime import render  # noqa: E402
from supertiny.train import data  # noqa: E402
from supertiny.train import stage as train  # noqa: E402
from supertiny.train.config import load_config  # noqa: E402
from supertiny.train.kd import _align, endpoint_topk  # noqa: E402
from supertiny.train.trainers import (  # noqa: E402
    StepContext,
    TrainingError,
    last_complete_checkpoint,
)

TASK = Path("tests/assets/tiny_task/task.yaml")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "student": tiny_student(root / "student", seed=0),
        "teacher": tiny_student(root / "teacher", seed=1),
        "other_vocab": tiny_student(root / "other", seed=2, vocab_size=300),
    }


@pytest.fixture
def task():
    return Task.load(TASK)


def labeled(task) -> list[dict]:
    return [dict(r, label=r["gold"]) for r in task.records("unlabeled")]


@pytest.fixture
def run_dir(tmp_path, task):
    label = tmp_path / "run" / "label"
    label.mkdir(parents=True)
    records = labeled(task)
    (label / "labeled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    wrong = {"tool_calls": [{"name": "book_table", "arguments": {"city_id": "xxx", "people": 9}}]}
    pair = {"id": "t1-p0", "source_id": "t1", "chosen": records[0]["label"], "rejected": wrong}
    (label / "preferences.jsonl").write_text(json.dumps(pair) + "\n")
    return tmp_path / "run"


def conf(models, steps, **extra):
    data = {"student": {"model": str(models["student"])}, "steps": steps}
    data["eval"] = {"max_new_tokens": 24}
    data.update(extra)
    return load_config(None, overrides=data)


def report(run_dir: Path) -> dict:
    return json.loads((run_dir / "train" / "train_report.json").read_text())


# ----- the student's data format -------------------------------------------------------------


def test_encode_masks_the_prompt_and_keeps_the_call(models, task):
    tok = st.load_tokenizer(str(models["student"]))
    record = labeled(task)[0]
    example = data.encode(tok, task, record, record["label"], max_length=512)
    answer = [
        t for t, lab in zip(example["input_ids"], example["labels"], strict=True) if lab != -100
    ]
    text = tok.decode(answer)
    assert text.startswith("<tool_call>") and text.endswith("<|im_end|>")
    assert '"city_id": "par"' in text and '"people": 4' in text
    prompt = tok.decode(example["input_ids"][: len(example["input_ids"]) - len(answer)])
    assert "Book the table." in prompt and "table for 4 in Paris" in prompt
    assert "<tools>" in prompt  # the tiny task keeps tools_in_prompt: true
    assert data.encode(tok, task, record, record["label"], max_length=10) is None


def test_short_prompt_without_tools(models, task):
    tok = st.load_tokenizer(str(models["student"]))
    task.spec.student.tools_in_prompt = False
    assert "<tools>" not in render.prompt_text(tok, task, labeled(task)[0])


def test_empty_or_all_rejected_labels_are_clear_errors(tmp_path, task):
    with pytest.raises(records.DataError, match="supertiny label"):
        records.load_labels(tmp_path / "labeled.jsonl", task)
    (tmp_path / "labeled.jsonl").write_text("")
    (tmp_path / "rejected.jsonl").write_text('{"id": "t1"}\n')
    with pytest.raises(records.DataError, match="every input was rejected"):
        records.load_labels(tmp_path / "labeled.jsonl", task)


# ----- every step ----------------------------------------------------------------------------


def test_sft_learns_and_the_report_has_every_column(models, task, run_dir):
    steps = [{"kind": "sft", "epochs": 8, "learning_rate": 3e-3, "batch_size": 2}]
    full = {"model": str(models["student"]), "lora": None}  # full fine-tuning
    artifacts = train.run(task, conf(models, steps, student=full), run_dir)
    step_dir = run_dir / "train" / "01-sft"
    assert (run_dir / artifacts["model"]) == step_dir / "model"
    assert (step_dir / "model" / "config.json").is_file()
    metrics = json.loads((step_dir / "metrics.json").read_text())
    assert metrics["loss_last"] < 0.6 * metrics["loss_first"]
    assert metrics["tokens_per_s"] > 0 and metrics["examples"] == 6
    rep = report(run_dir)
    assert rep["student_before"]["n"] == 3 and rep["steps"][0]["eval"]["n"] == 3
    assert "gain_exact" in rep["steps"][0]
    assert len((step_dir / "eval.jsonl").read_text().splitlines()) == 3
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["train"]["status"] == "finished"
    # LoRA was merged: the saved model is a plain transformers model
    assert not list((step_dir / "model").glob("adapter_*"))


def test_lora_trains_the_head_and_merges(models, task, run_dir):
    from transformers import AutoModelForCausalLM

    train.run(task, conf(models, [{"kind": "sft", "learning_rate": 1e-2}]), run_dir)
    before = AutoModelForCausalLM.from_pretrained(models["student"])
    after = AutoModelForCausalLM.from_pretrained(run_dir / "train" / "01-sft" / "model")
    assert not torch.equal(before.lm_head.weight, after.lm_head.weight)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(before.state_dict()[q], after.state_dict()[q])


def test_rft_reports_pass_at_k(models, task, run_dir):
    steps = [{"kind": "rft", "samples": 3, "max_new_tokens": 24, "epochs": 1}]
    train.run(task, conf(models, steps), run_dir)
    metrics = json.loads((run_dir / "train" / "01-rft" / "metrics.json").read_text())
    assert 0 <= metrics["pass_at_k"] <= 1 and 0 <= metrics["pass_at_1"] <= metrics["pass_at_k"]
    assert metrics["kept_student"] + metrics["kept_teacher"] == metrics["examples"]
    samples = (run_dir / "train" / "01-rft" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 6 and all(len(json.loads(s)["samples"]) == 3 for s in samples)


def test_rft_keeps_correct_samples(models, task):
    from supertiny.train.rft import judge_samples

    record = labeled(task)[0]
    ctx = StepContext(task, None, None, [record], Path("."), Path("."), "cpu", torch.float32)
    right = '<tool_call>\n{"name": "book_table", "arguments": {"people": 4, "city_id": "par"}}\n</tool_call>'
    wrong = right.replace("par", "rom")
    kept, exact = judge_samples(ctx, record, [wrong, right, right], min_reward=1.0)
    assert exact == 2
    assert kept == [
        {
            "tool_calls": [{"name": "book_table", "arguments": {"people": 4, "city_id": "par"}}],
            "content": None,
        }
    ]
    assert judge_samples(ctx, record, [wrong], min_reward=1.0) == ([], 0)
    assert judge_samples(ctx, record, [wrong], min_reward=0.4)[0]  # similarity 0.5


def test_dpo_uses_label_pairs_and_mined_pairs(models, task, run_dir):
    steps = [{"kind": "dpo", "samples": 2, "max_new_tokens": 24, "batch_size": 2}]
    train.run(task, conf(models, steps), run_dir)
    metrics = json.loads((run_dir / "train" / "01-dpo" / "metrics.json").read_text())
    assert metrics["pairs_from_labels"] == 1
    assert metrics["pairs_mined"] > 0  # an untrained model is wrong
    assert metrics["reward_accuracy_last"] is not None
    assert metrics["tokens"] > 0 and metrics["tokens_per_s"] > 0  # TRL's own token count


def test_grpo_with_the_similarity_reward(models, task, run_dir):
    steps = [
        {"kind": "grpo", "samples": 2, "max_new_tokens": 16, "batch_size": 2, "max_examples": 4}
    ]
    train.run(task, conf(models, steps), run_dir)
    metrics = json.loads((run_dir / "train" / "01-grpo" / "metrics.json").read_text())
    assert metrics["group_size"] == 2 and metrics["prompts"] == 4
    assert -1 <= metrics["reward_last"] <= 1


def test_grpo_reward_function_calls_the_task(task):
    from supertiny.train.grpo import reward_function

    record = labeled(task)[0]
    ctx = StepContext(task, None, None, [record], Path("."), Path("."), "cpu", torch.float32)
    fn = reward_function(ctx, None)
    right = '{"name": "book_table", "arguments": {"city_id": "par", "people": 4}}'
    ref = json.dumps(record["label"])
    scores = fn(
        ["p"] * 3, [right, right.replace("par", "rom"), "not a call {"], [ref] * 3, [""] * 3
    )
    assert scores[0] == 1.0 and 0 < scores[1] < 1 and scores[2] <= 0
    assert reward_function(ctx, "exact")(["p"], [right.replace("par", "rom")], [ref], [""]) == [0.0]


@pytest.mark.parametrize(
    "kd",
    [
        {"loss": "ckd", "top_k": 20, "top_m": 10},
        {"loss": "forward_kl"},
        {"loss": "reverse_kl", "teacher_cache": False},
        {"loss": "jsd", "beta": 0.3, "teacher_cache": False},
    ],
)
def test_kd_with_a_local_teacher(models, task, run_dir, kd):
    steps = [{"kind": "kd", "teacher": str(models["teacher"]), "epochs": 2, **kd}]
    train.run(task, conf(models, steps), run_dir)
    step_dir = run_dir / "train" / "01-kd"
    metrics = json.loads((step_dir / "metrics.json").read_text())
    assert metrics["loss_kind"] == kd["loss"] and metrics["kd_last"] is not None
    assert (step_dir / "teacher_topk.pt").is_file() == kd.get("teacher_cache", True)


def test_kd_refuses_a_teacher_with_another_vocabulary(models, task, run_dir):
    steps = [{"kind": "kd", "teacher": str(models["other_vocab"])}]
    with pytest.raises(st.StudentError, match=r"vocabulary mismatch.*400.*300"):
        train.run(task, conf(models, steps), run_dir)


def test_endpoint_logprobs_align_with_the_student_answer(models, task, run_dir):
    tok = st.load_tokenizer(str(models["student"]))
    records = labeled(task)
    examples, _ = data.encode_all(tok, task, [(r, r["label"]) for r in records], 512)
    ex = examples[0]
    start = ex["labels"].index(next(t for t in ex["labels"] if t != -100))
    answer = [tok.decode([t]) for t in ex["input_ids"][start:]]
    # the endpoint pre-filled <tool_call>, and its last token (end of turn) was not returned
    content = [
        {
            "token": t,
            "logprob": -0.1,
            "top_logprobs": [{"token": t, "logprob": -0.1}, {"token": "zz", "logprob": -3.0}],
        }
        for t in answer[1:-1]
    ]
    records[0]["meta"] = {"logprobs": content}
    ctx = StepContext(task, None, tok, records, run_dir, run_dir / "label", "cpu", torch.float32)
    aligned = endpoint_topk(ctx, examples, {r["id"]: r for r in records}, k=4)
    assert aligned == 1 and "t_ids" in ex and "t_ids" not in examples[1]
    assert ex["t_ids"].shape == (len(answer), 4)
    assert ex["t_ids"][1, 0] == ex["input_ids"][start + 1]  # row j predicts answer token j
    assert torch.isinf(ex["t_logprobs"][0]).all()  # the pre-filled token has no teacher row


def test_align():
    call = ['{"', "name", '":', ' "', "set_light", '",', ' "', "arguments", '":', ' {"', "id"]
    call += ['":', ' "', "light", ".kitchen", '"}}', "\n"]
    n = len(call)
    student = ["<tool_call>", "\n", *call, "</tool_call>", "<|im_end|>"]
    # the endpoint pre-filled the opening and stopped before the end of turn
    assert _align(student[2:-1], student) == {j: j - 2 for j in range(2, n + 3)}
    # the teacher wrote the closing tag as text pieces, not the special token: rows up to it
    teacher = [*call, "</", "tool", "_", "call", ">"]
    assert _align(teacher, student) == {j: j - 2 for j in range(2, n + 2)}
    # a helper call first in the same turn (so the teacher wrote this call's opening), and
    # '"}}' written as '"}' + '}' by the teacher: that token alone gets no row
    helper = ['{"', "name", '":', ' "', "find", '"}', "\n", "</tool_call>", "\n", "<tool_call>"]
    teacher = [*helper, "\n", *call[:-2], '"}', "}", "\n", "</tool_call>"]
    expected = {j: j + 9 for j in range(0, n)} | {n + 1: n + 11, n + 2: n + 12}
    assert _align(teacher, student) == expected
    assert _align([*call[:4], "set_heat", *call[5:]], student) == {}  # another answer
    assert _align(call[-4:], student) == {}  # too little of it to tell
    assert _align([], student) == {}


def test_kd_from_endpoint_without_logprobs_falls_back_with_a_warning(models, task, run_dir):
    steps = [{"kind": "kd", "teacher": "endpoint", "top_k": 5}]
    train.run(task, conf(models, steps), run_dir)
    metrics = json.loads((run_dir / "train" / "01-kd" / "metrics.json").read_text())
    assert metrics["aligned"] == 0
    assert any("sequence-level KD" in note for note in metrics["notes"])


# ----- resume ------------------------------------------------------------------------------


def test_finished_steps_are_kept_and_changed_ones_set_aside(models, task, run_dir, monkeypatch):
    sft = {"kind": "sft", "epochs": 1}
    train.run(task, conf(models, [sft]), run_dir)
    weights = run_dir / "train" / "01-sft" / "model" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    before = report(run_dir)["student_before"]
    train.run(
        task, conf(models, [sft, {"kind": "sft", "epochs": 1, "learning_rate": 1e-3}]), run_dir
    )
    assert weights.stat().st_mtime_ns == stamp  # step 1 was not run again
    assert (run_dir / "train" / "02-sft" / "model").is_dir()
    assert len(report(run_dir)["steps"]) == 2
    assert report(run_dir)["student_before"] == before  # not re-measured on a trained model
    # every step finished: the same command loads no model and changes nothing
    monkeypatch.setattr(st, "load", lambda *a, **k: pytest.fail("loaded a model"))
    train.run(
        task, conf(models, [sft, {"kind": "sft", "epochs": 1, "learning_rate": 1e-3}]), run_dir
    )
    assert len(report(run_dir)["steps"]) == 2
    monkeypatch.undo()
    train.run(task, conf(models, [{**sft, "learning_rate": 5e-4}]), run_dir)
    aside = sorted(p.name for p in (run_dir / "train").iterdir() if ".old-" in p.name)
    assert [a.split(".")[0] for a in aside] == ["01-sft", "02-sft"]
    assert weights.stat().st_mtime_ns != stamp


def test_a_step_interrupted_after_a_checkpoint_resumes_from_it(models, task, run_dir, monkeypatch):
    sft = {"kind": "sft", "epochs": 2, "batch_size": 2, "save_steps": 2}

    def crash(step_dir, info):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "finish_step", crash)
    with pytest.raises(KeyboardInterrupt):
        train.run(task, conf(models, [sft]), run_dir)
    monkeypatch.undo()
    step_dir = run_dir / "train" / "01-sft"
    # what a crash after the last checkpoint leaves behind: checkpoints, no model, no step.json
    (last,) = (step_dir / "checkpoints").glob("checkpoint-*")
    shutil.rmtree(step_dir / "model")
    # and a newer checkpoint whose save was cut short before its trainer_state.json
    torn = step_dir / "checkpoints" / "checkpoint-8"
    shutil.copytree(last, torn)
    (torn / "trainer_state.json").unlink()
    train.run(task, conf(models, [sft]), run_dir)
    assert not (step_dir / "checkpoints").exists()  # a finished step keeps only its model
    metrics = json.loads((step_dir / "metrics.json").read_text())
    assert f"resuming from {last}" in metrics["notes"]
    (aside,) = step_dir.glob("checkpoint-8.incomplete-*")  # set aside, not deleted
    assert any(f"{torn} is incomplete (no trainer_state.json" in n for n in metrics["notes"])
    assert (aside / "optimizer.pt").is_file()
    assert metrics["optimizer_steps"] == 6 and (step_dir / "model" / "config.json").is_file()


def fake_checkpoint(folder: Path, weights: str = "model.safetensors") -> Path:
    """A checkpoint as the Trainer saves one: weights, optimizer, and trainer_state.json last."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    tensors = {"w": torch.ones(4, 4), "b": torch.zeros(4)}
    if weights.endswith(".safetensors"):
        save_file(tensors, str(folder / weights))
    else:
        torch.save(tensors, folder / weights)
    torch.save({"state": {}}, folder / "optimizer.pt")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    return folder


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda c: (c / "trainer_state.json").unlink(), "no trainer_state.json"),
        (lambda c: (c / "model.safetensors").unlink(), "no model or adapter weights"),
        (lambda c: (c / "trainer_state.json").write_text('{"global_st'), "trainer_state.json: not"),
        (lambda c: truncate(c / "model.safetensors", 180), "model.safetensors: 180 bytes"),
        (lambda c: truncate(c / "model.safetensors", 5), "model.safetensors: cut short"),
        (lambda c: truncate(c / "optimizer.pt", 100), "optimizer.pt: not a whole torch file"),
    ],
)
def test_resume_skips_an_incomplete_checkpoint_for_the_last_complete_one(tmp_path, damage, reason):
    checkpoints = tmp_path / "01-sft" / "checkpoints"
    complete = fake_checkpoint(checkpoints / "checkpoint-2")
    newer = fake_checkpoint(checkpoints / "checkpoint-4", weights="adapter_model.bin")
    damage(fake_checkpoint(checkpoints / "checkpoint-6"))
    warnings = []
    assert last_complete_checkpoint(checkpoints, warnings.append) == str(newer)
    (aside,) = (tmp_path / "01-sft").glob("checkpoint-6.incomplete-*")
    assert (aside / "optimizer.pt").is_file()  # moved whole, nothing deleted
    (warning,) = warnings
    assert warning.startswith(f"{checkpoints / 'checkpoint-6'} is incomplete ({reason}")
    assert warning.endswith(f"set aside as {aside}")
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert complete.is_dir()


def test_resume_starts_over_when_no_checkpoint_is_complete(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    (fake_checkpoint(checkpoints / "checkpoint-2") / "trainer_state.json").unlink()
    assert last_complete_checkpoint(checkpoints, lambda message: None) is None
    assert last_complete_checkpoint(tmp_path / "none", lambda message: None) is None
    assert sorted(p.name.split(".")[0] for p in tmp_path.iterdir()) == [
        "checkpoint-2",
        "checkpoints",
    ]


def truncate(path: Path, size: int) -> None:
    with path.open("r+b") as handle:
        handle.truncate(size)


def test_an_interrupted_kd_step_reads_its_teacher_cache_back(models, task, run_dir, monkeypatch):
    """The cached teacher top-k is plain tensors, ints and dicts: the resumed step reads it
    with ``torch.load(weights_only=True)`` instead of loading the teacher again."""
    steps = [{"kind": "kd", "teacher": str(models["teacher"]), "epochs": 1, "top_k": 8}]

    def crash(step_dir, info):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "finish_step", crash)
    with pytest.raises(KeyboardInterrupt):
        train.run(task, conf(models, steps), run_dir)
    monkeypatch.undo()
    step_dir = run_dir / "train" / "01-kd"
    saved = torch.load(step_dir / "teacher_topk.pt", weights_only=True)
    first = saved["t1"]
    assert isinstance(first["t_start"], int) and first["t_ids"].dtype == torch.int32
    assert first["t_ids"].shape == first["t_logprobs"].shape and first["t_ids"].shape[1] == 8
    assert not list(step_dir.glob("*.tmp"))
    train.run(task, conf(models, steps), run_dir)
    metrics = json.loads((step_dir / "metrics.json").read_text())
    assert metrics["cached"] is True and metrics["kd_last"] is not None


def test_new_labels_retrain(models, task, run_dir):
    sft = {"kind": "sft", "epochs": 1}
    train.run(task, conf(models, [sft]), run_dir)
    labels = run_dir / "label" / "labeled.jsonl"
    labels.write_text("".join(labels.read_text().splitlines(keepends=True)[:3]))
    train.run(task, conf(models, [sft]), run_dir)
    assert json.loads((run_dir / "train" / "01-sft" / "metrics.json").read_text())["examples"] == 3


# ----- bad input ---------------------------------------------------------------------------


def test_nan_loss_stops_with_a_clear_error(models, task, run_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(models["student"], broken)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(broken)
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    model.save_pretrained(broken)
    steps = [{"kind": "sft"}]
    bad = conf(models, steps, eval={"before": False})
    bad.student.model = str(broken)
    with pytest.raises(TrainingError, match="loss became nan"):
        train.run(task, bad, run_dir)


def test_unknown_lora_target_names_the_real_modules(models, task, run_dir):
    bad = conf(
        models,
        [{"kind": "sft"}],
        student={"model": str(models["student"]), "lora": {"target_modules": ["qkv"]}},
    )
    with pytest.raises(ConfigError, match=r"qkv.*q_proj"):
        train.run(task, bad, run_dir)


def test_template_without_tool_calls_is_refused(models, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(models["student"], plain)
    tok = st.load_tokenizer(str(plain))
    tok.chat_template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    with pytest.raises(st.StudentError, match="does not render tool calls"):
        st.check_tool_template(tok, str(plain))


def test_config_errors_name_the_key(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("steps:\n  - {kind: sft, epoch: 2}\n")
    with pytest.raises(ConfigError, match=r"train.yaml: steps\[0\].*epoch.*did you mean 'epochs'"):
        load_config(path)
    path.write_text("steps:\n  - {kind: distill}\n")
    with pytest.raises(ConfigError, match="sft.*kd"):
        load_config(path)
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config(None, "huge")


def test_cli_train_and_its_errors(models, run_dir, capsys):
    args = [
        "train",
        str(TASK),
        "--run-dir",
        str(run_dir),
        "--preset",
        "quick",
        "--student",
        str(models["student"]),
        "--set",
        "eval.max_new_tokens=16",
    ]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "student, untrained" in out.out + out.err and "01-sft" in out.out + out.err
    (run_dir / "label" / "labeled.jsonl").unlink()
    assert main(args) == 2
    assert "supertiny label" in capsys.readouterr().err
