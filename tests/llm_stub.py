"""A loopback OpenAI-compatible server for tests: ``POST /v1/chat/completions`` and ``POST /v1/embeddings``.

It answers engram's two prompts with valid JSON derived from the request (extraction through the
offline ``HeuristicLLM``; update decisions as ADD, or NONE for a fact already stored verbatim), and
returns deterministic hashed bag-of-words embeddings. Faults are injected from the test:

    with LLMStub() as stub:
        stub.script(["malformed", "ok"])   # consumed one per request, then ``stub.default_mode``
        ...
        assert stub.requests[0]["response_format"] == {"type": "json_object"}

Modes: ``ok``; ``slow`` (wait ``slow_seconds`` then answer ok); ``rate_limit`` (429 with
``Retry-After: <retry_after>``); ``error`` (500); ``malformed`` (200 whose content is not JSON).
Every mode also accepts a ``"mode:<seconds>"`` form for ``slow`` and ``rate_limit`` (``"slow:2"``).

A seeded random mix instead of one fallback mode (the script still comes first):

    stub.mix({"rate_limit:1": 0.2, "error": 0.1, "slow:5": 0.05, "malformed": 0.05}, seed=8)  # the rest ok
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import random
import re
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from engram.llm.heuristic import HeuristicLLM
from schemas.memories import Message

MODES = ("ok", "slow", "rate_limit", "error", "malformed")
REPAIR_PREFIX = "That was not valid JSON"
ROLE_LINE = re.compile(r"^(user|assistant|system|tool): ?(.*)$")
WORD = re.compile(r"[\w']+")


@dataclass
class StubCall:
    """One request as the stub saw it, and the mode it answered with."""

    path: str
    headers: httpx.Headers  # case-insensitive: clients differ in how they spell header names
    body: Any
    mode: str
    at: float = field(default_factory=time.monotonic)
    finished: float | None = None  # when the answer was sent (or the client gave up)
    interrupted: bool = False  # stop() cut a slow answer short


def parse_conversation(text: str) -> list[Message]:
    """Turn ``"Conversation:\\n<role>: <content>\\n..."`` back into messages (continuation lines join the last)."""
    turns: list[tuple[str, list[str]]] = []
    for line in text.split("\n")[1:]:
        match = ROLE_LINE.match(line)
        if match:
            turns.append((match.group(1), [match.group(2)]))
        elif turns:
            turns[-1][1].append(line)
    messages = []
    for role, lines in turns:
        content = "\n".join(lines)
        if content.strip():
            messages.append(Message(role=role, content=content))  # type: ignore[arg-type]
    return messages


def _json_list_after(marker: str, text: str) -> list[dict[str, Any]]:
    start = text.find(marker)
    if start == -1:
        return []
    rest = text[start + len(marker) :].lstrip()
    try:
        value, _ = json.JSONDecoder().raw_decode(rest)
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def answer_update(text: str) -> dict[str, Any]:
    """ADD every new fact, except one whose text equals an existing memory: NONE for that memory instead."""
    existing = _json_list_after("EXISTING MEMORIES:", text)
    new = _json_list_after("NEW FACTS:", text)
    by_text = {str(m.get("text", "")).strip().lower(): m for m in existing}
    decisions: list[dict[str, Any]] = []
    for fact in new:
        fact_text = str(fact.get("text", ""))
        known = by_text.get(fact_text.strip().lower())
        if known is not None:
            decisions.append({"id": str(known["id"]), "text": known["text"], "event": "NONE", "old_memory": None})
        else:
            decisions.append({"id": str(fact["id"]), "text": fact_text, "event": "ADD", "old_memory": None})
    return {"memory": decisions}


def answer_chat(messages: list[dict[str, Any]]) -> str:
    """Valid JSON for engram's prompts; a repair turn is answered from the original request."""
    if (
        len(messages) >= 2
        and messages[-2].get("role") == "assistant"
        and messages[-1].get("role") == "user"
        and str(messages[-1].get("content", "")).startswith(REPAIR_PREFIX)
    ):
        messages = messages[:-2]
    user_turns = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
    prompt = user_turns[-1] if user_turns else ""
    if prompt.startswith("Conversation:"):
        facts = HeuristicLLM().extract_facts(parse_conversation(prompt))
        return json.dumps({"facts": facts})
    if "NEW FACTS:" in prompt:
        return json.dumps(answer_update(prompt))
    return json.dumps({"answer": "ok"})


