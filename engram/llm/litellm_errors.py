"""Map litellm/provider exceptions onto the pipeline's two failure kinds."""

from __future__ import annotations

from typing import Any

from engram.errors import PermanentError, TransientError

TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}


def _retry_after_seconds(exc: Any) -> float | None:
    # litellm keeps the provider's headers on the exception; its own `response` may carry none.
    value = None
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    ):
        if headers is not None and hasattr(headers, "get"):
            value = headers.get("retry-after") or headers.get("Retry-After")
            if value is not None:
                break
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def classify_litellm_error(exc: Exception) -> Exception:
    """TransientError for timeouts, connection errors, 429 and 5xx; PermanentError otherwise."""
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    transient_names = (
        "Timeout",
        "APIConnectionError",
        "RateLimitError",
        "ServiceUnavailableError",
        "InternalServerError",
        "APIError",
    )
    if (isinstance(status, int) and status in TRANSIENT_STATUS) or name in transient_names:
        return TransientError(f"{name}: {exc!s:.300}", retry_after_seconds=_retry_after_seconds(exc))
    return PermanentError(f"{name}: {exc!s:.300}")
