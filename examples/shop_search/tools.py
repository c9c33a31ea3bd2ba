"""Helper tools of the shop_search task: the look-ups the teacher may run before its final call.

Each helper is a plain function called with keyword arguments that match its schema in
helper_tools.json; it returns JSON-serialisable data read from the catalogue's SQLite file.
The database lives at data/catalogue.sqlite next to this file (git-ignored); it is built from
catalogue.py on first use, and rebuilt when catalogue.py changes. Set SHOP_SEARCH_DB to use
another file. Bad arguments raise ValueError with a message written for the LLM, which the
pipeline feeds back to it as the tool result.

    python examples/shop_search/tools.py find_category '{"text": "jogging shoes"}'
    python examples/shop_search/tools.py parse_price '{"text": "under 50 quid"}'
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

from supertiny.core.task import import_file

HERE = Path(__file__).resolve().parent
DEFAULT_DB = HERE / "data" / "catalogue.sqlite"
ATTRIBUTES = ("size", "color", "material", "feature")
MIN_SCORE = 0.8
STOPWORDS = {"the", "a", "an", "my", "some", "for", "of", "by", "from", "in", "and", "please"}


def _sibling(name: str):
    """Import a file next to this one by path (this folder is not a package)."""
    return import_file(HERE / f"{name}.py", f"shop_search_{name}")


def db_path() -> Path:
    return Path(os.environ.get("SHOP_SEARCH_DB") or DEFAULT_DB)


@functools.cache
def _ensure_db(path: Path) -> None:
    """Build the database if it is missing or older than catalogue.py (once per process)."""
    catalogue = _sibling("catalogue")
    if path.exists():
        try:
            with closing(sqlite3.connect(path)) as conn:
                row = conn.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
            if row and row[0] == catalogue.fingerprint():
                return
        except sqlite3.DatabaseError:
            pass
    catalogue.build_db(path)


def ensure_db() -> Path:
    """The database's path, built first if needed (generate.py calls this)."""
    path = db_path().resolve()
    _ensure_db(path)
    return path


