"""``TenancyStore``: organisations own projects; API keys belong to a project.

Keys are random (256 bits), shown once, and stored only as a SHA-256 digest: with that much entropy a
fast hash is as safe as a slow one, and it keeps every authenticated request to one indexed lookup.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, bindparam, select, update

from engram.sql import tables
from engram.sql.jobs import utcnow
from engram.sql.retry import retrying

KEY_PREFIX = "eng_"
SLUG = re.compile(r"[^a-z0-9]+")
# Built once: read by two stages of every job (engram/sql/jobs.py says why).
_PROJECT = select(tables.projects).where(tables.projects.c.id == bindparam("project_id"))


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's project and organisation."""

    key_id: str
    project_id: str
    org_id: str


@dataclass(frozen=True, slots=True)
class CreatedKey:
    id: str
    project_id: str
    key: str  # the only time the plaintext exists


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def slug(name: str) -> str:
    value = SLUG.sub("-", name.lower()).strip("-")
    return value[:40] or "x"


class TenancyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_org(self, name: str) -> str:
        org_id = f"org_{slug(name)}_{secrets.token_hex(3)}"
        with self.engine.begin() as conn:
            conn.execute(tables.organizations.insert().values(id=org_id, name=name, created_at=utcnow()))
        return org_id

    def create_project(self, org_id: str, name: str) -> str:
        project_id = f"proj_{slug(name)}_{secrets.token_hex(3)}"
        with self.engine.begin() as conn:
            if (
                conn.execute(select(tables.organizations.c.id).where(tables.organizations.c.id == org_id)).first()
                is None
            ):
                raise LookupError(f"organisation {org_id} not found")
            conn.execute(tables.projects.insert().values(id=project_id, org_id=org_id, name=name, created_at=utcnow()))
        return project_id

    def create_key(self, project_id: str, name: str = "default") -> CreatedKey:
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            if self.project(project_id, conn=conn) is None:
                raise LookupError(f"project {project_id} not found")
            conn.execute(
                tables.api_keys.insert().values(
                    id=key_id,
                    project_id=project_id,
                    name=name,
                    prefix=key[: len(KEY_PREFIX) + 6],
                    key_hash=hash_key(key),
                    created_at=utcnow(),
                )
            )
        return CreatedKey(key_id, project_id, key)

    def revoke_key(self, key_id: str) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(tables.api_keys)
                .where(tables.api_keys.c.id == key_id, tables.api_keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        return bool(result.rowcount)

    @retrying  # a read: every authenticated request makes it, so a locked SQLite must not turn it into a 503
    def resolve(self, key: str) -> Principal | None:
        """The principal of a live key, or None for an unknown or revoked one."""
        k, p = tables.api_keys, tables.projects
        query = (
            select(k.c.id, k.c.project_id, p.c.org_id)
            .join(p, p.c.id == k.c.project_id)
            .where(k.c.key_hash == hash_key(key), k.c.revoked_at.is_(None))
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return Principal(row.id, row.project_id, row.org_id) if row else None

    def project(self, project_id: str, conn: Any = None) -> dict[str, Any] | None:
        params = {"project_id": project_id}
        if conn is not None:
            row = conn.execute(_PROJECT, params).mappings().first()
        else:
            with self.engine.connect() as own:
                row = own.execute(_PROJECT, params).mappings().first()
        return dict(row) if row else None

    def configure_project(
        self,
        project_id: str,
        *,
        custom_instructions: str | None = None,
        custom_categories: Any = None,
        custom_fact_extraction_prompt: str | None = None,
        custom_update_memory_prompt: str | None = None,
    ) -> None:
        """Set the project's extraction settings; ``None`` leaves one as it is, an empty value clears it.

        The prompts are Mem0's ``custom_fact_extraction_prompt`` / ``custom_update_memory_prompt``: the
        pipeline uses the project's in preference to the settings-level ones.
        """
        given = {
            "custom_instructions": custom_instructions,
            "custom_categories": custom_categories,
            "custom_fact_extraction_prompt": custom_fact_extraction_prompt,
            "custom_update_memory_prompt": custom_update_memory_prompt,
        }
        values = {column: value or None for column, value in given.items() if value is not None}
        if values:
            with self.engine.begin() as conn:
                result = conn.execute(
                    update(tables.projects).where(tables.projects.c.id == project_id).values(**values)
                )
            if not result.rowcount:
                raise LookupError(f"project {project_id} not found")

    def list_keys(self, project_id: str | None = None) -> list[dict[str, Any]]:
        k = tables.api_keys
        query = select(k.c.id, k.c.project_id, k.c.name, k.c.prefix, k.c.created_at, k.c.revoked_at)
        if project_id:
            query = query.where(k.c.project_id == project_id)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query.order_by(k.c.created_at)).mappings()]

    def list_projects(self) -> list[dict[str, Any]]:
        p, o = tables.projects, tables.organizations
        query = select(p.c.id, p.c.name, p.c.org_id, o.c.name.label("org_name")).join(o, o.c.id == p.c.org_id)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query.order_by(p.c.created_at)).mappings()]

    def has_any_project(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(tables.projects.c.id).limit(1)).first() is not None
