"""Milvus Lite, the embedded default's vector store, with a search path that scales.

Milvus Lite 3 is pure Python. Before each search it decides which rows are live (the newest
version of their primary key, not deleted) with a Python loop over every row of the
collection: about 1 us a row, so 100 ms a search at 100,000 chunks, where the HNSW search
itself takes a millisecond. Those rows only change when data is flushed or compacted, so
here their liveness is computed once per state of the collection (its segments and
tombstones) and reused until that state changes; rows written since the last flush (the
memtable, small because the store flushes after each write) are checked per search as
before. The results are the same, tie order included: tests/unit/test_milvus_lite_search.py
runs both paths over random inserts, upserts, deletes, flushes and compactions.

It replaces one function of a pinned Milvus Lite, and only of the versions in TESTED; with
any other version `install()` leaves Milvus Lite as it is and says so.

    python -m services.retriever.lite server --data-dir DIR --host 127.0.0.1 --port 19530

runs Milvus Lite's own server with it (what `ragmesh up` and the benchmark start). A
MilvusStore over a `.db` file installs it in its own process, where pymilvus runs the server.
"""

from __future__ import annotations

import logging
import sys
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

TESTED = frozenset({"3.2.2"})
_CACHE_SIZE = 64  # collections (and partition scopes) whose state is kept

logger = logging.getLogger(__name__)


class _Liveness:
    """Which rows of a tuple of segments are live among themselves and the tombstones."""

    def __init__(self, segments: tuple[Any, ...], tombstones: dict[Any, int]) -> None:
        self.segments = segments
        self.tombstones = tombstones
        newest: dict[Any, int] = {}
        for seg in segments:
            for pk, seq in zip(seg.pks, seg.seqs.tolist(), strict=True):
                if seq > newest.get(pk, -1):
                    newest[pk] = seq
        self.newest = newest
        self.masks: list[np.ndarray] = []
        for seg in segments:
            seqs = seg.seqs.astype(np.int64)
            best = np.fromiter((newest[pk] for pk in seg.pks), dtype=np.int64,
                               count=len(seg.pks))
            live = seqs == best
            for pk, deleted_at in tombstones.items():
                row = seg.pk_to_row.get(pk)
                if row is not None and deleted_at > seqs[row]:
                    live[row] = False
            self.masks.append(live)

    def matches(self, segments: tuple[Any, ...], tombstones: dict[Any, int]) -> bool:
        return (len(segments) == len(self.segments)
                and all(a is b for a, b in zip(segments, self.segments, strict=True))
                and tombstones == self.tombstones)


# One entry per collection and partition scope: the latest state only, so the segments that
# a compaction replaced are not kept alive here.
_cache: dict[tuple[str, tuple[str, ...] | None], _Liveness] = {}
_cache_lock = threading.Lock()


def _liveness(segments: tuple[Any, ...], delta_index: Any,
              scope: list[str] | None) -> _Liveness:
    tombstones: dict[Any, int] = delta_index._map  # a frozen copy made for this search
    # A segment's file is <collection>/partitions/<partition>/data/<file>.
    key = (str(Path(segments[0].file_path).parents[3]), tuple(sorted(scope)) if scope else None)
    found = _cache.get(key)
    if found is not None and found.matches(segments, tombstones):
        return found
    fresh = _Liveness(segments, dict(tombstones))
    with _cache_lock:
        _cache.pop(key, None)
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = fresh
    return fresh


def _local_masks(live: _Liveness, mt_pks: list[Any], mt_seqs: np.ndarray,
                 mt_deletes: dict[Any, Any], delta_index: Any) -> tuple[list[np.ndarray],
                                                                       np.ndarray]:
    """Per segment and for the memtable: rows that are the newest version of their key and
    not deleted, exactly as Milvus Lite's executor decides it."""
    masks = list(live.masks)
    mt_seq_list = [int(s) for s in mt_seqs.tolist()] if len(mt_pks) else []
    # A newer row or a delete in the memtable shadows a segment row of the same key.
    shadows = list(zip(mt_pks, mt_seq_list, strict=True))
    shadows += [(pk, int(entry[0])) for pk, entry in mt_deletes.items()]
    for pk, seq in shadows:
        for i, seg in enumerate(live.segments):
            row = seg.pk_to_row.get(pk)
            if row is not None and seq > int(seg.seqs[row]) and masks[i][row]:
                if masks[i] is live.masks[i]:
                    masks[i] = masks[i].copy()
                masks[i][row] = False
    mt_mask = np.zeros(len(mt_pks), dtype=bool)
    for i, (pk, seq) in enumerate(zip(mt_pks, mt_seq_list, strict=True)):
        if live.newest.get(pk, -1) > seq or delta_index.is_deleted(pk, seq):
            continue
        entry = mt_deletes.get(pk)
        mt_mask[i] = entry is None or entry[0] <= seq
    return masks, mt_mask


