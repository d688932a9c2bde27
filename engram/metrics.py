"""Prometheus metrics of the API and the workers (names carry units; labels stay low-cardinality).

Metric objects are created at import and touch nothing outside the process. A prefork worker
aggregates its children through ``PROMETHEUS_MULTIPROC_DIR`` when that is set (see README).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

STAGE_SECONDS = Histogram(
    "engram_stage_seconds",
    "Time one pipeline stage attempt took",
    ["stage", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
STAGE_RETRIES = Counter("engram_stage_retries_total", "Stage attempts that will be retried", ["stage", "reason"])
JOBS_FINISHED = Counter("engram_jobs_finished_total", "Jobs that reached a terminal state", ["status"])
LLM_CALLS = Counter("engram_llm_calls_total", "LLM calls by model and outcome", ["model", "outcome"])
LLM_SECONDS = Histogram(
    "engram_llm_seconds", "LLM call latency", ["model"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)
)
LLM_TOKENS = Counter("engram_llm_tokens_total", "Tokens reported by the provider", ["model", "kind"])
DECISIONS_SKIPPED = Counter(
    "engram_update_decisions_skipped_total", "Update decisions not asked of the LLM: the scope held nothing to compare"
)
LLM_RATE_LIMITED = Counter("engram_llm_rate_limited_total", "Calls deferred by the shared rate limit", ["model"])
HTTP_REQUESTS = Counter("engram_http_requests_total", "API requests", ["method", "route", "status"])
HTTP_SECONDS = Histogram(
    "engram_http_request_seconds",
    "API request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
