"""Phrasings and value pools for generate.py, each split into a train pool and a test pool.

The held-out test set only uses the ``test`` templates and values (plus canonical names that
both splits share), so it measures generalisation to unseen phrasings and surface forms.
Slots: {dev} {media} {cover} {lock} (a device phrase with its article), {be} ('is' or 'are' to
agree with it), {room} (a room phrase with its article), {n} {t} {k} (numbers), {color} {source} {scene} {dur} {time} {label}.
Templates are lowercase without final punctuation; generate.py decorates them.
"""

from __future__ import annotations

T = dict[str, list[str]]


def _t(train: list[str], test: list[str]) -> T:
    return {"train": train, "test": test}


# Data tables, one entry per line: kept out of the formatter's layout.
# fmt: off
TEMPLATES: dict[str, T] = {
    # direct
    "power_on": _t(["turn on {dev}", "switch on {dev}", "turn {dev} on", "{dev} on", "power up {dev}",
                    "can you turn on {dev}", "switch {dev} on"],
                   ["flip {dev} on", "i want {dev} on", "put {dev} on", "fire up {dev}"]),
    "power_off": _t(["turn off {dev}", "switch off {dev}", "turn {dev} off", "{dev} off", "shut off {dev}",
                     "kill {dev}", "can you switch off {dev}"],
                    ["power down {dev}", "shut {dev} down", "i don't need {dev} anymore, turn it off", "cut {dev}"]),
    "brightness": _t(["set {dev} to {n}%", "set {dev} to {n} percent", "{dev} at {n}%", "brightness of {dev} to {n}",
                      "put {dev} at {n} percent", "bring {dev} to {n}%", "can you set {dev} to {n} percent brightness"],
                     ["make {dev} {n} percent bright", "i'd like {dev} at {n}%", "change the brightness of {dev} to {n}",
                      "adjust {dev} to {n} percent"]),
    "color": _t(["make {dev} {color}", "set {dev} to {color}", "change {dev} to {color}", "turn {dev} {color}",
                 "{dev} in {color}"],
                ["can {dev} go {color}", "i want {dev} in {color}", "switch the colour of {dev} to {color}",
                 "paint {dev} {color}"]),
    "temperature": _t(["set {room} thermostat to {t} degrees", "make it {t} degrees in {room}", "heat {room} to {t}",
                       "set the temperature in {room} to {t}", "{room} thermostat to {t}", "i want {t} degrees in {room}"],
                      ["warm {room} up to {t} degrees", "can you get {room} to {t}°", "keep {room} at {t} degrees",
                       "thermostat in {room}: {t}"]),
    "cover_open": _t(["open {cover}", "raise {cover}", "pull up {cover}", "open up {cover}"],
                     ["roll up {cover}", "let the light in, open {cover}"]),
    "cover_close": _t(["close {cover}", "lower {cover}", "shut {cover}", "pull down {cover}"],
                      ["roll down {cover}", "draw {cover} closed"]),
    "cover_set": _t(["set {cover} to {n}%", "open {cover} to {n} percent", "{cover} at {n}%"],
                    ["move {cover} to {n} percent", "i'd like {cover} {n}% open"]),
    "lock": _t(["lock {lock}", "lock up {lock}", "make sure {lock} is locked", "can you lock {lock}"],
               ["bolt {lock}", "secure {lock}"]),
    "unlock": _t(["unlock {lock}", "i need {lock} unlocked", "can you unlock {lock}"],
                 ["unbolt {lock}", "let me in, unlock {lock}"]),
    # groups: every light of a room
    "group_on": _t(["turn on the lights in {room}", "{room} lights on", "switch on all the lights in {room}",
                    "lights on in {room}"],
                   ["all {room} lights on", "light up {room}"]),
    "group_off": _t(["turn off the lights in {room}", "{room} lights off", "switch off all the lights in {room}",
                     "lights off in {room}"],
                    ["kill every light in {room}", "could you shut off the lights in {room}"]),
    "group_dim": _t(["set the lights in {room} to {n}%", "dim {room} lights to {n} percent"],
                    ["every light in {room} at {n}%"]),
    # relative: default step or a stated amount {k}
    "bright_up": _t(["make {dev} a bit brighter", "brighten {dev}", "turn up {dev}", "{dev} brighter",
                     "a little brighter on {dev}"],
                    ["bump up {dev} a bit", "{dev} could be a little brighter", "raise {dev} a touch"]),
    "bright_down": _t(["dim {dev} a little", "make {dev} dimmer", "turn down {dev}", "{dev} a bit darker"],
                      ["tone down {dev}", "{dev} {be} a tad too bright", "lower {dev} a notch"]),
    "bright_up_by": _t(["turn {dev} up by {k} percent", "brighten {dev} by {k}%"], ["raise {dev} by {k} percent"]),
    "bright_down_by": _t(["dim {dev} by {k}%", "lower {dev} by {k} percent"], ["take {dev} down {k} percent"]),
    "temp_up": _t(["make it warmer in {room}", "turn up the heat in {room}", "a bit warmer in {room}"],
                  ["bump the heat up a notch in {room}", "{room} could be a little warmer"]),
    "temp_down": _t(["make it cooler in {room}", "turn the heating down in {room}", "a bit cooler in {room}"],
                    ["a touch cooler in {room}", "ease off the heating in {room}"]),
    "temp_up_by": _t(["raise {room} thermostat by {k} degrees", "{k} degrees warmer in {room}"],
                     ["warm {room} up by {k} degrees"]),
    "temp_down_by": _t(["lower the temperature in {room} by {k} degrees", "{k} degrees cooler in {room}"],
                       ["knock {room} thermostat down {k} degrees"]),
    "vol_up": _t(["turn up {media}", "louder on {media}", "turn the music up in {room}", "volume up in {room}"],
                 ["crank up the music in {room}", "pump up {media} a bit"]),
    "vol_down": _t(["turn down {media}", "quieter on {media}", "turn the music down in {room}", "volume down in {room}"],
                   ["lower the volume in {room}", "bring {media} down a notch"]),
    "vol_up_by": _t(["turn {media} up by {k}", "volume up {k} in {room}"], ["raise the volume on {media} by {k}"]),
    "vol_down_by": _t(["turn {media} down by {k}"], ["drop the volume in {room} by {k}"]),
    "cover_up": _t(["open {cover} a bit more", "raise {cover} a little"], ["let a bit more light in through {cover}"]),
    "cover_down": _t(["lower {cover} a bit", "close {cover} a little"], ["bring {cover} down a touch"]),
    # indirect: the room is in the text, the action follows the rules in the teacher prompt
    "dark": _t(["it's too dark in {room}", "i can't see anything in {room}", "{room} is pitch black"],
               ["way too dark in {room}", "can barely see in {room}"]),
    "bright": _t(["it's too bright in {room}", "the light in {room} is way too bright"],
                 ["my eyes hurt, {room} is so bright"]),
    "cold": _t(["it's cold in {room}", "i'm freezing in {room}"], ["{room} feels chilly"]),
    "hot": _t(["it's too warm in {room}", "{room} is boiling"], ["it's stuffy and hot in {room}"]),
    "loud": _t(["the music is too loud in {room}", "{media} is way too loud"], ["i can't hear myself think in {room}"]),
    "quiet": _t(["i can barely hear the music in {room}", "{media} is too quiet"], ["can't hear a thing from {media}"]),
    "glare": _t(["the sun is in my eyes in {room}", "there's too much glare in {room}"],
                ["sunlight is blinding me in {room}"]),
    # media
    "pause": _t(["pause {media}", "pause the music in {room}", "hold on, pause {media}"],
                ["hold the music in {room}", "freeze {media} for a sec"]),
    "play": _t(["resume {media}", "press play on {media}", "continue playing in {room}"],
               ["unpause {media}", "start the music again in {room}"]),
    "next": _t(["skip this song in {room}", "next track on {media}", "skip on {media}"],
               ["skip to the next song on {media}", "next one in {room}"]),
    "previous": _t(["go back a track on {media}", "previous song in {room}"], ["back one track in {room}"]),
    "stop": _t(["stop {media}", "stop the music in {room}"], ["end the playback on {media}"]),
    "volume": _t(["set the volume on {media} to {n}", "volume {n} in {room}", "{media} volume to {n}"],
                 ["put {media} at volume {n}", "change the volume in {room} to {n}"]),
    "source": _t(["put {source} on {media}", "switch {media} to {source}", "play {source} in {room}"],
                 ["change {media} over to {source}", "i want {source} on {media}"]),
    # status questions
    "status_lock": _t(["is {lock} locked", "did i lock {lock}"], ["is {lock} still unlocked"]),
    "status_power": _t(["{be} {dev} on", "did i leave {dev} on"], ["{be} {dev} still on"]),
    "status_temp": _t(["what's the temperature in {room}", "how warm is it in {room}"], ["how cold is {room} right now"]),
    "status_media": _t(["what's playing on {media}"], ["what's {media} playing right now"]),
    "status_cover": _t(["{be} {cover} open", "{be} {cover} closed"], ["tell me whether {cover} {be} closed"]),
    # timers, alarms, scenes
    "timer": _t(["set a timer for {dur}", "timer {dur}", "start a timer, {dur}", "countdown {dur}"],
                ["put a timer on for {dur}", "i need a timer, {dur}"]),
    "timer_label": _t(["set a {label} timer for {dur}", "can you time {dur} for the {label}"],
                      ["{dur} on the clock for the {label}", "time my {label}, {dur}"]),
    "alarm": _t(["wake me up at {time}", "set an alarm for {time}", "alarm at {time}"],
                ["i need to be up at {time}", "get me up at {time} tomorrow"]),
    "alarm_label": _t(["set a {label} alarm for {time}"], ["{label} alarm, {time}"]),
    "scene": _t(["activate {scene}", "start {scene}", "switch to {scene}", "{scene}", "set the house to {scene}"],
                ["kick off {scene}", "let's do {scene}", "put the house in {scene}"]),
    # a colour asked of a white-only light: no_action(unsupported)
    "color_unsupported": _t(["make {dev} {color}", "change {dev} to {color}"], ["can {dev} go {color}"]),
    # joining several requests (multi_call)
    "join2": _t(["{a} and {b}", "{a}, then {b}", "{a} and also {b}"],
                ["first {a}, then {b}", "{a}, and while you're at it {b}", "{a} plus {b}"]),
    "join3": _t(["{a}, {b} and {c}"], ["{a}, {b}, and {c}"]),
}

