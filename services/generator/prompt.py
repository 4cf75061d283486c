"""The grounded prompt, and the mapping from the answer's [n] markers back to passages.

The prompt is budgeted in the engine's tokens, not in characters: text of odd Unicode
characters takes several tokens each and would overflow the engine's context. Counting is
passed in (`Count`), so the builder stays pure; services/generator/tokens.py counts with the
engine's own tokenizer."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


Count = Callable[[str], int]  # tokens of a text, as the engine's tokenizer counts them

# What a chat template adds around each message (role markers, separators), and a margin for
# the few tokens that counting the pieces of a prompt apart can miss where they join.
TEMPLATE_TOKENS = 16
MARGIN_TOKENS = 16
MIN_PASSAGE_TOKENS = 20  # a passage cut shorter would only confuse the model
_USER = "Context:\n{block}\n\nQuestion: {question}\nAnswer:"


@dataclass(frozen=True)
class Budget:
    """How the engine's context is shared: the answer, the question, the passages."""

    max_tokens: int  # the answer's (lowered when the request leaves the prompt too little)
    question: int  # most tokens of the question
    context: int  # most tokens of the passages


def fixed_tokens(count: Count) -> int:
    """Tokens of every prompt whatever its question and passages: the instructions, the
    frame of the user message, the chat template, a margin."""
    return count(SYSTEM_PROMPT) + count(_USER.format(block="", question="")) \
        + 2 * TEMPLATE_TOKENS + MARGIN_TOKENS


def plan(context_len: int, fixed: int, max_tokens: int, max_context_tokens: int) -> Budget:
    """Share `context_len` tokens: `fixed` first, then the answer's `max_tokens` (at most half
    of the rest: an answer with no room for its passages is no answer), the question at most
    half of what is left, and the passages the rest, at most `max_context_tokens`."""
    max_tokens = max(1, min(max_tokens, (context_len - fixed) // 2))
    room = max(0, context_len - fixed - max_tokens)
    question = room // 2
    return Budget(max_tokens, question, min(max_context_tokens, room - question))


def fit(text: str, max_tokens: int, count: Count) -> str:
    """The longest start of `text` within `max_tokens`, cut at a space when there is one near
    the end ('' when nothing fits). Text of several tokens per character is cut as short as
    its tokens require, not its characters."""
    tokens = count(text)
    if tokens <= max_tokens:
        return text
    cut = len(text) * max(0, max_tokens) // max(1, tokens)
    while cut > 0:
        piece = text[:cut]
        at = piece.rfind(" ")
        if at > cut // 2:
            piece = piece[:at]
        if count(piece) <= max_tokens:
            return piece
        cut = cut * 9 // 10
    return ""


def context_block(chunks: Sequence[Chunk], max_tokens: int, count: Count) -> tuple[str, int]:
    """Numbered passages within a token budget; returns (block, passages used)."""
    parts: list[str] = []
    budget, separator = max_tokens, count("\n\n")
    for number, chunk in enumerate(chunks, start=1):
        header = f"[{number}] (from {chunk.source})\n"
        room = budget - count(header) - (separator if parts else 0)
        if room < MIN_PASSAGE_TOKENS:
            break
        text = fit(chunk.text, room, count)
        if not text:
            break
        parts.append(header + text)
        budget = room - count(text)
    return "\n\n".join(parts), len(parts)


def build_messages(question: str, chunks: Sequence[Chunk], budget: Budget,
                   count: Count) -> tuple[list[dict[str, str]], int]:
    """Chat messages for the engine and the number of passages they include."""
    block, used = context_block(chunks, budget.context, count)
    user = _USER.format(block=block, question=fit(question.strip(), budget.question, count))
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
