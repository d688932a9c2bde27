"""Stage 2: one batched embedding call for all facts of a conversation."""

from __future__ import annotations

from collections.abc import Sequence

from engram.ports import Embedder


def embed_facts(facts: Sequence[str], embedder: Embedder) -> list[list[float]]:
    if not facts:
        return []
    vectors = embedder.embed(list(facts))
    if len(vectors) != len(facts):
        raise ValueError(f"embedder returned {len(vectors)} vectors for {len(facts)} texts")
    return vectors