def execute_search_with_index(  # noqa: C901 (one pass, kept in the original's order)
    query_vectors: np.ndarray,
    segments: Any,
    memtable: Any,
    delta_index: Any,
    top_k: int,
    metric_type: str,
    pk_field: str,
    vector_field: str,
    partition_names: list[str] | None = None,
    compiled_filter: Any = None,
    output_fields: list[str] | None = None,
    indexed_filter_plan: Any = None,
    project_record_fn: Any = None,
    search_params: dict[str, Any] | None = None,
) -> list[list[dict[str, Any]]]:
    """milvus_lite.search.executor_indexed.execute_search_with_index, same arguments and
    results, with the liveness of segment rows cached (see the module's docstring)."""
    from milvus_lite.index.brute_force import BruteForceIndex  # noqa: PLC0415

    if query_vectors.ndim == 1:
        query_vectors = query_vectors.reshape(1, -1)
    if query_vectors.dtype != np.float32:
        query_vectors = query_vectors.astype(np.float32, copy=False)
    nq = int(query_vectors.shape[0])
    if nq == 0 or top_k <= 0:
        return [[] for _ in range(nq)]
    scope = set(partition_names) if partition_names else None
    in_scope = tuple(s for s in segments
                     if s.num_rows > 0 and (scope is None or s.partition in scope))
    mt_pks, mt_seqs, mt_vecs, mt_row_refs, mt_table = memtable.to_search_snapshot(
        vector_field=vector_field, partition_names=partition_names,
        include_table=compiled_filter is not None)
    if not in_scope and not mt_pks:
        return [[] for _ in range(nq)]

    live = _liveness(in_scope, delta_index, partition_names) if in_scope else _Liveness((), {})
    seg_masks, mt_mask = _local_masks(live, mt_pks, mt_seqs, memtable.delete_index_snapshot(),
                                      delta_index)
    if compiled_filter is not None:
        from milvus_lite.search.filter import evaluate_mask  # noqa: PLC0415
        from milvus_lite.search.indexed_filter import evaluate_segment_filter  # noqa: PLC0415

        seg_masks = [m & evaluate_segment_filter(s, compiled_filter, indexed_filter_plan)
                     .astype(bool) for s, m in zip(in_scope, seg_masks, strict=True)]
        if mt_pks and mt_table is not None:
            mt_mask = mt_mask & evaluate_mask(compiled_filter, mt_table).astype(bool)

    candidates: list[list[tuple[float, int, int]]] = [[] for _ in range(nq)]

    def recall(source: int, vectors: np.ndarray, mask: np.ndarray, index: Any) -> None:
        if mask.size == 0 or not mask.any():
            return
        if index is None:
            index = BruteForceIndex.build(vectors, metric_type)
        ids, dists = index.search(query_vectors, top_k, valid_mask=None if mask.all() else mask,
                                  params=search_params)
        for q in range(nq):
            for j in range(top_k):
                lid = int(ids[q, j])
                if lid < 0:
                    break
                candidates[q].append((float(dists[q, j]), source, lid))

    for i, seg in enumerate(in_scope):
        vectors, null_mask = seg.vector_data(vector_field)
        mask = seg_masks[i] if null_mask is None else seg_masks[i] & null_mask
        recall(i, vectors, mask, seg.indexes.get(vector_field))
    if mt_pks:
        recall(len(in_scope), mt_vecs, mt_mask, None)

    if project_record_fn is not None:
        project = project_record_fn
    elif output_fields is None:
        def project(record: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in record.items() if k not in (pk_field, vector_field)}
    else:
        keep = set(output_fields) - {pk_field}

        def project(record: dict[str, Any]) -> dict[str, Any]:
            return {k: record[k] for k in keep if k in record}

    results = []
    for q in range(nq):
        hits = []
        for dist, source, lid in sorted(candidates[q])[:top_k]:
            if source < len(in_scope):
                record = in_scope[source].row_to_dict(lid)
                pk = in_scope[source].pks[lid]
            else:
                record = memtable.materialize_row(*mt_row_refs[lid])
                pk = mt_pks[lid]
            hits.append({"id": record.get(pk_field, pk), "distance": dist,
                         "entity": project(record)})
        results.append(hits)
    return results


def install() -> bool:
    """Use the search path above in this process's Milvus Lite; False if its version was
    not tested with it (Milvus Lite then stays as it is)."""
    try:
        version = metadata.version("milvus-lite")
    except metadata.PackageNotFoundError:
        return False
    if version not in TESTED:
        logger.warning("milvus-lite %s is not one this search path was tested with (%s); "
                       "using its own", version, ", ".join(sorted(TESTED)))
        return False
    from milvus_lite.engine import collection  # noqa: PLC0415

    collection.execute_search_with_index = execute_search_with_index  # type: ignore[assignment]
    return True


def main() -> int:
    """Milvus Lite's own command line (`server --data-dir …`), with install() first."""
    from milvus_lite.cmdline import main as milvus_lite_main  # noqa: PLC0415

    install()
    return milvus_lite_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
