"""Hostile documents and questions, the same ones in the same order on every run: odd Unicode
(astral letters, emoji with joiners, stacked combining marks, right-to-left text, zero-width
and byte-order marks), NUL bytes, huge inputs, documents of many tiny paragraphs, questions
at the API's limits. Some are refused by the API (a NUL byte), most are accepted and reach
the workers."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

ODD = ["𝔥𝔬𝔴 𝔩𝔬𝔫𝔤 𝔦𝔰 𝔞 𝔰𝔥𝔦𝔣𝔱", "👩‍💻🧑🏽‍🚀🏳️‍🌈🎉", "e\u0301\u0301\u0301\u0301 a\u0308\u0308",
       "\u200fכמה ימי חופשה\u200e", "休暇は何日ありますか", "\ufeff\u200bzero\u200dwidth",
       "\u202eevil override\u202c", "𠜎𠜱𠝹𠱓", "Ω≈ç√∫˜µ≤≥÷", "\U0001f9ea\U0001fae0\U0001fa84"]
PLAIN = ("Annual leave is 27 days a year. Hotels in London are capped at 245 pounds a night. "
         "Reset your password at the self-service portal. ")
QUESTIONS = ["How many days of annual leave do I get?", "What is the hotel cap in London?",
             "How do I reset my password?"]
MAX_QUESTION_CHARS = 4000  # the API's default limit


@dataclass(frozen=True)
class Request:
    kind: str  # "document" or "query"
    what: str  # which hostile shape, for the report
    body: dict[str, Any]


def _odd_text(rng: random.Random, chars: int) -> str:
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < chars:
        parts.append(rng.choice(ODD) if rng.random() < 0.7 else PLAIN)
    return " ".join(parts)[:chars]


def _document(rng: random.Random, n: int) -> Request:
    shape = n % 5
    if shape == 0:
        what, text = "odd unicode", _odd_text(rng, 10_000)
    elif shape == 1:
        what, text = "huge", (PLAIN + _odd_text(rng, 200)) * 150  # ~55 KB, 200 chunks
    elif shape == 2:
        what, text = "many tiny paragraphs", "\n\n".join(
            rng.choice(ODD + ["a", "b.", "?"]) for _ in range(5000))
    elif shape == 3:
        what, text = "NUL bytes", "before\x00after " * 100  # refused: 422
    else:
        what, text = "plain", PLAIN * 40
    return Request("document", what, {"text": text, "source": f"hostile-{n}.md",
                                      "document_id": f"hostile-{n % 40}",  # re-ingested too
                                      "collection": "hostile"})


def _query(rng: random.Random, n: int) -> Request:
    shape = rng.choices(["long", "plain", "short", "nul"], weights=[3, 3, 3, 1])[0]
    if shape == "long":
        what, question = "odd unicode, longest allowed", _odd_text(rng, MAX_QUESTION_CHARS)
    elif shape == "plain":
        what, question = "plain", rng.choice(QUESTIONS)
    elif shape == "short":
        what, question = "odd unicode, short", rng.choice(ODD) + " " + rng.choice(QUESTIONS)
    else:
        what, question = "NUL byte", "How many days\x00?"  # refused: 422
    body: dict[str, Any] = {"question": question, "collection": rng.choice(
        ["hostile", "handbook"]), "max_tokens": rng.choice([8, 16, 64])}
    if n % 10 == 0:
        body.update(top_k=20, max_tokens=4096)  # at the limits
    return Request("query", what, body)


def requests(seed: int = 7) -> Iterator[Request]:
    """An endless stream: one document for every three questions."""
    rng = random.Random(seed)
    n = 0
    while True:
        yield _document(rng, n) if n % 4 == 0 else _query(rng, n)
        n += 1
