"""The search benchmark's messages: the same text every run (so two runs' latencies compare), and
query words whose share of the messages is what the figures are labelled with."""

from __future__ import annotations

import pytest

from bench.search_latency import NO_MATCH, TARGET_SHARES, WORDS_PER_MESSAGE, messages, queries

COUNT = 10_000


def test_two_runs_generate_the_same_messages() -> None:
    first, _ = messages(COUNT)
    second, _ = messages(COUNT)
    assert first == second
    assert {len(text.split()) for text in first} == {WORDS_PER_MESSAGE}


@pytest.mark.parametrize(("name", "share"), [pytest.param(name, share, id=name) for name, share in TARGET_SHARES.items()])
def test_each_query_word_is_in_about_its_labelled_share_of_messages(name: str, share: float) -> None:
    texts, held = messages(COUNT)
    word = queries(held, COUNT)[name]
    assert held[word] == pytest.approx(share * COUNT, rel=0.1)
    assert sum(word in text.split() for text in texts) == held[word]


def test_the_phrase_is_the_half_word_then_the_common_word_and_no_match_is_in_no_message() -> None:
    _, held = messages(COUNT)
    asked = queries(held, COUNT)
    assert asked["phrase"] == f'"{asked["half_word"]} {asked["common_word"]}"'
    assert asked["no_match"] == NO_MATCH and NO_MATCH not in held
