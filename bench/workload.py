"""Deterministic synthetic workloads: conversations to ingest, and a memory corpus with queries to search."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

CITIES = [
    "Lisbon",
    "Porto",
    "Berlin",
    "Munich",
    "Paris",
    "Lyon",
    "Madrid",
    "Seville",
    "Rome",
    "Milan",
    "Vienna",
    "Prague",
    "Warsaw",
    "Dublin",
    "Oslo",
    "Helsinki",
    "Athens",
    "Zagreb",
    "Tallinn",
    "Riga",
]
HOBBIES = [
    "hiking",
    "bouldering",
    "sailing",
    "pottery",
    "chess",
    "birdwatching",
    "running",
    "painting",
    "cycling",
    "baking sourdough",
    "playing the cello",
    "gardening",
    "surfing",
    "photography",
    "knitting",
    "yoga",
]
FOODS = ["ramen", "paella", "sushi", "lasagna", "tacos", "falafel", "pho", "risotto", "dumplings", "curry"]
JOBS = ["nurse", "data engineer", "teacher", "architect", "barista", "pilot", "lawyer", "chef", "designer", "plumber"]
COMPANIES = ["a hospital", "a bank", "a startup", "the city council", "a bakery", "an airline", "a school", "a studio"]
PETS = ["dog", "cat", "parrot", "rabbit", "turtle", "hamster"]
NAMES = ["Max", "Luna", "Poppy", "Milo", "Nala", "Oscar", "Kiwi", "Biscuit", "Pepper", "Ziggy"]
PEOPLE = ["Ana", "Ben", "Chloe", "Dev", "Elif", "Farid", "Greta", "Hugo", "Iris", "Jonas", "Keiko", "Liam"]
ASSISTANT = [
    "That sounds lovely!",
    "Thanks for telling me.",
    "Good to know, I'll remember that.",
    "Interesting! Tell me more.",
    "Noted.",
]


def _user_turns(rng: random.Random) -> list[str]:
    options = [
        f"I live in {rng.choice(CITIES)} and I love {rng.choice(HOBBIES)}.",
        f"I work as a {rng.choice(JOBS)} at {rng.choice(COMPANIES)}.",
        f"My favourite food is {rng.choice(FOODS)}.",
        f"I have a {rng.choice(PETS)} named {rng.choice(NAMES)}.",
        f"My sister {rng.choice(PEOPLE)} is moving to {rng.choice(CITIES)} next month.",
        f"I'm training for a half marathon in {rng.choice(CITIES)}.",
        f"I don't eat {rng.choice(FOODS)} anymore.",
        f"I started {rng.choice(HOBBIES)} last spring.",
    ]
    rng.shuffle(options)
    return options[:3]


def conversations(n: int, per_user: int = 3, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` add requests (Mem0's body): 3 user turns with 1-2 facts each, answered by an assistant.

    ``per_user`` conversations share a user, as in a back-fill of chat history.
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        messages: list[dict[str, str]] = []
        for turn in _user_turns(rng):
            messages.append({"role": "user", "content": turn})
            messages.append({"role": "assistant", "content": rng.choice(ASSISTANT)})
        out.append({"messages": messages, "user_id": f"user-{i // per_user:05d}"})
    return out


@dataclass(frozen=True)
class Corpus:
    texts: list[str]
    scopes: list[str]  # user_id of each text
    queries: list[tuple[str, str]]  # (query, user_id)


MEMORY_TEMPLATES = [
    "Lives in {city} and loves {hobby}",
    "Works as a {job} at {company} in {city}",
    "Favourite food is {food}, especially on {day}s",
    "Has a {pet} named {name}",
    "Sister {person} is moving to {city}",
    "Started {hobby} with {person} last {season}",
    "Does not eat {food} anymore",
    "Is planning a trip to {city} in {season}",
    "Meets {person} for {hobby} every {day}",
    "Is allergic to {pet}s and prefers {food}",
]
QUERY_TEMPLATES = [
    "where does the user live",
    "what does the user do for work",
    "what food does the user like",
    "does the user have pets",
    "what are the user's hobbies",
    "who is {person}",
    "any travel plans to {city}",
    "what does the user do on {day}s",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
SEASONS = ["spring", "summer", "autumn", "winter"]


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        city=rng.choice(CITIES),
        hobby=rng.choice(HOBBIES),
        job=rng.choice(JOBS),
        company=rng.choice(COMPANIES),
        food=rng.choice(FOODS),
        day=rng.choice(DAYS),
        pet=rng.choice(PETS),
        name=rng.choice(NAMES),
        person=rng.choice(PEOPLE),
        season=rng.choice(SEASONS),
    )


def corpus(size: int, scopes: int, queries: int, seed: int = 11) -> Corpus:
    """``size`` memories spread round-robin over ``scopes`` users (so any prefix is spread evenly too)."""
    rng = random.Random(seed)
    texts = [_fill(rng.choice(MEMORY_TEMPLATES), rng) for _ in range(size)]
    owners = [f"user-{i % scopes:05d}" for i in range(size)]
    qrng = random.Random(seed + 1)
    asked = [(_fill(qrng.choice(QUERY_TEMPLATES), qrng), f"user-{qrng.randrange(scopes):05d}") for _ in range(queries)]
    return Corpus(texts, owners, asked)
