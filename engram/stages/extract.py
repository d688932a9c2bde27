"""Stage 1: the facts worth keeping from a conversation."""

from __future__ import annotations

from collections.abc import Sequence

from engram.ports import LLM
from schemas.memories import Message


def extraction_prompt(custom_prompt: str | None, instructions: str | None) -> str | None:
    """The deployment's prompt (or the built-in one) with the request's or project's instructions.

    Mem0's ``custom_fact_extraction_prompt`` replaces the prompt; its ``custom_instructions`` add to it.
    """
    if not instructions:
        return custom_prompt
    from engram.llm.prompts import FACT_EXTRACTION_PROMPT

    return f"{custom_prompt or FACT_EXTRACTION_PROMPT}\n\nAdditional instructions:\n{instructions.strip()}"


def raw_memories(messages: Sequence[Message]) -> list[Message]:
    """With ``infer=false`` every non-system message is stored as it is (Mem0's behaviour)."""
    return [m for m in messages if m.role != "system"]


def extract_facts(messages: Sequence[Message], llm: LLM, *, infer: bool, custom_prompt: str | None = None) -> list[str]:
    """Facts from the conversation; the messages themselves when ``infer`` is false."""
    if not infer:
        return [m.content for m in raw_memories(messages)]
    facts = llm.extract_facts(messages, custom_prompt=custom_prompt)
    unique: dict[str, str] = {}
    for fact in facts:
        unique.setdefault(fact.strip().lower(), fact.strip())
    return [f for f in unique.values() if f]
