"""Answers already given to an ``Idempotency-Key``, so that a retry gets the same answer."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class IdempotencyCache:
    """The newest ``size`` answers, by key; the oldest is dropped first. Thread-safe."""

    def __init__(self, size: int):
        self.size = size
        self._answers: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            return self._answers.get(key)

    def put(self, key: Hashable, answer: Any) -> None:
        with self._lock:
            self._answers[key] = answer
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)

    def __len__(self) -> int:
        return len(self._answers)
