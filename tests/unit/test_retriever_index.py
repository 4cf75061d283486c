"""services/retriever/store.py: the vector index settings a store builds and searches with."""

from __future__ import annotations

import pytest

from services.retriever.store import Index
from shared.settings import Settings

pytestmark = pytest.mark.unit


def test_default_index_is_milvus_lites_autoindex_graph_searched_wider() -> None:
    index = Index.from_settings(Settings())
    assert (index.type, dict(index.params)) == ("HNSW", {"M": 16, "efConstruction": 200})
    assert index.search(6) == {"ef": 128}


def test_hnsw_ef_is_raised_to_top_k_and_other_params_pass_as_they_are() -> None:
    assert Index(search_params={"ef": 16}).search(20) == {"ef": 20}
    index = Index.from_settings(Settings(vectorstore_index_type="IVF_FLAT",
                                         vectorstore_index_params={"nlist": 256},
                                         vectorstore_search_params={"nprobe": 16}))
    assert (index.type, dict(index.params), index.search(50)) == (
        "IVF_FLAT", {"nlist": 256}, {"nprobe": 16})
