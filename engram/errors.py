"""The two kinds of failure the pipeline knows: retry it, or fail the job with a reason."""

from __future__ import annotations


class TransientError(Exception):
    """Worth retrying (timeouts, 429, 5xx, a busy lock). ``retry_after_seconds`` overrides backoff."""

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class PermanentError(Exception):
    """Retrying cannot help (bad credentials, output that stays malformed): fail the job."""


class NotFoundError(LookupError):
    """A memory or job id that does not exist in the caller's project."""


class ImmutableMemoryError(PermissionError):
    """The memory was stored as immutable and refuses updates."""


class ScopeBusy(TransientError):
    """Another worker holds this scope's lock. Not a failure: the task waits its turn."""


class RateLimited(TransientError):
    """The shared LLM rate limit has no room now. Not a failure: no attempt is counted."""
