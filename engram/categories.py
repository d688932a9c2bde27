"""Categories of memories (Mem0's defaults, or a project's custom ones), assigned by embedding.

Each category is a name and a description; a memory gets the categories whose description is
closest to its text. Cheap (the descriptions are embedded once per process) and deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engram.ports import Embedder

DEFAULT_CATEGORIES: dict[str, str] = {
    "personal_details": "name, age, birthday, where someone lives, languages, identity",
    "family": "family members, partner, children, parents, siblings, relationships",
    "professional_details": "job, employer, career, work, colleagues, skills",
    "sports": "sports, exercise, running, hiking, fitness, training",
    "travel": "travel, trips, flights, holidays, places to visit",
    "food": "food, diet, cooking, restaurants, drinks, allergies to food, vegetarian",
    "music": "music, instruments, songs, bands, concerts",
    "health": "health, illness, allergies, medication, doctors, sleep",
    "technology": "technology, computers, software, programming, gadgets",
    "hobbies": "hobbies, pastimes, collecting, games, crafts, reading",
    "fashion": "clothes, fashion, style, shoes",
    "entertainment": "movies, tv shows, books, podcasts, entertainment",
    "milestones": "life events, achievements, graduations, weddings, moves",
    "user_preferences": "likes, dislikes, preferences, favourites, wishes",
    "misc": "other facts",
}
MIN_SIMILARITY = 0.25
SECOND_CATEGORY_MARGIN = 0.03


def from_custom(custom: Sequence[dict[str, str]] | None) -> dict[str, str]:
    """Mem0's ``custom_categories``: a list of ``{name: description}`` objects."""
    found: dict[str, str] = {}
    for item in custom or []:
        found.update({str(k): str(v) for k, v in item.items()})
    return found or DEFAULT_CATEGORIES


# Category descriptions embedded once per process and embedder (keyed by the embedder's identity).
_vectors: dict[tuple[int, tuple[tuple[str, str], ...]], np.ndarray] = {}


def _category_vectors(embedder: Embedder, items: tuple[tuple[str, str], ...]) -> np.ndarray:
    key = (id(embedder), items)
    if key not in _vectors:
        texts = [f"{name.replace('_', ' ')}: {text}" for name, text in items]
        _vectors[key] = np.asarray(embedder.embed(texts), dtype="float32")
    return _vectors[key]


def assign(
    vectors: Sequence[Sequence[float]], embedder: Embedder, categories: dict[str, str]
) -> list[list[str]]:
    """One or two categories per memory vector, or none when nothing is close enough."""
    if not vectors:
        return []
    items = tuple(sorted(categories.items()))
    similarity = np.asarray(vectors, dtype="float32") @ _category_vectors(embedder, items).T
    assigned: list[list[str]] = []
    for row in similarity:
        order = np.argsort(-row)
        best = order[0]
        if row[best] < MIN_SIMILARITY:
            assigned.append([])
            continue
        names = [items[best][0]]
        if len(order) > 1 and row[order[1]] >= max(MIN_SIMILARITY, row[best] - SECOND_CATEGORY_MARGIN):
            names.append(items[order[1]][0])
        assigned.append(names)
    return assigned
