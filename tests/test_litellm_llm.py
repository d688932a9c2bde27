"""The litellm path (``LiteLLM`` and ``LiteLLMEmbedder``) against a loopback OpenAI-compatible server.

The server is ``tests.llm_stub.LLMStub`` on 127.0.0.1: real HTTP, real litellm and openai client code,
no network. It answers engram's prompts with valid JSON derived from the request, and injects faults
(malformed answers, 429 with Retry-After, 500, slow answers) from a per-test script.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
from collections.abc import Iterator

import pytest

from engram.embedding.litellm_embedder import LiteLLMEmbedder, LiteLLMEmbedderConfig
from engram.errors import PermanentError, TransientError
from engram.llm.litellm_llm import LiteLLM, LiteLLMConfig
from engram.ports import ExistingMemory
from schemas.llm import MemoryDecision
from schemas.memories import Message
from tests.llm_stub import LLMStub, hashed_embedding

MODEL = "openai/stub-model"


@pytest.fixture
def stub() -> Iterator[LLMStub]:
    with LLMStub() as server:
        yield server


def make_llm(stub: LLMStub, **overrides: object) -> LiteLLM:
    values: dict[str, object] = {"model": MODEL, "api_base": stub.base_url, "api_key": "sk-test", "timeout_seconds": 5}
    values.update(overrides)
    return LiteLLM(LiteLLMConfig(**values))  # type: ignore[arg-type]


def make_embedder(stub: LLMStub, dimensions: int = 8) -> LiteLLMEmbedder:
    return LiteLLMEmbedder(
        LiteLLMEmbedderConfig(
            model="openai/stub-embedder",
            dimensions=dimensions,
            api_base=stub.base_url,
            api_key="sk-test",
            timeout_seconds=5,
        )
    )


def user(text: str) -> Message:
    return Message(role="user", content=text)


# -- happy paths -------------------------------------------------------------------------------------


def test_extraction_returns_the_facts_derived_from_the_user_message(stub: LLMStub) -> None:
    facts = make_llm(stub).extract_facts(
        [
            user("Hi! My name is Ana. I live in Paris and I love hiking."),
            Message(role="assistant", content="I love that you hike!"),
        ]
    )
    assert facts == ["Name is Ana", "Lives in Paris", "Loves hiking"]
    assert len(stub.requests) == 1
    sent = stub.requests[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert (
        sent[1]["content"] == "Conversation:\nuser: Hi! My name is Ana. I live in Paris and I love hiking.\n"
        "assistant: I love that you hike!"
    )


def test_a_call_writes_no_info_lines_under_a_workers_info_level(
    stub: LLMStub, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Celery worker runs with the root logger at INFO; litellm wrote two lines per call there.
    monkeypatch.delenv("LITELLM_LOG", raising=False)
    root, before = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.INFO)
    try:
        make_llm(stub).extract_facts([user("I live in Paris.")])
    finally:
        root.setLevel(before)
    captured = capfd.readouterr()
    assert "LiteLLM" not in captured.err + captured.out
    assert len(stub.requests) == 1


def test_request_carries_model_json_mode_temperature_and_key(stub: LLMStub) -> None:
    make_llm(stub, temperature=0.2, max_tokens=321).extract_facts([user("I live in Paris.")])
    call = stub.calls[0]
    assert call.path == "/v1/chat/completions"
    assert call.headers.get("Authorization") == "Bearer sk-test"
    body = call.body
    assert body["model"] == "stub-model"  # litellm strips the "openai/" provider prefix
    assert body["response_format"] == {"type": "json_object"}
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 321


def test_json_mode_off_sends_no_response_format(stub: LLMStub) -> None:
    assert make_llm(stub, json_mode=False).extract_facts([user("I live in Paris.")]) == ["Lives in Paris"]
    assert "response_format" not in stub.requests[0]


def test_update_decisions_parse_into_memory_decisions(stub: LLMStub) -> None:
    decisions = make_llm(stub).decide_updates(["Lives in Paris", "Loves hiking"], [])
    assert decisions == [
        MemoryDecision(id="new:0", text="Lives in Paris", event="ADD"),
        MemoryDecision(id="new:1", text="Loves hiking", event="ADD"),
    ]
    assert "NEW FACTS:" in stub.requests[0]["messages"][1]["content"]


def test_update_of_a_known_fact_is_none_for_the_existing_memory(stub: LLMStub) -> None:
    existing = [ExistingMemory(id="3f1c-uuid", text="Lives in Paris", score=0.97)]
    decisions = make_llm(stub).decide_updates(["Lives in Paris", "Loves hiking"], existing)
    assert [(d.id, d.event) for d in decisions] == [("0", "NONE"), ("new:1", "ADD")]


def test_no_facts_means_no_request(stub: LLMStub) -> None:
    assert make_llm(stub).decide_updates([], []) == []
    assert stub.requests == []


# -- malformed answers and the repair attempt --------------------------------------------------------


def test_one_malformed_answer_is_repaired(stub: LLMStub) -> None:
    stub.script(["malformed", "ok"])
    facts = make_llm(stub).extract_facts([user("I live in Paris.")])
    assert facts == ["Lives in Paris"]
    assert len(stub.requests) == 2
    first, second = (r["messages"] for r in stub.requests)
    assert second[: len(first)] == first
    assistant, repair = second[len(first) :]
    assert assistant["role"] == "assistant" and assistant["content"].startswith("Sure! here are the facts")
    assert repair["role"] == "user" and repair["content"].startswith("That was not valid JSON")


def test_malformed_twice_is_permanent(stub: LLMStub) -> None:
    stub.set_mode("malformed")
    with pytest.raises(PermanentError, match="malformed ExtractedFacts twice"):
        make_llm(stub).extract_facts([user("I live in Paris.")])
    assert len(stub.requests) == 2


def test_malformed_update_answer_twice_is_permanent(stub: LLMStub) -> None:
    stub.script(["malformed", "malformed"])
    with pytest.raises(PermanentError, match="MemoryDecisions"):
        make_llm(stub).decide_updates(["Lives in Paris"], [])
    assert len(stub.requests) == 2


# -- transient failures ------------------------------------------------------------------------------


def test_rate_limit_is_transient_with_retry_after(stub: LLMStub) -> None:
    stub.script(["rate_limit:7"])  # 429 with Retry-After: 7
    with pytest.raises(TransientError, match="RateLimitError") as caught:
        make_llm(stub).extract_facts([user("I live in Paris.")])
    assert caught.value.retry_after_seconds == 7
    assert len(stub.requests) == 1  # num_retries=0: retries belong to the task queue


def test_server_error_is_transient(stub: LLMStub) -> None:
    stub.script(["error"])
    with pytest.raises(TransientError, match="InternalServerError"):
        make_llm(stub).extract_facts([user("I live in Paris.")])
    assert len(stub.requests) == 1


def test_slow_answer_beyond_timeout_is_transient(stub: LLMStub) -> None:
    # The stub would answer (valid facts) after 30 s: only a timeout honoured on our side raises here.
    stub.script(["slow:30"])
    with pytest.raises(TransientError, match="Timeout"):
        make_llm(stub, timeout_seconds=0.5).extract_facts([user("I live in Paris.")])
    assert len(stub.requests) == 1


def test_slow_answer_within_timeout_succeeds(stub: LLMStub) -> None:
    stub.script(["slow:0.2"])
    assert make_llm(stub, timeout_seconds=3).extract_facts([user("I live in Paris.")]) == ["Lives in Paris"]


# -- embeddings --------------------------------------------------------------------------------------


def test_embeddings_are_unit_vectors_in_input_order(stub: LLMStub) -> None:
    texts = ["Lives in Paris", "Loves hiking", "Name is Ana"]
    vectors = make_embedder(stub).embed(texts)
    assert len(vectors) == 3
    for text, vector in zip(texts, vectors, strict=True):
        assert len(vector) == 8
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-6)
        assert vector == pytest.approx(hashed_embedding(text, 8))
    assert vectors[0] != vectors[1]
    call = stub.calls[0]
    assert call.path == "/v1/embeddings"
    assert call.body["model"] == "stub-embedder"
    assert call.body["input"] == texts


def test_embedding_dimension_follows_the_server(stub: LLMStub) -> None:
    stub.embedding_dimensions = 16
    [vector] = make_embedder(stub, dimensions=16).embed(["Lives in Paris"])
    assert len(vector) == 16


def test_no_texts_means_no_embedding_request(stub: LLMStub) -> None:
    assert make_embedder(stub).embed([]) == []
    assert stub.requests == []


def test_embedding_server_error_is_transient_without_retrying(stub: LLMStub) -> None:
    stub.script(["error"])  # one failure only: a hidden retry succeeds and nothing is raised
    with pytest.raises(TransientError):
        make_embedder(stub).embed(["Lives in Paris"])
    assert len(stub.requests) == 1


def test_embedding_failure_that_persists_is_transient(stub: LLMStub) -> None:
    stub.set_mode("error")
    with pytest.raises(TransientError, match="InternalServerError"):
        make_embedder(stub).embed(["Lives in Paris"])


# -- the stub itself ---------------------------------------------------------------------------------


def test_stub_stops_cleanly_even_while_a_request_sleeps() -> None:
    before = set(threading.enumerate())
    stub = LLMStub(default_mode="slow", slow_seconds=30).start()
    port = stub.port
    with pytest.raises(TransientError):
        make_llm(stub, timeout_seconds=0.3).extract_facts([user("I live in Paris.")])
    stub.stop()
    assert stub.calls[0].interrupted  # stop() cut the 30 s sleep short instead of waiting it out
    leftover = [t for t in set(threading.enumerate()) - before if t.is_alive() and not t.name.startswith("litellm")]
    assert leftover == []
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_stub_rejects_unknown_modes() -> None:
    with pytest.raises(ValueError, match="unknown stub mode"):
        LLMStub().script(["teapot"])


def test_stub_speaks_base64_embeddings_to_the_openai_client(stub: LLMStub) -> None:
    from openai import OpenAI

    with OpenAI(base_url=stub.base_url, api_key="sk-test", max_retries=0, timeout=5) as client:
        response = client.embeddings.create(model="stub-embedder", input=["Lives in Paris"])
    assert stub.requests[0]["encoding_format"] == "base64"  # the client's default, decoded on its side
    assert response.data[0].embedding == pytest.approx(hashed_embedding("Lives in Paris", 8), rel=1e-6)
