"""services/embedder/chunking.py: normalize and chunk_text."""

from __future__ import annotations

import random
import string
from collections import Counter

import pytest

from services.embedder.chunking import chunk_text, normalize

pytestmark = pytest.mark.unit

# hypothesis is not installed in this project: the properties below are checked over
# deterministic, seeded random inputs instead.
_ALPHABET = string.ascii_letters + string.digits + ".,!?\"'()[]" + " " * 12 + "\n" * 4 + "\t\r\x00"


def _random_cases(seed: int, count: int = 40) -> list[tuple[str, int, int]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        text = "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 600)))
        size = rng.randrange(1, 120)
        cases.append((text, size, rng.randrange(0, size)))
    return cases


SEEDS = range(25)


def _carried(prev: str, nxt: str, overlap: int) -> int:
    """Length of the longest word-aligned start of `nxt` (at most `overlap`) that ends `prev`."""
    for k in range(min(overlap, len(nxt)), 0, -1):
        if prev.endswith(nxt[:k]) and (k == len(nxt) or nxt[k] == " "):
            return k
    return 0


# --- normalize --------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    ("a\r\nb\rc", "a\nb\nc"),
    ("a \t\f\v  b", "a b"),
    ("   padded   ", "padded"),
    ("one\n\n\n\n\ntwo", "one\n\ntwo"),
    ("one\n  \t \n\ntwo", "one\n\ntwo"),
    ("line one  \n   line two", "line one\nline two"),
    ("N\x00U\x00L", "NUL"),
    ("", ""),
])
def test_normalize_unifies_line_endings_spaces_and_blank_lines(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_normalize_keeps_paragraph_breaks() -> None:
    assert normalize("First paragraph.\r\n\r\nSecond paragraph.") == \
        "First paragraph.\n\nSecond paragraph."


# --- chunk_text: argument and edge cases ------------------------------------------------------

@pytest.mark.parametrize("text", ["", "   ", "\n\n\t\r\n", "\x00\x00", " \x00 \n "])
def test_empty_or_whitespace_text_gives_no_chunks(text: str) -> None:
    assert chunk_text(text, 100, 10) == []


@pytest.mark.parametrize(("size", "overlap"), [(10, 10), (10, 11), (1, 5)])
def test_overlap_not_smaller_than_size_raises(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("some text", size, overlap)


def test_short_text_is_a_single_normalized_chunk() -> None:
    assert chunk_text("  Hello\t  world.  ", 100, 20) == ["Hello world."]


def test_nul_characters_are_removed() -> None:
    assert chunk_text("ab\x00cd ef\x00", 100, 0) == ["abcd ef"]


def test_lines_inside_a_paragraph_are_joined_with_a_space() -> None:
    assert chunk_text("first line\nsecond line", 100, 0) == ["first line second line"]


# --- chunk_text: structure ------------------------------------------------------------------

def test_paragraphs_that_fit_are_packed_into_one_chunk() -> None:
    assert chunk_text("Para one.\n\nPara two.", 100, 10) == ["Para one.\n\nPara two."]


def test_paragraph_that_fits_is_never_split_across_chunks() -> None:
    paragraphs = [f"Paragraph {i} " + " ".join(f"word{i}x{j}" for j in range(8)) + "."
                  for i in range(12)]
    size = 160
    assert all(len(p) <= size for p in paragraphs)
    chunks = chunk_text("\n\n".join(paragraphs), size, 30)
    assert len(chunks) > 1
    for paragraph in paragraphs:
        assert any(paragraph in chunk for chunk in chunks), paragraph


def test_long_paragraph_is_split_at_sentence_boundaries() -> None:
    sentences = [f"Sentence {i} says something quite specific." for i in range(10)]
    chunks = chunk_text(" ".join(sentences), 100, 0)
    for sentence in sentences:
        assert any(sentence in chunk for chunk in chunks), sentence


def test_very_long_word_is_hard_cut_at_size() -> None:
    assert chunk_text("x" * 250, 100, 0) == ["x" * 100, "x" * 100, "x" * 50]


def test_hard_cut_word_is_kept_whole_in_order_without_overlap() -> None:
    word = "".join(string.ascii_lowercase[i % 26] for i in range(333))
    chunks = chunk_text(word, 50, 0)
    assert all(len(c) <= 50 for c in chunks)
    assert "".join(chunks) == word


# --- chunk_text: overlap ----------------------------------------------------------------------

def test_overlap_carried_between_chunks_of_a_long_paragraph() -> None:
    text = " ".join(f"Item{i:03d} alpha{i:03d} beta{i:03d}." for i in range(80))
    size, overlap = 200, 40
    chunks = chunk_text(text, size, overlap)
    assert len(chunks) > 3
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        assert _carried(prev, nxt, overlap) > 0, (prev, nxt)


def test_overlap_zero_carries_nothing() -> None:
    text = " ".join(f"Item{i:03d} alpha{i:03d} beta{i:03d}." for i in range(80))
    chunks = chunk_text(text, 200, 0)
    assert " ".join(chunks).replace("\n\n", " ") == text


def test_overlap_carried_within_long_paragraph_without_sentence_breaks() -> None:
    text = " ".join(f"w{i:04d}" for i in range(600))
    size, overlap = 800, 120
    chunks = chunk_text(text, size, overlap)
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        assert _carried(prev, nxt, overlap) > 0, (prev[-30:], nxt[:30])


def test_overlap_starts_at_a_word_boundary() -> None:
    text = "Alpha supercalifragilistic. Bravo charlie delta."
    chunks = chunk_text(text, 40, 8)
    assert len(chunks) == 2
    assert chunks[1].split()[0] in text.split()


def test_no_chunk_is_whitespace_only() -> None:
    chunks = chunk_text("a" * 99 + " \u00a0 " + "b" * 99, 100, 0)
    assert all(chunk.strip() for chunk in chunks), chunks


# --- chunk_text: properties over random inputs --------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_chunks_never_exceed_size(seed: int) -> None:
    for text, size, overlap in _random_cases(seed):
        for chunk in chunk_text(text, size, overlap):
            assert len(chunk) <= size, (text, size, overlap, chunk)


@pytest.mark.parametrize("seed", SEEDS)
def test_no_word_lost(seed: int) -> None:
    for text, size, overlap in _random_cases(seed):
        chunks = chunk_text(text, size, overlap)
        for word in text.replace("\x00", "").split():
            if len(word) <= size:
                assert any(word in chunk for chunk in chunks), (text, size, overlap, word)


@pytest.mark.parametrize("seed", SEEDS)
def test_no_character_lost_and_no_nul_kept(seed: int) -> None:
    for text, size, overlap in _random_cases(seed):
        chunks = chunk_text(text, size, overlap)
        joined = "".join(chunks)
        wanted = Counter(c for c in text if not c.isspace() and c != "\x00")
        got = Counter(c for c in joined if not c.isspace())
        assert not wanted - got, (text, size, overlap)
        assert "\x00" not in joined


@pytest.mark.parametrize("seed", SEEDS)
def test_chunks_are_non_empty_and_stripped(seed: int) -> None:
    for text, size, overlap in _random_cases(seed):
        for chunk in chunk_text(text, size, overlap):
            assert chunk and chunk == chunk.strip(), (text, size, overlap, chunk)
