"""`python -m bench.chaos.milvus_rows URI COLLECTION...`: print the (doc_key, chunk_id) of
every row of those collections as JSON (the chaos audit's view of the vector store)."""

from __future__ import annotations

import json
import sys

# Milvus caps one query's window (offset + limit) at 16384 rows.
LIMIT = 16384


def main(uri: str, collections: list[str]) -> None:
    from pymilvus import MilvusClient  # noqa: PLC0415 (heavy import)

    client = MilvusClient(uri=uri)
    rows: list[tuple[str, str]] = []
    for collection in collections:
        if not client.has_collection(collection):
            continue
        client.load_collection(collection)
        hits = client.query(collection, filter='doc_key != ""',
                            output_fields=["doc_key", "chunk_id"], limit=LIMIT)
        if len(hits) >= LIMIT:
            raise SystemExit(f"{collection}: too many rows to audit in one query")
        rows += [(h["doc_key"], h["chunk_id"]) for h in hits]
    client.close()
    print(json.dumps(rows))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
