"""The grounded prompt, and the mapping from the answer's [n] markers back to passages."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from shared.jobs import Chunk

NO_CONTEXT_ANSWER = (
    "I could not find anything in the indexed documents that answers this question, "
    "so I cannot answer it from the company's sources."
)

SYSTEM_PROMPT = (
    "You answer questions from company staff using ONLY the numbered context passages "
    "taken from the company's documents.\n"
    "Rules:\n"
    "- Use only facts stated in the context. Do not use outside knowledge.\n"
    "- After each fact, cite the passage it comes from by its number in square brackets, "
    "like [1] or [2].\n"
    "- If the context does not contain the answer, say that the documents do not say, "
    "and do not guess.\n"
    "- Answer in one to three short sentences."
)

_MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")


def context_block(chunks: Sequence[Chunk], max_chars: int) -> tuple[str, int]:
    """Numbered passages within a character budget; returns (block, passages used)."""
    parts: list[str] = []
    used = 0
    budget = max_chars
    for number, chunk in enumerate(chunks, start=1):
        header = f"[{number}] (from {chunk.source})\n"
        room = budget - len(header)
        if room < 80:  # a passage this short would only confuse the model
            break
        text = chunk.text if len(chunk.text) <= room else chunk.text[:room].rsplit(" ", 1)[0]
        parts.append(header + text)
        budget -= len(header) + len(text) + 2
        used = number
    return "\n\n".join(parts), used


def build_messages(question: str, chunks: Sequence[Chunk],
                   max_context_chars: int) -> tuple[list[dict[str, str]], int]:
    """Chat messages for the engine and the number of passages they include."""
    block, used = context_block(chunks, max_context_chars)
    user = f"Context:\n{block}\n\nQuestion: {question.strip()}\nAnswer:"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}], used


def cited_numbers(answer: str, passages: int) -> set[int]:
    """The passage numbers the answer cites, ignoring numbers with no passage."""
    found: set[int] = set()
    for group in _MARKER.findall(answer):
        found |= {int(n) for n in group.split(",") if 1 <= int(n) <= passages}
    return found


def citations(chunks: Sequence[Chunk], answer: str) -> list[dict[str, Any]]:
    """The numbered passages the answer was grounded on: [n] in the answer is citations[n-1];
    `cited` tells which of them the answer refers to explicitly."""
    cited = cited_numbers(answer, len(chunks))
    return [{"index": n, "document_id": c.document_id, "chunk_id": c.chunk_id,
             "source": c.source, "score": round(c.score, 4), "text": c.text,
             "cited": n in cited} for n, c in enumerate(chunks, start=1)]
