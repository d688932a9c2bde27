"""The graph-memory prompts, in our own words, after the ideas of Mem0's graph memory prompts."""

from __future__ import annotations

import json
from collections.abc import Sequence

from schemas.graph import Triple
from schemas.memories import Message

GRAPH_EXTRACTION_PROMPT = """You build a knowledge graph of what a user tells an assistant.
From the conversation, list the entities (people, places, organisations, things, concepts) and the
relations between them that are durable facts worth remembering.
Rules:
- When the user speaks about themself (I, me, my), the entity is "{subject}".
- Relationships are short, lowercase, snake_case verbs or verb phrases: lives_in, works_at, name_is,
  likes, owns, sister_of. Use the present state ("lives_in", not "moved_to").
- Only what is stated or clearly implied; ignore the assistant's suggestions, questions and small talk.
- Do not invent entities that are not mentioned.
Answer with JSON only, exactly:
{{"entities": [{{"name": "...", "type": "..."}}],
 "relations": [{{"source": "...", "relationship": "...", "destination": "..."}}]}}
If there is nothing: {{"entities": [], "relations": []}}."""

RELATION_DELETION_PROMPT = """You maintain a knowledge graph about a user ("{subject}").
Given EXISTING RELATIONS and NEW INFORMATION, list the existing relations that the new information
makes untrue: it contradicts them, says they ended, or replaces a value that can only have one
value at a time (a person lives in one city, has one name, one employer at a time).
Do not delete a relation only because the new information does not mention it, and never delete a
relation that merely adds to another (liking tea does not end liking coffee).
Copy deleted relations exactly as given. Answer with JSON only, exactly:
{{"delete": [{{"source": "...", "relationship": "...", "destination": "..."}}]}}
If nothing is untrue: {{"delete": []}}."""

QUERY_ENTITIES_PROMPT = """List the entities (people, places, organisations, things) a search query is about.
When the query refers to the user (I, me, my, the user), include "{subject}".
Answer with JSON only, exactly: {{"entities": ["...", "..."]}}."""


def _system(template: str, subject: str) -> str:
    return template.replace("{subject}", subject).replace("{{", "{").replace("}}", "}")


def graph_extraction_messages(messages: Sequence[Message], facts: Sequence[str], subject: str) -> list[dict[str, str]]:
    conversation = "\n".join(f"{m.role}: {m.content}" for m in messages)
    body = f"Conversation:\n{conversation}"
    if facts:
        body += "\n\nFacts already noted from it:\n" + "\n".join(f"- {f}" for f in facts)
    return [{"role": "system", "content": _system(GRAPH_EXTRACTION_PROMPT, subject)}, {"role": "user", "content": body}]


def relation_deletion_messages(
    existing: Sequence[Triple], new: Sequence[Triple], text: str, subject: str
) -> list[dict[str, str]]:
    body = (
        "EXISTING RELATIONS:\n"
        + json.dumps([t.model_dump() for t in existing], ensure_ascii=False)
        + "\n\nNEW RELATIONS:\n"
        + json.dumps([t.model_dump() for t in new], ensure_ascii=False)
        + f"\n\nNEW INFORMATION:\n{text}"
    )
    system = _system(RELATION_DELETION_PROMPT, subject)
    return [{"role": "system", "content": system}, {"role": "user", "content": body}]


def query_entities_messages(query: str, subject: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": _system(QUERY_ENTITIES_PROMPT, subject)},
        {"role": "user", "content": f"Query: {query}"},
    ]
