"""Stop strings: gen_kwargs 'until' as a list, and the greedy path's cheap test of which new tokens to decode."""

from __future__ import annotations

import pytest

from stf_bench.adapter.stopping import GreedyStops, cut_at_stop, max_new_tokens, until_strings
from stf_bench.errors import StfBenchError


@pytest.fixture
def tok(tiny_model):
    return tiny_model("stf-tiny")[1].tokenizer


def test_until_and_max_new_tokens_from_gen_kwargs():
    assert until_strings({"until": "\n"}) == ["\n"] and until_strings({"until": ("a", "b")}) == ["a", "b"]
    assert until_strings({}) == [] and max_new_tokens({}) == 128 and max_new_tokens({"max_new_tokens": "7"}) == 7
    with pytest.raises(StfBenchError, match="'until' must be a string or a list"):
        until_strings({"until": 3})


def test_stop_check_skips_only_tokens_that_cannot_end_a_stop_string(tok):
    stops = GreedyStops(tok)
    colon, letter = (tok.encode(c, add_special_tokens=False)[-1] for c in (":", "x"))
    assert stops.may_end(colon, {":"}) and not stops.may_end(letter, {":"})
    assert stops.may_end(tok.eos_token_id, {":"})  # no text of its own: decode to be sure
    assert stops.may_end(letter, {"\n"})  # whitespace ends are merged or dropped at token edges: always decode


def test_cut_at_earliest_stop_string():
    assert cut_at_stop("yes.\n\nUSER: more", ["USER:", "\n\n"]) == "yes."
    assert cut_at_stop("abcSTOPdefEND", ["END", "STOP"]) == "abc"
    assert cut_at_stop("no stop here", ["</s>"]) == "no stop here"


def test_empty_stop_string_is_ignored():
    assert cut_at_stop("answer", ["", "x"]) == "answer"
