"""A bounded in-memory result cache with hit/miss counters.

Keys are built from everything that determines a score: the model id, the content hash of every
image (so a renamed file still hits and an edited one misses), the question, the response text
and the scoring config. The PRM caches per response (scores of one response do not depend on its
siblings); the judge caches per group (its rewards compare the responses with each other).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

CacheKey = tuple[str, tuple[str, ...], str, str, str, str]


def make_key(
    model_id: str,
    image_hashes: tuple[str, ...],
    question: str,
    response: str,
    config: str,
    unit: str = "text",
) -> CacheKey:
    """``unit`` says what ``response`` is: ``"text"`` (split into steps by the scorer) or
    ``"steps"`` (the caller's explicit steps, JSON-encoded): a response whose text happens to be
    that JSON is a different input and must not share the entry."""
    return (model_id, tuple(image_hashes), question, response, config, unit)


class ResultCache:
    """Least-recently-used map from ``CacheKey`` to a result; ``max_entries=0`` disables it."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 0:
            raise ValueError(f"cache size must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self._data: OrderedDict[CacheKey, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: CacheKey) -> Any | None:
        """The cached result (a deep copy, so callers cannot corrupt the cache) or None."""
        if self.max_entries and key in self._data:
            self._data.move_to_end(key)
            self.hits += 1
            return copy.deepcopy(self._data[key])
        self.misses += 1
        return None

    def put(self, key: CacheKey, value: Any) -> None:
        if not self.max_entries:
            return
        self._data[key] = copy.deepcopy(value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)
            self.evictions += 1

    def __len__(self) -> int:
        return len(self._data)

    def stats(self) -> dict[str, int]:
        return {
            "entries": len(self._data),
            "max_entries": self.max_entries,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
        }
