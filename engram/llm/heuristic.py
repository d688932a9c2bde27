"""The explicit offline LLM stand-in: deterministic fact extraction and update decisions.

It is selected by configuration (``ENGRAM_LLM__PROVIDER=heuristic``), never as a silent fallback.
Extraction keeps the user's first-person statements and rewrites them as Mem0-style facts
("I live in Paris" -> "Lives in Paris"); decisions use the cosine similarities the reconcile
stage already has, plus a "same subject" rule for contradictions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, Field

from engram.ports import ExistingMemory
from schemas.graph import ExtractedGraph, Triple
from schemas.llm import MemoryDecision
from schemas.memories import Message

FIRST_PERSON = re.compile(r"\b(i|i'm|i've|i'd|i'll|my|me|mine|myself)\b", re.IGNORECASE)
NEGATION = re.compile(r"\b(no longer|not|never|anymore|stopped|quit)\b", re.IGNORECASE)
SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+|,?\s+(?:and|but|so)\s+(?=(?:i|i'm|i've|my)\b)|;\s*", re.IGNORECASE)
ARTICLES = {"a", "an", "the"}
LEADING_FILLER = re.compile(
    r"^(?:(?:hi|hello|hey|well|oh|ok|okay|so|also|actually|and|but|yes|yeah|no|btw|by the way)\b[,!.]?\s*)+",
    re.IGNORECASE,
)
# "Big news: I live in Porto now" — a short lead-in before a colon is not part of the fact.
LEADING_PREFIX = re.compile(r"^[\w\s'-]{1,30}:\s+(?=(?:i|i'm|i've|my)\b)", re.IGNORECASE)
MODALS = {"can", "could", "will", "would", "should", "must", "might", "may", "shall"}
IRREGULAR = {"have": "has", "do": "does", "go": "goes", "am": "is", "was": "was"}
# Openers rewritten to a subject-less fact; order matters (longest first).
OPENERS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^my name is\b", re.I), "Name is"),
    (re.compile(r"^my (\w[\w\s'-]*?) (is|are|was|were)\b", re.I), r"\1 \2"),
    (re.compile(r"^i(?:'m| am)\b", re.I), "Is"),
    (re.compile(r"^i(?:'ve| have)\b", re.I), "Has"),
    (re.compile(r"^i(?:'d| would)\b", re.I), "Would"),
    (re.compile(r"^i(?:'ll| will)\b", re.I), "Will"),
    (re.compile(r"^i (?:don't|do not)\b", re.I), "Does not"),
    (re.compile(r"^i (?:didn't|did not)\b", re.I), "Did not"),
    (re.compile(r"^i (?:can't|cannot|can not)\b", re.I), "Cannot"),
    (re.compile(r"^i was\b", re.I), "Was"),
]


class HeuristicConfig(BaseModel):
    duplicate_threshold: float = Field(0.92, gt=0, le=1, description="Cosine at/above which a fact is NONE")
    update_threshold: float = Field(0.35, gt=0, le=1, description="Min cosine for a same-subject UPDATE")
    delete_threshold: float = Field(0.6, gt=0, le=1, description="Min cosine for a negation to DELETE")
    min_words: int = Field(2, gt=0)


def _third_person(verb: str) -> str:
    lower = verb.lower()
    if lower in IRREGULAR:
        return IRREGULAR[lower]
    if lower in MODALS or lower.endswith("ed"):
        return lower
    if re.search(r"(s|sh|ch|x|z|o)$", lower):
        return lower + "es"
    if re.search(r"[^aeiou]y$", lower):
        return lower[:-1] + "ies"
    return lower + "s"


def statement_to_fact(sentence: str) -> str:
    """Rewrite one first-person sentence as a subject-less fact."""
    text = LEADING_PREFIX.sub("", LEADING_FILLER.sub("", sentence.strip())).strip(" .!;,")
    for pattern, replacement in OPENERS:
        if pattern.search(text):
            text = pattern.sub(replacement, text, count=1)
            break
    else:
        match = re.match(r"^i (\w+)\b(.*)$", text, re.I)
        if match:
            text = _third_person(match.group(1)) + match.group(2)
    text = re.sub(r"\bmy\b", "their", text, flags=re.I)
    text = re.sub(r"\bmyself\b", "themselves", text, flags=re.I)
    text = re.sub(r"\bme\b", "them", text, flags=re.I)
    return text[:1].upper() + text[1:]


def subject_key(fact: str) -> str:
    """What a fact is about, for contradiction detection: its first two words."""
    words = [w for w in re.findall(r"[\w']+", fact.lower()) if w not in ARTICLES]
    return " ".join(words[:2])


class HeuristicLLM:
    """Deterministic stand-in for the LLM. Same inputs, same outputs, no network."""

    config_model = HeuristicConfig

    def __init__(self, config: HeuristicConfig | None = None) -> None:
        self.config = config or HeuristicConfig()

    def extract_facts(self, messages: Sequence[Message], *, custom_prompt: str | None = None) -> list[str]:
        facts: list[str] = []
        seen: set[str] = set()
        for message in messages:
            if message.role != "user":
                continue
            for sentence in SENTENCE_SPLIT.split(message.content):
                sentence = sentence.strip()
                if not sentence or sentence.endswith("?") or not FIRST_PERSON.search(sentence):
                    continue
                fact = statement_to_fact(sentence)
                if len(fact.split()) < self.config.min_words or fact.lower() in seen:
                    continue
                seen.add(fact.lower())
                facts.append(fact)
        return facts

    def decide_updates(
        self,
        facts: Sequence[str],
        existing: Sequence[ExistingMemory],
        *,
        similarity: Sequence[Sequence[float]] | None = None,
        custom_prompt: str | None = None,
    ) -> list[MemoryDecision]:
        cfg = self.config
        decisions: list[MemoryDecision] = []
        claimed: set[int] = set()
        for i, fact in enumerate(facts):
            sims = list(similarity[i]) if similarity is not None else [m.score for m in existing]
            ranked = sorted(range(len(existing)), key=lambda j: sims[j], reverse=True)
            best = ranked[0] if ranked else None
            if best is not None and (
                sims[best] >= cfg.duplicate_threshold or existing[best].text.lower() == fact.lower()
            ):
                decisions.append(MemoryDecision(id=f"new:{i}", text=fact, event="NONE"))
                continue
            negated = bool(NEGATION.search(fact))
            if (
                negated
                and best is not None
                and best not in claimed
                and sims[best] >= cfg.delete_threshold
                and not NEGATION.search(existing[best].text)
            ):
                claimed.add(best)
                decisions.append(MemoryDecision(id=str(best), text=existing[best].text, event="DELETE"))
                continue
            key = subject_key(fact)
            target = next(
                (
                    j
                    for j in ranked
                    if j not in claimed and sims[j] >= cfg.update_threshold and subject_key(existing[j].text) == key
                ),
                None,
            )
            if target is not None:
                claimed.add(target)
                decisions.append(
                    MemoryDecision(id=str(target), text=fact, event="UPDATE", old_memory=existing[target].text)
                )
                continue
            decisions.append(MemoryDecision(id=f"new:{i}", text=fact, event="ADD"))
        return decisions

    # Graph memory: the rules live in ``heuristic_graph`` (imported late: it builds on this module).
    def extract_graph(self, messages: Sequence[Message], facts: Sequence[str], *, subject: str) -> ExtractedGraph:
        from engram.llm import heuristic_graph

        return heuristic_graph.extract_graph(facts, subject)

    def decide_relation_deletions(
        self, existing: Sequence[Triple], new: Sequence[Triple], *, text: str, subject: str
    ) -> list[Triple]:
        from engram.llm import heuristic_graph

        return heuristic_graph.decide_relation_deletions(existing, new, text, subject)

    def extract_query_entities(self, query: str, *, subject: str) -> list[str]:
        from engram.llm import heuristic_graph

        return heuristic_graph.query_entities(query, subject)
