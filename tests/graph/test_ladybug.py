"""LadybugDB (the maintained Kuzu fork) passes the same graph tests as kuzu, in a process of its own."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ["tests/graph/test_graph_store.py", "tests/graph/test_graph_stage.py"]


@pytest.mark.skipif(importlib.util.find_spec("ladybug") is None, reason="ladybug is not installed (extra: ladybug)")
def test_ladybug_passes_the_graph_contract() -> None:
    if os.environ.get("ENGRAM_TEST_GRAPH_BACKEND") == "ladybug":
        pytest.skip("already the ladybug run")
    env = {**os.environ, "ENGRAM_TEST_GRAPH_BACKEND": "ladybug"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CONTRACT],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary
