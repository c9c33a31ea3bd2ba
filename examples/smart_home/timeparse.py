"""Read spoken durations and clock times, deterministically (no wall clock).

Backs the ``resolve_time`` helper tool and is the same reading generate.py's gold uses:
durations come back as ``{"duration_seconds": N}`` ("in 20 minutes", "an hour and a half",
"twelve minutes"), clock times as ``{"time": "HH:MM"}`` in 24-hour form ("half past seven",
"quarter to 7", "6:30 pm", "noon"). A time without am/pm is read as written, so "7:30" is
07:30 and "19:30" is 19:30. Hand-written: no maintained library reads these phrases offline
without also depending on the current date.

    python examples/smart_home/timeparse.py "quarter to seven"
"""

from __future__ import annotations

import json
import re
import sys

_SMALL = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
NUMBER_WORDS = {w: i for i, w in enumerate(_SMALL)} | {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "ninety": 90,
}
_UNIT = r"(hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s)"
_PART = rf"(\d+(?:\.\d+)?)\s*{_UNIT}"
_SECONDS = {"h": 3600, "m": 60, "s": 1}
HELP = "use e.g. 'in 20 minutes', '1 hour 30 minutes', '90 seconds', '7:30', '6:45 pm', 'half past seven'"


def _numbers(text: str) -> str:
    """Number words to digits: 'twenty five' -> '25'."""
    out: list[str] = []
    for token in text.split():
        value = NUMBER_WORDS.get(token)
        if value is None:
            out.append(token)
        elif out and out[-1].isdigit() and int(out[-1]) in (20, 30, 40, 50) and value < 10:
            out[-1] = str(int(out[-1]) + value)
        else:
            out.append(str(value))
    return " ".join(out)


def _normalise(expression: str) -> str:
    text = expression.lower().strip().rstrip(".!?")
    text = text.replace("a.m.", "am").replace("p.m.", "pm").replace("’", "'")
    text = re.sub(r"[-,]", " ", text)
    text = re.sub(r"\b(from now|tomorrow|today|please)\b", " ", text)
    text = re.sub(r"\bin the morning\b", "am", text)
    text = re.sub(r"\b(in the afternoon|in the evening|at night|tonight)\b", "pm", text)
    text = re.sub(r"^\s*(in|for|after|at|about|around)\s+", "", text.strip())
    text = _numbers(" ".join(text.split()))
    text = re.sub(r"\b(a |an |one )?quarter of an hour\b", "15 minutes", text)
    text = re.sub(r"\bhalf an hour\b", "30 minutes", text)
    text = re.sub(r"\b(an?|one)\s+(hour|minute|second)\b", r"1 \2", text)
    text = re.sub(
        r"\b(\d+) (hours?|minutes?) and a half\b", lambda m: f"{int(m[1]) + 0.5} {m[2]}", text
    )
    return text


def _duration(text: str) -> int | None:
    if not re.fullmatch(rf"(?:{_PART}\s*(?:and\s+)?)+", text):
        return None
    seconds = sum(float(n) * _SECONDS[unit[0]] for n, unit in re.findall(_PART, text))
    return round(seconds)


def _clock(hour: int, minute: int, suffix: str | None) -> str | None:
    if suffix in ("am", "pm"):
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if suffix == "pm" else 0)
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return f"{hour:02d}:{minute:02d}"


def _time(text: str) -> str | None:
    if text in ("noon", "midday", "12 noon"):
        return "12:00"
    if text == "midnight":
        return "00:00"
    suffix = r"\s*(am|pm|o'?clock)?"
    m = re.fullmatch(rf"(half|quarter|\d+)(?: minutes?)? (past|after|to) (\d+){suffix}", text)
    if m:
        minutes = {"half": 30, "quarter": 15}.get(m[1]) or int(m[1])
        hour = int(m[3])
        if m[2] == "to":
            hour, minutes = (hour - 1) % 24 if m[4] is None else (hour - 2) % 12 + 1, 60 - minutes
        return _clock(hour, minutes, m[4] if m[4] in ("am", "pm") else None)
    m = re.fullmatch(rf"(\d{{1,2}})(?:[:.h](\d{{2}})|\s+(\d{{2}}))?{suffix}", text)
    if m:
        return _clock(int(m[1]), int(m[2] or m[3] or 0), m[4] if m[4] in ("am", "pm") else None)
    return None


def parse(expression: str) -> dict[str, int | str]:
    """``{"duration_seconds": N}`` or ``{"time": "HH:MM"}``; ValueError if it cannot be read."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError(f"expression must be a non-empty string; {HELP}")
    text = _normalise(expression)
    seconds = _duration(text)
    if seconds is not None:
        if not 1 <= seconds <= 86400:
            raise ValueError(f"duration '{expression}' is outside 1 second .. 24 hours")
        return {"duration_seconds": seconds}
    clock = _time(text)
    if clock is None:
        raise ValueError(f"cannot read the time expression '{expression}'; {HELP}")
    return {"time": clock}


if __name__ == "__main__":
    print(json.dumps(parse(" ".join(sys.argv[1:]))))
