"""Fault tests: small and bounded by default (CI); ``--soak`` or ``ENGRAM_SOAK=1`` runs the long variants."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def soak(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--soak")) or os.environ.get("ENGRAM_SOAK", "") not in ("", "0")
