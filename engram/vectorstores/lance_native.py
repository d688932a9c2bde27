"""The table through ``pylance``'s own read and write path: the API's searches, reconcile's lookups, appends.

The same Lance engine answers as through ``lancedb``, with the same prefilter, ranking and scores (bench/
search at 100k memories: the same top 10 for all 300 queries), but without lancedb's query and write layer,
which costs each call a few ms of CPU on its own (a lookup by id: 2.6 against 0.6 ms; hybrid search at 100k
memories, p50 16 against 11.5 ms; a filtered read of a few rows 4.6 against 1.5 ms; a 3-row append 7.1
against 4.1 ms). Loading pylance costs a worker ~50 MB resident (bench/: the LLM workers' peak 613 -> 665-679
MB), which the cheaper reads and appends pay for.

Every query first checks for the table's latest version (one listing of ``_versions/``), as lancedb's
``read_consistency_interval=0`` does: a search sees every write committed before it began, from any process.
Each found row carries its ``_rowid``, so a hybrid search can rank on ids and scores and then read only the
winners' rows from the same version (``LanceVectorStore._hybrid_by_ids``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


class NativeReader:
    def __init__(self, dataset_dir: Path, text_column: str) -> None:
        import lance

        self._dataset: Any = lance.dataset(str(dataset_dir))
        self._text_column = text_column

    def _on(self, dataset: Any) -> Any:
        # ``dataset or ...`` would ask a LanceDataset for its len(), a count of every row.
        return self.latest() if dataset is None else dataset

    def latest(self) -> Any:
        """The table at its latest version; a checkout keeps the session, so the index caches stay warm."""
        dataset = self._dataset
        latest = dataset.latest_version
        if latest != dataset.version:
            dataset = self._dataset = dataset.checkout_version(latest)
        return dataset

    def nearest(
        self, vector: Sequence[float], sql: str, columns: list[str], limit: int, dataset: Any = None
    ) -> list[dict[str, Any]]:
        target = {"column": "vector", "q": np.asarray(vector, dtype="float32"), "k": limit, "metric": "cosine"}
        found = self._on(dataset).to_table(
            filter=sql, prefilter=True, columns=columns, nearest=target, with_row_id=True
        )
        return found.to_pylist()  # type: ignore[no-any-return]

    def keyword(
        self, text: str, sql: str, columns: list[str], limit: int, dataset: Any = None
    ) -> list[dict[str, Any]]:
        query = {"query": text, "columns": [self._text_column]}
        found = self._on(dataset).to_table(
            filter=sql, prefilter=True, columns=columns, full_text_query=query, limit=limit, with_row_id=True
        )
        return found.to_pylist()  # type: ignore[no-any-return]

    def filtered(
        self, sql: str, columns: list[str], limit: int, dataset: Any = None, *, with_row_id: bool = False
    ) -> Any:
        """The rows ``sql`` selects, at most ``limit`` of them, as an Arrow table (the latest version unless
        ``dataset`` is given)."""
        return self._on(dataset).to_table(filter=sql, columns=columns, limit=limit, with_row_id=with_row_id)

    def append(self, data: Any) -> None:
        """Append ``data`` as one commit on the latest version (an append never conflicts with another)."""
        self.latest().insert(data)

    def rows(self, dataset: Any, row_ids: list[int], columns: list[str]) -> list[dict[str, Any]]:
        """The rows ``nearest`` or ``keyword`` found on ``dataset`` (by their ``_rowid``), in that order.
        ``_take_rows`` is pylance's take by row id (private in 13.0.0, which pyproject pins)."""
        return dataset._take_rows(row_ids, columns=columns).to_pylist()  # type: ignore[no-any-return]
