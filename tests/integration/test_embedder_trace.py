"""The embedder's traced transformer (services/embedder/core.py) on the real MiniLM: the same
vectors as the model as it is, for any batch and length."""

from __future__ import annotations

import numpy as np
import pytest

from services.embedder.chunking import chunk_text
from services.embedder.core import embed, load_encoder, trace_transformer
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def traced():  # type: ignore[no-untyped-def]
    model = load_encoder("all-MiniLM-L6-v2", "cpu")
    assert trace_transformer(model) == "traced"
    return model


def test_the_traced_model_gives_the_vectors_of_the_model(traced, encoder):
    text = (ROOT / "examples" / "handbook" / "benefits.md").read_text()
    for texts in (["How many days of leave?"],
                  ["Short?", "A question that is quite a bit longer than the first one?"],
                  chunk_text(text, 300, 120),
                  ["far beyond the model's 256 tokens " * 80, "and a short one"]):
        np.testing.assert_allclose(embed(traced, texts, 32), embed(encoder, texts, 32),
                                   atol=1e-5)


def test_asking_for_more_than_the_graph_gives_runs_the_model_as_it_is(traced):
    first = traced[0]
    features = first.preprocess(["hidden states, please"])
    inputs = {k: features[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    out = first.model(**inputs, output_hidden_states=True, return_dict=True)
    assert len(out.hidden_states) == first.model.config.num_hidden_layers + 1
