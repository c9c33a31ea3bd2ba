"""Read a price constraint from shopping text: "under 50 quid", "between $20 and 30", "around 100 euros".

Deterministic rules (the teacher prompt in task.yaml states the same):

- a range ("between X and Y", "X to Y", "X-Y") gives price_min = the lower and price_max = the
  higher amount;
- "around / about / roughly / approximately X", "X or so" give X - 10% .. X + 10%;
- "under / below / less than / up to / max / at most / no more than X", "X or less", "X tops"
  give price_max = X; a bare amount or a budget ("for 300", "budget 300") is a maximum too;
- "over / above / more than / at least / from / starting at X", "X or more", "X and up",
  "X+" give price_min = X;
- the currency is the one named by a symbol or word (EUR: €, euro(s), eur; USD: $, dollar(s),
  usd, bucks; GBP: £, pound(s), gbp, quid, sterling), else the store's default, EUR.

Amounts may be written with digits ("1,200", "49.99", "1.5k") or words ("fifty", "a hundred",
"two grand"). Numbers that are not prices ("size 42", "in a 42", "2 person", "5g") are skipped.
``parse`` returns ``{"price_min"?, "price_max"?, "currency"}`` (numbers as ints when whole) or
raises ValueError with a message for the LLM.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

AROUND = 0.10
DEFAULT_CURRENCY = "EUR"
SYMBOLS = {"€": "EUR", "$": "USD", "£": "GBP"}
WORDS = {
    "euro": "EUR",
    "euros": "EUR",
    "eur": "EUR",
    "dollar": "USD",
    "dollars": "USD",
    "usd": "USD",
    "bucks": "USD",
    "us$": "USD",
    "pound": "GBP",
    "pounds": "GBP",
    "gbp": "GBP",
    "quid": "GBP",
    "sterling": "GBP",
}
UNITS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen".split()
    )
}
TENS = {
    w: 10 * i
    for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)
}
SCALES = {"hundred": 100, "thousand": 1000, "grand": 1000}
# Cues, matched on the words just before an amount ("before") or just after it ("after");
# the longest matching cue wins, so "no more than" (max) beats "more than" (min).
CUES = {
    "before": {
        "around": "around",
        "about": "around",
        "roughly": "around",
        "approximately": "around",
        "approx": "around",
        "circa": "around",
        "close to": "around",
        "in the region of": "around",
        "give or take": "around",
        "~": "around",
        "under": "max",
        "below": "max",
        "beneath": "max",
        "less than": "max",
        "cheaper than": "max",
        "lower than": "max",
        "up to": "max",
        "max": "max",
        "maximum": "max",
        "at most": "max",
        "no more than": "max",
        "not more than": "max",
        "not over": "max",
        "no higher than": "max",
        "budget": "max",
        "budget of": "max",
        "within": "max",
        "<": "max",
        "over": "min",
        "above": "min",
        "more than": "min",
        "at least": "min",
        "from": "min",
        "min": "min",
        "minimum": "min",
        "starting at": "min",
        "starting from": "min",
        "upwards of": "min",
        ">": "min",
    },
    "after": {
        "or so": "around",
        "ish": "around",
        "or less": "max",
        "or under": "max",
        "or below": "max",
        "tops": "max",
        "max": "max",
        "maximum": "max",
        "at most": "max",
        "or more": "min",
        "or above": "min",
        "or over": "min",
        "and up": "min",
        "and above": "min",
        "and over": "min",
        "+": "min",
        "plus": "min",
        "minimum": "min",
        "min": "min",
    },
}
RANGE_JOINS = {"and", "to", "-", "–", "—", "until"}
FILLER = {"us", "s"}  # "600 us dollars", "50 dollar s": read past them like currency words
NOT_PRICE_AFTER = {
    "person",
    "people",
    "man",
    "seater",
    "in",
    "g",
    "gb",
    "tb",
    "inch",
    "inches",
    "mp",
    "mm",
    "cm",
    "star",
    "stars",
    "year",
    "years",
    "pack",
}
NOT_PRICE_BEFORE = {"size", "sizes", "eu", "uk", "us", "width", "waist", "in"}

_TOKEN = re.compile(
    r"(?P<num>\d[\d,]*(?:\.\d+)?)(?P<k>k(?![a-z]))?|(?P<cur>us\$|[€$£])|(?P<word>[a-z]+)|(?P<sign>[-–—~+<>])"
)


def _number_words(words: list[str]) -> list[str]:
    """Replace runs of number words by digits: "two hundred and fifty" -> "250", "a grand" ->
    "1000". "one" alone is no number ("hoka one one", "one plus"); only a scale follows it."""
    out, i = [], 0
    while i < len(words):
        w, nxt = words[i], words[i + 1] if i + 1 < len(words) else ""
        scaled = w in ("a", "one") and nxt in SCALES
        if not (scaled or w in TENS or (w in UNITS and w != "one")):
            out.append(w)
            i += 1
            continue
        total, current, last = 0, 0, ""
        while i < len(words):
            w, nxt = words[i], words[i + 1] if i + 1 < len(words) else ""
            if w in ("a", "one") and nxt in SCALES and last in ("", "scale"):
                current, last = 1, "unit"
            elif w in UNITS and last in ("", "tens", "scale", "and"):
                current, last = current + UNITS[w], "unit"
            elif w in TENS and last in ("", "scale", "and"):
                current, last = current + TENS[w], "tens"
            elif w == "hundred" and last in ("unit", "tens"):
                current, last = current * 100, "scale"
            elif w in ("thousand", "grand") and last in ("unit", "tens", "scale"):
                total, current, last = total + current * 1000, 0, "scale"
            elif w == "and" and last == "scale" and (nxt in UNITS or nxt in TENS):
                last = "and"
            else:
                break
            i += 1
        out.append(str(total + current))
    return out


def _tokens(text: str) -> list[tuple[str, str]]:
    text = text.lower().replace("’", "'")
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", text)  # twenty-five, hi-fi
    raw = [(m.lastgroup, m.group(0)) for m in _TOKEN.finditer(text)]
    out: list[tuple[str, str]] = []
    words: list[str] = []

    def flush():
        out.extend(("num" if w.isdigit() else "word", w) for w in _number_words(words))
        words.clear()

    for kind, value in raw:
        if kind == "word":
            words.append(value)
            continue
        flush()
        if kind in ("num", "k"):
            out.append(("num", value))
        else:
            out.append((kind, value))
    flush()
    return out


def _amount(token: str) -> float:
    k = token.endswith("k")
    value = float(token.rstrip("k").replace(",", ""))
    return value * 1000 if k else value


def _number(value: float) -> int | float:
    value = round(value, 2)
    return int(value) if float(value).is_integer() else value


def _currency(tokens: list[tuple[str, str]], i: int, words: Mapping[str, str]) -> str | None:
    """The currency written right before or after the amount at ``i``, if any."""
    for j in (i - 1, i + 1):
        if 0 <= j < len(tokens):
            kind, value = tokens[j]
            if kind == "cur":
                return SYMBOLS.get(value[-1])
            if kind == "word" and value in words:
                return words[value]
    return None


def _cue(tokens: list[tuple[str, str]], i: int, side: str, words: Mapping[str, str]) -> str | None:
    """The longest cue of ``side`` next to the amount at ``i`` (currency tokens skipped)."""
    step = -1 if side == "before" else 1
    near, j = [], i + step
    while 0 <= j < len(tokens) and len(near) < 4:
        kind, value = tokens[j]
        if kind == "num":
            break
        if not (kind == "cur" or value in words or value in FILLER):
            near.append(value)
        j += step
    if side == "before":
        near.reverse()
    phrase = " ".join(near)
    for cue in sorted(CUES[side], key=len, reverse=True):
        hit = phrase.endswith(cue) if side == "before" else phrase.startswith(cue)
        if hit and (cue in "~<>+" or re.search(rf"(^|\s){re.escape(cue)}(\s|$)", phrase)):
            return CUES[side][cue]
    return None


def parse(
    text: str, currency_words: Mapping[str, str] | None = None
) -> dict[str, int | float | str]:
    """The price constraint in ``text`` (see the module docstring for the rules)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string such as 'under 50 euros'")
    words = dict(currency_words or WORDS)
    tokens = _tokens(text)
    amounts = []
    for i, (kind, value) in enumerate(tokens):
        if kind != "num":
            continue
        after = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        before = tokens[i - 1][1] if i > 0 else ""
        if (
            after in NOT_PRICE_AFTER
            or before in NOT_PRICE_BEFORE
            or (before == "a" and i > 1 and tokens[i - 2][1] == "in")  # "in a 42"
            or (value.endswith("k") and after in ("video", "camera", "cameras", "tv", "screen"))
        ):
            continue
        amounts.append(i)
    if not amounts:
        raise ValueError(
            f"no price found in '{text}'; pass the words about the price, e.g. 'under 50 euros'"
        )
    currencies = {c for i in amounts if (c := _currency(tokens, i, words))}
    if not currencies:
        currencies = {
            SYMBOLS[v[-1]] if k == "cur" else words[v]
            for k, v in tokens
            if k == "cur" or (k == "word" and v in words)
        }
    if len(currencies) > 1:
        raise ValueError(f"'{text}' names several currencies: {', '.join(sorted(currencies))}")
    out: dict[str, int | float | str] = {}
    values = [_amount(tokens[i][1]) for i in amounts]
    if len(amounts) >= 2:
        between = {
            v
            for k, v in tokens[amounts[0] + 1 : amounts[1]]
            if k != "cur" and v not in words and v not in FILLER
        }
        if len(amounts) > 2 or not between or not between <= RANGE_JOINS:
            raise ValueError(
                f"'{text}' has several amounts ({', '.join(tokens[i][1] for i in amounts)}); "
                "pass one price phrase such as 'between 20 and 30 dollars'"
            )
        out = {"price_min": _number(min(values[:2])), "price_max": _number(max(values[:2]))}
    else:
        i, amount = amounts[0], values[0]
        kind = _cue(tokens, i, "after", words) or _cue(tokens, i, "before", words) or "max"
        if kind == "around":
            out = {
                "price_min": _number(amount * (1 - AROUND)),
                "price_max": _number(amount * (1 + AROUND)),
            }
        else:
            out = {f"price_{kind}": _number(amount)}
    out["currency"] = currencies.pop() if currencies else DEFAULT_CURRENCY
    return out


def currency_words(rows: Iterable[tuple[str, str, Iterable[str]]]) -> dict[str, str]:
    """``{word: code}`` from (code, symbol, words) rows, as the catalogue stores them."""
    return {word: code for code, _, ws in rows for word in ws}
