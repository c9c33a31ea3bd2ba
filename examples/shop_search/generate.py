"""Generate the shop_search queries with gold calls: a train pool and a held-out test set.

Queries cover a category alone (simple), a brand, a price range, attributes (colour, material,
size, a feature keyword), a sort order, several of these together (combined), prices in a named
currency (symbols and words: "€", "bucks", "quid"), typo-ridden text, and messages that are no
product search at all (chit-chat, order status, customer service, things the store does not
sell). Every search is built from a real catalogue product (catalogue.py, the data the helper
tools serve) and its price rules are those of prices.py. The test split uses only test-pool
phrasings and surface forms (phrases.py, and the test aliases in catalogue.py). Deterministic
for a seed; also builds data/catalogue.sqlite when it is missing.

    python examples/shop_search/generate.py --seed 0 --train 400 --test 120 --out examples/shop_search/data
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
    return import_file(HERE / f"{name}.py", f"shop_search_{name}")


catalogue = _sibling("catalogue")
phrases = _sibling("phrases")
builders = _sibling("builders")

# Share of each category; counts per split follow by largest remainder.
CATEGORY_WEIGHTS = {
    "simple": 10,
    "brand": 12,
    "price_range": 12,
    "attributes": 14,
    "sort": 10,
    "combined": 14,
    "currency": 12,
    "typo": 7,
    "not_search": 9,
}
CURRENCY_WORDS = {w for c in catalogue.CURRENCIES for w in c.words}


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
    """The key two queries must not share: lowercase, single spaces, no end punctuation."""
    return " ".join(text.lower().split()).strip(" .!?,")


def _decorate(d: builders.Draft, text: str, category: str) -> str:
    rng = d.rng
    question = text.startswith(builders.QUESTION_START)
    if rng.random() < 0.15:
        text = d.choice(d.pool(phrases.PREFIX)) + text
    if category != "not_search" and rng.random() < 0.12:
        text += d.choice(d.pool(phrases.SUFFIX))
    if rng.random() < 0.4:
        text = text[0].upper() + text[1:]
    if text[-1] not in ".!?":
        if question:
            text += "?" if rng.random() < 0.8 else ""
        elif category == "not_search":
            text += rng.choices([".", "!", ""], weights=[30, 10, 60])[0]
        else:
            text += rng.choices([".", ""], weights=[10, 90])[0]
    return text


def _typos(text: str, rng: random.Random) -> str:
    """Lowercase, no punctuation, one or two slips of the finger in longer words."""
    text = re.sub(r"[.,!?;:]", "", text.lower())
    if rng.random() < 0.5:
        text = text.replace("'", "")
    words = text.split()
    spots = [
        i for i, w in enumerate(words) if w.isalpha() and len(w) >= 4 and w not in CURRENCY_WORDS
    ]
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


def _draft(category: str, split: str, rng: random.Random) -> tuple[builders.Draft, str, list]:
    d = builders.Draft(split, rng)
    if category == "typo":
        text, calls = builders.CATEGORIES[d.choice(builders.TYPO_BASES)](d)
        return d, _typos(text, rng), calls
    text, calls = builders.CATEGORIES[category](d)
    return d, _decorate(d, text, category), calls


def _split(split: str, n: int, seed: int, taken: set[str]) -> list[dict[str, Any]]:
    rng = random.Random(f"shop_search:{seed}:{split}")
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
                f"cannot make a new {category} query for {split}; enlarge phrases.py"
            )
        taken.add(key)
        meta: dict[str, Any] = {
            "category": category,
            "template": "+".join(d.templates),
            "surfaces": d.surfaces,
        }
        if d.product is not None:
            meta["product"] = d.product
        if d.price_expression is not None:
            meta["price_expression"] = d.price_expression
        records.append(
            {
                "messages": [{"role": "user", "content": text}],
                "gold": {"tool_calls": calls, "content": None},
                "meta": meta,
            }
        )
    rng.shuffle(records)
    return [{"id": f"ss-{split}-{i:05d}", **r} for i, r in enumerate(records)]


def generate(seed: int = 0, n_train: int = 400, n_test: int = 120) -> tuple[list[dict], list[dict]]:
    """(train records, test records); no query text appears twice across both."""
    taken: set[str] = set()
    train = _split("train", n_train, seed, taken)
    test = _split("test", n_test, seed, taken)
    return train, test


def _test_only(pool: dict[str, list[str]], surface=lambda v: v) -> set[str]:
    return {surface(v) for v in pool["test"]} - {surface(v) for v in pool["train"]}


def test_only_surfaces() -> set[str]:
    """Aliases, synonyms and pool values that only the test split may use."""
    out: set[str] = set()
    for item in (*catalogue.CATEGORIES, *catalogue.BRANDS):
        out.update(item.test_aliases)
    for values in (*catalogue.VOCAB.values(), *catalogue.SIZES.values()):
        for v in values:
            out.update(v.test)
    out |= _test_only(phrases.THINGS)
    out |= _test_only(
        phrases.CURRENCY, lambda v: v.split("|")[0].replace("{n}", "").strip().lower()
    )
    out |= set(phrases.NUMBER_WORDS.values())
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
    _sibling("tools").ensure_db()
    train, test = generate(args.seed, args.train, args.test)
    write_jsonl(args.out / "train.jsonl", train)
    write_jsonl(args.out / "test.jsonl", test)
    print(f"wrote {len(train)} train and {len(test)} test records to {args.out}")


if __name__ == "__main__":
    main()
