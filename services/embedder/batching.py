"""Dynamic batching: the texts of concurrent embedding jobs share one encode call.

The embedder runs several lanes (RQ workers in threads, one job each). Each lane calls
`encode` on one `BatchingEncoder`, as it would on the model; one model thread takes the first
waiting request at once, adds whatever else is already waiting, up to `max_batch` texts and
`max_chars` characters, encodes them in one call and hands each caller its own rows. Nothing
waits for company: a request that finds the model idle is encoded as soon as it arrives, as
HuggingFace text-embeddings-inference does. On two cores one question alone encodes at about
a quarter of the rate of a batch, so under load batching is most of the throughput.

A request larger than one batch (a document's chunks) goes in pieces; the rest of it rejoins
the queue behind the requests that arrived during the piece, so a question waits for the
batch in progress, never for a whole document.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.embedder.core import Encoder
from shared import metrics

Options = tuple[tuple[str, Any], ...]


@dataclass(eq=False)
class Request:
    """One caller's texts; `done` of them have been encoded into `parts`."""

    texts: list[str]
    options: Options  # encode's keyword arguments: only equal ones share a call
    future: Future[Any] = field(default_factory=Future)
    done: int = 0
    parts: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Piece:
    request: Request
    start: int
    stop: int


def take_batch(waiting: deque[Request], max_batch: int, max_chars: int) -> list[Piece]:
    """The next encode call: pieces of the waiting requests in arrival order, at most
    `max_batch` texts and `max_chars` characters (the first text goes even when longer).
    Requests taken whole leave `waiting`; one taken in part leaves it too, and the caller
    puts it back at the end once the batch is encoded. Requests with other options than the
    first, and ones their caller cancelled, are left for a later call (cancelled: dropped)."""
    pieces: list[Piece] = []
    count = chars = 0
    options: Options | None = None
    kept: list[Request] = []
    while waiting and count < max_batch:
        request = waiting.popleft()
        if request.future.cancelled():
            continue  # its caller gave up before it started
        if options is not None and request.options != options:
            kept.append(request)
            continue
        stop, n, c = request.done, count, chars
        while stop < len(request.texts) and n < max_batch:
            size = len(request.texts[stop])
            if n and c + size > max_chars:
                break
            n, c, stop = n + 1, c + size, stop + 1
        if stop == request.done:  # nothing more fits
            kept.append(request)
            break
        if request.done == 0 and not request.future.set_running_or_notify_cancel():
            continue
        count, chars, options = n, c, request.options
        pieces.append(Piece(request, request.done, stop))
        if stop < len(request.texts):
            break  # the rest waits behind the newcomers
    waiting.extendleft(reversed(kept))
    return pieces


def _join(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)
    return [row for part in parts for row in part]


class BatchingEncoder:
    """An `Encoder` for many threads at once over one model (see the module's docstring)."""

    def __init__(self, encoder: Encoder, *, max_batch: int, max_chars: int,
                 on_batch: Callable[[int], None] = metrics.EMBED_BATCH_TEXTS.observe) -> None:
        if max_batch < 1 or max_chars < 1:
            raise ValueError("max_batch and max_chars must be at least 1")
        self.encoder = encoder
        self.max_batch, self.max_chars = max_batch, max_chars
        self.on_batch = on_batch
        self._waiting: deque[Request] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="embed-batcher", daemon=True)
        self._thread.start()

    def encode(self, sentences: list[str], **options: Any) -> Any:
        """Blocks until this caller's rows are encoded; raises what encoding them raised."""
        if not sentences:
            return self.encoder.encode([], **options)
        request = Request(list(sentences), tuple(sorted(options.items())))
        with self._ready:
            if self._closed:
                raise RuntimeError("the batching encoder is closed")
            self._waiting.append(request)
            self._ready.notify()
        try:
            # Wait in slices: a lane's job timeout is an exception raised in its thread,
            # which an endless wait on a lock would never let through.
            while True:
                try:
                    return request.future.result(timeout=1.0)
                except TimeoutError:
                    continue
        except BaseException:
            request.future.cancel()  # not started yet: the model thread skips it
            raise

    def waiting(self) -> int:
        """Requests waiting for the model (the batch being encoded is not counted)."""
        with self._ready:
            return len(self._waiting)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop the model thread; requests still waiting fail."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout=30)

    def _serve(self) -> None:
        while True:
            with self._ready:
                while not self._waiting and not self._closed:
                    self._ready.wait()
                if self._closed:
                    self._fail_waiting()
                    return
                pieces = take_batch(self._waiting, self.max_batch, self.max_chars)
            if not pieces:
                continue
            self._run(pieces)
            with self._ready:  # a document's rest goes behind what arrived meanwhile
                self._waiting.extend(p.request for p in pieces
                                     if p.stop < len(p.request.texts)
                                     and not p.request.future.done())

    def _run(self, pieces: list[Piece]) -> None:
        texts = [t for p in pieces for t in p.request.texts[p.start:p.stop]]
        self.on_batch(len(texts))
        try:
            rows = self.encoder.encode(texts, **dict(pieces[0].request.options))
        except Exception as exc:
            if len(pieces) == 1:
                pieces[0].request.future.set_exception(exc)
            else:  # one caller's bad input must not fail the others: each alone
                for piece in pieces:
                    self._run([piece])
            return
        offset = 0
        for piece in pieces:
            size = piece.stop - piece.start
            self._deliver(piece, rows[offset:offset + size])
            offset += size

    @staticmethod
    def _deliver(piece: Piece, rows: Any) -> None:
        request = piece.request
        request.parts.append(rows)
        request.done = piece.stop
        if request.done == len(request.texts):
            request.future.set_result(_join(request.parts))

    def _fail_waiting(self) -> None:
        for request in self._waiting:
            if request.done or request.future.set_running_or_notify_cancel():
                request.future.set_exception(RuntimeError("the batching encoder closed"))
        self._waiting.clear()

