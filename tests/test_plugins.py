"""A third-party provider, installed the way pip installs one (a package plus a ``*.dist-info`` with
``entry_points.txt``), is discovered, built with its own typed config, and listed by ``engram providers``."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.container import Container
from config.settings import Settings
from engram import plugins
from tests.test_cli import provider_rows, run_cli

PACKAGE = "engram_acme_plugin"
TARGET = f"{PACKAGE}.embedder:AcmeEmbedder"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory holding an installed distribution, on ``sys.path`` (importlib.metadata scans it)."""
    root = tmp_path / "site"
    (root / PACKAGE).mkdir(parents=True)
    (root / PACKAGE / "__init__.py").write_text("")
    (root / PACKAGE / "embedder.py").write_text(
        textwrap.dedent(
            '''
            from pydantic import BaseModel, Field


            class AcmeConfig(BaseModel):
                """Its own config: two common embedder fields plus fields only it knows."""

                model: str
                dimensions: int
                region: str = "eu"
                scale: float = Field(1.0, gt=0)


            class AcmeEmbedder:
                config_model = AcmeConfig

                def __init__(self, config: AcmeConfig) -> None:
                    self.config = config

                def embed(self, texts: list[str]) -> list[list[float]]:
                    return [[self.config.scale] * self.config.dimensions for _ in texts]
            '''
        )
    )
    dist = root / "engram_acme_plugin-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: engram-acme-plugin\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(f"[engram.embedders]\nacme = {TARGET}\n")
    monkeypatch.syspath_prepend(str(root))  # also invalidates the import caches
    monkeypatch.chdir(tmp_path)  # Settings read ./.env: none here
    for name in [m for m in sys.modules if m.startswith(PACKAGE)]:
        monkeypatch.delitem(sys.modules, name)
    return root


def test_the_entry_point_is_discovered_as_third_party(site: Path) -> None:
    found = plugins.available("embedder")
    assert found["acme"] == plugins.ProviderInfo("embedder", "acme", TARGET, builtin=False)
    assert found["onnx"].builtin  # the built-ins are still there
    assert "acme" not in plugins.available("llm")  # registered for embedders only
    assert plugins.load("embedder", "acme").__module__ == f"{PACKAGE}.embedder"


def test_the_container_builds_it_with_its_typed_config_from_the_environment(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENGRAM_EMBEDDER__PROVIDER", "acme")
    monkeypatch.setenv("ENGRAM_EMBEDDER__DIMENSIONS", "8")
    monkeypatch.setenv("ENGRAM_EMBEDDER__CONFIG", '{"region": "us-east", "scale": 0.5, "unknown_key": 1}')
    embedder = Container(Settings()).embedder
    assert type(embedder).__module__ == f"{PACKAGE}.embedder"
    config = embedder.config  # type: ignore[attr-defined]
    assert (config.region, config.scale) == ("us-east", 0.5)  # from ENGRAM_EMBEDDER__CONFIG
    assert (config.model, config.dimensions) == ("all-MiniLM-L6-v2", 8)  # the kind's common settings
    assert not hasattr(config, "unknown_key")  # only the fields its config declares
    assert embedder.embed(["a"]) == [[0.5] * 8]


def test_its_config_is_validated_by_its_own_model(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGRAM_EMBEDDER__PROVIDER", "acme")
    monkeypatch.setenv("ENGRAM_EMBEDDER__CONFIG", '{"scale": -1}')
    with pytest.raises(ValidationError, match="scale"):
        _ = Container(Settings()).embedder


def test_engram_providers_lists_it_as_third_party_and_selected(site: Path, tmp_path: Path) -> None:
    done = run_cli(tmp_path, "providers", pythonpath=str(site), ENGRAM_EMBEDDER__PROVIDER="acme")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = provider_rows(done.stdout)
    assert rows[("embedder", "acme")] == ("*", "third-party", TARGET)
    assert rows[("embedder", "onnx")] == ("", "built-in", plugins.BUILTINS["embedder"]["onnx"])
    without = provider_rows(run_cli(tmp_path, "providers").stdout)  # not on the path: not installed
    assert ("embedder", "acme") not in without and ("embedder", "onnx") in without
