"""Mem0's v2 filter language: parse once into a small tree, then evaluate or translate it.

    {"AND": [{"user_id": "alex"}, {"created_at": {"gte": "2024-07-01"}}, {"categories": {"contains": "food"}}]}

Nesting with ``AND`` / ``OR`` / ``NOT``; fields user_id, agent_id, app_id, run_id, id, created_at,
updated_at, categories and metadata (``{"metadata": {"k": v}}`` or ``"metadata.k"``); operators eq,
ne, gt, gte, lt, lte, in, contains, icontains; ``"*"`` matches any non-empty value. A dict with
several keys is an implicit AND. Unknown fields or operators raise ``FilterError`` naming them.

Every vector store answers the same tree: ``matches`` is the reference semantics (and the
post-filter of last resort); adapters translate what they can into their own query language.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from engram.ports import MemoryRecord

SCOPE_FIELDS = ("user_id", "agent_id", "run_id", "app_id")
SCALAR_FIELDS = ("id", *SCOPE_FIELDS)
TIME_FIELDS = ("created_at", "updated_at")
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "icontains")
WILDCARD = "*"


class FilterError(ValueError):
    """A filter the language does not allow (answered with 400)."""


@dataclass(frozen=True, slots=True)
class Cond:
    field: str  # a scalar or time field, "categories", or "metadata.<key>"
    op: str  # one of OPERATORS, or "exists" for the "*" wildcard
    value: Any


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


Node = Cond | And | Or | Not


def eq(field: str, value: Any) -> Cond:
    return Cond(field, "eq", value)


def all_of(*nodes: Node | None) -> Node | None:
    kept = tuple(n for n in nodes if n is not None)
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else And(kept)


# -- parsing -------------------------------------------------------------------------------------


def parse(raw: Any) -> Node | None:
    """The tree for a v2 filter dict (None for an empty filter)."""
    if raw is None or raw == {}:
        return None
    if not isinstance(raw, dict):
        raise FilterError("filters must be a JSON object")
    return _parse_dict(raw)


def _parse_dict(raw: dict[str, Any]) -> Node:
    nodes: list[Node] = []
    unknown = [k for k in raw if not _known_key(k)]
    if unknown:
        raise FilterError(
            f"unknown filter field(s): {', '.join(sorted(map(str, unknown)))}; allowed: AND, OR, NOT, "
            f"{', '.join(SCALAR_FIELDS + TIME_FIELDS)}, categories, metadata"
        )
    for key, value in raw.items():
        if key in ("AND", "OR"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"{key} takes a non-empty list of filters")
            parts = tuple(_parse_dict(_as_dict(v, key)) for v in value)
            nodes.append(And(parts) if key == "AND" else Or(parts))
        elif key == "NOT":
            items = value if isinstance(value, list) else [value]
            if not items:
                raise FilterError("NOT takes a filter or a non-empty list of filters")
            inner = [_parse_dict(_as_dict(v, key)) for v in items]
            nodes.append(Not(inner[0] if len(inner) == 1 else And(tuple(inner))))
        elif key == "metadata":
            if not isinstance(value, dict) or not value:
                raise FilterError("metadata takes an object of key → value or operator")
            for meta_key, meta_value in value.items():
                nodes.extend(_conditions(f"metadata.{meta_key}", meta_value))
        else:
            nodes.extend(_conditions(key, value))
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))


def _known_key(key: Any) -> bool:
    return isinstance(key, str) and (
        key in ("AND", "OR", "NOT", "metadata", "categories")
        or key in SCALAR_FIELDS
        or key in TIME_FIELDS
        or (key.startswith("metadata.") and len(key) > len("metadata."))
    )


def _as_dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FilterError(f"every item of {where} must be a filter object")
    return value


def _conditions(field: str, value: Any) -> Iterator[Cond]:
    if isinstance(value, dict):
        if not value:
            raise FilterError(f"{field}: empty operator object")
        bad = [op for op in value if op not in OPERATORS]
        if bad:
            allowed = ", ".join(OPERATORS)
            raise FilterError(f"{field}: unknown operator(s) {', '.join(map(str, bad))}; allowed: {allowed}")
        for op, operand in value.items():
            yield _condition(field, op, operand)
    elif value == WILDCARD:
        yield Cond(field, "exists", True)
    else:
        yield _condition(field, "contains" if field == "categories" else "eq", value)


def _condition(field: str, op: str, value: Any) -> Cond:
    if op == "in":
        if not isinstance(value, list):
            raise FilterError(f"{field}: 'in' takes a list")
        value = tuple(_coerce(field, v) for v in value)
    else:
        value = _coerce(field, value)
    if field in TIME_FIELDS and op in ("contains", "icontains"):
        raise FilterError(f"{field}: '{op}' does not apply to dates")
    return Cond(field, op, value)


def _coerce(field: str, value: Any) -> Any:
    if field in TIME_FIELDS:
        return parse_time(value, field)
    if field in SCALAR_FIELDS and not isinstance(value, str):
        raise FilterError(f"{field} takes a string")
    return value


def parse_time(value: Any, field: str = "date") -> datetime:
    """ISO date or datetime (naive means UTC), or a Unix timestamp."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    raise FilterError(f"{field}: {value!r} is not an ISO date/datetime or a Unix timestamp")


