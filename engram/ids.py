"""Deterministic ids and content hashes: what makes redelivered stages change nothing."""

from __future__ import annotations

import hashlib
import uuid

# A fixed namespace so the same (job, fact) always yields the same memory id on every machine.
ENGRAM_NAMESPACE = uuid.UUID("6f1c9a52-3c57-4d0e-9a57-1f2b8c4f7e10")


def new_job_id() -> str:
    return str(uuid.uuid4())


def memory_id_for(job_id: str, index: int) -> str:
    """Id of the memory that fact ``index`` of job ``job_id`` adds."""
    return str(uuid.uuid5(ENGRAM_NAMESPACE, f"{job_id}:memory:{index}"))


def history_id_for(job_id: str, index: int) -> str:
    return str(uuid.uuid5(ENGRAM_NAMESPACE, f"{job_id}:history:{index}"))


def content_hash(text: str) -> str:
    """Mem0 stores an md5 of the memory text; kept for compatibility (not for security)."""
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
