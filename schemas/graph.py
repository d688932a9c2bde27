"""Graph memory models: what the LLM answers (validated leniently) and what the API returns.

Providers disagree on the shape of "entities and relations" answers: ``{"entities", "relations"}``,
``{"nodes", "edges"}``, ``source_entity``/``target`` keys, triples as lists, Mem0's
``entity_type_map``. The output models accept those spellings and drop items that stay unusable,
so one odd item does not cost the whole answer.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

log = logging.getLogger(__name__)

NON_WORD = re.compile(r"[^\w]+")
SOURCE_KEYS = ("source", "source_entity", "source_node", "from", "subject", "head", "src")
RELATIONSHIP_KEYS = ("relationship", "relation", "relation_type", "relationship_type", "predicate", "type", "label")
DESTINATION_KEYS = ("destination", "destination_entity", "destination_node", "target", "target_entity",
                    "target_node", "to", "object", "tail", "dst")
NAME_KEYS = ("name", "entity", "entity_name", "node", "id", "text")
TYPE_KEYS = ("type", "entity_type", "label", "category", "kind")
ENTITY_LIST_KEYS = ("entities", "nodes", "entity_list", "entity_type_map")
RELATION_LIST_KEYS = ("relations", "relationships", "edges", "triples", "links", "relation_list")
DELETE_LIST_KEYS = ("delete", "deletions", "to_delete", "delete_relations", "deleted", "remove", *RELATION_LIST_KEYS)


def normalise_relationship(value: str) -> str:
    """``"Lives In"`` / ``"lives-in"`` / ``"LIVES_IN"`` all become ``lives_in``."""
    return NON_WORD.sub("_", value.strip().lower().replace("'", "")).strip("_")


def _first(data: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if data.get(key) not in (None, ""):
            return data[key]
    return None


def _name(value: Any) -> Any:
    # Some providers nest the entity: {"source": {"name": "Ana", "type": "person"}}.
    return _first(value, NAME_KEYS) if isinstance(value, dict) else value


def lenient_list(model: type[BaseModel], items: Any) -> list[Any]:
    """Validate each item on its own; keep the valid ones."""
    if not isinstance(items, list):
        return []
    kept = []
    for item in items:
        try:
            kept.append(model.model_validate(item))
        except ValidationError as exc:
            log.info("dropped an unusable %s from the LLM answer: %s", model.__name__, exc.errors()[0]["msg"])
    return kept


class Triple(BaseModel):
    """One relation: (source)-[relationship]->(destination), by entity name."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    source: str
    relationship: str
    destination: str

    @model_validator(mode="before")
    @classmethod
    def _spellings(cls, data: Any) -> Any:
        if isinstance(data, list | tuple) and len(data) == 3:
            return dict(zip(("source", "relationship", "destination"), data, strict=True))
        if isinstance(data, dict):
            return {
                "source": _name(_first(data, SOURCE_KEYS)),
                "relationship": _first(data, RELATIONSHIP_KEYS),
                "destination": _name(_first(data, DESTINATION_KEYS)),
            }
        return data

    @field_validator("source", "destination")
    @classmethod
    def _entity_name(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("entity name is blank")
        return value[:200]

    @field_validator("relationship")
    @classmethod
    def _snake_case(cls, value: str) -> str:
        value = normalise_relationship(value)
        if not value:
            raise ValueError("relationship is blank")
        return value[:100]

    def key(self) -> tuple[str, str, str]:
        """Case-insensitive identity of the relation."""
        return (self.source.lower(), self.relationship, self.destination.lower())


class EntityOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    type: str = "entity"

    @model_validator(mode="before")
    @classmethod
    def _spellings(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"name": data}
        if isinstance(data, dict):
            return {"name": _first(data, NAME_KEYS), "type": _first(data, TYPE_KEYS) or "entity"}
        return data

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("entity name is blank")
        return value[:200]

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        return normalise_relationship(value) or "entity"


def _entities(value: Any) -> list[Any]:
    # Mem0's entity_type_map: {"Ana": "person", "Paris": "city"}.
    if isinstance(value, dict):
        return [{"name": k, "type": v if isinstance(v, str) else "entity"} for k, v in value.items()]
    return value if isinstance(value, list) else []


class ExtractedGraph(BaseModel):
    """Answer to the graph-extraction prompt: entities with types, and relations between them."""

    entities: list[EntityOut] = []
    relations: list[Triple] = []

    @model_validator(mode="before")
    @classmethod
    def _spellings(cls, data: Any) -> Any:
        if isinstance(data, list):  # a bare list of relations
            return {"entities": [], "relations": lenient_list(Triple, data)}
        if not isinstance(data, dict):
            return data
        return {
            "entities": lenient_list(EntityOut, _entities(_first(data, ENTITY_LIST_KEYS))),
            "relations": lenient_list(Triple, _first(data, RELATION_LIST_KEYS)),
        }


class RelationDeletions(BaseModel):
    """Answer to the contradiction prompt: the existing relations the new information makes untrue."""

    delete: list[Triple] = []

    @model_validator(mode="before")
    @classmethod
    def _spellings(cls, data: Any) -> Any:
        if isinstance(data, list):
            return {"delete": lenient_list(Triple, data)}
        if isinstance(data, dict):
            return {"delete": lenient_list(Triple, _first(data, DELETE_LIST_KEYS))}
        return data


class QueryEntities(BaseModel):
    """Answer to the query-entities prompt: names of the entities a search is about."""

    entities: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _spellings(cls, data: Any) -> Any:
        items = data if isinstance(data, list) else _first(data, ENTITY_LIST_KEYS) if isinstance(data, dict) else None
        return {"entities": [e.name for e in lenient_list(EntityOut, _entities(items))]}


class RelationPublic(BaseModel):
    """A relation as the API shows it (Mem0's search ``relations`` item)."""

    source: str
    relationship: str
    destination: str


class RelationEvents(BaseModel):
    """What a job changed in the graph (``GET /v1/event/{id}/`` and its stream)."""

    added: list[RelationPublic] = []
    deleted: list[RelationPublic] = []


class AddRelations(BaseModel):
    """The same changes as Mem0's add response names them: ``{"results": [...], "relations": {...}}``.

    Items are ``{source, relationship, destination}`` as everywhere else here (Mem0's own add lists
    ``target``, its search ``destination``).
    """

    added_entities: list[RelationPublic] = []
    deleted_entities: list[RelationPublic] = []

    @classmethod
    def of(cls, events: RelationEvents) -> AddRelations:
        return cls(added_entities=events.added, deleted_entities=events.deleted)


class GraphEntityPublic(BaseModel):
    id: str
    name: str
    type: str
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    created_at: datetime | None = None


class GraphRelationPublic(RelationPublic):
    source_id: str
    destination_id: str
    created_at: datetime | None = None
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None


class GraphEntityList(BaseModel):
    count: int
    results: list[GraphEntityPublic]


class GraphRelationList(BaseModel):
    count: int
    results: list[GraphRelationPublic]