# -- evaluation ----------------------------------------------------------------------------------


def matches(node: Node | None, record: MemoryRecord) -> bool:
    """The reference semantics of a filter against one stored memory."""
    if node is None:
        return True
    if isinstance(node, And):
        return all(matches(n, record) for n in node.items)
    if isinstance(node, Or):
        return any(matches(n, record) for n in node.items)
    if isinstance(node, Not):
        return not matches(node.item, record)
    return _compare(node, _value_of(node.field, record))


_MISSING = object()


def _value_of(field: str, record: MemoryRecord) -> Any:
    if field == "id":
        return record.id
    if field == "app_id":
        return record.app_id
    if field in SCOPE_FIELDS:
        return getattr(record.scope, field)
    if field in TIME_FIELDS:
        return getattr(record, field)
    if field == "categories":
        return list(record.categories)
    return (record.metadata or {}).get(field[len("metadata.") :], _MISSING)


def _compare(cond: Cond, actual: Any) -> bool:
    op, expected = cond.op, cond.value
    if op == "exists":
        return actual is not _MISSING and actual not in ("", None, [])
    if actual is _MISSING:
        return op == "ne"
    if isinstance(actual, list):  # categories (or a list in metadata): any element may satisfy it
        if op in ("contains", "eq"):
            return expected in actual
        if op == "in":
            return any(v in actual for v in expected)
        if op == "ne":
            return expected not in actual
        if op == "icontains":
            return any(str(expected).lower() in str(v).lower() for v in actual)
        return False
    if op == "eq":
        return bool(actual == expected)
    if op == "ne":
        return bool(actual != expected)
    if op == "in":
        return actual in expected
    if op == "contains":
        return str(expected) in str(actual)
    if op == "icontains":
        return str(expected).lower() in str(actual).lower()
    try:
        if op == "gt":
            return bool(actual > expected)
        if op == "gte":
            return bool(actual >= expected)
        if op == "lt":
            return bool(actual < expected)
        return bool(actual <= expected)
    except TypeError:
        return False


def scope_ids(node: Node | None) -> dict[str, str]:
    """The entity ids a filter pins by top-level equality (used to scope adds and deletes)."""
    found: dict[str, str] = {}
    items = node.items if isinstance(node, And) else (node,) if node is not None else ()
    for item in items:
        if isinstance(item, Cond) and item.op == "eq" and item.field in SCOPE_FIELDS:
            found[item.field] = item.value
    return found


def is_expired(record: MemoryRecord, today: date | None = None) -> bool:
    """Expired memories drop out of search and lists; the date itself is the last day it counts."""
    expiry = record.expiration_date
    return bool(expiry) and str(expiry) < (today or datetime.now(UTC).date()).isoformat()
