"""Schemathesis over the whole API, with a valid key, against a live server and worker:
no 5xx (501 "not implemented yet" aside), and every response matches its own schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("fuzz"), redis_url)
    try:
        yield s.start()
    finally:
        s.stop()


def test_api_conforms(stack: Stack) -> None:
    """Every operation, ~15 generated requests each (schemathesis's pytest plugin does not load under
    pytest 9, so the operations are driven here with Hypothesis directly)."""
    api = schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json")
    headers = {"Authorization": f"Token {stack.api_key}"}
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    failures: list[str] = []
    operations = 0
    for result in api.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def exercise(case: schemathesis.Case) -> None:
            response = case.call(headers=headers, timeout=60)
            if response.status_code == 501:
                assert "does not implement" in response.json()["error"]
                return
            case.validate_response(response, checks=checks)

        try:
            exercise()
        except (Exception, BaseExceptionGroup) as exc:  # collected: one run reports every failing operation
            failures.append(f"{operation.method.upper()} {operation.path}: {exc!s:.800}")
    assert operations > 25
    assert not failures, "\n\n".join(failures)
