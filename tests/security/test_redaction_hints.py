"""Redaction's cheap gates (the hints a pattern needs before it runs) never skip a
secret the pattern would mask."""

import pytest

from learning.services.redaction import _ANY_HINT, _HINTS, MASK, _any_of, redact_text

EVERY_HINT = sorted({hint for hints in _HINTS.values() for hint in hints})


@pytest.mark.parametrize("hint", EVERY_HINT)
def test_any_hint_finds_every_hint_inside_other_text(hint):
    assert _ANY_HINT.search(f"zz {hint}zz")


def test_a_word_that_starts_another_stands_for_both():
    pattern = _any_of(["sk-", "sk-ant-", "secret", "session"])
    assert pattern.search("key sk-ant-xyz") and pattern.search("a sk-1")
    assert pattern.search("the session") and pattern.search("my secret")
    assert not pattern.search("a skate, a sesame")


@pytest.mark.parametrize("space", [" ", "\t", "\n", "\u00a0", "  "])
@pytest.mark.parametrize("word", ["Basic", "BASIC", "basic"])
def test_basic_credentials_are_masked_whatever_the_case_and_space(word, space):
    text = f"login with {word}{space}dXNlcjpodW50ZXIyLVBhNTV3MHJk== then"
    redacted, count = redact_text(text)
    assert count == 1 and "dXNlcjpodW50ZXIyLVBhNTV3MHJk" not in redacted
    assert MASK in redacted


def test_basic_as_a_word_part_is_left_alone():
    text = "cabin basic_economy, fare class basic economy for 2 passengers"
    assert redact_text(text) == (text, 0)
