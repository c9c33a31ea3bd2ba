"""Logit-level knowledge distillation: the student matches the teacher's next-token distribution.

The loss on every answer token is ``(1 - alpha) * CE(label) + alpha * KD``, with KD one of
forward KL, reverse KL, generalised JSD or CKD (``losses.py``), at a temperature. Teachers:

- a local model sharing the student's vocabulary (``teacher: teacher`` is the bundled 1.5B,
  which shares the 0.5B student's 151,936 tokens). By default its top-``top_k`` log-probs on
  every training answer are computed once and cached in the step folder
  (``teacher_topk.pt``: plain tensors in dicts, written atomically and read back with
  ``torch.load(weights_only=True)``, which runs no pickled code); ``teacher_cache: false``
  keeps the teacher in memory instead and uses its full distribution (exact dense losses,
  one teacher forward per batch);
- ``teacher: endpoint``: the ``top_logprobs`` the label stage captured from the teacher
  endpoint (``supertiny label --set top_logprobs=20``). They are mapped onto the student's
  answer tokens where the teacher's text holds the answer (character by character, so a
  helper call earlier in the teacher's turn or another token split does not matter); where it
  does not (or no log-probs were captured) the example is learned from its text alone
  (sequence-level KD), with a warning that says how many.

The trainer is a transformers ``Trainer`` with our loss (TRL's trainers do not carry these
losses), so checkpoints, resume and ``accelerate launch`` work as for the other steps.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from supertiny.runtime import hf as st
from supertiny.train import distributed as dist
from supertiny.train.data import encode_all
from supertiny.train.losses import kd_loss, mix
from supertiny.train.trainers import StepContext, TrainingError, train, trainer_kwargs


def _answer_start(labels: list[int]) -> int:
    return next(i for i, t in enumerate(labels) if t != -100)


def teacher_topk(teacher, examples: list[dict[str, Any]], k: int, progress_title: str) -> None:
    """Attach the teacher's top-k ids/log-probs at each position predicting an answer token."""
    import torch

    from supertiny.core.progress import bar

    teacher.eval()
    with bar(len(examples), progress_title) as advance:
        for ex in examples:
            ids = torch.tensor([ex["input_ids"]], device=teacher.device)
            with torch.no_grad():
                logits = teacher(input_ids=ids).logits[0, :-1].float()
            start = _answer_start(ex["labels"]) - 1
            logprobs = torch.log_softmax(logits[start:], dim=-1)
            top = logprobs.topk(min(k, logprobs.shape[-1]), dim=-1)
            ex["t_start"] = start
            ex["t_ids"] = top.indices.to("cpu", torch.int32)
            ex["t_logprobs"] = top.values.to("cpu")
            advance(1)


def _token_ids(tokenizer) -> dict[str, int]:
    """Decoded text of every token -> its id (the first id wins on duplicates)."""
    table: dict[str, int] = {}
    for token_id in range(len(tokenizer)):
        table.setdefault(tokenizer.decode([token_id]), token_id)
    return table


def endpoint_topk(ctx: StepContext, examples, records: dict[str, dict[str, Any]], k: int) -> int:
    """Attach the endpoint's captured top log-probs where they align; returns how many did."""
    import torch

    table = _token_ids(ctx.tokenizer)
    aligned = 0
    for ex in examples:
        content = (records[ex["id"]].get("meta") or {}).get("logprobs") or []
        start = _answer_start(ex["labels"])
        answer = [ctx.tokenizer.decode([t]) for t in ex["input_ids"][start:]]
        rows = _align([c.get("token", "") for c in content], answer)
        if not rows:
            continue
        rows_ids, rows_lp = [], []
        for j in range(len(answer)):
            tops = content[rows[j]].get("top_logprobs") or [] if j in rows else []
            pairs = [(table.get(t["token"]), t["logprob"]) for t in tops[:k]]
            pairs = [(a, b) for a, b in pairs if a is not None]
            pairs += [(0, float("-inf"))] * (k - len(pairs))
            rows_ids.append([a for a, _ in pairs])
            rows_lp.append([b for _, b in pairs])
        ex["t_start"] = start - 1
        ex["t_ids"] = torch.tensor(rows_ids, dtype=torch.int32)
        ex["t_logprobs"] = torch.tensor(rows_lp, dtype=torch.float32)
        aligned += 1
    return aligned


