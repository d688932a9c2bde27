"""The v2 filter tree → Weaviate filter translation, checked on its structure (no server needed)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from weaviate.collections.classes.filters import _FilterAnd, _FilterNot, _FilterOr, _Filters, _FilterValue, _Operator
from weaviate.collections.filters import _FilterToGRPC, _FilterToREST

from engram.filters import parse
from engram.vectorstores.weaviate_filters import (
    NEVER_EXPIRES,
    expires_on,
    from_micros,
    micros,
    not_expired,
    split,
    tenant_name,
    to_filter,
)


def shape(f: _Filters | None) -> Any:
    """A filter as plain data: (operator, target, value) leaves inside (operator, [children])."""
    if f is None:
        return None
    if isinstance(f, _FilterValue):
        return (f.operator.value, f.target, f.value)
    assert isinstance(f, _FilterAnd | _FilterOr | _FilterNot)
    return (f.operator.value, [shape(child) for child in f.filters])


def translate(raw: Any, **kwargs: Any) -> Any:
    node = parse(raw)
    assert node is not None
    result = to_filter(node, **kwargs)
    if result is not None:  # whatever we build, the real client must be able to send
        _FilterToGRPC.convert(result)
        _FilterToREST.convert(result)
    return shape(result)


T = datetime(2026, 1, 1, 0, 5, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"user_id": "ana"}, ("Equal", "user_id", "|ana|")),
        ({"agent_id": ""}, ("Equal", "agent_id", "||")),  # an empty id is a real, filterable value
        ({"run_id": " r "}, ("Equal", "run_id", "| r |")),  # whitespace survives field tokenization
        ({"id": "m1"}, ("Equal", "memory_id", "|m1|")),
        ({"app_id": {"ne": "x"}}, ("NotEqual", "app_id", "|x|")),
        ({"user_id": "*"}, ("NotEqual", "user_id", "||")),
        ({"user_id": {"contains": "an"}}, ("Like", "user_id", "*an*")),
        (
            {"user_id": {"in": ["a", ""]}},
            ("Or", [("Equal", "user_id", "|a|"), ("Equal", "user_id", "||")]),
        ),
        ({"created_at": {"gt": "2026-01-01T00:05:00.123456Z"}}, ("GreaterThan", "created_at_us", micros(T))),
        ({"updated_at": {"lte": "2026-01-01T00:05:00.123456"}}, ("LessThanEqual", "updated_at_us", micros(T))),
        ({"created_at": {"ne": "2026-01-01T00:05:00.123456Z"}}, ("NotEqual", "created_at_us", micros(T))),
        ({"categories": "food"}, ("ContainsAny", "categories", ["|food|"])),
        ({"categories": {"in": ["a", "b"]}}, ("ContainsAny", "categories", ["|a|", "|b|"])),
        ({"categories": {"ne": "food"}}, ("Not", [("ContainsAny", "categories", ["|food|"])])),
        ({"NOT": {"user_id": "ana"}}, ("Not", [("Equal", "user_id", "|ana|")])),
        (
            {"OR": [{"user_id": "a"}, {"AND": [{"agent_id": "b"}, {"run_id": "c"}]}]},
            ("Or", [("Equal", "user_id", "|a|"), ("And", [("Equal", "agent_id", "|b|"), ("Equal", "run_id", "|c|")])]),
        ),
    ],
)
def test_translated_structure(raw: Any, expected: Any) -> None:
    assert translate(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        {"metadata": {"k": "v"}},  # JSON text: checked in Python
        {"user_id": {"icontains": "ana"}},
        {"user_id": {"gt": "b"}},  # text ranges
        {"user_id": {"contains": "a*b"}},  # Like's wildcards cannot be escaped
        {"user_id": {"contains": "a|"}},
        {"user_id": {"contains": ""}},
        {"user_id": {"in": []}},
        {"categories": ""},  # would match the sentinel element
        {"categories": "*"},
        {"categories": {"icontains": "x"}},
        {"created_at": "*"},
        {"OR": [{"user_id": "a"}, {"metadata": {"k": 1}}]},  # one untranslatable part spoils an OR
        {"NOT": {"metadata": {"k": 1}}},
    ],
)
def test_untranslatable_parts_are_left_to_python(raw: Any) -> None:
    assert translate(raw) is None


def test_without_negation_support_not_is_left_to_python() -> None:
    assert translate({"NOT": {"user_id": "a"}}, negation=False) is None
    assert translate({"categories": {"ne": "a"}}, negation=False) is None
    assert translate({"user_id": {"ne": "a"}}, negation=False) == ("NotEqual", "user_id", "|a|")


def test_split_pushes_what_it_can_and_reports_the_residual() -> None:
    pushed, residual = split(parse({"user_id": "ana", "metadata": {"k": 1}, "categories": "food"}))
    assert residual is True
    assert shape(pushed) == ("And", [("Equal", "user_id", "|ana|"), ("ContainsAny", "categories", ["|food|"])])
    assert split(parse({"user_id": "ana"})) == (to_filter(parse({"user_id": "ana"})), False)  # type: ignore[arg-type]
    assert split(None) == (None, False)
    assert split(parse({"metadata": {"k": 1}})) == (None, True)


def test_expiry_is_an_integer_day_comparison() -> None:
    assert shape(not_expired(date(2026, 2, 3))) == ("GreaterThanEqual", "expires_on", 20260203)
    assert expires_on("2026-02-03") == 20260203 and expires_on(None) == expires_on("") == NEVER_EXPIRES


def test_microseconds_are_exact_both_ways() -> None:
    assert from_micros(micros(T)) == T
    assert micros(datetime(1970, 1, 1, 0, 0, 0, 1)) == 1  # naive means UTC
    assert micros(datetime(2262, 1, 1, tzinfo=UTC)) < 2**63  # fits Weaviate's int64


def test_tenant_names_follow_weaviate_rules() -> None:
    assert tenant_name("proj_default_a1b2c3") == "proj_default_a1b2c3"
    odd = tenant_name("my project/é")
    assert odd.startswith("h-") and len(odd) <= 64 and odd == tenant_name("my project/é")
    assert tenant_name("h-looks-hashed") != "h-looks-hashed"  # cannot collide with a hashed name
    assert tenant_name("x" * 65).startswith("h-")


def test_operators_used_exist_in_the_client() -> None:
    used = {"Equal", "NotEqual", "Like", "ContainsAny", "GreaterThan", "LessThanEqual", "Not", "And", "Or"}
    assert used <= {op.value for op in _Operator}
