"""services/generator/prompt.py: the context block, messages and citations."""

from __future__ import annotations

import re

import pytest

from services.generator.prompt import (
    SYSTEM_PROMPT,
    build_messages,
    citations,
    cited_numbers,
    context_block,
)
from shared.jobs import Chunk

pytestmark = pytest.mark.unit


def chunk(n: int, text: str | None = None, score: float = 0.5) -> Chunk:
    return Chunk(document_id=f"doc{n}", chunk_id=f"doc{n}:{n}", source=f"file{n}.md",
                 text=text if text is not None else f"Passage {n} text " * 5, score=score)


# --- context_block --------------------------------------------------------------------------

def test_context_block_numbers_passages_from_one() -> None:
    block, used = context_block([chunk(1), chunk(2), chunk(3)], 5000)
    assert used == 3
    assert re.findall(r"^\[(\d+)\] \(from (\S+)\)$", block, re.M) == [
        ("1", "file1.md"), ("2", "file2.md"), ("3", "file3.md")]
    assert chunk(2).text in block


def test_context_block_separates_passages_with_blank_line() -> None:
    block, _ = context_block([chunk(1, "alpha " * 20), chunk(2, "beta " * 20)], 5000)
    assert "\n\n[2] (from file2.md)\n" in block


@pytest.mark.parametrize("max_chars", [100, 150, 200, 333, 500, 777, 1000, 2500])
def test_context_block_never_exceeds_budget(max_chars: int) -> None:
    chunks = [chunk(i, (f"word{i} ") * (7 * i + 3)) for i in range(1, 12)]
    block, used = context_block(chunks, max_chars)
    assert len(block) <= max_chars
    assert block.count("(from ") == used


def test_context_block_truncates_a_long_passage_at_a_word_boundary() -> None:
    text = " ".join(f"w{i:03d}" for i in range(500))
    block, used = context_block([chunk(1, text)], 300)
    assert used == 1
    body = block.split("\n", 1)[1]
    assert len(block) <= 300
    assert text.startswith(body)
    assert text[len(body)] == " "  # cut before a space, not inside a word


def test_context_block_stops_before_a_tiny_passage() -> None:
    first = chunk(1, "a " * 100)  # 200 chars + header
    budget = len("[1] (from file1.md)\n") + 200 + 2 + len("[2] (from file2.md)\n") + 79
    block, used = context_block([first, chunk(2, "b " * 100)], budget)
    assert used == 1
    assert "[2]" not in block


def test_context_block_includes_a_passage_with_enough_room() -> None:
    first = chunk(1, "a " * 100)
    budget = len("[1] (from file1.md)\n") + 200 + 2 + len("[2] (from file2.md)\n") + 80
    _, used = context_block([first, chunk(2, "b " * 100)], budget)
    assert used == 2


def test_context_block_with_too_small_budget_is_empty() -> None:
    assert context_block([chunk(1)], 50) == ("", 0)


def test_context_block_of_no_chunks_is_empty() -> None:
    assert context_block([], 1000) == ("", 0)


# --- build_messages ---------------------------------------------------------------------------

def test_build_messages_has_system_then_user() -> None:
    messages, used = build_messages("  How long must passwords be?  ", [chunk(1), chunk(2)], 5000)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == SYSTEM_PROMPT
    user = messages[1]["content"]
    assert user.startswith("Context:\n[1] (from file1.md)\n")
    assert "[2] (from file2.md)" in user
    assert user.endswith("Question: How long must passwords be?\nAnswer:")
    assert used == 2


def test_build_messages_reports_passages_that_fit() -> None:
    chunks = [chunk(i, "x " * 200) for i in range(1, 6)]
    messages, used = build_messages("q?", chunks, 1000)
    assert 0 < used < 5
    assert f"[{used}] (from" in messages[1]["content"]
    assert f"[{used + 1}] (from" not in messages[1]["content"]


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
