"""Request builders for generate.py: one function per category, each returning (text, gold calls).

A ``Draft`` carries the split's random generator and records what a request used (template
ids, surface forms, relative changes, the time expression) for the record's ``meta``. Gold
values come from home.py's registry: relative changes start from the device's current state.
"""

from __future__ import annotations

import random
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

# The default step of a relative change and each value's range (the teacher prompt says the same).
STEPS = {"brightness": 20, "volume": 10, "position": 20, "target_temperature": 1}
RANGES = {
    "brightness": (0, 100),
    "volume": (0, 100),
    "position": (0, 100),
    "target_temperature": (10, 30),
}
SETTERS = {
    "brightness": ("set_brightness", "level"),
    "volume": ("set_volume", "level"),
    "position": ("set_cover_position", "position"),
    "target_temperature": ("set_temperature", "temperature"),
}

D = home.DEVICES
LIGHTS = [d for d in D if d.type == "light"]
DIMMABLE = [d for d in LIGHTS if "brightness" in d.capabilities]
COLOR_LIGHTS = [d for d in LIGHTS if "color" in d.capabilities]
WHITE_LIGHTS = [d for d in LIGHTS if "color" not in d.capabilities]
LIT_DIMMABLE = [d for d in DIMMABLE if d.state["on"]]
POWERABLE = [d for d in D if d.type in ("light", "switch", "fan", "media", "vacuum")]
COVERS = [d for d in D if d.type == "cover"]
WINDOW_COVERS = [d for d in COVERS if d.id != "cover.garage_door"]
LOCKS = [d for d in D if d.type == "lock"]
MEDIA = [d for d in D if d.type == "media"]
CLIMATE_ROOMS = [d.room for d in D if d.type == "climate"]
GROUP_ROOMS = [r.id for r in home.ROOMS if len(home.devices_in(r.id, "light")) >= 2]
DIM_GROUP_ROOMS = [
    r
    for r in GROUP_ROOMS
    if all("brightness" in d.capabilities for d in home.devices_in(r, "light"))
]
DARK_ROOMS = [r.id for r in home.ROOMS if not home.main_light(r.id).state["on"]]
BRIGHT_ROOMS = [r.id for r in home.ROOMS if home.main_light(r.id) in LIT_DIMMABLE]
NO_ARTICLE = ("emma's", "our", "my")


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _article(surface: str) -> str:
    return surface if surface.split()[0] in NO_ARTICLE else f"the {surface}"


class Draft:
    """One request under construction."""

    def __init__(self, split: str, rng: random.Random):
        self.split, self.rng = split, rng
        self.templates: list[str] = []
        self.surfaces: list[str] = []
        self.relative: list[dict[str, Any]] = []
        self.time_expression: str | None = None

    def choice(self, seq):
        seq = list(seq)
        return seq[self.rng.randrange(len(seq))]

    def pool(self, key: str) -> list:
        return phrases.POOLS[key][self.split]

    def _pick(self, table: dict, key: str) -> str:
        options = table[key][self.split]
        index = self.rng.randrange(len(options))
        self.templates.append(f"{key}.{self.split[:2]}{index}")
        return options[index]

    def template(self, key: str) -> str:
        return self._pick(phrases.TEMPLATES, key)

    def utterance(self, key: str) -> tuple[str, str]:
        text, _, target = self._pick(phrases.UTTERANCES, key).partition("|")
        return text, target

    def value(self, key: str, allowed=None) -> tuple[str, str]:
        """A 'surface|value' pool entry, optionally only values in ``allowed``."""
        entries = [e.split("|") for e in self.pool(key)]
        surface, value = self.choice([e for e in entries if allowed is None or e[1] in allowed])
        self.surfaces.append(surface)
        return surface, value

    def _surface(self, canonical: list[str], item) -> str:
        """A canonical name or one of this split's aliases; the test split favours its own."""
        own = item.aliases if self.split == "train" else item.test_aliases
        if self.split == "test" and own and self.rng.random() < 0.6:
            surface = self.choice(own)
        else:
            surface = self.choice(canonical + list(own))
        return surface

    def room(self, room_id: str) -> str:
        room = home.ROOMS_BY_ID[room_id]
        surface = self._surface([room.name.lower()], room)
        self.surfaces.append(surface)
        return _article(surface)

    def device(self, dev) -> str:
        surface = self._surface([dev.name.lower()] + (["<room> light"] if dev.main else []), dev)
        if surface == "<room> light":
            return self.room(dev.room) + " light"
        self.surfaces.append(surface)
        return _article(surface)

    def scene(self, scene) -> str:
        surface = self._surface([scene.name.lower()], scene)
        self.surfaces.append(surface)
        return surface

    def fill(self, template: str, **slots: Any) -> str:
        values = {}
        for name, value in slots.items():
            if "{" + name + "}" not in template:
                continue
            if name == "room":
                values[name] = self.room(value)
            elif isinstance(value, home.Device):
                values[name] = self.device(value)
            else:
                values[name] = f"{value:g}" if isinstance(value, float) else str(value)
        if "{be}" in template:
            phrase = next(values[k] for k in ("dev", "cover", "media", "lock") if k in values)
            last = phrase.split()[-1]
            values["be"] = "are" if last.endswith("s") and not last.endswith("ss") else "is"
        return template.format(**values)

    def relative_call(self, dev, key: str, delta: float) -> dict[str, Any]:
        lo, hi = RANGES[key]
        value = min(hi, max(lo, dev.state[key] + delta))
        self.relative.append({"device_id": dev.id, "key": key, "delta": _num(delta)})
        name, argument = SETTERS[key]
        return call(name, **{"device_id": dev.id, argument: _num(value)})