def _align(teacher: list[str], student: list[str]) -> dict[int, int]:
    """Which teacher token stands for each student answer token: ``{student index: teacher
    index}`` where the teacher's text holds the student's answer and both tokens start at the
    same character of it and are the same string; empty when the texts do not match.

    The texts match when the student's answer, less up to 3 leading tokens (an opening the
    endpoint pre-filled, ``<tool_call>``) and its last 2 (the end of turn, a closing tag the
    teacher wrote in pieces), is in the teacher's text and is at least half the answer; it
    may follow helper calls the teacher made in the same turn. A token the teacher split
    otherwise (a grammar can make it write a closing brace and the newline after it as two
    tokens where the tokenizer has one) gets no row.
    """
    text = "".join(teacher)
    starts = {}
    position = 0
    for index, token in enumerate(teacher):
        starts.setdefault(position, index)
        position += len(token)
    whole = len("".join(student))
    for skip in range(0, 4):
        core = "".join(student[skip : len(student) - 2])
        found = text.find(core) if 2 * len(core) >= whole > 0 else -1
        if found < 0:
            continue
        rows, position = {}, found
        for j in range(skip, len(student)):
            index = starts.get(position)
            if index is not None and teacher[index] == student[j]:
                rows[j] = index
            position += len(student[j])
        return rows
    return {}


class _Examples:
    """A map-style dataset of encoded examples (teacher tensors stay tensors)."""

    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def collate(pad_id: int, k: int):
    """Pad a batch: input_ids/attention_mask/labels [B, T]; teacher ids/log-probs [B, T-1, K]."""

    def fn(rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        b = len(rows)
        input_ids = torch.full((b, width), pad_id, dtype=torch.long)
        attention = torch.zeros((b, width), dtype=torch.long)
        labels = torch.full((b, width), -100, dtype=torch.long)
        t_ids = torch.zeros((b, width - 1, k), dtype=torch.long)
        t_lp = torch.full((b, width - 1, k), float("-inf"))
        kd_mask = torch.zeros((b, width - 1), dtype=torch.bool)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            input_ids[i, :n] = torch.tensor(r["input_ids"])
            attention[i, :n] = 1
            labels[i, :n] = torch.tensor(r["labels"])
            if "t_ids" in r:
                s, m = r["t_start"], r["t_ids"].shape[0]
                t_ids[i, s : s + m] = r["t_ids"].long()
                t_lp[i, s : s + m] = r["t_logprobs"]
                kd_mask[i, s : s + m] = torch.isfinite(r["t_logprobs"]).any(-1)
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": labels,
            "teacher_ids": t_ids,
            "teacher_logprobs": t_lp,
            "kd_mask": kd_mask,
        }

    return fn


def make_trainer(ctx: StepContext, step: Any, args, dataset, teacher=None):
    """A transformers ``Trainer`` whose loss mixes CE with the step's KD loss."""
    import torch
    from transformers import Trainer

    class KDTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            t_ids, t_lp = inputs.pop("teacher_ids"), inputs.pop("teacher_logprobs")
            kd_mask = inputs.pop("kd_mask")
            out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            logits = out.logits[:, :-1]
            target = labels[:, 1:]
            ce = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=-100
            )
            answer = target != -100
            knobs = dict(
                temperature=step.temperature,
                beta=step.beta,
                top_k=step.top_k,
                top_m=step.top_m,
                lam=step.lam,
            )
            if teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(**inputs).logits[:, :-1]
                kd = kd_loss(step.loss, logits, answer, teacher_logits=t_logits, **knobs)
            else:
                kd = kd_loss(
                    step.loss,
                    logits,
                    kd_mask & answer,
                    teacher_ids=t_ids,
                    teacher_logprobs=t_lp,
                    **knobs,
                )
            loss = mix(ce, kd, step.alpha)
            if self.state.global_step % max(1, self.args.logging_steps) == 0 and model.training:
                self._kd_parts = {"ce": float(ce.detach()), "kd": float(kd.detach())}
            return (loss, out) if return_outputs else loss

        def log(self, logs, *a, **kw):
            logs.update(getattr(self, "_kd_parts", {}))
            super().log(logs, *a, **kw)

    return KDTrainer(
        model=ctx.model,
        args=args,
        train_dataset=dataset,
        data_collator=collate(ctx.tokenizer.pad_token_id, step.top_k if teacher is None else 1),
        processing_class=ctx.tokenizer,
    )


