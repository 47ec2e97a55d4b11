"""stf_bench.args: the one reading of a boolean given as text (method arguments, stored model args, env flags)."""

import pytest

from stf_bench.args import env_flag, parse_bool


@pytest.mark.parametrize("text, expected", [("true", True), ("True", True), ("1", True), ("YES", True),
                                            ("false", False), ("0", False), ("No", False)])
def test_parse_bool_reads_the_words_in_any_case(text, expected):
    assert parse_bool(text) is expected


@pytest.mark.parametrize("text", ["maybe", "", "on", "2", "true "])
def test_parse_bool_refuses_anything_else(text):
    with pytest.raises(ValueError, match="not true or false"):
        parse_bool(text)


def test_env_flag_is_on_only_for_the_on_words(monkeypatch):
    monkeypatch.delenv("STFB_TEST_FLAG", raising=False)
    assert env_flag("STFB_TEST_FLAG") is False
    for value, on in (("1", True), ("on", True), ("TRUE", True), ("yes", True), ("0", False), ("off", False),
                      ("", False)):
        monkeypatch.setenv("STFB_TEST_FLAG", value)
        assert env_flag("STFB_TEST_FLAG") is on, value
