"""Generate the smart_home requests with gold calls: a train pool and a held-out test set.

Requests cover direct commands, room-wide groups, relative changes ("a bit brighter"),
indirect wishes ("it's freezing in the office"), media, several requests in one, status
questions, timers, alarms, scenes, typo-ridden text, and chit-chat or unsupported asks
(no_action). Gold comes from home.py's registry (the same data the helper tools serve) and
timeparse.py. The test split uses only test-pool phrasings and surface forms (phrases.py).
Deterministic for a seed.

    python examples/smart_home/generate.py --seed 0 --train 400 --test 120 --out examples/smart_home/data
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path
from typing import Any

from supertiny.core.task import import_file

HERE = Path(__file__).resolve().parent


def _sibling(name: str):
    """Import a file next to this one by path (this folder is not a package)."""
    return import_file(HERE / f"{name}.py", f"smart_home_{name}")


home = _sibling("home")
phrases = _sibling("phrases")
timeparse = _sibling("timeparse")
builders = _sibling("builders")
categories = _sibling("categories")

# Relative steps: the teacher prompt states the same numbers.
STEPS = builders.STEPS

# Share of each category; counts per split follow by largest remainder.
CATEGORY_WEIGHTS = {
    "direct": 16,
    "group": 7,
    "relative": 12,
    "indirect": 9,
    "media": 9,
    "multi_call": 9,
    "status": 7,
    "timer": 6,
    "alarm": 5,
    "scene": 6,
    "typo": 7,
    "no_action": 7,
}
QUESTION_WORDS = {"is", "are", "did", "what's", "what", "how", "who", "do", "does", "tell"}
IMPERATIVE_CATEGORIES = {"direct", "group", "relative", "media", "multi_call", "timer", "alarm"}


def category_counts(n: int) -> dict[str, int]:
    total = sum(CATEGORY_WEIGHTS.values())
    exact = {c: n * w / total for c, w in CATEGORY_WEIGHTS.items()}
    counts = {c: int(v) for c, v in exact.items()}
    by_remainder = sorted(
        exact, key=lambda c: (-(exact[c] - counts[c]), list(CATEGORY_WEIGHTS).index(c))
    )
    for c in by_remainder[: n - sum(counts.values())]:
        counts[c] += 1
    return counts


def normalise_text(text: str) -> str:
    """The key two requests must not share: lowercase, single spaces, no end punctuation."""
    return " ".join(text.lower().split()).strip(" .!?,")


def _decorate(d: builders.Draft, text: str, category: str) -> str:
    rng = d.rng
    question = text.split()[0] in QUESTION_WORDS
    if rng.random() < 0.2:
        text = d.choice(d.pool("prefix")) + text
    if category in IMPERATIVE_CATEGORIES and rng.random() < 0.2:
        text += d.choice(d.pool("suffix"))
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    if text[-1] not in ".!?":
        if question:
            text += "?" if rng.random() < 0.8 else ""
        else:
            text += rng.choices([".", "!", ""], weights=[25, 8, 67])[0]
    return text


def _typos(text: str, rng: random.Random) -> str:
    """Lowercase, no punctuation, one or two slips of the finger in longer words."""
    text = re.sub(r"[.,!?;:]", "", text.lower())
    if rng.random() < 0.5:
        text = text.replace("'", "")
    words = text.split()
    spots = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= 4]
    for i in rng.sample(spots, k=min(len(spots), rng.choice((1, 1, 2)))):
        w, j = words[i], rng.randrange(1, len(words[i]) - 1)
        kind = rng.choice(("swap", "drop", "double"))
        if kind == "swap":
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
        elif kind == "drop":
            words[i] = w[:j] + w[j + 1 :]
        else:
            words[i] = w[:j] + w[j] + w[j:]
    return " ".join(words)


def _draft(category: str, split: str, rng: random.Random) -> tuple[builders.Draft, str, list[dict]]:
    d = builders.Draft(split, rng)
    if category == "typo":
        base = d.choice(("direct", "direct", "group", "relative", "media"))
        text, calls = categories.CATEGORIES[base](d)
        return d, _typos(text, rng), calls
    text, calls = categories.CATEGORIES[category](d)
    return d, _decorate(d, text, category), calls


def _split(split: str, n: int, seed: int, taken: set[str]) -> list[dict[str, Any]]:
    rng = random.Random(f"smart_home:{seed}:{split}")
    plan = [c for c, k in category_counts(n).items() for _ in range(k)]
    records = []
    for category in plan:
        for _ in range(200):
            d, text, calls = _draft(category, split, rng)
            key = normalise_text(text)
            if key not in taken:
                break
        else:
            raise RuntimeError(
                f"cannot make a new {category} request for {split}; enlarge phrases.py"
            )
        taken.add(key)
        meta: dict[str, Any] = {
            "category": category,
            "template": "+".join(d.templates),
            "surfaces": d.surfaces,
        }
        if d.relative:
            meta["relative"] = d.relative
        if d.time_expression is not None:
            meta["time_expression"] = d.time_expression
        records.append(
            {
                "messages": [{"role": "user", "content": text}],
                "gold": {"tool_calls": calls, "content": None},
                "meta": meta,
            }
        )
    rng.shuffle(records)
    return [{"id": f"sh-{split}-{i:05d}", **r} for i, r in enumerate(records)]


def generate(seed: int = 0, n_train: int = 400, n_test: int = 120) -> tuple[list[dict], list[dict]]:
    """(train records, test records); no request text appears twice across both."""
    taken: set[str] = set()
    train = _split("train", n_train, seed, taken)
    test = _split("test", n_test, seed, taken)
    return train, test


def test_only_surfaces() -> set[str]:
    """Aliases and values that only the test split may use."""
    out = set()
    for item in (*home.ROOMS, *home.DEVICES, *home.SCENES):
        out.update(item.test_aliases)
    for key in ("color", "source", "timer_label", "alarm_label"):

        def surface(v):
            return str(v).split("|")[0]

        out.update(
            {surface(v) for v in phrases.POOLS[key]["test"]}
            - {surface(v) for v in phrases.POOLS[key]["train"]}
        )
    return out


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=400, help="train pool size")
    parser.add_argument("--test", type=int, default=120, help="held-out test set size")
    parser.add_argument("--out", type=Path, default=HERE / "data")
    args = parser.parse_args(argv)
    train, test = generate(args.seed, args.train, args.test)
    write_jsonl(args.out / "train.jsonl", train)
    write_jsonl(args.out / "test.jsonl", test)
    print(f"wrote {len(train)} train and {len(test)} test records to {args.out}")


if __name__ == "__main__":
    main()
