"""The default home of the smart_home example: rooms, devices with their current state, scenes.

This file is the registry's single source of truth. ``build_db(path)`` writes it to SQLite for
the helper tools (tools.py), and generate.py computes its gold calls from the same data, so the
gold always agrees with what the helpers return. Device ids follow ``<type>.<room>_<name>``
(``light.kitchen_ceiling``, ``climate.office``) so a student that never ran a look-up can
still learn them. ``test_aliases`` exist in the registry but only the held-out test split of
generate.py uses them.

    python examples/smart_home/home.py /tmp/home.sqlite     # write a copy of the registry
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEVICE_TYPES = ("light", "climate", "media", "cover", "fan", "switch", "lock", "vacuum")
COLORS = (
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "white",
    "warm_white",
    "cool_white",
)
SPEAKER_SOURCES = ("spotify", "radio", "podcasts", "bluetooth")
SCREEN_SOURCES = ("tv", "netflix", "youtube", "hdmi")
MEDIA_SOURCES = SPEAKER_SOURCES + SCREEN_SOURCES


@dataclass(frozen=True)
class Room:
    id: str
    name: str
    floor: str
    aliases: tuple[str, ...] = ()
    test_aliases: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Device:
    id: str
    room: str
    name: str
    capabilities: tuple[str, ...]
    state: dict[str, Any]
    aliases: tuple[str, ...] = ()
    test_aliases: tuple[str, ...] = ()
    main: bool = False  # the room's main light: "the kitchen light", "too dark in the kitchen"
    sources: tuple[str, ...] = ()  # media only

    @property
    def type(self) -> str:
        return self.id.split(".", 1)[0]


@dataclass(frozen=True, eq=False)
class Scene:
    id: str
    name: str
    description: str
    aliases: tuple[str, ...] = ()
    test_aliases: tuple[str, ...] = ()
    actions: tuple[tuple[str, str, dict[str, Any]], ...] = field(default=())


def _light(room, slug, name, *, on, brightness=None, color=None, main=False, aliases=(), test=()):
    caps, state = ["power"], {"on": on}
    if brightness is not None:
        caps.append("brightness")
        state["brightness"] = brightness
    if color is not None:
        caps.append("color")
        state["color"] = color
    return Device(f"light.{room}_{slug}", room, name, tuple(caps), state, aliases, test, main)


def _climate(room, name, *, target, current, aliases=(), test=()):
    state = {
        "on": True,
        "mode": "heat",
        "target_temperature": target,
        "current_temperature": current,
    }
    return Device(f"climate.{room}", room, name, ("power", "temperature"), state, aliases, test)


def _media(room, slug, name, *, screen, on, playback, volume, source, aliases=(), test=()):
    state = {"on": on, "playback": playback, "volume": volume, "source": source}
    sources = SCREEN_SOURCES if screen else SPEAKER_SOURCES
    caps = ("power", "playback", "volume", "source")
    return Device(f"media.{room}_{slug}", room, name, caps, state, aliases, test, sources=sources)


def _cover(room, slug, name, *, position, aliases=(), test=()):
    return Device(
        f"cover.{room}_{slug}", room, name, ("position",), {"position": position}, aliases, test
    )


def _lock(room, slug, name, *, locked, aliases=(), test=()):
    return Device(f"lock.{room}_{slug}", room, name, ("lock",), {"locked": locked}, aliases, test)


def _plain(kind, room, slug, name, *, on, aliases=(), test=()):
    state = {"on": on} if kind != "vacuum" else {"on": on, "status": "docked", "battery": 100}
    return Device(f"{kind}.{room}_{slug}", room, name, ("power",), state, aliases, test)


# Data tables, one entry per line: kept out of the formatter's layout.
# fmt: off
ROOMS = (
    Room("kitchen", "Kitchen", "ground"),
    Room("living_room", "Living room", "ground", ("lounge",), ("family room",)),
    Room("dining_room", "Dining room", "ground", ("dining area",), ("eating area",)),
    Room("master_bedroom", "Master bedroom", "first", ("bedroom", "our bedroom"), ("main bedroom",)),
    Room("emma_room", "Emma's room", "first", ("kids' room",), ("children's room",)),
    Room("guest_room", "Guest room", "first", ("spare room",), ("guest bedroom",)),
    Room("office", "Office", "first", ("study",), ("home office",)),
    Room("bathroom", "Bathroom", "first", ("washroom",), ("shower room",)),
    Room("hallway", "Hallway", "ground", ("hall",), ("entryway",)),
    Room("garage", "Garage", "ground"),
    Room("garden", "Garden", "outside", ("backyard", "patio"), ("yard",)),
    Room("basement", "Basement", "basement", ("cellar",), ("lower level",)),
)

DEVICES = (
    # kitchen
    _light("kitchen", "ceiling", "Kitchen ceiling light", on=True, brightness=80, main=True,
           aliases=("big light in the kitchen",), test=("kitchen overhead light",)),
    _light("kitchen", "under_cabinet", "Under-cabinet lights", on=False, brightness=60, color="warm_white",
           aliases=("counter lights", "cabinet lights"), test=("worktop lights",)),
    _light("kitchen", "island", "Island pendants", on=True, brightness=50,
           aliases=("island lights", "pendant lights"), test=("lights over the island",)),
    _media("kitchen", "speaker", "Kitchen speaker", screen=False, on=True, playback="playing", volume=30,
           source="radio", aliases=("kitchen radio",), test=("speaker by the fridge",)),
    _plain("switch", "kitchen", "coffee_maker", "Coffee maker", on=False,
           aliases=("coffee machine",), test=("espresso machine",)),
    _plain("switch", "kitchen", "kettle", "Kettle", on=False, aliases=("electric kettle",), test=("water boiler",)),
    _cover("kitchen", "blind", "Kitchen blind", position=100,
           aliases=("kitchen window blind",), test=("blind over the sink",)),
    _lock("kitchen", "back_door", "Back door", locked=True, aliases=("back door lock",), test=("rear door",)),
    # living room
    _light("living_room", "ceiling", "Living room ceiling light", on=False, brightness=100, main=True,
           aliases=("living room overhead light",), test=("living room main light",)),
    _light("living_room", "floor_lamp", "Floor lamp", on=True, brightness=40, color="warm_white",
           aliases=("lamp by the couch", "reading lamp"), test=("lamp next to the sofa", "standing lamp")),
    _light("living_room", "tv_backlight", "TV backlight", on=False, brightness=70, color="blue",
           aliases=("light strip behind the tv", "bias light"), test=("led strip",)),
    _media("living_room", "tv", "Living room TV", screen=True, on=True, playback="playing", volume=25,
           source="netflix", aliases=("tv", "television"), test=("telly",)),
    _climate("living_room", "Living room thermostat", target=21, current=20.5,
             aliases=("downstairs thermostat",)),
    _cover("living_room", "curtains", "Living room curtains", position=100, aliases=("drapes",), test=("big curtains",)),
    # dining room
    _light("dining_room", "chandelier", "Chandelier", on=False, brightness=70, main=True,
           aliases=("light over the table",), test=("dining table light",)),
    _light("dining_room", "sconces", "Wall sconces", on=False, brightness=50,
           aliases=("sconces",), test=("dining wall lights",)),
    _cover("dining_room", "blinds", "Dining room blinds", position=80),
    # master bedroom
    _light("master_bedroom", "ceiling", "Bedroom ceiling light", on=False, brightness=90, main=True,
           aliases=("big bedroom light",)),
    _light("master_bedroom", "bedside_left", "Left bedside lamp", on=True, brightness=30, color="warm_white",
           aliases=("left nightstand lamp",), test=("lamp on the left side of the bed",)),
    _light("master_bedroom", "bedside_right", "Right bedside lamp", on=False, brightness=30, color="warm_white",
           aliases=("right nightstand lamp",), test=("lamp on the right side of the bed",)),
    _climate("master_bedroom", "Bedroom thermostat", target=19, current=18.5),
    _media("master_bedroom", "speaker", "Bedroom speaker", screen=False, on=False, playback="idle", volume=15,
           source="spotify", aliases=("sleep speaker",), test=("speaker next to the bed",)),
    _cover("master_bedroom", "blinds", "Bedroom blackout blinds", position=0,
           aliases=("blackout blinds",), test=("bedroom shades",)),
    _plain("fan", "master_bedroom", "ceiling", "Bedroom ceiling fan", on=False,
           aliases=("ceiling fan",), test=("fan above the bed",)),
    # Emma's room
    _light("emma_room", "ceiling", "Emma's ceiling light", on=False, brightness=80, main=True),
    _light("emma_room", "night_light", "Night light", on=True, brightness=10, color="purple",
           aliases=("star projector", "nightlight"), test=("moon lamp",)),
    _media("emma_room", "speaker", "Story speaker", screen=False, on=False, playback="idle", volume=20,
           source="podcasts", aliases=("kids speaker",), test=("bedtime story speaker",)),
    _climate("emma_room", "Emma's radiator", target=20, current=19.5, aliases=("kids' room heating",)),
    _cover("emma_room", "blinds", "Emma's blinds", position=0),
    # guest room
    _light("guest_room", "ceiling", "Guest room ceiling light", on=False, brightness=100, main=True),
    _light("guest_room", "bedside", "Guest bedside lamp", on=False, brightness=50,
           aliases=("guest lamp",), test=("spare bedside lamp",)),
    _climate("guest_room", "Guest room thermostat", target=17, current=17),
    # office
    _light("office", "ceiling", "Office ceiling light", on=True, brightness=100, main=True),
    _light("office", "desk_lamp", "Desk lamp", on=True, brightness=70,
           aliases=("lamp on my desk", "work lamp"), test=("desk light",)),
    _media("office", "speaker", "Office speaker", screen=False, on=True, playback="playing", volume=35,
           source="spotify", aliases=("desk speaker",), test=("computer speaker",)),
    _climate("office", "Office thermostat", target=21.5, current=21),
    _cover("office", "blinds", "Office blinds", position=60, aliases=("study blinds",), test=("office shades",)),
    _plain("fan", "office", "desk", "Desk fan", on=False, aliases=("little fan",), test=("fan on my desk",)),
    _plain("switch", "office", "printer", "Printer", on=False, aliases=("printer plug",), test=("laser printer",)),
    # bathroom
    _light("bathroom", "ceiling", "Bathroom ceiling light", on=False, brightness=100, main=True),
    _light("bathroom", "mirror", "Mirror light", on=False, brightness=80,
           aliases=("vanity light",), test=("light above the mirror",)),
    _plain("fan", "bathroom", "extractor", "Extractor fan", on=False,
           aliases=("bathroom fan", "exhaust fan"), test=("vent fan",)),
    _plain("switch", "bathroom", "towel_warmer", "Towel warmer", on=False,
           aliases=("towel rail",), test=("heated towel rail",)),
    # hallway
    _light("hallway", "ceiling", "Hallway light", on=True, brightness=60, main=True),
    _lock("hallway", "front_door", "Front door", locked=False,
          aliases=("front door lock", "main door"), test=("entrance door",)),
    _plain("vacuum", "hallway", "robot", "Robot vacuum", on=False,
           aliases=("roomba", "hoover"), test=("robot cleaner",)),
    # garage
    _light("garage", "ceiling", "Garage light", on=False, main=True),
    _cover("garage", "door", "Garage door", position=0, aliases=("garage gate",), test=("roller door",)),
    _plain("switch", "garage", "ev_charger", "Car charger", on=True,
           aliases=("ev charger", "wallbox"), test=("charging station",)),
    _lock("garage", "side_door", "Garage side door", locked=True, aliases=("side door",)),
    # garden
    _light("garden", "patio", "Patio lights", on=False, brightness=60, color="warm_white", main=True,
           aliases=("string lights", "deck lights"), test=("fairy lights",)),
    _light("garden", "porch", "Porch light", on=True, aliases=("front porch light",), test=("outside light",)),
    _plain("switch", "garden", "sprinkler", "Sprinklers", on=False,
           aliases=("lawn sprinklers",), test=("irrigation",)),
    _plain("switch", "garden", "fountain", "Fountain pump", on=False, aliases=("pond pump",), test=("water feature",)),
    _media("garden", "speaker", "Patio speaker", screen=False, on=False, playback="idle", volume=40,
           source="bluetooth", aliases=("outdoor speaker",), test=("speaker outside",)),
    # basement
    _light("basement", "ceiling", "Basement light", on=False, brightness=100, main=True),
    _media("basement", "projector", "Projector", screen=True, on=False, playback="idle", volume=30,
           source="hdmi", aliases=("home cinema",), test=("beamer",)),
    _plain("switch", "basement", "dehumidifier", "Dehumidifier", on=True),
)

SCENES = (
    Scene("movie_night", "Movie night", "Living room: ceiling light off, floor lamp 20%, TV backlight on, curtains closed, TV on.",
          ("movie mode", "cinema mode"), ("film night",),
          (("light.living_room_ceiling", "set_power", {"on": False}),
           ("light.living_room_floor_lamp", "set_brightness", {"level": 20}),
           ("light.living_room_tv_backlight", "set_power", {"on": True}),
           ("cover.living_room_curtains", "set_cover_position", {"position": 0}),
           ("media.living_room_tv", "set_power", {"on": True}))),
    Scene("good_morning", "Good morning", "Bedroom blinds open, kitchen lights on, coffee maker on, radio in the kitchen.",
          ("morning routine", "wake up routine"), ("rise and shine",),
          (("cover.master_bedroom_blinds", "set_cover_position", {"position": 100}),
           ("light.kitchen_ceiling", "set_power", {"on": True}),
           ("switch.kitchen_coffee_maker", "set_power", {"on": True}),
           ("media.kitchen_speaker", "set_media_source", {"source": "radio"}))),
    Scene("good_night", "Good night", "All lights off except the night light, doors locked, thermostats to 18 °C.",
          ("bedtime", "night mode"), ("lights out",),
          (("lock.hallway_front_door", "set_lock", {"locked": True}),
           ("lock.kitchen_back_door", "set_lock", {"locked": True}),
           ("climate.living_room", "set_temperature", {"temperature": 18}))),
    Scene("dinner", "Dinner", "Chandelier 60%, sconces 40%, kitchen speaker quieter.",
          ("dinner time",), ("supper",),
          (("light.dining_room_chandelier", "set_brightness", {"level": 60}),
           ("light.dining_room_sconces", "set_brightness", {"level": 40}),
           ("media.kitchen_speaker", "set_volume", {"level": 15}))),
    Scene("away", "Away", "Everything off, all doors locked, robot vacuum starts.",
          ("away mode", "leaving home"), ("vacation mode",),
          (("lock.hallway_front_door", "set_lock", {"locked": True}),
           ("vacuum.hallway_robot", "set_power", {"on": True}))),
    Scene("party", "Party", "Patio lights on in colour, patio speaker on Spotify, living room lights up.",
          ("party mode",), ("fiesta",),
          (("light.garden_patio", "set_color", {"color": "purple"}),
           ("media.garden_speaker", "set_media_source", {"source": "spotify"}))),
    Scene("focus", "Focus", "Office lights full, office speaker paused, desk fan on.",
          ("work mode", "concentration mode"), ("deep work",),
          (("light.office_ceiling", "set_brightness", {"level": 100}),
           ("media.office_speaker", "media_control", {"action": "pause"}))),
)

# fmt: on

ROOMS_BY_ID = {room.id: room for room in ROOMS}
DEVICES_BY_ID = {device.id: device for device in DEVICES}
SCENES_BY_ID = {scene.id: scene for scene in SCENES}


def devices_in(room_id: str, device_type: str | None = None) -> list[Device]:
    """Devices of a room in registry order (the order multi-device gold calls follow)."""
    return [
        d for d in DEVICES if d.room == room_id and (device_type is None or d.type == device_type)
    ]


def main_light(room_id: str) -> Device:
    return next(d for d in devices_in(room_id, "light") if d.main)


def fingerprint() -> str:
    """A hash of the registry; tools.py rebuilds its database when this changes."""
    payload = [[vars(r) for r in ROOMS], [vars(d) for d in DEVICES], [vars(s) for s in SCENES]]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE rooms (room_id TEXT PRIMARY KEY, name TEXT NOT NULL, floor TEXT NOT NULL, position INTEGER);
CREATE TABLE devices (device_id TEXT PRIMARY KEY, room_id TEXT NOT NULL REFERENCES rooms(room_id),
    type TEXT NOT NULL, name TEXT NOT NULL, is_main INTEGER NOT NULL, capabilities TEXT NOT NULL,
    sources TEXT NOT NULL, position INTEGER);
CREATE TABLE aliases (kind TEXT NOT NULL, target_id TEXT NOT NULL, alias TEXT NOT NULL);
CREATE TABLE state (device_id TEXT NOT NULL REFERENCES devices(device_id), key TEXT NOT NULL,
    value TEXT NOT NULL, PRIMARY KEY (device_id, key));
CREATE TABLE scenes (scene_id TEXT PRIMARY KEY, name TEXT NOT NULL, description TEXT NOT NULL,
    actions TEXT NOT NULL, position INTEGER);
CREATE TABLE timers (timer_id INTEGER PRIMARY KEY, label TEXT, duration_seconds INTEGER NOT NULL);
CREATE TABLE alarms (alarm_id INTEGER PRIMARY KEY, label TEXT, time TEXT NOT NULL);
"""


