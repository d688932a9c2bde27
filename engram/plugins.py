"""Provider discovery: built-ins plus third-party packages registered through entry points.

A package adds a provider by declaring, in its own pyproject::

    [project.entry-points."engram.llms"]
    my_llm = "my_package.llm:MyLLM"

The class takes one argument, an instance of its ``config_model`` (a pydantic model), which
engram fills from ``ENGRAM_<KIND>__CONFIG`` plus the common fields of that kind's settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

GROUPS = {
    "llm": "engram.llms",
    "embedder": "engram.embedders",
    "vector_store": "engram.vector_stores",
    "graph_store": "engram.graph_stores",
}

# Also listed in pyproject's entry points; kept here so a source checkout works uninstalled.
BUILTINS: dict[str, dict[str, str]] = {
    "llm": {
        "heuristic": "engram.llm.heuristic:HeuristicLLM",
        "litellm": "engram.llm.litellm_llm:LiteLLM",
    },
    "embedder": {
        "onnx": "engram.embedding.onnx:OnnxEmbedder",
        "sentence_transformers": "engram.embedding.local:SentenceTransformerEmbedder",
        "litellm": "engram.embedding.litellm_embedder:LiteLLMEmbedder",
    },
    "vector_store": {
        "lancedb": "engram.vectorstores.lance:LanceVectorStore",
        "weaviate": "engram.vectorstores.weaviate_store:WeaviateVectorStore",
    },
    "graph_store": {"kuzu": "engram.graph.kuzu_store:KuzuGraphStore"},
}


@dataclass(frozen=True)
class ProviderInfo:
    kind: str
    name: str
    target: str
    builtin: bool


def available(kind: str) -> dict[str, ProviderInfo]:
    """Every provider of ``kind`` that can be selected, by name."""
    found = {name: ProviderInfo(kind, name, target, True) for name, target in BUILTINS[kind].items()}
    for ep in entry_points(group=GROUPS[kind]):
        if ep.name not in found:
            found[ep.name] = ProviderInfo(kind, ep.name, ep.value, False)
    return found


def load(kind: str, name: str) -> Any:
    """The provider class registered as ``name``; a clear error listing the choices otherwise."""
    providers = available(kind)
    if name not in providers:
        raise ValueError(f"unknown {kind} provider {name!r}; installed: {', '.join(sorted(providers)) or 'none'}")
    module_name, _, attribute = providers[name].target.partition(":")
    module = __import__(module_name, fromlist=[attribute])
    return getattr(module, attribute)
