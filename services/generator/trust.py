"""How far to trust an answer: retrieval strength combined with how much of it the cited
text supports. Pure functions over the API's citations, so any client can recompute them.

    evidence   = the passages the answer cites, or every context passage when it cites none
    retrieval  = clamp((best evidence score - floor) / (full - floor), 0, 1)
    support    = weighted share of the answer's content words found in the evidence text
                 (numbers weigh 2: a number the passages do not contain is the costliest error)
    trust      = retrieval * support, 0 when the answer abstains

Why this shape:
- `floor` is the retriever's score threshold (a passage there barely made it in) and `full` is
  the cosine similarity at which MiniLM passages answer the question as a rule, so retrieval
  strength reads "how good was the best passage we leaned on" on a 0-1 scale.
- Support is lexical on purpose: it costs nothing, needs no second model, and catches what a
  small model gets wrong most often — facts, names and numbers that are not in the context.
- The product needs both, each capping the other: a well-supported answer built on weakly
  matching passages likely answers a different question; an answer over strong passages
  that the passages do not support is likely made up. (A mean would let a perfect retrieval
  lift an answer that is two-thirds made up above the threshold.)
- An abstention (nothing relevant found, or the model says the documents do not say) makes
  no claim to support: it scores 0, and is marked `abstained`, so that the review loop
  collects the questions the corpus could not answer — a gap in the documents or a
  retrieval miss, both worth labeling.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from services.generator.prompt import NO_CONTEXT_ANSWER

_MARKERS = re.compile(r"\[\d{1,3}(?:\s*,\s*\d{1,3})*\]")
_TOKENS = re.compile(r"\d+(?:[.,]\d+)*|[a-z]+")
_STOPWORD_LIST = """
a about above after again all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each either few for from
further had has have having he her here hers him his how i if in into is it its itself just
may me might more most must my no nor not now of off on once only or other our ours out over
own per same shall she should so some such than that the their theirs them then there these
they this those through to too under until up upon us very was we were what when where which
while who whom why will with within would yes you your yours
"""
_STOPWORDS = frozenset(_STOPWORD_LIST.split())
_NUMBER_WEIGHT = 2.0

# How a model says the context does not answer (the prompt asks it to "say that the documents
# do not say"). Tied to the sources so that "leave does not include public holidays" is not one.
_ABSTAIN = re.compile(
    r"(?:documents?|context|passages?|sources?|handbook|text|information)\s+(?:provided\s+)?"
    r"(?:do|does|did)\s*(?:not|n't)\s+(?:say|mention|specify|state|contain|provide|include|"
    r"cover|answer|have)"
    r"|not\s+(?:mentioned|specified|stated|provided|covered|given|found)\s+in\s+the\s+"
    r"(?:documents?|context|passages?|sources?|handbook|text)"
    r"|\bno\s+(?:information|mention|details?)\s+(?:about|on|of|regarding)\b"
    r"|\b(?:cannot|can't|can not|unable to)\s+(?:answer|find|determine)\b"
    r"|\b(?:do not|don't)\s+know\b|\bcould\s*(?:not|n't)\s+find\b")


@dataclass(frozen=True)
class Scale:
    """Where retrieval strength starts (`floor`) and saturates (`full`), and the score below
    which an answer is flagged (`threshold`)."""

    floor: float = 0.40
    full: float = 0.6
    threshold: float = 0.25


@dataclass(frozen=True)
class Trust:
    score: float
    retrieval: float
    support: float
    abstained: bool
    low_trust: bool
    cited_scores: list[float]
    threshold: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_abstention(answer: str) -> bool:
    """Whether the answer declines: the generator's no-context answer, or the model saying the
    documents do not say."""
    text = " ".join(answer.split())
    return text == NO_CONTEXT_ANSWER or bool(_ABSTAIN.search(text.lower()))


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def content_tokens(text: str) -> list[str]:
    """Numbers (thousands separators dropped) and stemmed words of 3+ letters that carry
    meaning, in order; citation markers are not content."""
    out = []
    for token in _TOKENS.findall(_MARKERS.sub(" ", text.lower())):
        if token[0].isdigit():
            out.append(re.sub(r"(?<=\d),(?=\d{3})", "", token).rstrip(".,"))
        elif len(token) >= 3 and token not in _STOPWORDS:
            out.append(_stem(token))
    return out


def support(answer: str, evidence_texts: Iterable[str]) -> float:
    """Weighted share of the answer's content tokens that occur in the evidence (0 for an
    answer with no content: nothing in it can be checked)."""
    known = {t for text in evidence_texts for t in content_tokens(text)}
    weights = [(_NUMBER_WEIGHT if t[0].isdigit() else 1.0, t in known)
               for t in content_tokens(answer)]
    total = sum(w for w, _ in weights)
    return sum(w for w, found in weights if found) / total if total else 0.0


def retrieval_strength(scores: Sequence[float], scale: Scale) -> float:
    if not scores:
        return 0.0
    span = max(scale.full - scale.floor, 1e-6)
    return min(1.0, max(0.0, (max(scores) - scale.floor) / span))


def evidence(citations: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The passages the answer rests on: those it cites, else all it was given."""
    cited = [c for c in citations if c.get("cited")]
    return cited or list(citations)


def assess(answer: str, citations: Sequence[Mapping[str, Any]], scale: Scale) -> Trust:
    """The trust of `answer` given the citations the API returns with it."""
    used = evidence(citations)
    scores = [float(c["score"]) for c in used]
    abstained = is_abstention(answer)
    retrieval = retrieval_strength(scores, scale)
    supported = 0.0 if abstained else support(answer, (str(c["text"]) for c in used))
    score = 0.0 if abstained else retrieval * supported
    return Trust(score=round(score, 4), retrieval=round(retrieval, 4),
                 support=round(supported, 4), abstained=abstained,
                 low_trust=score < scale.threshold, cited_scores=[round(s, 4) for s in scores],
                 threshold=scale.threshold)
