"""Per-key request rate limit: a token bucket per API key, in each API process.

Kept in process on purpose: the ingest path must stay at one SQL-free, Redis-free check per
request. With N API processes a key gets up to N times the rate; set the limit with that in mind.
"""

from __future__ import annotations

import math
import threading
import time


class RequestRateLimited(Exception):
    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"too many requests for this API key; retry in {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


class KeyRateLimiter:
    """``rate`` requests per second with bursts up to ``burst``; 0 disables it."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(key_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens < 1:
                self._buckets[key_id] = (tokens, now)
                raise RequestRateLimited(max(1, math.ceil((1 - tokens) / self.rate)))
            self._buckets[key_id] = (tokens - 1, now)
