"""Helper tools of the smart_home task: the look-ups the teacher may run before its final call.

Each helper is a plain function called with keyword arguments that match its schema in
helper_tools.json; it returns JSON-serialisable data read from the home's SQLite registry.
The database lives at data/home.sqlite next to this file (git-ignored); it is built from
home.py on first use, and rebuilt when home.py changes. Set SMART_HOME_DB to use another
file. Bad arguments raise ValueError with a message written for the LLM, which the pipeline
feeds back to it as the tool result.

    python examples/smart_home/tools.py find_devices '{"room": "kitchen", "device_type": "light"}'
    python examples/smart_home/tools.py resolve_time '{"expression": "quarter to seven"}'
    python examples/smart_home/tools.py set_volume '{"device_id": "light.kitchen_ceiling", "level": 5}'

The final tools' dry-runs (functions named like the final tools in tools.json) check a call
against the home without carrying it out, raising ValueError for one it cannot carry out;
``tool_schemas`` makes every ``device_id`` an enum of the devices able to do the call. The
task turns both on (task.yaml: ``helpers.dry_run``, ``helpers.schemas``); README.md says how.
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
DEFAULT_DB = HERE / "data" / "home.sqlite"
DEVICE_TYPES = ("light", "climate", "media", "cover", "fan", "switch", "lock", "vacuum")
TYPE_SYNONYMS = {
    "lamp": "light",
    "thermostat": "climate",
    "heating": "climate",
    "heater": "climate",
    "radiator": "climate",
    "tv": "media",
    "television": "media",
    "speaker": "media",
    "projector": "media",
    "blind": "cover",
    "curtain": "cover",
    "shade": "cover",
    "door": "cover",
    "plug": "switch",
    "outlet": "switch",
}
STOPWORDS = {
    "the",
    "a",
    "an",
    "my",
    "our",
    "in",
    "on",
    "of",
    "by",
    "to",
    "at",
    "next",
    "over",
    "above",
    "please",
}


def _sibling(name: str):
    """Import a file next to this one by path (this folder is not a package)."""
    return import_file(HERE / f"{name}.py", f"smart_home_{name}")


def db_path() -> Path:
    return Path(os.environ.get("SMART_HOME_DB") or DEFAULT_DB)


@functools.cache
def _ensure_db(path: Path) -> None:
    """Build the database if it is missing or older than home.py's registry (once per process)."""
    home = _sibling("home")
    if path.exists():
        try:
            with closing(sqlite3.connect(path)) as conn:
                row = conn.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
            if row and row[0] == home.fingerprint():
                return
        except sqlite3.DatabaseError:
            pass
    home.build_db(path)


def _connect() -> sqlite3.Connection:
    path = db_path().resolve()
    _ensure_db(path)
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


# ----- text matching -------------------------------------------------------------------------
def _words(text: str) -> list[str]:
    text = text.lower().replace("'s ", " ").replace("'", "").replace("-", " ")
    words = re.findall(r"[a-z0-9]+", text)
    return [
        w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
        for w in words
        if w not in STOPWORDS
    ]


def _similarity(query: str, surface: str) -> float:
    q, s = _words(query), _words(surface)
    if not q or not s:
        return 0.0
    if q == s:
        return 1.0
    overlap = len(set(q) & set(s)) / len(set(q) | set(s))
    ratio = difflib.SequenceMatcher(None, " ".join(q), " ".join(s)).ratio()
    return round(max(overlap, 0.9 * ratio), 3)