# ----- simple requests: one template, one device (also the parts of multi_call) ----------------
def power(d: Draft, on: bool):
    dev = d.choice(POWERABLE)
    return d.fill(d.template("power_on" if on else "power_off"), dev=dev), [
        call("set_power", device_id=dev.id, on=on)
    ]


def brightness(d: Draft):
    dev, n = d.choice(DIMMABLE), d.choice(d.pool("level"))
    return d.fill(d.template("brightness"), dev=dev, n=n), [
        call("set_brightness", device_id=dev.id, level=n)
    ]


def color(d: Draft):
    dev, template = d.choice(COLOR_LIGHTS), d.template("color")
    surface, value = d.value("color")
    return d.fill(template, dev=dev, color=surface), [
        call("set_color", device_id=dev.id, color=value)
    ]


def temperature(d: Draft):
    room, t, template = (
        d.choice(CLIMATE_ROOMS),
        d.choice(d.pool("temperature")),
        d.template("temperature"),
    )
    return d.fill(template, room=room, t=t), [
        call("set_temperature", device_id=f"climate.{room}", temperature=t)
    ]


def cover(d: Draft, kind: str):
    dev, template = d.choice(COVERS), d.template(f"cover_{kind}")
    n = (
        {"open": 100, "close": 0}[kind]
        if kind in ("open", "close")
        else d.choice(d.pool("cover_level"))
    )
    return d.fill(template, cover=dev, n=n), [
        call("set_cover_position", device_id=dev.id, position=n)
    ]


def lock(d: Draft, locked: bool):
    dev = d.choice(LOCKS)
    return d.fill(d.template("lock" if locked else "unlock"), lock=dev), [
        call("set_lock", device_id=dev.id, locked=locked)
    ]


def group(d: Draft, kind: str | None = None):
    kind = kind or d.choice(("on", "off", "off", "dim"))
    room = d.choice(DIM_GROUP_ROOMS if kind == "dim" else GROUP_ROOMS)
    lights = home.devices_in(room, "light")
    if kind == "dim":
        n = d.choice(d.pool("level"))
        return d.fill(d.template("group_dim"), room=room, n=n), [
            call("set_brightness", device_id=x.id, level=n) for x in lights
        ]
    on = kind == "on"
    return d.fill(d.template(f"group_{kind}"), room=room), [
        call("set_power", device_id=x.id, on=on) for x in lights
    ]


def media_control(d: Draft, action: str | None = None):
    action = action or d.choice(("pause", "pause", "play", "next", "previous", "stop"))
    dev = d.choice(MEDIA)
    text = d.fill(d.template(action), media=dev, room=dev.room)
    return text, [call("media_control", device_id=dev.id, action=action)]


def timer(d: Draft):
    labelled = d.rng.random() < 0.4
    template, duration = (
        d.template("timer_label" if labelled else "timer"),
        d.choice(d.pool("duration")),
    )
    d.time_expression = duration
    arguments = {"duration_seconds": timeparse.parse(duration)["duration_seconds"]}
    label = d.choice(d.pool("timer_label")) if labelled else None
    if label:
        d.surfaces.append(label)
        arguments["label"] = label
    return d.fill(template, dur=duration, label=label), [call("set_timer", **arguments)]


def alarm(d: Draft):
    labelled = d.rng.random() < 0.3
    template, time = d.template("alarm_label" if labelled else "alarm"), d.choice(d.pool("time"))
    d.time_expression = time
    arguments = {"time": timeparse.parse(time)["time"]}
    label = d.choice(d.pool("alarm_label")) if labelled else None
    if label:
        d.surfaces.append(label)
        arguments["label"] = label
    return d.fill(template, time=time, label=label), [call("set_alarm", **arguments)]


SIMPLE = {
    "power_on": lambda d: power(d, True),
    "power_off": lambda d: power(d, False),
    "brightness": brightness,
    "color": color,
    "temperature": temperature,
    "cover_open": lambda d: cover(d, "open"),
    "cover_close": lambda d: cover(d, "close"),
    "cover_set": lambda d: cover(d, "set"),
    "lock": lambda d: lock(d, True),
    "unlock": lambda d: lock(d, False),
}
DIRECT_WEIGHTS = {
    "power_on": 3,
    "power_off": 3,
    "brightness": 2,
    "color": 1.5,
    "temperature": 1.5,
    "cover_open": 0.6,
    "cover_close": 0.6,
    "cover_set": 0.5,
    "lock": 0.9,
    "unlock": 0.7,
}


def direct(d: Draft):
    kind = d.rng.choices(list(DIRECT_WEIGHTS), weights=list(DIRECT_WEIGHTS.values()))[0]
    return SIMPLE[kind](d)