def _connect() -> sqlite3.Connection:
    conn = sqlite3.connect(f"{ensure_db().as_uri()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


# ----- text matching -------------------------------------------------------------------------
def _words(text: str) -> list[str]:
    text = text.lower().replace("'", "").replace("’", "").replace("-", " ").replace(".", "")
    words = re.findall(r"[a-z0-9&]+", text)
    return [
        w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
        for w in words
        if w not in STOPWORDS
    ]


def _similarity(text: str, surface: str) -> float:
    """How well ``surface`` appears somewhere in ``text``: the best fuzzy match over word windows
    of about the surface's length (spaces ignored, so "smart watches" meets "smartwatches")."""
    t, s = _words(text), _words(surface)
    if not t or not s:
        return 0.0
    target, best = "".join(s), 0.0
    for size in {len(s) - 1, len(s), len(s) + 1} - {0}:
        for i in range(max(1, len(t) - size + 1)):
            window = "".join(t[i : i + size])
            if window == target:
                return 1.0
            if min(len(window), len(target)) <= 3:
                continue  # short words ("hp", "jbl") only match exactly
            best = max(best, difflib.SequenceMatcher(None, window, target).ratio())
    return round(best, 3)


def _aliases(conn: sqlite3.Connection, kind: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in conn.execute(
        "SELECT target_id, alias FROM aliases WHERE kind = ? ORDER BY rowid", (kind,)
    ):
        out.setdefault(row["target_id"], []).append(row["alias"])
    return out


def _best(
    text: str, candidates: list[tuple[str, list[str]]], limit: int
) -> list[tuple[str, float]]:
    """Candidate ids whose best surface matches ``text``, best first (catalogue order on ties)."""
    scored = []
    for position, (item_id, surfaces) in enumerate(candidates):
        score = max(_similarity(text, s) for s in surfaces)
        if score >= MIN_SCORE:
            scored.append((-score, position, item_id))
    return [(item_id, -neg) for neg, _, item_id in sorted(scored)[:limit]]


def _text_arg(value: Any, name: str, example: str) -> str:
    if not isinstance(value, str) or not _words(value):
        raise ValueError(f"{name} must be a non-empty string such as '{example}'")
    return value


def _category_ids(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT category_id FROM categories ORDER BY position")]


def _check_category(conn: sqlite3.Connection, category: Any) -> str:
    ids = _category_ids(conn)
    if category in ids:
        return category
    close = difflib.get_close_matches(str(category), ids, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown category '{category}'.{hint} Use a category id from find_category.")


# ----- the helper tools ----------------------------------------------------------------------
def find_category(text: str) -> list[dict[str, Any]]:
    """Leaf categories whose name or another name for them appears (fuzzily) in ``text``, best
    first, at most 3; an empty list means the store sells nothing of the kind."""
    _text_arg(text, "text", "running shoes")
    with closing(_connect()) as conn:
        rows = conn.execute(
            "SELECT category_id, name, department FROM categories ORDER BY position"
        ).fetchall()
        aliases = _aliases(conn, "category")
    candidates = [
        (
            r["category_id"],
            [r["name"], r["category_id"].replace("_", " "), *aliases.get(r["category_id"], [])],
        )
        for r in rows
    ]
    info = {r["category_id"]: r for r in rows}
    return [
        {
            "category": cid,
            "name": info[cid]["name"],
            "department": info[cid]["department"],
            "score": score,
        }
        for cid, score in _best(text, candidates, 3)
    ]


def find_brand(name: str) -> list[dict[str, Any]]:
    """Brands whose name or another name for them matches ``name`` (fuzzy), best first, at most
    3, each with the categories it sells; an empty list means the store has no such brand."""
    _text_arg(name, "name", "new balance")
    with closing(_connect()) as conn:
        rows = conn.execute("SELECT brand_id, name FROM brands ORDER BY position").fetchall()
        aliases = _aliases(conn, "brand")
        sells: dict[str, list[str]] = {}
        for r in conn.execute(
            "SELECT brand_id, category_id FROM brand_categories ORDER BY brand_id, position"
        ):
            sells.setdefault(r["brand_id"], []).append(r["category_id"])
    candidates = [
        (
            r["brand_id"],
            [r["name"], r["brand_id"].replace("_", " "), *aliases.get(r["brand_id"], [])],
        )
        for r in rows
    ]
    names = {r["brand_id"]: r["name"] for r in rows}
    return [
        {"brand": bid, "name": names[bid], "categories": sells[bid], "score": score}
        for bid, score in _best(name, candidates, 3)
    ]


def parse_price(text: str) -> dict[str, Any]:
    """The price constraint in ``text`` as price_min / price_max and currency (rules in prices.py:
    around X = X ±10%, no currency named = EUR)."""
    with closing(_connect()) as conn:
        rows = [
            (r["code"], r["symbol"], json.loads(r["words"]))
            for r in conn.execute("SELECT code, symbol, words FROM currencies ORDER BY rowid")
        ]
    prices = _sibling("prices")
    return prices.parse(text, prices.currency_words(rows))


def list_attribute_values(category: str, attribute: str) -> list[dict[str, Any]]:
    """The values of ``attribute`` (size, color, material or feature) that the category's
    products come in, each with the other words people use for it."""
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown attribute '{attribute}'; use one of: {', '.join(ATTRIBUTES)}")
    with closing(_connect()) as conn:
        category = _check_category(conn, category)
        family = attribute
        if attribute == "size":
            family = conn.execute(
                "SELECT size_family FROM categories WHERE category_id = ?", (category,)
            ).fetchone()[0]
            if family is None:
                return []
        present = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT a.value FROM product_attributes a JOIN products p USING (product_id) "
                "WHERE p.category_id = ? AND a.attribute = ?",
                (category, attribute),
            )
        }
        rows = conn.execute(
            "SELECT value, synonyms FROM attribute_values WHERE attribute = ? AND family = ? "
            "ORDER BY position",
            (attribute, family),
        ).fetchall()
    out = []
    for r in rows:
        if r["value"] in present:
            also = json.loads(r["synonyms"])
            out.append({"value": r["value"], **({"also": also} if also else {})})
    return out


HELPERS = ("find_category", "find_brand", "parse_price", "list_attribute_values")


def main(argv: list[str]) -> None:
    if len(argv) not in (1, 2) or argv[0] not in HELPERS:
        raise SystemExit(f"usage: tools.py {{{','.join(HELPERS)}}} ['{{json arguments}}']")
    arguments = json.loads(argv[1] if len(argv) > 1 else "{}")
    print(json.dumps(globals()[argv[0]](**arguments), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1:])