# Whole utterances: (text, target). Indirect ones switch a device on; scene ones name a scene.
UTTERANCES: dict[str, T] = {
    "indirect_on": _t(["the bathroom is all steamy|fan.bathroom_extractor", "the lawn looks really dry|switch.garden_sprinkler",
                       "i need a coffee|switch.kitchen_coffee_maker",
                       "fancy a cup of tea, can you boil some water|switch.kitchen_kettle"],
                      ["the mirror is all fogged up in the bathroom|fan.bathroom_extractor",
                       "the garden plants need water|switch.garden_sprinkler",
                       "i could really use an espresso|switch.kitchen_coffee_maker"]),
    "scene_say": _t(["i'm going to bed|good_night", "night night house|good_night", "we're leaving now|away",
                     "i'm heading out|away", "i'm up|good_morning", "let's watch a movie|movie_night",
                     "dinner is ready|dinner", "the guests are arriving|party", "i need to concentrate|focus"],
                    ["time to sleep|good_night", "we're off, see you later|away", "morning! just woke up|good_morning",
                     "film time, get the room ready|movie_night", "we're sitting down to eat|dinner",
                     "let's get this party started|party", "time to get some work done|focus"]),
    "chit_chat": _t(["hello", "how are you today", "tell me a joke", "thanks, that's all", "you're the best",
                     "what's your name", "good job", "i'm bored", "who are you"],
                    ["what's up", "do you like music", "i love you, house", "who made you", "you're funny"]),
    "unsupported": _t(["what's the weather tomorrow", "order a large pizza", "call mom", "turn on the dishwasher",
                       "preheat the oven to 200 degrees", "add milk to my shopping list", "make the fridge colder",
                       "read me the news"],
                      ["book a table for two tonight", "what's the capital of france", "start the washing machine",
                       "turn on the heated floor in the kitchen", "send a text to dad"]),
    "unclear": _t(["turn it off", "make it brighter", "set it to 40", "turn on the lights", "open it",
                   "change the color", "turn that up"],
                  ["switch that thing on", "lower it a bit", "turn the lights down", "do the usual"]),
}