def _teacher_data(ctx: StepContext, step: Any, examples) -> tuple[Any, dict[str, Any]]:
    """Fill in teacher log-probs (or load the teacher for online KD); returns (teacher, info)."""
    import torch

    if step.teacher == "endpoint":
        records = {r["id"]: r for r in ctx.labels}
        aligned = endpoint_topk(ctx, examples, records, step.top_k)
        if aligned < len(examples):
            ctx.warn(
                f"{len(examples) - aligned} of {len(examples)} examples have no usable teacher "
                "log-probs (none captured, or the teacher's tokens do not spell the student's "
                "answer); they are learned from the label text only (sequence-level KD). "
                "Capture them with `supertiny label --set top_logprobs=20`"
            )
        return None, {"teacher": "endpoint", "aligned": aligned}
    cache = ctx.step_dir / "teacher_topk.pt"
    if step.teacher_cache and cache.is_file():
        saved = torch.load(cache, weights_only=True)
        for ex in examples:
            ex.update(saved.get(ex["id"], {}))
        return None, {"teacher": step.teacher, "cache": str(cache.name), "cached": True}
    teacher, _ = st.load(step.teacher, ctx.device, str(ctx.dtype).removeprefix("torch."))
    st.check_same_vocab(ctx.model, teacher, step.teacher)
    if not step.teacher_cache:
        teacher.eval()
        return teacher, {"teacher": step.teacher, "cache": None}
    teacher_topk(teacher, examples, step.top_k, f"kd: teacher top-{step.top_k}")
    keep = ("t_start", "t_ids", "t_logprobs")
    _save_atomic({ex["id"]: {k: ex[k] for k in keep} for ex in examples}, cache)
    del teacher
    return None, {"teacher": step.teacher, "cache": str(cache.name), "cached": False}


def _save_atomic(data: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temp file beside ``path``, fsync'ed, then renamed over it: a crash
    or a full disk mid-save leaves no half-written cache for a resumed step to read."""
    import torch

    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as out:
            torch.save(data, out)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def run(ctx: StepContext, step: Any) -> dict[str, Any]:
    from transformers import TrainingArguments

    records = ctx.labels[: step.max_examples] if step.max_examples else ctx.labels
    examples, too_long = encode_all(
        ctx.tokenizer, ctx.task, [(r, r["label"]) for r in records], step.max_length
    )
    if not examples:
        raise TrainingError(f"{ctx.step_dir.name}: no example fits max_length={step.max_length}")
    with dist.main_first():  # the main process caches the teacher's top-k, the others read it
        teacher, info = _teacher_data(ctx, step, examples)
    args = TrainingArguments(**trainer_kwargs(ctx, step))
    trainer = make_trainer(ctx, step, args, _Examples(examples), teacher)
    tokens = int(sum(len(e["input_ids"]) for e in examples) * step.epochs)
    metrics = train(trainer, ctx, tokens)
    parts = [e for e in trainer.state.log_history if "kd" in e]
    metrics.update(
        info,
        loss_kind=step.loss,
        examples=len(examples),
        dropped_too_long=too_long,
        kd_first=parts[0]["kd"] if parts else None,
        kd_last=parts[-1]["kd"] if parts else None,
        ce_last=parts[-1]["ce"] if parts else None,
    )
    return metrics


def distill(
    task: Any,
    model: Any,
    tokenizer: Any,
    labels: list[dict[str, Any]],
    step_dir: Path,
    step: Any,
    *,
    seed: int,
) -> tuple[Any, dict[str, Any], list[str]]:
    """One KD step outside a curriculum: ``model`` learns ``step.teacher`` on ``labels``, in
    ``step_dir`` (its checkpoints and teacher cache); returns (model, metrics, notes).

    The public entry point for the compress stage's recovery after pruning (the only use of
    this package outside it): the same losses, teacher cache and resume as a ``kd`` step."""
    ctx = StepContext(
        task=task,
        model=model,
        tokenizer=tokenizer,
        labels=labels,
        step_dir=step_dir,
        label_dir=step_dir,
        device=str(model.device.type),
        dtype=model.dtype,
        seed=seed,
    )
    metrics = run(ctx, step)
    return ctx.model, metrics, ctx.notes
