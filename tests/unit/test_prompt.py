"""services/generator/prompt.py: the context block, messages and citations."""

from __future__ import annotations

import re

import pytest

from services.generator.prompt import (
    MIN_PASSAGE_TOKENS,
    SYSTEM_PROMPT,
    TEMPLATE_TOKENS,
    Budget,
    build_messages,
    citations,
    cited_numbers,
    context_block,
    fit,
    fixed_tokens,
    plan,
)
from shared.jobs import Chunk

pytestmark = pytest.mark.unit


def chunk(n: int, text: str | None = None, score: float = 0.5) -> Chunk:
    return Chunk(document_id=f"doc{n}", chunk_id=f"doc{n}:{n}", source=f"file{n}.md",
                 text=text if text is not None else f"Passage {n} text " * 5, score=score)


def chars(text: str) -> int:
    """A fake tokenizer: one token per character."""
    return len(text)


def tokens_like_a_bpe(text: str) -> int:
    """A fake tokenizer shaped like the real ones: about four ASCII characters a token, and
    several tokens for each character outside it (astral letters, emoji, combining marks)."""
    ascii_chars = sum(1 for c in text if ord(c) < 128)
    return -(-ascii_chars // 4) + 3 * (len(text) - ascii_chars)


ODD = "𝔥𝔬𝔴 𝔩𝔬𝔫𝔤 🏖️👩\u200d💻 e\u0301\u0301 𠜎𠜱 休暇は何日 "


# --- fit --------------------------------------------------------------------------------------

def test_fit_keeps_a_text_that_fits() -> None:
    assert fit("short text", 100, chars) == "short text"


def test_fit_cuts_at_a_word_boundary_within_the_budget() -> None:
    text = " ".join(f"w{i:03d}" for i in range(500))
    piece = fit(text, 300, chars)
    assert len(piece) <= 300 and text.startswith(piece)
    assert text[len(piece)] == " "  # cut before a space, not inside a word


@pytest.mark.parametrize("budget", [1, 7, 50, 333, 1000])
def test_fit_cuts_odd_unicode_by_its_tokens_not_its_characters(budget: int) -> None:
    text = ODD * 300
    piece = fit(text, budget, tokens_like_a_bpe)
    assert tokens_like_a_bpe(piece) <= budget and text.startswith(piece)
    assert len(piece) < budget  # several tokens a character: fewer characters than tokens


def test_fit_of_nothing_is_empty() -> None:
    assert fit(ODD * 10, 0, tokens_like_a_bpe) == ""


# --- plan -------------------------------------------------------------------------------------

def test_plan_shares_the_context_between_answer_question_and_passages() -> None:
    budget = plan(2048, fixed=200, max_tokens=128, max_context_tokens=1500)
    assert budget.max_tokens == 128
    assert budget.question == (2048 - 200 - 128) // 2
    assert budget.context == 2048 - 200 - 128 - budget.question
    assert plan(8192, 200, 128, 1500).context == 1500  # never more than asked


def test_plan_lowers_an_answer_that_would_leave_no_room_for_the_prompt() -> None:
    budget = plan(2048, fixed=200, max_tokens=4096, max_context_tokens=1500)
    assert budget.max_tokens == (2048 - 200) // 2
    assert budget.max_tokens + budget.question + budget.context <= 2048 - 200
    assert budget.question + budget.context >= budget.max_tokens


# --- context_block --------------------------------------------------------------------------

def test_context_block_numbers_passages_from_one() -> None:
    block, used = context_block([chunk(1), chunk(2), chunk(3)], 5000, chars)
    assert used == 3
    assert re.findall(r"^\[(\d+)\] \(from (\S+)\)$", block, re.M) == [
        ("1", "file1.md"), ("2", "file2.md"), ("3", "file3.md")]
    assert chunk(2).text in block


def test_context_block_separates_passages_with_blank_line() -> None:
    block, _ = context_block([chunk(1, "alpha " * 20), chunk(2, "beta " * 20)], 5000, chars)
    assert "\n\n[2] (from file2.md)\n" in block


@pytest.mark.parametrize("count", [chars, tokens_like_a_bpe])
@pytest.mark.parametrize("budget", [100, 150, 200, 333, 500, 777, 1000, 2500])
def test_context_block_never_exceeds_budget(budget: int, count) -> None:  # type: ignore[no-untyped-def]
    chunks = [chunk(i, (f"word{i} {ODD}") * (3 * i + 1)) for i in range(1, 12)]
    block, used = context_block(chunks, budget, count)
    assert count(block) <= budget
    assert block.count("(from ") == used


def test_context_block_stops_before_a_tiny_passage() -> None:
    header = len("[1] (from file1.md)\n")
    budget = header + 200 + 2 + len("[2] (from file2.md)\n") + MIN_PASSAGE_TOKENS - 1
    _, used = context_block([chunk(1, "a " * 100), chunk(2, "b " * 100)], budget, chars)
    assert used == 1


def test_context_block_includes_a_passage_with_enough_room() -> None:
    header = len("[1] (from file1.md)\n")
    budget = header + 200 + 2 + len("[2] (from file2.md)\n") + MIN_PASSAGE_TOKENS
    _, used = context_block([chunk(1, "a " * 100), chunk(2, "b " * 100)], budget, chars)
    assert used == 2


def test_context_block_with_too_small_budget_is_empty() -> None:
    assert context_block([chunk(1)], 30, chars) == ("", 0)


def test_context_block_of_no_chunks_is_empty() -> None:
    assert context_block([], 1000, chars) == ("", 0)


# --- build_messages ---------------------------------------------------------------------------

BIG = Budget(max_tokens=128, question=1000, context=5000)


def test_build_messages_has_system_then_user() -> None:
    messages, used = build_messages("  How long must passwords be?  ", [chunk(1), chunk(2)],
                                    BIG, chars)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == SYSTEM_PROMPT
    user = messages[1]["content"]
    assert user.startswith("Context:\n[1] (from file1.md)\n")
    assert "[2] (from file2.md)" in user
    assert user.endswith("Question: How long must passwords be?\nAnswer:")
    assert used == 2


def test_build_messages_reports_passages_that_fit() -> None:
    chunks = [chunk(i, "x " * 200) for i in range(1, 6)]
    messages, used = build_messages("q?", chunks, Budget(128, 100, 1000), chars)
    assert 0 < used < 5
    assert f"[{used}] (from" in messages[1]["content"]
    assert f"[{used + 1}] (from" not in messages[1]["content"]


@pytest.mark.parametrize("max_tokens", [16, 128, 4096])
def test_a_hostile_prompt_fits_the_engine_context(max_tokens: int) -> None:
    # The longest question the API takes and passages all of odd Unicode: the bug was a
    # prompt budgeted in characters, thousands of tokens over the engine's 2048.
    count = tokens_like_a_bpe
    budget = plan(2048, fixed_tokens(count), max_tokens, max_context_tokens=1500)
    chunks = [chunk(i, (ODD * 40)[:300]) for i in range(1, 21)]
    messages, used = build_messages((ODD * 400)[:4000], chunks, budget, count)
    prompt_tokens = sum(count(m["content"]) + TEMPLATE_TOKENS for m in messages)
    assert prompt_tokens + budget.max_tokens <= 2048
    assert used > 0 and "Question: 𝔥𝔬𝔴" in messages[1]["content"]


# --- cited_numbers ----------------------------------------------------------------------------

@pytest.mark.parametrize(("answer", "passages", "expected"), [
    ("Fourteen characters [1].", 3, {1}),
    ("Yes [2, 3] and also [1].", 3, {1, 2, 3}),
    ("Compact [1,2].", 3, {1, 2}),
    ("Out of range [12].", 3, set()),
    ("Zero [0] is not a passage.", 3, set()),
    ("Mixed [0, 2, 9].", 3, {2}),
    ("No markers at all.", 3, set()),
    ("Text [a] and [1-2] are not markers.", 3, set()),
    ("Repeated [1] [1] [1].", 1, {1}),
    ("Anything [1].", 0, set()),
])
def test_cited_numbers(answer: str, passages: int, expected: set[int]) -> None:
    assert cited_numbers(answer, passages) == expected


# --- citations --------------------------------------------------------------------------------

def test_citations_map_each_passage_with_cited_flag() -> None:
    chunks = [chunk(1, "one", 0.912345), chunk(2, "two", 0.5), chunk(3, "three", 0.3)]
    result = citations(chunks, "It is one [1] and three [3].")
    assert [c["index"] for c in result] == [1, 2, 3]
    assert [c["cited"] for c in result] == [True, False, True]
    assert result[0] == {"index": 1, "document_id": "doc1", "chunk_id": "doc1:1",
                         "source": "file1.md", "score": 0.9123, "text": "one", "cited": True}


def test_citations_of_no_chunks_is_empty() -> None:
    assert citations([], "Answer [1].") == []