def hashed_embedding(text: str, dimensions: int) -> list[float]:
    """Deterministic unit vector: signed hashed bag of words (a constant bias for text without words)."""
    vector = [0.0] * dimensions
    words = WORD.findall(text.lower()) or [""]
    for word in words:
        digest = hashlib.sha256(word.encode()).digest()
        index = int.from_bytes(digest[:4], "little") % dimensions
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:  # words cancelled out
        vector[0], norm = 1.0, 1.0
    return [x / norm for x in vector]


def litellm_env(stub: LLMStub, *, timeout_seconds: float = 5, api_key: str = "sk-test") -> dict[str, str]:
    """A stack's settings for the litellm provider pointed at ``stub`` (``Stack(..., **litellm_env(stub))``)."""
    return {
        "ENGRAM_LLM__PROVIDER": "litellm",
        "ENGRAM_LLM__MODEL": "openai/stub-model",
        "ENGRAM_LLM__API_BASE": stub.base_url,
        "ENGRAM_LLM__API_KEY": api_key,
        "ENGRAM_LLM__TIMEOUT_SECONDS": f"{timeout_seconds:g}",
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins handler threads: nothing outlives stop()
    block_on_close = True
    stub: LLMStub


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive threads at stop()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet in tests
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        stub = self.server.stub
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw or b"{}")
        except ValueError:
            body = raw.decode("utf-8", "replace")
        path = self.path.split("?", 1)[0].rstrip("/")
        mode, seconds = stub._next_mode()
        call = StubCall(path=path, headers=httpx.Headers(list(self.headers.items())), body=body, mode=mode)
        stub._record(call)
        # A client that gave up (a timeout test) closed the connection: nothing to answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer(stub, path, body, mode, seconds, call)
        call.finished = time.monotonic()

    def _answer(self, stub: LLMStub, path: str, body: Any, mode: str, seconds: float | None, call: StubCall) -> None:
        if path not in ("/v1/chat/completions", "/v1/embeddings", "/chat/completions", "/embeddings"):
            self._send_json(404, _error("Unknown path " + path, "invalid_request_error", "not_found"))
            return
        if not isinstance(body, dict):
            self._send_json(400, _error("Body is not a JSON object", "invalid_request_error", None))
            return
        if mode == "slow":
            if stub._stopping.wait(stub.slow_seconds if seconds is None else seconds):
                call.interrupted = True
                return  # stop() while sleeping: drop the connection
        elif mode == "rate_limit":
            retry_after = stub.retry_after if seconds is None else seconds
            headers = {"Retry-After": _format_seconds(retry_after)}
            self._send_json(429, _error("Rate limit reached, retry later", "rate_limit_exceeded", None), headers)
            return
        elif mode == "error":
            self._send_json(500, _error("The server had an error", "server_error", None))
            return
        model = str(body.get("model") or "stub-model")
        if path.endswith("/embeddings"):
            self._embeddings(stub, body, model, mode)
        else:
            self._chat(body, model, mode)

    def _chat(self, body: dict[str, Any], model: str, mode: str) -> None:
        messages = body.get("messages") or []
        if mode == "malformed":
            content = "Sure! here are the facts: the user likes things, I think. {not json"
        else:
            content = answer_chat(messages if isinstance(messages, list) else [])
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages if isinstance(m, dict))
        completion_tokens = len(content.split())
        self._send_json(
            200,
            {
                "id": "chatcmpl-" + uuid.uuid4().hex[:24],
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "system_fingerprint": "fp_stub",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )

    def _embeddings(self, stub: LLMStub, body: dict[str, Any], model: str, mode: str) -> None:
        if mode == "malformed":
            self._send_raw(200, b"Sure! here are your embeddings", "text/plain")
            return
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list):
            self._send_json(400, _error("input must be a string or a list", "invalid_request_error", None))
            return
        dimensions = int(body.get("dimensions") or stub.embedding_dimensions)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = hashed_embedding(text if isinstance(text, str) else json.dumps(text), dimensions)
            embedding: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(str(t).split()) for t in texts)
        self._send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_raw(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _error(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _format_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class LLMStub:
    """The server on 127.0.0.1 and an ephemeral port, served by a background thread.

    Use as a context manager, or call ``start()`` / ``stop()``. ``base_url`` ends in ``/v1``.
    """

    def __init__(
        self,
        *,
        default_mode: str = "ok",
        slow_seconds: float = 2.0,
        retry_after: float = 7,
        embedding_dimensions: int = 8,
    ) -> None:
        self.default_mode = default_mode
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self.embedding_dimensions = embedding_dimensions
        self.calls: list[StubCall] = []
        self._script: deque[str] = deque()
        self._mix: list[tuple[str, float]] = []  # (mode, cumulative probability)
        self._rng = random.Random(0)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- control from the test --------------------------------------------------------------------
    def script(self, modes: Iterable[str]) -> None:
        """Queue modes, consumed one per request (FIFO) before falling back to ``default_mode``."""
        modes = list(modes)
        for mode in modes:
            _split_mode(mode)  # validate early
        with self._lock:
            self._script.extend(modes)

    def set_mode(self, mode: str) -> None:
        """Change the fallback mode and drop any queued script and mix."""
        _split_mode(mode)
        with self._lock:
            self._script.clear()
            self._mix = []
            self.default_mode = mode

    def mix(self, weights: dict[str, float], *, seed: int) -> None:
        """Answer each request (after the script) with a mode drawn from ``weights`` by a seeded RNG;
        the probability left over goes to ``default_mode``."""
        for mode in weights:
            _split_mode(mode)
        if any(p < 0 for p in weights.values()) or sum(weights.values()) > 1:
            raise ValueError("mix probabilities must be >= 0 and sum to at most 1")
        cumulative, total = [], 0.0
        for mode, probability in weights.items():
            total += probability
            cumulative.append((mode, total))
        with self._lock:
            self._mix = cumulative
            self._rng = random.Random(seed)

    def reset(self) -> None:
        """Forget recorded requests and the script; back to ``ok``."""
        with self._lock:
            self._script.clear()
            self.calls.clear()
            self._mix = []
            self.default_mode = "ok"

    @property
    def requests(self) -> list[Any]:
        """The JSON bodies received, in order."""
        with self._lock:
            return [call.body for call in self.calls]

    @property
    def pending_script(self) -> list[str]:
        with self._lock:
            return list(self._script)

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("LLMStub is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LLMStub:
        if self._server is not None:
            raise RuntimeError("LLMStub already started")
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.stub = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="llm-stub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in "slow"
        server.shutdown()
        server.server_close()  # joins the handler threads
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> LLMStub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- used by the handler ----------------------------------------------------------------------
    def _next_mode(self) -> tuple[str, float | None]:
        with self._lock:
            if self._script:
                mode = self._script.popleft()
            elif self._mix:
                draw = self._rng.random()
                mode = next((m for m, upto in self._mix if draw < upto), self.default_mode)
            else:
                mode = self.default_mode
        return _split_mode(mode)

    def _record(self, call: StubCall) -> None:
        with self._lock:
            self.calls.append(call)


def _split_mode(mode: str) -> tuple[str, float | None]:
    name, _, seconds = mode.partition(":")
    if name not in MODES:
        raise ValueError(f"unknown stub mode {mode!r}; expected one of {MODES}")
    return name, float(seconds) if seconds else None