POOLS: dict[str, dict[str, list]] = {
    "level": _t([10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 100], [5, 15, 35, 45, 55, 65, 85, 95]),
    "cover_level": _t([25, 30, 40, 60, 70, 75], [15, 35, 45, 65, 85]),
    "volume": _t([10, 15, 20, 25, 30, 40, 50, 60], [12, 18, 35, 45, 70]),
    "temperature": _t([18, 19, 20, 21, 22, 23, 24, 19.5, 22.5], [16, 17, 25, 26, 20.5, 21.5]),
    "bright_step": _t([10, 30, 40], [15, 25, 35]),
    "temp_step": _t([2, 3], [4, 1.5]),
    "volume_step": _t([5, 20], [15, 25]),
    # surface|enum value
    "color": _t(["red|red", "green|green", "blue|blue", "purple|purple", "pink|pink", "warm white|warm_white",
                 "white|white"],
                ["orange|orange", "yellow|yellow", "cool white|cool_white", "violet|purple", "crimson|red"]),
    "source": _t(["spotify|spotify", "the radio|radio", "podcasts|podcasts", "bluetooth|bluetooth", "live tv|tv",
                  "netflix|netflix", "youtube|youtube", "hdmi|hdmi"],
                 ["spotify|spotify", "netflix|netflix", "youtube|youtube", "fm radio|radio", "a podcast|podcasts",
                  "my phone|bluetooth", "regular tv|tv", "the playstation|hdmi"]),
    "duration": _t([f"{n} minutes" for n in (2, 3, 4, 5, 6, 8, 10, 15, 20, 25, 30, 40, 45)]
                   + [f"{n} min" for n in (5, 10, 15, 20)]
                   + ["a minute", "an hour", "half an hour", "2 hours", "30 seconds", "45 seconds", "90 seconds",
                      "ten minutes", "five minutes"],
                   [f"{n} minutes" for n in (7, 9, 12, 18, 35, 50)]
                   + ["twelve minutes", "an hour and a half", "a quarter of an hour", "1 hour 20 minutes", "20 secs",
                      "75 seconds"]),
    "time": _t([f"{h}:{m:02d}" for h in (5, 6, 7, 8, 9) for m in (0, 15, 30, 45)]
               + [f"{h} am" for h in (5, 6, 7, 8, 9, 10)] + [f"{h} pm" for h in (1, 2, 3, 4, 5, 6)]
               + [f"{h}:30 pm" for h in (2, 4, 6)] + [f"half past {w}" for w in ("five", "six", "seven", "eight", "nine")]
               + [f"{w} o'clock" for w in ("six", "seven", "eight")] + ["13:00", "18:15", "21:45"],
               [f"quarter to {w}" for w in ("six", "seven", "eight", "nine")]
               + [f"{h}.{m}" for h in (6, 7) for m in (10, 20, 40, 50)]
               + ["3:10 pm", "5:20 pm", "7:40 pm", "ten past six", "noon", "twenty past seven"]),
    "timer_label": _t(["pasta", "eggs", "laundry", "tea", "pizza", "bread"], ["cookies", "rice", "steak"]),
    "alarm_label": _t(["gym", "work", "school"], ["flight", "meds"]),
    # decorations
    "prefix": _t(["hey, ", "hey home, ", "ok ", "um, ", "so "], ["yo, ", "hi there, ", "excuse me, "]),
    "suffix": _t([" please", ", thanks", " thank you", " pls", " now"], [" cheers", ", if you don't mind", " asap", " for me"]),
}
# fmt: on
