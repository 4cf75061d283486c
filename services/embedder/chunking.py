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


def _pieces(paragraph: str, size: int) -> list[str]:
    """A paragraph as pieces no longer than `size`: whole, by sentence, then by word."""
    if len(paragraph) <= size:
        return [paragraph]
    out: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        if len(sentence) <= size:
            out.append(sentence)
            continue
        words, current = sentence.split(" "), ""
        for word in words:
            while len(word) > size:  # a "word" longer than a chunk: hard cut
                if current:
                    out.append(current)
                    current = ""
                out.append(word[:size])
                word = word[size:]
            if current and len(current) + 1 + len(word) > size:
                out.append(current)
                current = word
            else:
                current = f"{current} {word}" if current else word
        if current:
            out.append(current)
    return out


def _tail(text: str, overlap: int) -> str:
    """The last `overlap` characters of text, starting at a word boundary."""
    if overlap <= 0 or len(text) <= overlap:
        return text if overlap > 0 else ""
    tail = text[-overlap:]
    cut = tail.find(" ")
    return tail[cut + 1:] if 0 <= cut < len(tail) - 1 else tail


def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    """Greedy packing of paragraph pieces into chunks of at most `size` characters, each
    starting with up to `overlap` characters from the end of the previous one."""
    if overlap >= size:
        raise ValueError("overlap must be smaller than size")
    pieces = [p for para in normalize(text).split("\n\n") if para
              for p in _pieces(para.replace("\n", " ").strip(), size)]
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if not current:
            current = piece
        elif len(current) + 2 + len(piece) <= size:
            current = f"{current}\n\n{piece}"
        else:
            chunks.append(current)
            carry = _tail(current, overlap)
            fits = carry and len(carry) + 1 + len(piece) <= size
            current = f"{carry} {piece}" if fits else piece
    if current:
        chunks.append(current)
    return chunks
