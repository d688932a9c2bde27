"""The offline stand-in's graph memory: deterministic relations from the facts the pipeline kept.

Facts arrive subject-less ("Lives in Paris", "Name is Ana", "Works at a bakery"); the subject of
first-person facts is the scope's user (``subject``). A handful of patterns cover the common
shapes; anything else yields no relation rather than a wrong one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from engram.llm.heuristic import FIRST_PERSON, NEGATION, _third_person, statement_to_fact
from schemas.graph import EntityOut, ExtractedGraph, Triple, normalise_relationship

# Relationships that hold one value at a time: a new value replaces the old (a contradiction).
SINGLE_VALUED = {"lives_in", "works_at", "works_as", "name_is", "age_is", "is_from", "married_to", "born_in"}
TYPES = {
    "lives_in": "location",
    "is_from": "location",
    "born_in": "location",
    "works_at": "organization",
    "works_as": "role",
    "name_is": "person",
    "married_to": "person",
}
MAX_DESTINATION_WORDS = 5
UNDO_NEGATION: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^(?:does not|doesn't|did not|didn't|never) (\w+)", re.I), "VERB"),
    (re.compile(r"^no longer ", re.I), ""),
    (re.compile(r"^is (?:not|no longer) ", re.I), "Is "),
    (re.compile(r"^(?:stopped|quit) (\w+ing)\b", re.I), "GERUND"),
]
TRAILING = re.compile(r"\s+(?:now|anymore|any more|these days|currently|again|too|as well|recently|today)$", re.I)
LEADING = re.compile(r"^(?:a|an|the|their|some)\s+", re.I)
LIST_SPLIT = re.compile(r",\s*(?:and\s+)?|\s+and\s+")
# (pattern, relationship or None to use the verb, destination group)
PATTERNS: list[tuple[re.Pattern[str], str | None]] = [
    (re.compile(r"^name is (?P<d>.+)$", re.I), "name_is"),
    (re.compile(r"^lives (?:in|at|on|near) (?P<d>.+)$", re.I), "lives_in"),
    (re.compile(r"^(?:moved|relocated) to (?P<d>.+)$", re.I), "lives_in"),
    (re.compile(r"^works (?:at|for|in) (?P<d>.+)$", re.I), "works_at"),
    (re.compile(r"^works as (?P<d>.+)$", re.I), "works_as"),
    (re.compile(r"^is (?:originally )?from (?P<d>.+)$", re.I), "is_from"),
    (re.compile(r"^was born in (?P<d>.+)$", re.I), "born_in"),
    (re.compile(r"^is married to (?P<d>.+)$", re.I), "married_to"),
    (re.compile(r"^is allergic to (?P<d>.+)$", re.I), "allergic_to"),
    (re.compile(r"^is (?:a|an) (?P<d>.+)$", re.I), "is_a"),
    (re.compile(r"^(?:has|owns) (?P<d>.+)$", re.I), None),
    # "Favorite color is blue" -> favorite_color_is; at most three words, or it is a clause, not an attribute.
    (re.compile(r"^(?P<attr>[a-z][\w']*(?: [\w']+){0,2}) (?:is|are) (?P<d>.+)$", re.I), None),
    (re.compile(r"^(?P<verb>\w+s) (?:(?P<prep>in|at|to|for|with|on|about|from) )?(?P<d>.+)$", re.I), None),
]
NOT_VERBS = {"is", "was", "has", "does", "this", "its", "his", "hers", "yes", "always", "sometimes", "perhaps"}
QUERY_STOPWORDS = frozenset(
    (
        "a", "an", "the", "and", "or", "but", "of", "in", "on", "at", "to", "for", "with", "from", "by",
        "about", "as", "is", "are", "was", "were", "be", "been", "being", "do", "does", "did", "have",
        "has", "had", "what", "which", "who", "whom", "whose", "where", "when", "why", "how", "that",
        "this", "these", "those", "there", "here", "it", "its", "i", "me", "my", "mine", "you", "your",
        "yours", "he", "him", "his", "she", "her", "hers", "they", "them", "their", "theirs", "we", "us",
        "our", "user", "tell", "know", "show", "find", "any", "some", "all", "much", "many", "more",
        "most", "can", "could", "would", "should", "will", "shall", "may", "might", "must", "not", "no",
        "yes", "please", "like",
    )
)
SELF_WORDS = re.compile(r"\b(i|me|my|mine|myself|you|your|she|her|he|his|him|they|their|them|user)\b", re.I)
CAPITALISED = re.compile(r"\b[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*")
WORD = re.compile(r"[\w'-]+")


@dataclass(frozen=True, slots=True)
class ParsedFact:
    triples: list[Triple]
    negated: bool


def _undo_negation(text: str) -> tuple[str, bool]:
    if not NEGATION.search(text):
        return text, False
    for pattern, replacement in UNDO_NEGATION:
        match = pattern.search(text)
        if not match:
            continue
        if replacement == "VERB":
            return pattern.sub(_third_person(match.group(1)), text, count=1), True
        if replacement == "GERUND":  # "stopped smoking" -> "smokes"
            return pattern.sub(_third_person(match.group(1)[:-3]), text, count=1), True
        return pattern.sub(replacement, text, count=1), True
    return text, True


def _clean_destination(value: str) -> list[str]:
    value = value.strip(" .!;:\"'")
    value = TRAILING.sub("", value)
    parts = [LEADING.sub("", p.strip(" .!;:\"'")) for p in LIST_SPLIT.split(value)]
    return [p for p in parts if p and len(p.split()) <= MAX_DESTINATION_WORDS]


def parse_fact(fact: str, subject: str) -> ParsedFact:
    """The relations one fact states about ``subject``, and whether it denies them."""
    text = fact.strip().strip(" .!")
    if FIRST_PERSON.match(text):  # a raw first-person message (infer=false)
        text = statement_to_fact(text)
    text = re.sub(r"\b(?:anymore|any more)\b", "", text, flags=re.I).strip()
    text, negated = _undo_negation(text)
    for pattern, relationship in PATTERNS:
        match = pattern.match(text)
        if not match:
            continue
        groups = match.groupdict()
        if relationship is None:
            if groups.get("attr"):
                relationship = normalise_relationship(groups["attr"]) + "_is"
            elif groups.get("verb"):
                if groups["verb"].lower() in NOT_VERBS:
                    continue
                relationship = normalise_relationship(" ".join(filter(None, (groups["verb"], groups.get("prep")))))
            else:
                relationship = normalise_relationship(text.split()[0])
        destinations = _clean_destination(groups["d"])
        if relationship in SINGLE_VALUED:
            destinations = destinations[:1]
        triples = [Triple(source=subject, relationship=relationship, destination=d) for d in destinations]
        return ParsedFact(triples, negated)
    return ParsedFact([], negated)


def extract_graph(facts: Sequence[str], subject: str) -> ExtractedGraph:
    relations: dict[tuple[str, str, str], Triple] = {}
    for fact in facts:
        parsed = parse_fact(fact, subject)
        if not parsed.negated:
            for triple in parsed.triples:
                relations.setdefault(triple.key(), triple)
    entities = {subject.lower(): EntityOut(name=subject, type="user")}
    for triple in relations.values():
        entities.setdefault(triple.destination.lower(), EntityOut(name=triple.destination,
                                                                  type=TYPES.get(triple.relationship, "thing")))
    return ExtractedGraph(entities=list(entities.values()), relations=list(relations.values()))


def single_valued(relationship: str) -> bool:
    return relationship in SINGLE_VALUED or relationship.endswith("_is")


def decide_relation_deletions(
    existing: Sequence[Triple], new: Sequence[Triple], text: str, subject: str
) -> list[Triple]:
    """A new value of a single-valued relationship replaces the old; a denied relation goes."""
    doomed: dict[tuple[str, str, str], Triple] = {}
    new_keys = {t.key() for t in new}
    for triple in new:
        if not single_valued(triple.relationship):
            continue
        for old in existing:
            same_slot = old.source.lower() == triple.source.lower() and old.relationship == triple.relationship
            if same_slot and old.key() not in new_keys:
                doomed[old.key()] = old
    for line in text.splitlines():
        parsed = parse_fact(line, subject)
        if parsed.negated:
            denied = {t.key() for t in parsed.triples}
            doomed.update({old.key(): old for old in existing if old.key() in denied})
    return list(doomed.values())


def query_entities(query: str, subject: str) -> list[str]:
    """Capitalised names and content words of the query; the user when it speaks about a person."""
    found: dict[str, str] = {}
    for span in CAPITALISED.findall(query):
        words = [w for w in span.split() if w.lower() not in QUERY_STOPWORDS]
        if words:
            found.setdefault(" ".join(words).lower(), " ".join(words))
    for word in WORD.findall(query):
        if word.lower() not in QUERY_STOPWORDS and len(word) > 2:
            found.setdefault(word.lower(), word)
    if subject and (SELF_WORDS.search(query) or not found):
        found.setdefault(subject.lower(), subject)
    return list(found.values())
