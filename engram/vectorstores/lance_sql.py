"""The part of a v2 filter LanceDB can answer itself, as SQL over the scalar columns.

Conditions on dates, categories and metadata are left to ``engram.filters.matches`` (the residual),
so the SQL only ever narrows: it is applied as a prefilter and the residual runs on what it returns.
Values are always quoted, never interpolated raw.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engram.filters import And, Cond, Node, Not, Or

SQL_COLUMNS = {"id": "id", "user_id": "user_id", "agent_id": "agent_id", "run_id": "run_id", "app_id": "app_id"}


def quote(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _like(value: Any) -> str:
    escaped = str(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return quote(f"%{escaped}%")


def to_sql(node: Node | None) -> str | None:
    """LanceDB SQL for a filter made only of scalar-column conditions; None if any part is not."""
    if node is None:
        return None
    if isinstance(node, And | Or):
        parts = [to_sql(n) for n in node.items]
        if any(p is None for p in parts):
            return None
        return "(" + (" AND " if isinstance(node, And) else " OR ").join(parts) + ")"  # type: ignore[arg-type]
    if isinstance(node, Not):
        inner = to_sql(node.item)
        return None if inner is None else f"(NOT {inner})"
    column = SQL_COLUMNS.get(node.field)
    if column is None:
        return None
    return _cond_sql(column, node)


def _cond_sql(column: str, cond: Cond) -> str | None:
    op, value = cond.op, cond.value
    if op == "exists":
        return f"({column} != '')"
    if op == "in":
        return f"({column} IN ({', '.join(quote(v) for v in value)}))" if value else "(false)"
    if op == "contains":
        return f"({column} LIKE {_like(value)})"
    if op == "icontains":
        return f"(lower({column}) LIKE lower({_like(value)}))"
    symbol = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}.get(op)
    return None if symbol is None else f"({column} {symbol} {quote(value)})"


def prefilter(project_id: str, where: Node | None, include_expired: bool) -> tuple[str, bool]:
    """(SQL LanceDB applies, whether ``filters.matches`` must still run on the rows it returns)."""
    clauses = [f"project_id = {quote(project_id)}"]
    if not include_expired:
        today = datetime.now(UTC).date().isoformat()
        clauses.append(f"(expiration_date IS NULL OR expiration_date >= {quote(today)})")
    residual = False
    items = where.items if isinstance(where, And) else (where,) if where is not None else ()
    for item in items:
        sql = to_sql(item)
        if sql is None:
            residual = True
        else:
            clauses.append(sql)
    return " AND ".join(clauses), residual
