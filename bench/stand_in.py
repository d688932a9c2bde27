"""The LLM stand-in: an OpenAI-compatible ``/v1/chat/completions`` on loopback with a set latency.

It answers each system's own prompts with valid output derived from the input, so both pipelines
do their real work on real answers:

- engram's fact extraction (``Conversation:``) and update decision (``NEW FACTS:``): as
  ``tests/llm_stub.py`` answers them (extraction by the offline ``HeuristicLLM``; ADD, or NONE for
  a fact stored verbatim);
- mem0 2.2.1's single additive-extraction call (``## New Messages``): the same ``HeuristicLLM``
  facts as ``{"memory": [{"id": "0", "text": ...}]}`` (mem0 2.2.1 has no separate update call);
- mem0's procedural-memory prompt: a short plain-text summary.

Run as its own process (``python -m bench.stand_in --port P --latency-ms 300``) so its sleeping and
JSON work never take the benchmark's GIL. It exits by itself after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections import Counter
from typing import Any

from engram.llm.heuristic import HeuristicLLM
from tests.llm_stub import answer_chat, parse_conversation

MEM0_NEW_MESSAGES = "## New Messages\n"
MEM0_NEXT_SECTION = "\n\n## Observation Date"
LATENCY_SECONDS = float(os.environ.get("BENCH_LLM_LATENCY_MS", "0")) / 1000.0
CALLS: Counter[str] = Counter()
_heuristic = HeuristicLLM()


def _mem0_messages(prompt: str) -> str:
    start = prompt.find(MEM0_NEW_MESSAGES)
    if start == -1:
        return ""
    rest = prompt[start + len(MEM0_NEW_MESSAGES) :]
    end = rest.find(MEM0_NEXT_SECTION)
    return rest if end == -1 else rest[:end]


def answer(messages: list[dict[str, Any]]) -> tuple[str, str]:
    """(content, kind) for one chat request."""
    system = next((str(m.get("content") or "") for m in messages if m.get("role") == "system"), "")
    user = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
    if MEM0_NEW_MESSAGES in user:
        conversation = parse_conversation("Conversation:\n" + _mem0_messages(user).strip())
        facts = _heuristic.extract_facts(conversation) if conversation else []
        return json.dumps({"memory": [{"id": str(i), "text": f} for i, f in enumerate(facts)]}), "mem0.extract"
    if user.startswith("Conversation:"):
        return answer_chat(messages), "engram.extract"
    if "NEW FACTS:" in user:
        return answer_chat(messages), "engram.update"
    if "procedural" in system.lower() or "execution history" in system.lower():
        return "## Summary of the agent's execution history\nThe agent answered the user's requests.", "mem0.procedural"
    if user.startswith("That was not valid JSON"):
        return answer_chat(messages), "engram.repair"
    return json.dumps({"facts": []}), "other"


def completion(content: str, model: str, prompt_chars: int) -> dict[str, Any]:
    prompt_tokens, completion_tokens = prompt_chars // 4, max(1, len(content) // 4)
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:24],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_bench",
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
    }


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send_json(send: Any, status: int, payload: Any) -> None:
    data = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A raw ASGI app: no framework overhead between the latency and the answer."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"].rstrip("/")
    if scope["method"] == "GET" and path == "/stats":
        await _send_json(send, 200, {"latency_ms": LATENCY_SECONDS * 1000, "calls": dict(CALLS)})
        return
    raw = await _body(receive)
    if scope["method"] != "POST" or not path.endswith("/chat/completions"):
        await _send_json(send, 404, {"error": {"message": f"unknown path {path}", "type": "invalid_request_error"}})
        return
    body = json.loads(raw or b"{}")
    messages = body.get("messages") or []
    content, kind = answer(messages)
    CALLS[kind] += 1
    if LATENCY_SECONDS > 0:
        await asyncio.sleep(LATENCY_SECONDS)
    prompt_chars = sum(len(str(m.get("content") or "")) for m in messages)
    await _send_json(send, 200, completion(content, str(body.get("model") or "stand-in"), prompt_chars))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args()
    os.environ["BENCH_LLM_LATENCY_MS"] = str(args.latency_ms)
    global LATENCY_SECONDS
    LATENCY_SECONDS = args.latency_ms / 1000.0
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, lifespan="on", backlog=4096
    )
    server = uvicorn.Server(config)

    async def serve() -> None:
        async def deadline() -> None:
            await asyncio.sleep(args.max_seconds)
            server.should_exit = True  # stops by itself, whatever happens to the benchmark

        task = asyncio.create_task(deadline())
        await server.serve()
        task.cancel()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
