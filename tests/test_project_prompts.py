"""Custom fact-extraction and update prompts: a project's own (``engram projects configure``) win over the
settings-level ones, which apply to projects without their own. Checked in what the LLM receives: a real
stack whose LLM is the OpenAI-compatible stub on loopback."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.llm_stub import LLMStub, litellm_env
from tests.stack import Stack

pytestmark = pytest.mark.e2e
SETTINGS_EXTRACT = 'Settings-level extraction prompt. Answer {"facts": [...]}.'
SETTINGS_UPDATE = 'Settings-level update prompt. Answer {"memory": [...]}.'
PROJECT_EXTRACT = 'Project extraction prompt for gardeners. Answer {"facts": [...]}.'
PROJECT_UPDATE = 'Project update prompt for gardeners. Answer {"memory": [...]}.'


@pytest.fixture(scope="module")
def llm() -> Iterator[LLMStub]:
    with LLMStub() as stub:
        yield stub


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str, llm: LLMStub) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("prompts"),
        redis_url,
        **litellm_env(llm, timeout_seconds=5),
        ENGRAM_PIPELINE__CUSTOM_FACT_EXTRACTION_PROMPT=SETTINGS_EXTRACT,
        ENGRAM_PIPELINE__CUSTOM_UPDATE_MEMORY_PROMPT=SETTINGS_UPDATE,
    )
    try:
        yield s.start()
    finally:
        s.stop()


@pytest.fixture(scope="module")
def other(stack: Stack) -> httpx.Client:
    """A second project, with no prompts of its own."""
    org = stack.cli("orgs", "create", "prompts-other").stdout.strip().split()[-1]
    project = stack.cli("projects", "create", "no-prompts", "--org", org).stdout.strip().split()[-1]
    key = re.search(r"(eng_\S+)", stack.cli("keys", "create", "--project", project).stdout).group(1)  # type: ignore[union-attr]
    return httpx.Client(base_url=stack.base_url, timeout=60, headers={"Authorization": f"Token {key}"})


def configure(stack: Stack, *options: str) -> None:
    project = stack.client.get("/v1/ping/").json()["project_id"]
    done = stack.cli("projects", "configure", project, *options)
    assert done.returncode == 0, done.stdout + done.stderr


def system_prompts(llm: LLMStub) -> dict[str, list[str]]:
    """The system prompt of each extraction and each update request the LLM received."""
    seen: dict[str, list[str]] = {"extract": [], "update": []}
    for body in llm.requests:
        messages = body["messages"]
        last = messages[-1]["content"]
        kind = "extract" if last.startswith("Conversation:") else "update" if "NEW FACTS:" in last else None
        if kind is not None:
            seen[kind].append(messages[0]["content"])
    return seen


def added(client: httpx.Client, text: str, user: str) -> list[str]:
    response = client.post("/v1/memories/", json={"messages": text, "user_id": user})
    assert response.status_code == 202, response.text
    job = wait(client, response.json()["event_id"])
    assert job["status"] == "SUCCEEDED", job
    return [r["memory"] for r in job["results"]]


def wait(client: httpx.Client, event_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/v1/event/{event_id}/").json()
        if job["status"] in ("SUCCEEDED", "FAILED"):
            return job  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise TimeoutError(event_id)


def test_the_projects_prompts_reach_the_llm(stack: Stack, llm: LLMStub) -> None:
    configure(stack, "--fact-extraction-prompt", PROJECT_EXTRACT, "--update-memory-prompt", PROJECT_UPDATE)
    llm.reset()
    assert added(stack.client, "I grow tomatoes on my balcony.", "gardener") == [
        "Grows tomatoes on their balcony"
    ]
    assert system_prompts(llm) == {"extract": [PROJECT_EXTRACT], "update": [PROJECT_UPDATE]}


def test_a_project_without_prompts_gets_the_settings_level_ones(
    stack: Stack, llm: LLMStub, other: httpx.Client
) -> None:
    configure(stack, "--fact-extraction-prompt", PROJECT_EXTRACT, "--update-memory-prompt", PROJECT_UPDATE)
    llm.reset()
    assert added(other, "I keep chickens.", "farmer") == ["Keeps chickens"]
    assert system_prompts(llm) == {"extract": [SETTINGS_EXTRACT], "update": [SETTINGS_UPDATE]}


def test_clearing_a_projects_prompt_falls_back_to_the_settings_level_one(stack: Stack, llm: LLMStub) -> None:
    configure(stack, "--fact-extraction-prompt", PROJECT_EXTRACT, "--update-memory-prompt", PROJECT_UPDATE)
    configure(stack, "--fact-extraction-prompt", "")  # clears only this one
    llm.reset()
    assert added(stack.client, "I prune roses.", "gardener-2") == ["Prunes roses"]
    assert system_prompts(llm) == {"extract": [SETTINGS_EXTRACT], "update": [PROJECT_UPDATE]}
