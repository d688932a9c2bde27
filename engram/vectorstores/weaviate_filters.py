"""Mem0's v2 filter tree (``engram.filters``) as Weaviate filters: a pure function, no server.

Only what Weaviate answers *exactly* is translated; anything else (metadata, ``icontains``, text
ranges, values Weaviate's operators would read differently) returns None and is checked in Python
with ``filters.matches`` on the candidates, as the Lance store does. The store also re-checks every
returned memory with ``matches``, so a translation can only ever cost results, never add wrong ones.

Stored values are shaped so that the simplest operators are exact (see ``weaviate_schema``):

- filterable text (memory id, user/agent/run/app ids, categories) is stored wrapped, ``|value|``,
  with ``field`` tokenization. Weaviate trims whitespace from field tokens and treats an empty
  string as null; wrapped, ``""`` and ``" x "`` are ordinary distinct tokens, and Equal, NotEqual,
  ContainsAny and Like mean what ``matches`` means;
- categories always hold a sentinel element (the wrapped empty string), so the array is never null
  and a negation covers memories without categories;
- created_at / updated_at are also stored as integer microseconds since the epoch, so comparisons
  are exact to the microsecond (no reliance on how the server rounds dates).

``Not`` (and so ``ne`` on categories) needs Weaviate 1.33 or later: ``negation=False`` leaves it to
the Python residual on older servers.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from weaviate.classes.query import Filter
from weaviate.collections.classes.filters import _Filters

from engram.filters import SCOPE_FIELDS, And, Cond, Node, Not, Or

WRAP = "|"
# Like's wildcards cannot be escaped, and the wrapper would match across the value's edges.
_LIKE_UNSAFE = ("*", "?", WRAP)
TEXT_PROPERTIES = {"id": "memory_id", **{f: f for f in SCOPE_FIELDS}}
TIME_PROPERTIES = {"created_at": "created_at_us", "updated_at": "updated_at_us"}
CATEGORIES = "categories"
EXPIRES_ON = "expires_on"  # YYYYMMDD as an int; NEVER_EXPIRES when there is no expiration date
NEVER_EXPIRES = 99_991_231
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TENANT_OK = re.compile(r"[A-Za-z0-9_-]{1,64}")


def wrap(value: str) -> str:
    return f"{WRAP}{value}{WRAP}"


def unwrap(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == WRAP and value[-1] == WRAP else value


def micros(moment: datetime) -> int:
    """Exact integer microseconds since the epoch (naive means UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value))


def expires_on(expiration_date: str | None) -> int:
    """An expiration date (YYYY-MM-DD) as the integer Weaviate compares; no date never expires."""
    if not expiration_date:
        return NEVER_EXPIRES
    return int(date.fromisoformat(str(expiration_date)[:10]).strftime("%Y%m%d"))


def tenant_name(project_id: str) -> str:
    """The tenant of a project. Weaviate allows 1-64 of ``[A-Za-z0-9_-]``; engram's project ids
    (``proj_<slug>_<hex>``) fit and are used as they are. Any other id gets a stable hash name."""
    if _TENANT_OK.fullmatch(project_id) and not project_id.startswith("h-"):
        return project_id
    return "h-" + hashlib.sha256(project_id.encode()).hexdigest()[:60]


def not_expired(today: date | None = None) -> _Filters:
    day = today or datetime.now(UTC).date()
    return Filter.by_property(EXPIRES_ON).greater_or_equal(int(day.strftime("%Y%m%d")))


def split(where: Node | None, *, negation: bool = True) -> tuple[_Filters | None, bool]:
    """(the Weaviate filter for the translatable top-level conditions, whether a residual remains)."""
    items = where.items if isinstance(where, And) else (where,) if where is not None else ()
    pushed: list[_Filters] = []
    residual = False
    for item in items:
        translated = to_filter(item, negation=negation)
        if translated is None:
            residual = True
        else:
            pushed.append(translated)
    return (Filter.all_of(pushed) if pushed else None), residual


def to_filter(node: Node, *, negation: bool = True) -> _Filters | None:
    """The exact Weaviate equivalent of ``node``, or None if there is none."""
    if isinstance(node, And | Or):
        parts = [to_filter(n, negation=negation) for n in node.items]
        if any(p is None for p in parts):
            return None
        kept: list[_Filters] = [p for p in parts if p is not None]
        return Filter.all_of(kept) if isinstance(node, And) else Filter.any_of(kept)
    if isinstance(node, Not):
        inner = to_filter(node.item, negation=negation) if negation else None
        return None if inner is None else Filter.not_(inner)
    if node.field in TEXT_PROPERTIES:
        return _text(TEXT_PROPERTIES[node.field], node)
    if node.field in TIME_PROPERTIES:
        return _time(TIME_PROPERTIES[node.field], node)
    if node.field == CATEGORIES:
        return _categories(node, negation)
    return None  # metadata.*: stored as JSON text, checked in Python


def _text(prop: str, cond: Cond) -> _Filters | None:
    op, value = cond.op, cond.value
    by = Filter.by_property(prop)
    if op == "exists":
        return by.not_equal(wrap(""))
    if op == "eq":
        return by.equal(wrap(value))
    if op == "ne":
        return by.not_equal(wrap(value))
    if op == "in":
        return Filter.any_of([by.equal(wrap(v)) for v in value]) if value else None
    if op == "contains" and value and not any(c in value for c in _LIKE_UNSAFE):
        return by.like(f"*{value}*")
    return None  # icontains (Like's case handling differs by tokenization), and text ranges


def _time(prop: str, cond: Cond) -> _Filters | None:
    op, value = cond.op, cond.value
    by = Filter.by_property(prop)
    if op == "in":
        return Filter.any_of([by.equal(micros(v)) for v in value]) if value else None
    if not isinstance(value, datetime):
        return None
    at = micros(value)
    compare: dict[str, Any] = {
        "eq": by.equal,
        "ne": by.not_equal,
        "gt": by.greater_than,
        "gte": by.greater_or_equal,
        "lt": by.less_than,
        "lte": by.less_or_equal,
    }
    return compare[op](at) if op in compare else None


def _categories(cond: Cond, negation: bool) -> _Filters | None:
    op, value = cond.op, cond.value
    by = Filter.by_property(CATEGORIES)
    if op in ("eq", "contains") and _category_value(value):
        return by.contains_any([wrap(value)])
    if op == "in" and value and all(_category_value(v) for v in value):
        return by.contains_any([wrap(v) for v in value])
    if op == "ne" and negation and _category_value(value):
        return Filter.not_(by.contains_any([wrap(value)]))
    return None  # exists, icontains, ranges: rare, and simplest to get right in Python


def _category_value(value: Any) -> bool:
    # "" would match the sentinel element; non-strings can never equal a stored category anyway.
    return isinstance(value, str) and value != ""
