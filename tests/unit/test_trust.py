"""services/generator/trust.py: the trust score of an answer, from its citations."""

from __future__ import annotations

import pytest

from services.generator.prompt import NO_CONTEXT_ANSWER
from services.generator.trust import (
    Scale,
    assess,
    content_tokens,
    is_abstention,
    retrieval_strength,
    support,
)

pytestmark = pytest.mark.unit

SCALE = Scale(floor=0.25, full=0.65, threshold=0.4)
HOTEL = "Hotels in London are capped at 245 pounds per night; elsewhere 140 pounds."
LEAVE = "Every full-time employee receives 27 days of paid annual leave per year."


def cite(text: str, score: float, cited: bool = False, index: int = 1) -> dict[str, object]:
    return {"index": index, "source": "s.md", "text": text, "score": score, "cited": cited}


def test_content_tokens_skip_markers_and_stopwords_and_normalise_numbers() -> None:
    assert content_tokens("The cap is £1,500 per night [1, 2].") == ["cap", "1500", "night"]


def test_content_tokens_stem_simple_inflections() -> None:
    assert content_tokens("booking days required") == content_tokens("book day requires")


def test_support_is_the_share_of_answer_content_found_in_the_evidence() -> None:
    assert support("London hotels are capped at 245 pounds.", [HOTEL]) == 1.0
    assert support("Paris hotels are capped at 245 pounds.", [HOTEL]) == pytest.approx(5 / 6)


def test_an_unsupported_number_costs_more_than_an_unsupported_word() -> None:
    wrong_number = support("London hotels are capped at 300 pounds.", [HOTEL])
    wrong_word = support("Paris hotels are capped at 245 pounds.", [HOTEL])
    assert wrong_number < wrong_word


def test_support_of_an_answer_without_content_is_zero() -> None:
    assert support("Yes [1].", [HOTEL]) == 0.0


@pytest.mark.parametrize(("scores", "expected"), [
    ([], 0.0), ([0.2], 0.0), ([0.25], 0.0), ([0.45], 0.5), ([0.65], 1.0), ([0.9], 1.0),
    ([0.3, 0.45], 0.5)])
def test_retrieval_strength_ramps_from_floor_to_full_on_the_best_score(
        scores: list[float], expected: float) -> None:
    assert retrieval_strength(scores, SCALE) == pytest.approx(expected)


def test_trust_is_retrieval_strength_times_support() -> None:
    trust = assess("Hotels in Paris are capped at 245 pounds [1].",
                   [cite(HOTEL, 0.45, cited=True)], SCALE)
    assert trust.retrieval == 0.5
    assert trust.support == pytest.approx(5 / 6, abs=1e-4)
    assert trust.score == pytest.approx(0.5 * 5 / 6, abs=1e-4)
    assert trust.cited_scores == [0.45] and not trust.abstained


def test_cited_passages_are_the_evidence_when_the_answer_cites() -> None:
    citations = [cite(LEAVE, 0.7, index=1), cite(HOTEL, 0.45, cited=True, index=2)]
    trust = assess("London hotels are capped at 245 pounds [2].", citations, SCALE)
    assert trust.cited_scores == [0.45]
    assert trust.support == 1.0 and trust.retrieval == 0.5


def test_every_passage_is_evidence_when_the_answer_cites_none() -> None:
    citations = [cite(LEAVE, 0.7, index=1), cite(HOTEL, 0.45, index=2)]
    trust = assess("London hotels are capped at 245 pounds.", citations, SCALE)
    assert trust.cited_scores == [0.7, 0.45]
    assert trust.score == 1.0 and not trust.low_trust


def test_an_answer_the_passages_do_not_support_is_low_trust_despite_strong_retrieval() -> None:
    trust = assess("You get 40 days of leave and a company car.", [cite(LEAVE, 0.8)], SCALE)
    assert trust.retrieval == 1.0
    assert trust.low_trust and trust.score < SCALE.threshold


def test_the_no_context_answer_abstains_with_zero_trust_and_is_flagged() -> None:
    trust = assess(NO_CONTEXT_ANSWER, [], SCALE)
    assert trust.abstained and trust.score == 0.0 and trust.low_trust
    assert trust.cited_scores == [] and trust.threshold == 0.4


@pytest.mark.parametrize("answer", [
    NO_CONTEXT_ANSWER,
    "The documents do not say how big the bonus is.",
    "The context doesn't mention a dress code.",
    "The dress code is not mentioned in the documents.",
    "There is no information about parking spaces [1].",
    "I cannot answer this from the passages.",
    "I don't know."])
def test_answers_that_decline_are_abstentions(answer: str) -> None:
    assert is_abstention(answer)
    assert assess(answer, [cite(HOTEL, 0.6)], SCALE).score == 0.0


@pytest.mark.parametrize("answer", [
    "Annual leave does not include public holidays.",
    "Receipts are not required under 20 pounds [1].",
    ""])
def test_answers_with_a_negative_fact_are_not_abstentions(answer: str) -> None:
    assert not is_abstention(answer)


def test_the_threshold_decides_the_flag() -> None:
    answer, citations = "London hotels are capped at 245 pounds.", [cite(HOTEL, 0.45)]
    score = assess(answer, citations, SCALE).score
    assert not assess(answer, citations, Scale(0.25, 0.65, threshold=score)).low_trust
    assert assess(answer, citations, Scale(0.25, 0.65, threshold=score + 0.01)).low_trust
