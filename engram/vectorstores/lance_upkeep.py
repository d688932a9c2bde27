"""Upkeep of the embedded LanceDB table: tiered compaction, folding new rows into the indexes, dropping old
versions. The API and the workers hand it to a worker on the default queue (``workers/upkeep.py``); a
process with no broker (the CLI, the tests' in-process stores) runs it after its own writes.

Why tiered: Lance merges every fragment smaller than its target (a million rows by default) into one, so
with the default each compaction rewrote the whole table until it held a million memories. Measured at
100k memories (lancedb 0.40): 159 MB and 1.5 s of CPU per compaction, one every ~16 conversations, and
ingest fell from 14.5 to 5.4 conversations/s. Here, fragments are merged a tier at a time, as an LSM tree
does: the one-job fragments each commit leaves into fragments of ``TIERS[0]`` rows, those into
``TIERS[1]``, and so on. Each row is rewritten a few times in all instead of once per compaction, and a
query still meets at most ``FANOUT`` fragments per tier (each costs it ~0.5 ms: bench/, 100k memories as 1,
7 and 25 fragments).

The fragment sizes and compaction options come from ``pylance`` (the same Lance 13 that lancedb 0.40 embeds;
lancedb's own ``optimize()`` cannot be given a target). It is imported here only, on a process's first
upkeep: its native library alone is ~66 MB resident in a worker, which is why upkeep is handed off.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Fragment sizes (rows) of the tiers; the last is Lance's default, where fragments stay for good.
TIERS = (1_024, 32_768, 1_048_576)
# A tier is compacted once it holds more fragments than this.
FANOUT = 8
# Rows not yet in the full-text index are found by a flat scan of a few milliseconds per few thousand rows.
FTS_UNINDEXED_ROWS_MAX = 2_000
# Every commit leaves a manifest in ``_versions/`` and every read finds the latest one by listing them all
# (read_consistency_interval=0); LanceDB keeps them a week unless told otherwise. Measured on lancedb 0.40:
# a filtered query took 4.7 ms over 13 versions, 6.3 ms over 500 and 12 ms over 2,000, and one job commits
# once or twice. Past ``VERSIONS_MAX``, the versions older than ``VERSIONS_KEPT_FOR`` are removed: long
# enough for a query, a write or a large compaction in flight to commit on the version it started from (a
# read that loses the race anyway retries on the latest, ``LanceVectorStore._read``). Removing them reads
# every manifest (~45 ms over 250), so a process does it at most once per ``VERSIONS_CLEANUP_EVERY``.
VERSIONS_MAX = 200
VERSIONS_KEPT_FOR = timedelta(seconds=60)
VERSIONS_CLEANUP_EVERY = timedelta(seconds=30)
# After a failed upkeep a process leaves it alone this long instead of retrying on every write.
PAUSE_AFTER_FAILURE = timedelta(seconds=30)

COMPACTED, INDEXED, CLEANED = "compacted", "indexed", "cleaned"


def compaction_target(fragment_rows: Sequence[int]) -> int | None:
    """The target (rows per fragment) of the compaction due, if one is: the largest tier whose band of
    fragments (smaller than it, at least the tier below) has more than ``FANOUT`` of them."""
    for i in reversed(range(len(TIERS))):
        low = TIERS[i - 1] if i else 0
        if sum(1 for rows in fragment_rows if low <= rows < TIERS[i]) > FANOUT:
            return TIERS[i]
    return None


def version_count(dataset_dir: Path) -> int:
    try:
        with os.scandir(dataset_dir / "_versions") as entries:
            return sum(1 for e in entries if e.name.endswith(".manifest"))
    except FileNotFoundError:
        return 0


def upkeep(dataset_dir: Path, *, full: bool = False, may_clean: bool = True) -> set[str]:
    """Do what is due on the table at ``dataset_dir``; return what was done (``COMPACTED``, ...).

    ``full``: compact everything below the top tier, fold every row in and drop old versions, as an
    operator's or a bulk load's ``optimize()`` asks. ``may_clean``: whether old versions may be dropped
    now. Safe from any process at any time: a commit race fails retryably and is left for the next check;
    no write is ever lost either way.
    """
    import lance

    dataset = lance.dataset(str(dataset_dir))
    done = set()
    target = TIERS[-1] if full else compaction_target([f.metadata.physical_rows for f in dataset.get_fragments()])
    if target is not None:
        dataset.optimize.compact_files(target_rows_per_fragment=target, num_threads=1)
        done.add(COMPACTED)
        log.debug("lance upkeep: compacted %s into %s-row fragments", dataset_dir, target)
    if full or _unindexed_text_rows(dataset) > FTS_UNINDEXED_ROWS_MAX:
        dataset.optimize.optimize_indices()
        done.add(INDEXED)
    if full or (may_clean and version_count(dataset_dir) > VERSIONS_MAX):
        dataset.cleanup_old_versions(older_than=VERSIONS_KEPT_FOR)
        done.add(CLEANED)
    return done


def _unindexed_text_rows(dataset: Any) -> int:
    for index in dataset.describe_indices():
        if "Inverted" in index.type_url:  # the full-text index
            return int(dataset.count_rows()) - int(index.num_rows_indexed)
    return 0