def _fill(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)
    conn.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (fingerprint(),))
    for pos, room in enumerate(ROOMS):
        conn.execute("INSERT INTO rooms VALUES (?, ?, ?, ?)", (room.id, room.name, room.floor, pos))
        for alias in room.aliases + room.test_aliases:
            conn.execute("INSERT INTO aliases VALUES ('room', ?, ?)", (room.id, alias))
    for pos, d in enumerate(DEVICES):
        conn.execute(
            "INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                d.id,
                d.room,
                d.type,
                d.name,
                int(d.main),
                json.dumps(d.capabilities),
                json.dumps(d.sources),
                pos,
            ),
        )
        for alias in d.aliases + d.test_aliases:
            conn.execute("INSERT INTO aliases VALUES ('device', ?, ?)", (d.id, alias))
        for key, value in d.state.items():
            conn.execute("INSERT INTO state VALUES (?, ?, ?)", (d.id, key, json.dumps(value)))
    for pos, s in enumerate(SCENES):
        actions = [
            {"device_id": dev, "call": name, "arguments": args} for dev, name, args in s.actions
        ]
        conn.execute(
            "INSERT INTO scenes VALUES (?, ?, ?, ?, ?)",
            (s.id, s.name, s.description, json.dumps(actions), pos),
        )
        for alias in s.aliases + s.test_aliases:
            conn.execute("INSERT INTO aliases VALUES ('scene', ?, ?)", (s.id, alias))


def build_db(path: str | Path) -> Path:
    """Write the registry to a SQLite file at ``path`` atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        with closing(sqlite3.connect(tmp)) as conn:
            _fill(conn)
            conn.commit()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


if __name__ == "__main__":
    print(
        build_db(
            sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("data") / "home.sqlite"
        )
    )
