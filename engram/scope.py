"""A memory's scope: the project and entity ids it belongs to."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scope:
    """Exact scope of a memory. Empty string means "not set" (never None, so filters stay simple).

    Reconciliation compares a new fact only with memories of the *exact* same scope, which is also
    the key of the scope lock: what one job reads is exactly what the lock protects.
    """

    project_id: str
    user_id: str = ""
    agent_id: str = ""
    run_id: str = ""

    @classmethod
    def of(cls, project_id: str, user_id: str | None, agent_id: str | None, run_id: str | None) -> Scope:
        return cls(project_id, user_id or "", agent_id or "", run_id or "")

    def lock_key(self) -> str:
        # Hashed so arbitrary ids (colons, unicode) cannot collide or bloat the Redis key.
        raw = "\x1f".join((self.project_id, self.user_id, self.agent_id, self.run_id))
        return "scope:" + hashlib.sha256(raw.encode()).hexdigest()[:32]

    def as_filter(self) -> dict[str, str]:
        return {
            "project_id": self.project_id,
            "user_id": self.user_id,
            "agent_id": self.agent_id,
            "run_id": self.run_id,
        }
