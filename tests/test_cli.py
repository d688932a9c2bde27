"""The real ``engram`` command line, run as a process: ``engram providers``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from engram import plugins
from tests.stack import BIN, ROOT


def run_cli(cwd: Path, *args: str, pythonpath: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """``engram ARGS`` with only the ENGRAM_ variables given (none inherited), in ``cwd`` (so no ``.env``)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    path = os.pathsep.join(p for p in (pythonpath, str(ROOT)) if p)
    return subprocess.run(
        [str(BIN / "engram"), *args],
        cwd=cwd,
        env={**clean, "PYTHONPATH": path, "COLUMNS": "300", "NO_COLOR": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def provider_rows(stdout: str) -> dict[tuple[str, str], tuple[str, str, str]]:
    """The table's rows: (kind, name) → (selected mark, source, target)."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("│"):
            kind, name, mark, source, target = (cell.strip() for cell in line.strip().strip("│").split("│"))
            rows[(kind, name)] = (mark, source, target)
    return rows


def test_providers_lists_every_builtin_and_marks_the_defaults(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "providers")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = provider_rows(done.stdout)
    for kind, builtins in plugins.BUILTINS.items():
        for name, target in builtins.items():
            assert rows[(kind, name)][1:] == ("built-in", target), (kind, name)
    selected = sorted(key for key, (mark, _, _) in rows.items() if mark == "*")
    # The defaults: heuristic LLM, ONNX embedder, LanceDB; no graph store until one is chosen.
    assert selected == [("embedder", "onnx"), ("llm", "heuristic"), ("vector_store", "lancedb")]


def test_providers_marks_the_configured_ones(tmp_path: Path) -> None:
    done = run_cli(
        tmp_path,
        "providers",
        ENGRAM_LLM__PROVIDER="litellm",
        ENGRAM_EMBEDDER__PROVIDER="sentence_transformers",
        ENGRAM_VECTOR_STORE__PROVIDER="weaviate",
        ENGRAM_GRAPH_STORE__PROVIDER="kuzu",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = provider_rows(done.stdout)
    selected = sorted(key for key, (mark, _, _) in rows.items() if mark == "*")
    assert selected == [
        ("embedder", "sentence_transformers"),
        ("graph_store", "kuzu"),
        ("llm", "litellm"),
        ("vector_store", "weaviate"),
    ]


@pytest.mark.parametrize(
    ("variable", "kind"), [("ENGRAM_LLM__PROVIDER", "llm"), ("ENGRAM_EMBEDDER__PROVIDER", "embedder")]
)
def test_a_selected_provider_that_is_not_installed_is_reported(tmp_path: Path, variable: str, kind: str) -> None:
    done = run_cli(tmp_path, "providers", **{variable: "not-installed"})
    assert done.returncode == 1
    assert f"{kind} provider 'not-installed' is selected but not installed" in done.stdout
    assert not any(mark for mark, _, _ in (v for k, v in provider_rows(done.stdout).items() if k[0] == kind))
