"""docker-compose.yml: valid for Docker Compose, and Weaviate wired in as the vector store.

``docker compose config`` needs only the CLI and its compose plugin, no engine; where neither it nor
the standalone ``docker-compose`` is installed that check is skipped (and says so) and the structural
checks below still run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
REQUIRED_ENV = {"FLOWER_BASIC_AUTH": "user:password", "WEAVIATE_API_KEY": "test-key"}


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def compose_command() -> list[str] | None:
    """``docker compose`` (v2 plugin); else the standalone ``docker-compose``, which reads the same spec."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_docker_compose_accepts_the_file() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither the docker compose plugin nor docker-compose is installed: compose config not run")
    env = {**os.environ, **REQUIRED_ENV}
    done = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "--quiet"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_weaviate_is_pinned_persistent_and_health_checked() -> None:
    weaviate = compose()["services"]["weaviate"]
    image = weaviate["image"]
    assert re.fullmatch(r"cr\.weaviate\.io/semitechnologies/weaviate:\d+\.\d+\.\d+", image), image
    assert any(str(v).endswith(":/var/lib/weaviate") for v in weaviate["volumes"])
    assert weaviate["environment"]["PERSISTENCE_DATA_PATH"] == "/var/lib/weaviate"
    assert "weaviate-data" in compose()["volumes"]
    assert "/v1/.well-known/ready" in " ".join(weaviate["healthcheck"]["test"])


def test_api_and_workers_use_weaviate_once_it_is_healthy() -> None:
    services = compose()["services"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["ENGRAM_VECTOR_STORE__PROVIDER"].endswith("weaviate}")  # default, overridable
        assert env["ENGRAM_VECTOR_STORE__WEAVIATE__URL"] == "http://weaviate:8080"
        assert "WEAVIATE_API_KEY" in env["ENGRAM_VECTOR_STORE__WEAVIATE__API_KEY"]
        assert services[name]["depends_on"]["weaviate"] == {"condition": "service_healthy"}


def test_every_celery_worker_waits_for_a_healthy_weaviate() -> None:
    """Each worker process pings the vector store when it starts (workers/celery_app.py) and exits if it
    cannot: started before Weaviate is ready, it would only crash and restart."""
    services = compose()["services"]
    workers = {name for name, service in services.items()
               if service.get("command", [])[3:4] == ["worker"]}
    assert {"worker-llm", "worker", "graph-0", "webhooks"} <= workers
    for name in sorted(workers):
        assert services[name]["depends_on"].get("weaviate") == {"condition": "service_healthy"}, name
