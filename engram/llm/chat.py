"""``ChatLLM``: the prompts and output validation on top of any chat-completion backend.

A third-party LLM plugin subclasses this and implements ``complete`` only.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from engram.errors import PermanentError
from engram.llm import graph_prompts, prompts
from engram.ports import ExistingMemory
from schemas.graph import ExtractedGraph, QueryEntities, RelationDeletions, Triple
from schemas.llm import ExtractedFacts, MemoryDecision, MemoryDecisions
from schemas.memories import Message

log = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)
FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)


def parse_json_model(raw: str, model: type[T]) -> T:
    """Validate an LLM answer, tolerating code fences and prose around one JSON object."""
    text = FENCE.sub("", raw.strip()).strip()
    if not text.startswith("{"):
        start, end = text.find("{"), text.rfind("}")
        if start != -1 and end > start:
            text = text[start : end + 1]
    return model.model_validate(json.loads(text))


class ChatLLM:
    """Fact extraction and update decisions through a chat model answering JSON."""

    def complete(self, messages: list[dict[str, str]]) -> str:
        """Send chat messages, return the assistant's text. Raise TransientError/PermanentError."""
        raise NotImplementedError

    def complete_model(self, messages: list[dict[str, str]], model: type[T]) -> T:
        """One call, and one repair attempt if the answer does not validate; then a PermanentError."""
        raw = self.complete(messages)
        try:
            return parse_json_model(raw, model)
        except (ValueError, ValidationError) as first_error:
            log.warning("LLM answer did not validate as %s; asking once for a repair", model.__name__)
            repair = messages + [
                {"role": "assistant", "content": raw[:4000]},
                {
                    "role": "user",
                    "content": f"That was not valid JSON for the required shape ({first_error!s:.300}). "
                    "Answer again with the JSON object only.",
                },
            ]
            raw = self.complete(repair)
            try:
                return parse_json_model(raw, model)
            except (ValueError, ValidationError) as second_error:
                raise PermanentError(
                    f"LLM returned malformed {model.__name__} twice: {second_error!s:.300}"
                ) from second_error

    def extract_facts(self, messages: Sequence[Message], *, custom_prompt: str | None = None) -> list[str]:
        answer = self.complete_model(prompts.extraction_messages(messages, custom_prompt), ExtractedFacts)
        return answer.facts

    def decide_updates(
        self,
        facts: Sequence[str],
        existing: Sequence[ExistingMemory],
        *,
        similarity: Sequence[Sequence[float]] | None = None,
        custom_prompt: str | None = None,
    ) -> list[MemoryDecision]:
        if not facts:
            return []
        answer = self.complete_model(prompts.update_messages(facts, existing, custom_prompt), MemoryDecisions)
        return answer.memory

    def extract_graph(self, messages: Sequence[Message], facts: Sequence[str], *, subject: str) -> ExtractedGraph:
        return self.complete_model(graph_prompts.graph_extraction_messages(messages, facts, subject), ExtractedGraph)

    def decide_relation_deletions(
        self, existing: Sequence[Triple], new: Sequence[Triple], *, text: str, subject: str
    ) -> list[Triple]:
        if not existing:
            return []
        answer = self.complete_model(
            graph_prompts.relation_deletion_messages(existing, new, text, subject), RelationDeletions
        )
        # Only relations that exist can be deleted; the model may paraphrase or invent others.
        known = {t.key(): t for t in existing}
        return [known[t.key()] for t in answer.delete if t.key() in known]

    def extract_query_entities(self, query: str, *, subject: str) -> list[str]:
        return self.complete_model(graph_prompts.query_entities_messages(query, subject), QueryEntities).entities