def _rooms(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT room_id, name FROM rooms ORDER BY position").fetchall()
    aliases = conn.execute(
        "SELECT target_id, alias FROM aliases WHERE kind = 'room' ORDER BY rowid"
    ).fetchall()
    return [
        {
            "room_id": r["room_id"],
            "name": r["name"],
            "aliases": [a["alias"] for a in aliases if a["target_id"] == r["room_id"]],
        }
        for r in rows
    ]


def _resolve_room(conn: sqlite3.Connection, room: str) -> str:
    if not isinstance(room, str) or not room.strip():
        raise ValueError("room must be a non-empty string such as 'kitchen' or 'living room'")
    best, best_score = None, 0.0
    for r in _rooms(conn):
        for surface in [r["room_id"].replace("_", " "), r["name"], *r["aliases"]]:
            score = _similarity(room, surface)
            if score > best_score:
                best, best_score = r["room_id"], score
    if best is None or best_score < 0.75:
        known = ", ".join(r["room_id"] for r in _rooms(conn))
        raise ValueError(f"unknown room '{room}'; rooms are: {known}")
    return best


def _device_type(device_type: str) -> str:
    word = _words(device_type or "x")
    kind = word[0] if len(word) == 1 else ""
    kind = TYPE_SYNONYMS.get(kind, kind)
    if kind not in DEVICE_TYPES:
        raise ValueError(
            f"unknown device_type '{device_type}'; use one of: {', '.join(DEVICE_TYPES)}"
        )
    return kind


def _devices(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT d.*, r.name AS room_name FROM devices d JOIN rooms r USING (room_id) "
        "ORDER BY d.position"
    ).fetchall()
    aliases = conn.execute(
        "SELECT target_id, alias FROM aliases WHERE kind = 'device' ORDER BY rowid"
    ).fetchall()
    out = []
    for row in rows:
        names = [row["name"], *(a["alias"] for a in aliases if a["target_id"] == row["device_id"])]
        device = {
            "device_id": row["device_id"],
            "name": row["name"],
            "capabilities": json.loads(row["capabilities"]),
            "_room": row["room_id"],
            "_type": row["type"],
            "_surfaces": names + [f"{row['room_name']} {n}" for n in names],
        }
        if row["type"] == "light":
            device["main"] = bool(row["is_main"])
        out.append(device)
    return out


def _states(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for row in conn.execute("SELECT device_id, key, value FROM state ORDER BY rowid"):
        out.setdefault(row["device_id"], {})[row["key"]] = json.loads(row["value"])
    return out


def _public(device: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in device.items() if not k.startswith("_")}


# ----- the helper tools ----------------------------------------------------------------------
def list_rooms() -> list[dict[str, Any]]:
    """Every room: id, name, other names people use for it."""
    with closing(_connect()) as conn:
        return _rooms(conn)


def find_devices(
    room: str | None = None, device_type: str | None = None, name: str | None = None
) -> list[dict[str, Any]]:
    """Devices matching all given filters, with their current state; ``name`` is fuzzy over
    names and aliases, best first."""
    with closing(_connect()) as conn:
        devices = _devices(conn)
        states = _states(conn)
        if room is not None:
            room_id = _resolve_room(conn, room)
            devices = [d for d in devices if d["_room"] == room_id]
    if device_type is not None:
        kind = _device_type(device_type)
        devices = [d for d in devices if d["_type"] == kind]
    if name is not None:
        if not isinstance(name, str) or not _words(name):
            raise ValueError(
                "name must describe a device, e.g. 'floor lamp' or 'lamp by the couch'"
            )
        scored = [
            (max(_similarity(name, s) for s in d["_surfaces"]), i, d) for i, d in enumerate(devices)
        ]
        scored = sorted((t for t in scored if t[0] >= 0.5), key=lambda t: (-t[0], t[1]))
        devices = [d for _, _, d in scored[:5]]
    return [{**_public(d), "state": states.get(d["device_id"], {})} for d in devices]


def get_device_state(device_id: str) -> dict[str, Any]:
    """A device's current state (on/off, brightness, colour, temperatures, volume, position...)."""
    with closing(_connect()) as conn:
        row = conn.execute("SELECT * FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        if row is None:
            ids = [r[0] for r in conn.execute("SELECT device_id FROM devices ORDER BY position")]
            close = difflib.get_close_matches(str(device_id), ids, n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(
                f"unknown device_id '{device_id}'.{hint} Use find_devices to look up ids."
            )
        state = {
            r["key"]: json.loads(r["value"])
            for r in conn.execute(
                "SELECT key, value FROM state WHERE device_id = ? ORDER BY rowid", (device_id,)
            )
        }
    out = {
        "device_id": row["device_id"],
        "name": row["name"],
        "room": row["room_id"],
        "capabilities": json.loads(row["capabilities"]),
        "state": state,
    }
    sources = json.loads(row["sources"])
    if sources:
        out["sources"] = sources
    return out


def list_scenes() -> list[dict[str, Any]]:
    """Every scene: id, name, other names, what it does."""
    with closing(_connect()) as conn:
        rows = conn.execute(
            "SELECT scene_id, name, description FROM scenes ORDER BY position"
        ).fetchall()
        aliases = conn.execute(
            "SELECT target_id, alias FROM aliases WHERE kind = 'scene' ORDER BY rowid"
        ).fetchall()
    return [
        {
            "scene_id": r["scene_id"],
            "name": r["name"],
            "aliases": [a["alias"] for a in aliases if a["target_id"] == r["scene_id"]],
            "description": r["description"],
        }
        for r in rows
    ]


def resolve_time(expression: str) -> dict[str, Any]:
    """A duration ("in 20 minutes") as seconds, or a clock time ("half past seven") as 24-hour HH:MM."""
    return _sibling("timeparse").parse(expression)


# ----- dry-runs of the final tools (task.yaml: helpers.dry_run) -----------------------------
# A function named like a final tool checks a call against the home without carrying it out:
# it returns for a call the home can carry out and raises ValueError, with a message written
# for the teacher, for one it cannot. The label stage sends that message back to the teacher.
CAPABILITY: dict[str, str | None] = {
    "set_power": "power",
    "set_brightness": "brightness",
    "set_color": "color",
    "set_temperature": "temperature",
    "media_control": "playback",
    "set_volume": "volume",
    "set_media_source": "source",
    "set_cover_position": "position",
    "set_lock": "lock",
    "get_status": None,
}
"""The capability a device needs for each final tool that takes a ``device_id`` (None: any)."""
TEMPERATURE_RANGE = (10, 30)


def _check_device(tool: str, device_id: str) -> dict[str, Any]:
    """The device of a call, if it exists and has the capability ``tool`` needs."""
    with closing(_connect()) as conn:
        devices = _devices(conn)
    by_id = {d["device_id"]: d for d in devices}
    device = by_id.get(device_id)
    if device is None:
        close = difflib.get_close_matches(str(device_id), list(by_id), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown device_id '{device_id}'.{hint} Use find_devices to look up ids")
    need = CAPABILITY[tool]
    if need is not None and need not in device["capabilities"]:
        able = [
            d["device_id"]
            for d in devices
            if d["_room"] == device["_room"] and need in d["capabilities"]
        ]
        hint = (
            f"; in the same room, {', '.join(able)} can" if able else "; nothing in that room can"
        )
        raise ValueError(
            f"{device_id} cannot do {tool} (its capabilities: "
            f"{', '.join(device['capabilities'])}){hint}"
        )
    return device


def set_power(device_id: str, on: bool) -> None:
    _check_device("set_power", device_id)


def set_brightness(device_id: str, level: int) -> None:
    _check_device("set_brightness", device_id)


def set_color(device_id: str, color: str) -> None:
    _check_device("set_color", device_id)


def set_temperature(device_id: str, temperature: float) -> None:
    _check_device("set_temperature", device_id)
    low, high = TEMPERATURE_RANGE
    if not low <= temperature <= high:
        raise ValueError(f"temperature must be within {low}-{high} °C, got {temperature}")


def media_control(device_id: str, action: str) -> None:
    _check_device("media_control", device_id)


def set_volume(device_id: str, level: int) -> None:
    _check_device("set_volume", device_id)


def set_media_source(device_id: str, source: str) -> None:
    _check_device("set_media_source", device_id)
    sources = get_device_state(device_id).get("sources", [])
    if source not in sources:
        raise ValueError(f"{device_id} has no source '{source}'; its sources: {', '.join(sources)}")


def set_cover_position(device_id: str, position: int) -> None:
    _check_device("set_cover_position", device_id)


def set_lock(device_id: str, locked: bool) -> None:
    _check_device("set_lock", device_id)


def get_status(device_id: str) -> None:
    _check_device("get_status", device_id)


# ----- schemas from the environment (task.yaml: helpers.schemas) ------------------------------
def tool_schemas(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The final tools with each ``device_id`` an ``enum`` of the devices that can do the call.

    A grammar-constrained teacher or student then cannot write an id that does not exist, or
    one whose device lacks the capability (48 ids for set_power, 22 for set_brightness, 3 for
    set_lock, all 58 for get_status). The id ``pattern`` is dropped: the enum is stricter.
    """
    with closing(_connect()) as conn:
        devices = _devices(conn)
    for tool in tools:
        function = tool["function"]
        prop = function["parameters"].get("properties", {}).get("device_id")
        if prop is None:
            continue
        need = CAPABILITY.get(function["name"])
        prop.pop("pattern", None)
        prop["enum"] = [
            d["device_id"] for d in devices if need is None or need in d["capabilities"]
        ]
    return tools


def main(argv: list[str]) -> None:
    if len(argv) not in (1, 2) or argv[0] not in {
        "list_rooms",
        "find_devices",
        "get_device_state",
        "list_scenes",
        "resolve_time",
        *CAPABILITY,
    }:
        raise SystemExit("usage: tools.py HELPER|FINAL_TOOL ['{json arguments}']")
    print(
        json.dumps(globals()[argv[0]](**json.loads(argv[1] if len(argv) > 1 else "{}")), indent=2)
    )


if __name__ == "__main__":
    main(sys.argv[1:])
