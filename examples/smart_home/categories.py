"""One builder per request category for generate.py: ``CATEGORIES[name](draft) -> (text, calls)``.

The rules here (which device "too dark" switches on, the relative steps, ...) are the same
rules the teacher prompt in task.yaml states, so a teacher that follows its prompt and the
helper tools reaches the gold.
"""

from __future__ import annotations

from pathlib import Path

from supertiny.core.task import import_file

HERE = Path(__file__).resolve().parent


def _sibling(name: str):
    """Import a file next to this one by path (this folder is not a package)."""
    return import_file(HERE / f"{name}.py", f"smart_home_{name}")


home = _sibling("home")
b = _sibling("builders")
Draft, call, STEPS = b.Draft, b.call, b.STEPS


def relative(d: Draft):
    kind = d.rng.choices(("bright", "temp", "vol", "cover"), weights=(4, 3, 3, 2))[0]
    up, by = d.rng.random() < 0.5, d.rng.random() < 0.35
    key = f"{kind}_{'up' if up else 'down'}{'_by' if by else ''}"
    if kind == "bright":
        dev = d.choice(b.LIT_DIMMABLE)
        k = d.choice(d.pool("bright_step")) if by else STEPS["brightness"]
        return d.fill(d.template(key), dev=dev, k=k), [
            d.relative_call(dev, "brightness", k if up else -k)
        ]
    if kind == "temp":
        dev = home.DEVICES_BY_ID[f"climate.{d.choice(b.CLIMATE_ROOMS)}"]
        k = d.choice(d.pool("temp_step")) if by else STEPS["target_temperature"]
        text = d.fill(d.template(key), room=dev.room, k=k)
        return text, [d.relative_call(dev, "target_temperature", k if up else -k)]
    if kind == "vol":
        dev = d.choice(b.MEDIA)
        k = d.choice(d.pool("volume_step")) if by else STEPS["volume"]
        text = d.fill(d.template(key), media=dev, room=dev.room, k=k)
        return text, [d.relative_call(dev, "volume", k if up else -k)]
    dev = d.choice(b.COVERS)
    key, k = f"cover_{'up' if up else 'down'}", STEPS["position"]
    return d.fill(d.template(key), cover=dev), [d.relative_call(dev, "position", k if up else -k)]


def indirect(d: Draft):
    kind = d.rng.choices(
        ("dark", "bright", "cold", "hot", "loud", "quiet", "glare", "fixed"),
        weights=(3, 2, 2, 2, 1.5, 1, 1.5, 1.5),
    )[0]
    if kind == "dark":
        room = d.choice(b.DARK_ROOMS)
        return d.fill(d.template("dark"), room=room), [
            call("set_power", device_id=home.main_light(room).id, on=True)
        ]
    if kind == "bright":
        room = d.choice(b.BRIGHT_ROOMS)
        return d.fill(d.template("bright"), room=room), [
            d.relative_call(home.main_light(room), "brightness", -STEPS["brightness"])
        ]
    if kind in ("cold", "hot"):
        dev = home.DEVICES_BY_ID[f"climate.{d.choice(b.CLIMATE_ROOMS)}"]
        step = STEPS["target_temperature"] * (1 if kind == "cold" else -1)
        return d.fill(d.template(kind), room=dev.room), [
            d.relative_call(dev, "target_temperature", step)
        ]
    if kind in ("loud", "quiet"):
        dev = d.choice(b.MEDIA)
        step = STEPS["volume"] * (-1 if kind == "loud" else 1)
        return d.fill(d.template(kind), media=dev, room=dev.room), [
            d.relative_call(dev, "volume", step)
        ]
    if kind == "glare":
        dev = d.choice(b.WINDOW_COVERS)
        return d.fill(d.template("glare"), room=dev.room), [
            call("set_cover_position", device_id=dev.id, position=0)
        ]
    text, device_id = d.utterance("indirect_on")
    return text, [call("set_power", device_id=device_id, on=True)]


def media(d: Draft):
    kind = d.rng.choices(("control", "volume", "source"), weights=(5, 2, 3))[0]
    if kind == "control":
        return b.media_control(d)
    dev = d.choice(b.MEDIA)
    template = d.template(kind)
    if kind == "volume":
        n = d.choice(d.pool("volume"))
        return d.fill(template, media=dev, room=dev.room, n=n), [
            call("set_volume", device_id=dev.id, level=n)
        ]
    surface, source = d.value("source", allowed=dev.sources)
    text = d.fill(template, media=dev, room=dev.room, source=surface)
    return text, [call("set_media_source", device_id=dev.id, source=source)]


PARTS = {
    **b.SIMPLE,
    "group_on": lambda d: b.group(d, "on"),
    "group_off": lambda d: b.group(d, "off"),
    "pause": lambda d: b.media_control(d, "pause"),
}
LAST_PARTS = {"timer": b.timer, "alarm": b.alarm}


def multi_call(d: Draft):
    n_parts = 3 if d.rng.random() < 0.2 else 2
    while True:
        marks = len(d.templates), len(d.surfaces)
        kinds = [d.choice(PARTS) for _ in range(n_parts)]
        if d.rng.random() < 0.25:
            kinds[-1] = d.choice(LAST_PARTS)
        parts = [(PARTS | LAST_PARTS)[k](d) for k in kinds]
        ids = [c["arguments"].get("device_id") for _, calls in parts for c in calls]
        if len(set(ids)) == len(ids):
            break
        del d.templates[marks[0] :], d.surfaces[marks[1] :]
        d.time_expression = None
    join = d.template(f"join{n_parts}")
    text = join.format(**{slot: text for slot, (text, _) in zip("abc", parts, strict=False)})
    return text, [c for _, calls in parts for c in calls]


def status(d: Draft):
    kind = d.rng.choices(("lock", "power", "temp", "media", "cover"), weights=(2, 3, 2, 1, 1.5))[0]
    template = d.template(f"status_{kind}")
    if kind == "temp":
        room = d.choice(b.CLIMATE_ROOMS)
        return d.fill(template, room=room), [call("get_status", device_id=f"climate.{room}")]
    dev = d.choice(
        {"lock": b.LOCKS, "power": b.POWERABLE, "media": b.MEDIA, "cover": b.COVERS}[kind]
    )
    return d.fill(template, lock=dev, dev=dev, media=dev, cover=dev), [
        call("get_status", device_id=dev.id)
    ]


def scene(d: Draft):
    if d.rng.random() < 0.4:
        text, scene_id = d.utterance("scene_say")
        return text, [call("activate_scene", scene_id=scene_id)]
    chosen = d.choice(home.SCENES)
    template = d.template("scene")
    return template.format(scene=d.scene(chosen)), [call("activate_scene", scene_id=chosen.id)]


def no_action(d: Draft):
    reason = d.rng.choices(("chit_chat", "unsupported", "unclear"), weights=(3, 3, 3))[0]
    if reason == "unsupported" and d.rng.random() < 0.35:
        dev, template = d.choice(b.WHITE_LIGHTS), d.template("color_unsupported")
        surface, _ = d.value("color")
        text = d.fill(template, dev=dev, color=surface)
    else:
        text, _ = d.utterance(reason)
    return text, [call("no_action", reason=reason)]


CATEGORIES = {
    "direct": b.direct,
    "group": b.group,
    "relative": relative,
    "indirect": indirect,
    "media": media,
    "multi_call": multi_call,
    "status": status,
    "timer": b.timer,
    "alarm": b.alarm,
    "scene": scene,
    "no_action": no_action,
}
