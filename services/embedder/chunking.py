"""Split a document into overlapping chunks along paragraph and sentence boundaries."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_BLANK_LINES = re.compile(r"\n\s*\n+")
_SPACES = re.compile(r"[ \t\f\v]+")


def normalize(text: str) -> str:
    """Unify line endings and spacing; keep paragraph breaks (they guide chunking)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _pieces(paragraph: str, size: int, hard: int) -> list[str]:
    """A paragraph as pieces of about `size`: whole, by sentence, then by word; only a word
    longer than `hard` is cut."""
    if len(paragraph) <= size:
        return [paragraph]
    out: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        if len(sentence) <= size:
            out.append(sentence)
            continue
        current = ""
        for word in sentence.split():
            while len(word) > hard:  # a "word" longer than a chunk: hard cut
                if current:
                    out.append(current)
                    current = ""
                out.append(word[:hard])
                word = word[hard:]
            if current and len(current) + 1 + len(word) > size:
                out.append(current)
                current = word
            else:
                current = f"{current} {word}" if current else word
        if current:
            out.append(current)
    return [p for p in (piece.strip() for piece in out) if p]


def _tail(text: str, overlap: int) -> str:
    """At most the last `overlap` characters of text, starting at a word boundary."""
    if overlap <= 0:
        return ""
    if len(text) <= overlap:
        return text
    tail = text[-overlap:]
    if text[-overlap - 1].isspace():
        return tail.strip()
    cut = tail.find(" ")
    return tail[cut + 1:].strip() if cut >= 0 else ""


def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    """Greedy packing of paragraph pieces into chunks of at most `size` characters, each
    starting with up to `overlap` characters from the end of the previous one.

    Pieces are cut to `size - overlap` so the carried overlap always fits in front of them.
    Sentences of one paragraph are joined by a space, paragraphs by a blank line.
    """
    if overlap >= size:
        raise ValueError("overlap must be smaller than size")
    piece_size = size - overlap if overlap else size
    pieces: list[tuple[str, bool]] = []  # (piece, starts a paragraph)
    for para in normalize(text).split("\n\n"):
        for i, piece in enumerate(_pieces(" ".join(para.split()), piece_size, size)):
            pieces.append((piece, i == 0))
    chunks: list[str] = []
    current = ""
    for piece, new_paragraph in pieces:
        joiner = "\n\n" if new_paragraph else " "
        if not current:
            current = piece
        elif len(current) + len(joiner) + len(piece) <= size:
            current = f"{current}{joiner}{piece}"
        else:
            chunks.append(current)
            carry = _tail(current, overlap)
            fits = carry and len(carry) + 1 + len(piece) <= size
            current = f"{carry} {piece}" if fits else piece
    if current:
        chunks.append(current)
    return chunks
