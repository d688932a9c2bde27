"""An in-process model of the slice of a Weaviate server ``WeaviateVectorStore`` uses.

Weaviate cannot run on the development machines, so the adapter's own logic (tenants, batches,
paging, residual filtering, record mapping) runs the contract suite against this model, which
interprets the *real* client's filter objects with Weaviate's documented semantics: field
tokenization trims whitespace and an empty string is null; Equal/NotEqual/Like/ContainsAny on
tokens; Not is the complement over the tenant; filters on a property that is not filterable, or
offset + limit beyond QUERY_MAXIMUM_RESULTS, are refused as the server refuses them.

It is a model, not Weaviate: the suite also runs against a real server when WEAVIATE_URL is set.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections import Counter
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from weaviate.collections.classes.config import DataType, Tokenization, _CollectionConfigCreate
from weaviate.collections.classes.filters import _FilterAnd, _FilterNot, _FilterOr, _Filters, _FilterValue, _Operator
from weaviate.exceptions import WeaviateInvalidInputError, WeaviateQueryError

from engram.vectorstores.hybrid import relative_score_fusion

QUERY_MAXIMUM_RESULTS = 10_000
_WORD = re.compile(r"[A-Za-z0-9]+")
_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,),
    "text[]": (list,),
    "int": (int,),
    "boolean": (bool,),
    "date": (datetime,),
}


class ModelClient:
    def __init__(self, version: str = "1.34.1") -> None:
        self.version = version
        self.schemas: dict[str, ModelCollection] = {}
        self.closed = False
        self.collections = SimpleNamespace(exists=self._exists, create=self._create, use=self._use)

    def _exists(self, name: str) -> bool:
        return name in self.schemas

    def _create(self, name: str, **options: Any) -> ModelCollection:
        config = _CollectionConfigCreate(name=name, **options)._to_dict()  # the client's own validation
        self.schemas[name] = ModelCollection(config)
        return self.schemas[name]

    def _use(self, name: str) -> ModelCollection:
        return self.schemas[name]

    def get_meta(self) -> dict[str, Any]:
        return {"version": self.version}

    def is_ready(self) -> bool:
        return not self.closed

    def close(self) -> None:
        self.closed = True


class ModelCollection:
    def __init__(self, config: dict[str, Any]) -> None:
        self.props = {p["name"]: p for p in config["properties"]}
        self.shards: dict[str, dict[str, dict[str, Any]]] = {}
        mt = config.get("multiTenancyConfig", {"enabled": False})
        self.config = SimpleNamespace(
            get=lambda: SimpleNamespace(
                description=config.get("description"), multi_tenancy_config=SimpleNamespace(enabled=mt["enabled"])
            )
        )
        self.tenants = SimpleNamespace(
            exists=lambda name: name in self.shards,
            create=lambda tenants: [self.shards.setdefault(t.name, {}) for t in tenants],
            get=lambda: {name: SimpleNamespace(name=name) for name in self.shards},
            remove=lambda names: [self.shards.pop(n, None) for n in names],
        )

    def with_tenant(self, name: str) -> ModelTenant:
        return ModelTenant(self, name)


class ModelTenant:
    def __init__(self, collection: ModelCollection, name: str) -> None:
        self.c, self.name = collection, name
        self.data = SimpleNamespace(insert_many=self._insert_many, delete_many=self._delete_many)
        self.query = SimpleNamespace(
            near_vector=self._near_vector,
            hybrid=self._hybrid,
            fetch_objects=self._fetch_objects,
            fetch_object_by_id=self._by_id,
        )
        self.aggregate = SimpleNamespace(over_all=self._over_all)

    # -- storage -------------------------------------------------------------------------------
    def _shard(self) -> dict[str, dict[str, Any]]:
        if self.name not in self.c.shards:
            raise WeaviateQueryError(f'tenant not found: "{self.name}"', "GRPC")
        return self.c.shards[self.name]

    def _insert_many(self, objects: list[Any]) -> Any:
        shard = self.c.shards.setdefault(self.name, {})  # autoTenantCreation
        for obj in objects:
            for key, value in obj.properties.items():
                prop = self.c.props.get(key)
                if prop is None:
                    raise WeaviateInvalidInputError(f"no property {key!r} in the schema")
                if value is not None and not isinstance(value, _TYPES[prop["dataType"][0]]):
                    raise WeaviateInvalidInputError(f"{key}: {type(value).__name__} for {prop['dataType'][0]}")
            shard.pop(str(obj.uuid), None)  # a re-import replaces the object (and moves it last)
            props = {k: v for k, v in obj.properties.items() if v is not None}
            shard[str(obj.uuid)] = {"uuid": str(obj.uuid), "properties": props, "vector": list(obj.vector)}
        return SimpleNamespace(has_errors=False, errors={}, uuids={})

    def _delete_many(self, where: _Filters) -> Any:
        shard = self._shard()
        doomed = [key for key, obj in shard.items() if self._admits(where, obj)]
        for key in doomed:
            del shard[key]
        return SimpleNamespace(matches=len(doomed), successful=len(doomed), failed=0)

    # -- queries -------------------------------------------------------------------------------
    def _out(self, obj: dict[str, Any], include_vector: bool, **metadata: Any) -> Any:
        vector = {"default": list(obj["vector"])} if include_vector else {}
        return SimpleNamespace(
            uuid=obj["uuid"], properties=dict(obj["properties"]), vector=vector, metadata=SimpleNamespace(**metadata)
        )

    def _window(self, limit: int | None, offset: int | None) -> tuple[int, int]:
        start, size = offset or 0, limit or 10
        if start + size > QUERY_MAXIMUM_RESULTS:
            raise WeaviateQueryError("query maximum results exceeded", "GRPC")
        return start, size

    def _candidates(self, filters: _Filters | None) -> list[dict[str, Any]]:
        return [obj for obj in self._shard().values() if filters is None or self._admits(filters, obj)]

    def _near_vector(
        self, near_vector: list[float], *, limit: int, filters: Any, include_vector: bool, **_: Any
    ) -> Any:
        start, size = self._window(limit, None)
        ranked = sorted(((1.0 - _cosine(near_vector, o["vector"]), o) for o in self._candidates(filters)), key=_first)
        return SimpleNamespace(objects=[self._out(o, include_vector, distance=d) for d, o in ranked[:size]])

    def _hybrid(
        self, query: str, *, vector: list[float], alpha: float, limit: int, filters: Any, include_vector: bool, **_: Any
    ) -> Any:
        start, size = self._window(limit, None)
        candidates = self._candidates(filters)
        by_id = {o["uuid"]: o for o in candidates}
        cosines = {o["uuid"]: _cosine(vector, o["vector"]) for o in candidates}
        bm25 = _bm25(query, {o["uuid"]: o["properties"].get("memory", "") for o in candidates})
        fused = relative_score_fusion(cosines, {k: v for k, v in bm25.items() if v > 0}, alpha)
        ranked = sorted(fused.items(), key=lambda kv: -kv[1])[:size]
        return SimpleNamespace(objects=[self._out(by_id[k], include_vector, score=s) for k, s in ranked])

    def _fetch_objects(
        self, *, filters: Any = None, limit: int | None = None, offset: int | None = None, **kw: Any
    ) -> Any:
        start, size = self._window(limit, offset)
        found = self._candidates(filters)[start : start + size]
        return SimpleNamespace(objects=[self._out(o, kw.get("include_vector", False)) for o in found])

    def _by_id(self, uuid: str, include_vector: bool = False) -> Any:
        obj = self._shard().get(str(uuid))
        return None if obj is None else self._out(obj, include_vector)

    def _over_all(self, *, total_count: bool = True, filters: Any = None) -> Any:
        return SimpleNamespace(total_count=len(self._candidates(filters)))

    def iterator(self, include_vector: bool = False) -> Any:
        return (self._out(o, include_vector) for o in list(self._shard().values()))

    # -- filters -------------------------------------------------------------------------------
    def _admits(self, f: _Filters, obj: dict[str, Any]) -> bool:
        if isinstance(f, _FilterAnd):
            return all(self._admits(x, obj) for x in f.filters)
        if isinstance(f, _FilterOr):
            return any(self._admits(x, obj) for x in f.filters)
        if isinstance(f, _FilterNot):
            return not self._admits(f.filters[0], obj)
        assert isinstance(f, _FilterValue) and isinstance(f.target, str)
        prop = self.c.props.get(f.target)
        if prop is None or not prop.get("indexFilterable", True):
            raise WeaviateQueryError(f"cannot filter on {f.target!r}: not a filterable property", "GRPC")
        return _compare(prop, f.operator, f.value, obj["properties"].get(f.target))


def _compare(prop: dict[str, Any], op: _Operator, expected: Any, actual: Any) -> bool:
    kind = prop["dataType"][0]
    if kind in ("text", "text[]"):
        field = prop.get("tokenization") == Tokenization.FIELD.value
        tokens = _tokens(actual, field)
        wanted = [_token(v, field) for v in (expected if isinstance(expected, list) else [expected])]
        if op == _Operator.EQUAL:
            return wanted[0] in tokens
        if op == _Operator.NOT_EQUAL:
            return wanted[0] not in tokens
        if op == _Operator.LIKE:
            pattern = str(expected).replace("[", "[[]")  # Weaviate's Like knows only * and ?
            return any(fnmatch.fnmatchcase(t, pattern) for t in tokens)
        if op == _Operator.CONTAINS_ANY:
            return any(w in tokens for w in wanted)
        if op == _Operator.CONTAINS_ALL:
            return all(w in tokens for w in wanted)
        raise WeaviateQueryError(f"operator {op} not supported on text", "GRPC")
    if kind == DataType.INT.value:
        if not isinstance(expected, int) or isinstance(expected, bool):
            raise WeaviateQueryError(f"int property compared with {type(expected).__name__}", "GRPC")
        if actual is None:
            return op == _Operator.NOT_EQUAL
        compare = {
            _Operator.EQUAL: actual == expected,
            _Operator.NOT_EQUAL: actual != expected,
            _Operator.GREATER_THAN: actual > expected,
            _Operator.GREATER_THAN_EQUAL: actual >= expected,
            _Operator.LESS_THAN: actual < expected,
            _Operator.LESS_THAN_EQUAL: actual <= expected,
        }
        return compare[op]
    raise WeaviateQueryError(f"filters on {kind} are not modelled", "GRPC")


def _token(value: Any, field: bool) -> str:
    return str(value).strip() if field else str(value).lower()


def _tokens(value: Any, field: bool) -> list[str]:
    values = value if isinstance(value, list) else [] if value is None else [value]
    if field:
        return [t for t in (str(v).strip() for v in values) if t]  # empty is null: no token
    return [w.lower() for v in values for w in _WORD.findall(str(v))]


def _first(pair: tuple[float, Any]) -> float:
    return pair[0]


def _cosine(a: list[float], b: list[float]) -> float:
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb) if na and nb else 0.0


def _bm25(query: str, docs: dict[str, str], k1: float = 1.2, b: float = 0.75) -> dict[str, float]:
    tokenized = {k: [w.lower() for w in _WORD.findall(v)] for k, v in docs.items()}
    n = len(tokenized) or 1
    avg = sum(map(len, tokenized.values())) / n or 1.0
    df = Counter(w for words in tokenized.values() for w in set(words))
    terms = [w.lower() for w in _WORD.findall(query)]
    scores = {}
    for key, words in tokenized.items():
        tf = Counter(words)
        scores[key] = sum(
            math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
            * tf[t]
            * (k1 + 1)
            / (tf[t] + k1 * (1 - b + b * len(words) / avg))
            for t in terms
            if t in tf
        )
    return scores
