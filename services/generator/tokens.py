"""Counting tokens as the engine does, to budget a prompt: vLLM's own tokenizer through its
/tokenize endpoint (which also tells the engine's context length). An engine without that
endpoint (another OpenAI-compatible server), or one that does not answer, is counted with a
bound instead: a text's UTF-8 bytes, which byte-level tokenizers never exceed."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import httpx

# Passages come back often: counted once. Only short texts are kept (a bound on memory; the
# cuts tried while fitting a long text are not worth keeping).
_CACHE_SIZE = 2048
_CACHE_MAX_CHARS = 1024


def byte_count(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


@dataclass
class EngineTokens:
    base_url: str  # the engine's OpenAI base URL, ending in /v1
    model: str
    context_len: int  # until the engine says otherwise (its max_model_len)
    api_key: str | None = None
    supported: bool = True  # False once the engine says it has no /tokenize
    _cache: OrderedDict[str, int] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            root = self.base_url.rstrip("/").removesuffix("/v1")
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.Client(base_url=root, headers=headers,
                                        timeout=httpx.Timeout(10.0, connect=2.0))
        return self._client

    def count(self, text: str) -> int:
        with self._lock:  # the generator's lanes share one counter per engine
            if text in self._cache:
                self._cache.move_to_end(text)
                return self._cache[text]
        tokens = self._ask(text)
        if tokens is None:
            return byte_count(text)  # not kept: the engine may answer next time
        if len(text) <= _CACHE_MAX_CHARS:
            with self._lock:
                self._cache[text] = tokens
                if len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
        return tokens

    def _ask(self, text: str) -> int | None:
        if not self.supported:
            return None
        try:
            response = self.client.post("/tokenize", json={
                "model": self.model, "prompt": text, "add_special_tokens": False})
        except httpx.HTTPError:
            return None
        if response.status_code in (404, 405):
            self.supported = False
            return None
        if response.status_code != 200:
            return None
        body = response.json()
        self.context_len = int(body.get("max_model_len") or self.context_len)
        return int(body["count"])

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
