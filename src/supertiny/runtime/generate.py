"""Sample answers from a transformers model: batched, left-padded, cut at the end of the turn.

    >>> texts = sample(model, tok, prompts, samples=4, temperature=0.8, max_new_tokens=96)
    >>> answers = greedy(model, tok, prompts, max_new_tokens=128, batch_size=8)

Answers keep special tokens such as ``<tool_call>`` so the tool-call parser sees what the
model wrote. Used by scoring (``scoring.py``), the PyTorch runner (``runners.py``) and the
train stage's on-policy steps (rejection sampling, DPO pair mining, through
``train/sampling.py``).
"""

from __future__ import annotations


def _cut(text: str, stops: list[str]) -> str:
    for stop in stops:
        if stop and stop in text:
            text = text[: text.index(stop)]
    return text.strip()


def sample(
    model,
    tokenizer,
    prompts: list[str],
    *,
    samples: int = 1,
    temperature: float = 0.0,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    seed: int = 0,
) -> list[list[str]]:
    """``samples`` answers per prompt (greedy when ``temperature`` is 0)."""
    import torch

    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    stops = [t for t in (tokenizer.eos_token, tokenizer.pad_token) if t]
    out: list[list[str]] = []
    greedy = temperature <= 0
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            torch.manual_seed(seed + start)
            with torch.no_grad():
                ids = model.generate(
                    **enc,
                    do_sample=not greedy,
                    temperature=None if greedy else temperature,
                    top_p=None,
                    top_k=None,
                    num_return_sequences=1 if greedy else samples,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            new = ids[:, enc["input_ids"].shape[1] :]
            texts = [_cut(t, stops) for t in tokenizer.batch_decode(new, skip_special_tokens=False)]
            per = 1 if greedy else samples
            for i in range(len(chunk)):
                group = texts[i * per : (i + 1) * per]
                out.append(group * samples if greedy else group)
    finally:
        tokenizer.padding_side = side
    return out


def greedy(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """One greedy answer per prompt."""
    texts = sample(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return [group[0] for group in texts]
