"""Quality control: voting, early stopping, preference pairs, judge parsing, de-duplication."""

from supertiny.core.toolcalls import ToolCall
from supertiny.label import quality
from supertiny.label.prototype import PipelineResult

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "book",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "people": {"type": "integer"}},
                "required": ["city", "people"],
                "additionalProperties": False,
            },
        },
    }
]


def sample(city=None, people=2, error=None):
    calls = [] if city is None else [ToolCall("book", {"city": city, "people": people})]
    trace = [{"step": 0, "message": {"role": "assistant", "content": "garbage"}}]
    return quality.check_sample(
        PipelineResult(calls=calls, content=None, error=error, trace=trace), TOOLS, False
    )


def test_check_sample_validates_and_coerces():
    ok = sample("osl", "3")  # "3" is coerced to 3 where the schema says integer
    assert ok.problem is None and ok.calls[0].arguments["people"] == 3
    assert ok.key == sample("osl", 3).key
    bad = quality.check_sample(
        PipelineResult([ToolCall("book", {"city": "osl"})], None, None), TOOLS, False
    )
    assert bad.key is None and bad.problem.startswith("schema:")
    assert sample(error="step 0: garbage").problem == "step 0: garbage"
    assert sample(None).problem == "no final call"


def test_vote_majority_and_ties_prefer_first():
    result = quality.vote([sample("a"), sample("b"), sample("b")])
    assert result.winner.calls[0].arguments["city"] == "b"
    assert (result.votes, result.samples) == (2, 3) and abs(result.agreement - 2 / 3) < 1e-9
    tie = quality.vote([sample("a"), sample("b")])
    assert tie.winner.calls[0].arguments["city"] == "a" and tie.agreement == 0.5
    none = quality.vote([sample(error="x"), sample(error="y")])
    assert none.winner is None and none.agreement == 0.0


def test_invalid_samples_count_against_agreement():
    result = quality.vote([sample("a"), sample(error="boom"), sample("a")])
    assert result.votes == 2 and abs(result.agreement - 2 / 3) < 1e-9


def test_decided_early_stop():
    a, b, bad = sample("a"), sample("b"), sample(error="x")
    assert not quality.decided([a], 3, 0.6)
    assert quality.decided([a, a], 3, 0.6)  # the third cannot change the outcome
    assert not quality.decided([a, b], 3, 0.6)  # the third decides
    assert quality.decided([bad, bad], 3, 0.6)  # 1/3 can never reach 0.6
    assert not quality.decided([a, a], 5, 0.6)  # 2/5 not yet secured
    assert quality.decided([a, a, a], 5, 0.6)
    assert quality.decided([a], 1, 0.6)


def test_preference_pairs_one_per_distinct_loser():
    a1, a2, b, bad = sample("a"), sample("a"), sample("b"), sample(error="bad output")
    pairs = quality.preference_pairs("r1", a1, [a1, b, a2, bad, sample("b")])
    assert [p["reason"] for p in pairs] == ["disagrees with the majority", "bad output"]
    assert pairs[0]["chosen"]["tool_calls"][0]["arguments"]["city"] == "a"
    assert pairs[0]["rejected"]["tool_calls"][0]["arguments"]["city"] == "b"
    assert pairs[1]["rejected"]["raw"] == "garbage"
    assert [p["id"] for p in pairs] == ["r1-p0", "r1-p1"]


def test_parse_judgement_shapes():
    assert quality.parse_judgement('{"score": 0.8, "reason": "fine"}') == (0.8, "fine")
    assert quality.parse_judgement('Sure! ```json\n{"score": 1, "reason": "ok"}\n```')[0] == 1.0
    assert quality.parse_judgement('{"score": 7}')[0] == 1.0  # clamped
    assert quality.parse_judgement("score: 0.25")[0] == 0.25
    score, reason = quality.parse_judgement("I cannot grade this")
    assert score is None and "unreadable" in reason


def test_judge_prompt_contains_request_label_and_lookups():
    messages = quality.judge_messages(
        quality.DEFAULT_RUBRIC,
        TOOLS,
        [{"role": "user", "content": "2 in Oslo"}],
        {"tool_calls": [{"name": "book", "arguments": {"city": "osl"}}]},
        [{"tool_results": [{"name": "find", "result": "osl"}]}],
    )
    assert messages[0]["content"] == quality.DEFAULT_RUBRIC
    body = messages[1]["content"]
    assert "2 in Oslo" in body and '"city": "osl"' in body and "Facts looked up" in body


def test_find_duplicates_exact_and_near():
    texts = {
        "1": "Turn off the kitchen lights",
        "2": "turn off the kitchen lights!",  # identical after normalising
        "3": "Turn off the kitchen lihgts",  # a typo (swap)
        "4": "Turn on the kitchen lights",  # on/off: a different request
        "5": "please set the living room thermostat to 21 degrees tonight",
        "6": "please set the living room thermostat to 22 degrees tonight",  # another number
        "7": "please set the livin room thermostat to 21 degrees tonight",  # a typo
        "8": "Turn off the kitchen light",  # light/lights: one edit
    }
    dups = quality.find_duplicates(texts, "near")
    assert dups == {"2": "1", "3": "1", "7": "5", "8": "1"}
    assert quality.find_duplicates(texts, "exact") == {"2": "1"}
    assert quality.find_duplicates(texts, "off") == {}


def test_near_identical_limits_typos_per_sentence():
    a = "set the office lights to warm white".split()
    assert quality.near_identical(a, "set the ofice lights to warm white".split())
    assert not quality.near_identical(
        a, "set the ofice lihgts to warm white".split()
    )  # 2 typos in 7 words
    assert not quality.near_identical(
        a, "set the office lights to cool white".split()
    )  # not one edit
    assert not quality.near_identical(["fan", "on"], ["fun", "on"])  # short words must match


def test_normalise_text():
    assert quality.normalise_text("  Café,  OPEN the   blinds! ") == "cafe open the blinds"
