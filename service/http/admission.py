"""Load shedding: each worker process admits at most one request being served and
``queue_length`` waiting on its heavy routes; the next is refused at once with 503 and a
``Retry-After``, without decoding or queueing it, instead of queueing without bound (50
clients on one unbounded worker waited 25 s at p50, 34 s at p99: docs/service.md)."""

from __future__ import annotations

import collections
import contextlib
import math
import threading
import time
from collections.abc import Iterator

from aigcguard.service.http.errors import ApiError

#: weight of the newest hold time in the running mean that Retry-After is estimated from
_SMOOTHING = 0.2
#: refusals within this many seconds count as clients waiting outside (Retry-After)
REFUSAL_WINDOW = 1.0


class Admission:
    """The admission counter of one worker process (thread-safe)."""

    def __init__(self, queue_length: int):
        if queue_length < 0:
            raise ValueError(f"queue_length must be 0 or more, not {queue_length}")
        self.capacity = queue_length + 1
        self.in_flight = 0
        self.accepted = 0
        self.refused = 0
        self._mean_hold: float | None = None  # seconds one request holds the models
        self._lock = threading.Lock()
        self._refusals: collections.deque[float] = collections.deque()

    def retry_after(self) -> int:
        """Whole seconds until the requests ahead should have drained (at least 1): those
        in flight, and the others refused in the last second (clients waiting outside,
        which will come back for the same places)."""
        per = 1.0 if self._mean_hold is None else self._mean_hold
        waiting = max(len(self._refusals) - 1, 0)  # the one being answered is not ahead
        return max(1, math.ceil(per * (max(self.in_flight, 1) + waiting)))

    def _refuse(self) -> None:
        """Count a refusal, and keep its time among those of the last REFUSAL_WINDOW."""
        self.refused += 1
        now = time.monotonic()
        while self._refusals and now - self._refusals[0] > REFUSAL_WINDOW:
            self._refusals.popleft()
        self._refusals.append(now)

    def held(self, seconds: float) -> None:
        """Record how long a request held the models (Retry-After is estimated from it)."""
        with self._lock:
            m = self._mean_hold
            self._mean_hold = seconds if m is None else (1 - _SMOOTHING) * m + _SMOOTHING * seconds

    def enter(self) -> ApiError | None:
        """Take a place (None), or the 503 to answer when every place is taken."""
        with self._lock:
            if self.in_flight >= self.capacity:
                self._refuse()
                wait = self.retry_after()
                return ApiError(
                    503,
                    f"overloaded: {self.in_flight} requests are being served or waiting on this "
                    f"worker (at most {self.capacity}); retry in {wait} s",
                    headers={"Retry-After": str(wait)},
                )
            self.in_flight += 1
            self.accepted += 1
            return None

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a place for one request; 503 with Retry-After when every place is taken."""
        refused = self.enter()
        if refused is not None:
            raise refused
        try:
            yield
        finally:
            self.leave()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "in_flight": self.in_flight,
                "capacity": self.capacity,
                "accepted": self.accepted,
                "refused": self.refused,
            }
