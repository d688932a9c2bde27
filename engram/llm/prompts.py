"""The two prompts of the pipeline, in our own words, after the ideas of Mem0's prompts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date

from engram.ports import ExistingMemory
from schemas.memories import Message

FACT_EXTRACTION_PROMPT = """You keep long-term notes about a user for a personal assistant.
Read the conversation and write down the durable facts about the user that would help in later
conversations: identity, preferences, plans, relationships, health, work, habits, opinions.
Rules:
- One short fact per item, in the third person without a subject ("Lives in Paris", "Name is Ana").
- Only facts stated or clearly implied by the user; ignore the assistant's suggestions and small talk.
- Skip greetings, questions and anything transient.
- Write facts in the language the user wrote in.
- Today is {today}.
Answer with JSON only, exactly: {{"facts": ["...", "..."]}}. If nothing is worth keeping: {{"facts": []}}."""

UPDATE_MEMORY_PROMPT = """You maintain a user's memory. Compare NEW FACTS with EXISTING MEMORIES and decide,
for every existing memory and every new fact, one event:
- ADD: a new fact with information not in memory. Use id "new:<n>" where n is the fact's number.
- UPDATE: a new fact refines or contradicts an existing memory about the same thing. Keep the
  existing memory's id, put the merged, up-to-date text in "text" and the previous text in "old_memory".
- DELETE: a new fact says an existing memory is no longer true. Keep its id.
- NONE: nothing changes (the fact is already known, or the memory is unaffected).
Existing memories are numbered with small integer ids; only use ids you were given.
Answer with JSON only, exactly:
{"memory": [{"id": "<id>", "text": "<text>", "event": "ADD|UPDATE|DELETE|NONE", "old_memory": "<text or null>"}]}"""


def extraction_messages(
    messages: Sequence[Message], custom_prompt: str | None, today: date | None = None
) -> list[dict[str, str]]:
    system = (custom_prompt or FACT_EXTRACTION_PROMPT).replace("{today}", (today or date.today()).isoformat())
    system = system.replace("{{", "{").replace("}}", "}")
    conversation = "\n".join(f"{m.role}: {m.content}" for m in messages)
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Conversation:\n{conversation}"},
    ]


def update_messages(
    facts: Sequence[str], existing: Sequence[ExistingMemory], custom_prompt: str | None
) -> list[dict[str, str]]:
    # Small integer ids instead of UUIDs: LLMs copy short ids reliably and cannot invent valid UUIDs.
    shown = [{"id": str(i), "text": m.text} for i, m in enumerate(existing)]
    new = [{"id": f"new:{i}", "text": f} for i, f in enumerate(facts)]
    body = (
        "EXISTING MEMORIES:\n"
        + json.dumps(shown, ensure_ascii=False)
        + "\n\nNEW FACTS:\n"
        + json.dumps(new, ensure_ascii=False)
    )
    return [
        {"role": "system", "content": custom_prompt or UPDATE_MEMORY_PROMPT},
        {"role": "user", "content": body},
    ]
