"""Config loading: typed sections, one-line errors naming the file and the key."""

import pytest

from supertiny.core.config import ConfigError, load, parse_overrides
from supertiny.label.config import LabelConfig, load_config


def write(tmp_path, text):
    path = tmp_path / "label.yaml"
    path.write_text(text)
    return path


def test_defaults_and_nested_values(tmp_path):
    conf = load(LabelConfig, write(tmp_path, "quality:\n  samples: 5\nlimit: 10\n"))
    assert conf.quality.samples == 5 and conf.limit == 10
    assert conf.teacher.url is None and conf.quality.min_agreement == 0.6


def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    path = write(tmp_path, "quality:\n  sampels: 5\n")
    with pytest.raises(ConfigError) as err:
        load(LabelConfig, path)
    message = str(err.value)
    assert str(path) in message and "quality.sampels" in message
    assert "did you mean 'samples'" in message


def test_wrong_type_names_key(tmp_path):
    path = write(tmp_path, "teacher:\n  concurrency: many\n")
    with pytest.raises(ConfigError, match=r"teacher\.concurrency: .*integer"):
        load(LabelConfig, path)


def test_out_of_range_value(tmp_path):
    with pytest.raises(ConfigError, match=r"quality\.min_agreement"):
        load(LabelConfig, write(tmp_path, "quality:\n  min_agreement: 1.5\n"))


def test_yaml_syntax_error_names_line(tmp_path):
    with pytest.raises(
        ConfigError, match=r"label\.yaml: line 3: not valid YAML: expected .,. or .]."
    ):
        load(LabelConfig, write(tmp_path, "quality:\n  samples: [1, 2\n"))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load(LabelConfig, tmp_path / "nope.yaml")


def test_preset_then_file_then_overrides(tmp_path):
    path = write(tmp_path, "limit: 7\n")
    conf = load_config(
        path, "quick", parse_overrides(["quality.samples=4", "teacher.url=http://x/v1"])
    )
    assert conf.limit == 7  # the file beats the preset
    assert conf.test_limit == 6  # from the preset
    assert conf.quality.samples == 4 and conf.teacher.url == "http://x/v1"


def test_bad_override_and_preset():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["samples"])
    with pytest.raises(ConfigError, match="unknown preset 'tiny'"):
        load_config(None, "tiny")
