"""Webhooks (DESIGN.md #9): Standard Webhooks signing, an SSRF guard, an outbox written in the same
commit as the memory events, and delivery with recorded attempts, backoff and replay.

Plain functions and a store; the Celery adapter is ``workers/webhooks.py``.
"""

# The Celery task that sends one delivery (``workers/webhooks.py``); the API enqueues replays by this name.
DELIVER_TASK = "engram.webhooks.deliver"
