"""Writes ``results.json``, ``results.md`` (tables, targets as ratios) and PNG plots from one run's results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import json_default


def ok_rate(r: dict[str, Any]) -> float:
    """Conversations ingested without error per second (a failed add is not throughput)."""
    return round((r["conversations"] - r["errors"]) / max(r["seconds"], 1e-9), 3)


def _best(ingest: list[dict[str, Any]], system: str, latency: float, mode: str | None = None) -> dict[str, Any] | None:
    rows = [
        r
        for r in ingest
        if r["system"] == system and r["llm_latency_ms"] == latency and (mode is None or r["mode"] == mode)
    ]
    return max(rows, key=ok_rate, default=None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, value: Any, goal: str, met: bool | None, note: str = "") -> None:
        out.append({"target": name, "measured": value, "goal": goal, "met": met, "note": note})

    ingest = results.get("ingest") or []
    for latency, goals in ((300.0, (("sequential", 20), ("pool16", 2))), (0.0, (("sequential", 3),))):
        engram = _best(ingest, "engram", latency)
        for mode, goal in goals:
            mem0 = _best(ingest, "mem0", latency, mode)
            if engram and mem0:
                r = _ratio(ok_rate(engram), ok_rate(mem0))
                add(
                    f"ingest @{latency:.0f} ms: engram / mem0 {mode}",
                    r,
                    f">= {goal}x",
                    r is not None and r >= goal,
                    f"engram {engram['mode']} {ok_rate(engram)} conv/s vs {ok_rate(mem0)} conv/s"
                    + (f" ({mem0['errors']} of mem0's adds failed)" if mem0["errors"] else ""),
                )
    search = (results.get("search") or {}).get("sizes") or {}
    if search:
        size = max(search, key=int)
        row = search[size]
        p95 = row["engram_api"]["latency_ms"]["p95"]
        add(f"search p95 at {int(size):,} memories (API, incl. embedding)", p95, "<= 15 ms", p95 <= 15)
        r = _ratio(row["mem0"]["latency_ms"]["p95"], p95)
        add(f"search p95 at {int(size):,}: mem0 / engram", r, ">= 3x", r is not None and r >= 3)
    load = results.get("load") or {}
    if "engram" in load:
        e = load["engram"]
        add("ingest API requests/s", e["requests_per_second"], ">= 1500", e["requests_per_second"] >= 1500)
        p99 = e["latency_ms"].get("p99")
        add("ingest API p99", p99, "<= 25 ms", p99 is not None and p99 <= 25)
        add("ingest API / bare endpoint", load["ratio_to_bare"], ">= 0.5", load["ratio_to_bare"] >= 0.5)
    elif "skipped" in load:  # a target not measured is shown as such, not left out
        add("ingest API requests/s, p99, / bare endpoint", "not measured", ">= 1500, <= 25 ms, >= 0.5", None,
            load["skipped"])
    locomo = (results.get("locomo") or {}).get("systems") or {}
    if "engram" in locomo and "mem0" in locomo:
        for name in ("engram",):
            if name in locomo:
                d = round(100 * (locomo[name]["hit"]["overall"]["@10"] - locomo["mem0"]["hit"]["overall"]["@10"]), 1)
                add(f"LoCoMo hit@10: {name} - mem0 (points)", d, ">= +4", d >= 4)
    peaks = [
        (r["mode"], name, v)
        for r in ingest
        if r["system"] == "engram"
        for name, v in r["peak_rss"].items()
        if name != "api"
    ]
    if peaks:
        mode, name, v = max(peaks, key=lambda p: p[2]["largest_process_mb"])
        add(
            "worker resident memory (largest worker process)",
            v["largest_process_mb"],
            "<= 700 MB",
            v["largest_process_mb"] <= 700,
            f"{name} ({mode}); whole tree {v['tree_mb']} MB" + (
                f"; at the end {v['largest_private_mb_at_end']} MB private, PSS {v['largest_pss_mb_at_end']} MB"
                if "largest_private_mb_at_end" in v else ""
            ),
        )
    return out


def _fmt(v: Any) -> str:
    return "—" if v is None else str(v)


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        "# engram vs mem0 OSS — benchmark results",
        "",
        f"Command: `{meta['command']}`  ",
        *[f"Re-run on its own: {rerun}  " for rerun in meta.get("reruns", [])],
        f"Started {meta['started_at']}, took {meta['seconds']} s. "
        f"Machine: {meta['machine']}. Load average at start: {meta['load_at_start']}; at end: {meta['load_at_end']}.",
        "",
    ]
    if results.get("targets"):
        lines += ["## Targets (issue #7)", "", "| target | measured | goal | met | |", "|---|---|---|---|---|"]
        for t in results["targets"]:
            met = "yes" if t["met"] else ("not measured" if t["met"] is None else "**no**")
            lines.append(f"| {t['target']} | {_fmt(t['measured'])} | {t['goal']} | {met} | {t['note']} |")
        lines.append("")
    ingest = results.get("ingest")
    if ingest:
        lines += [
            "## 1. Ingest",
            "",
            f"{ingest[0]['conversations']} conversations (3 user + 3 assistant turns, 3 per user), all submitted "
            "at t0; latency = completion − submission. LLM stand-in in its own process. conv/s (ok) counts "
            "conversations ingested without error.",
            "",
            "| LLM latency | system | mode | conv/s (ok) | conv/s (attempted) | latency p50 ms | p95 ms | memories | "
            "errors | LLM calls | peak RSS (MB, tree) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in ingest:
            rss = ", ".join(f"{k} {v['tree_mb']}" for k, v in r["peak_rss"].items())
            calls = sum(r.get("llm_calls", {}).values())
            lines.append(
                f"| {r['llm_latency_ms']:.0f} ms | {r['system']} | {r['mode']} | {ok_rate(r)} | "
                f"{r['conversations_per_second']} "
                f"| {r['latency_ms'].get('p50')} | {r['latency_ms'].get('p95')} | {r['memories_added']} | "
                f"{r['errors']} | {calls} | {rss} |"
            )
        lines.append("")
    search = results.get("search")
    if search:
        lines += [
            "## 2. Search",
            "",
            f"engram's search mode (its default): {search.get('engram_search_mode')}. mem0: "
            f"{search['mem0_hybrid'].get('vector_store')}, hybrid {search['mem0_hybrid'].get('hybrid')}; above "
            f"10k memories mem0 answers the first {search.get('mem0_queries_above_10k')} queries only.",
            f"{search['scopes']:,} scopes, {search['queries']} queries (random scope each), top_k={search['top_k']}, "
            "sequential after 20 warm-ups, query embedding included.",
            "",
            "| memories | system | p50 ms | p95 ms | p99 ms | queries | empty results | bulk load s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for size, row in search["sizes"].items():
            for key, label, load_key in (
                ("engram_api", "engram API (/v3/memories/search/)", "engram_load_seconds"),
                ("engram_in_process", "engram in-process (embed + Lance)", None),
                ("mem0", "mem0 Memory.search", "mem0_load_seconds"),
            ):
                lat = row[key]["latency_ms"]
                lines.append(
                    f"| {int(size):,} | {label} | {lat.get('p50')} | {lat.get('p95')} | {lat.get('p99')} | "
                    f"{lat.get('n')} | {row[key]['empty_results']} | {_fmt(row.get(load_key) if load_key else None)} |"
                )
        lines.append("")
    at_scale = (search or {}).get("at_scale")
    if at_scale:
        lines += _at_scale(at_scale, _best(ingest or [], "engram", 0.0, "threads"))
    load = results.get("load")
    if load and "engram" in load:
        lines += [
            "## 3. Ingest API under load",
            "",
            f"wrk -t{load['wrk_threads']} -c{load['connections']} -d{load['seconds']}s on loopback, uvicorn "
            f"--workers {load['uvicorn_workers']}, no Celery worker running.",
            "",
            "| endpoint | req/s | p50 ms | p90 ms | p99 ms | non-2xx |",
            "|---|---|---|---|---|---|",
        ]
        for key, label in (("engram", "engram POST /v1/memories/"), ("bare", "bare FastAPI endpoint")):
            r = load[key]
            lat = r["latency_ms"]
            lines.append(
                f"| {label} | {r['requests_per_second']} | {lat.get('p50')} | {lat.get('p90')} | "
                f"{lat.get('p99')} | {r['non_2xx']} |"
            )
        lines += ["", f"engram / bare: {load['ratio_to_bare']}", ""]
    elif load and "skipped" in load:
        lines += ["## 3. Ingest API under load", "", f"Not measured: {load['skipped']}.", ""]
    locomo = results.get("locomo")
    if locomo:
        cats = locomo["categories"]
        first = next(iter(locomo["systems"].values()))
        lines += [
            "## 4. LoCoMo retrieval",
            "",
            f"{locomo['questions']} scorable questions, {locomo['conversations']} conversations, "
            f"{locomo['turns']} turns; top_k={locomo['top_k']}, threshold 0. mem0 hybrid: "
            f"{locomo['mem0_hybrid'].get('hybrid')} ({locomo['mem0_hybrid'].get('spacy')}; "
            f"{locomo['mem0_hybrid'].get('bm25')}).",
            "",
            "| system | hit@1 | hit@5 | hit@10 | "
            + " | ".join(f"{c} @10 ({first['questions'][c]})" for c in cats)
            + " | p50 ms | p95 ms |",
            "|---|---|---|---|" + "---|" * len(cats) + "---|---|",
        ]
        for name, row in locomo["systems"].items():
            h = row["hit"]["overall"]
            per = " | ".join(f"{row['hit'][c]['@10']:.3f}" for c in cats)
            lines.append(
                f"| {name} | {h['@1']:.3f} | {h['@5']:.3f} | {h['@10']:.3f} | {per} | "
                f"{row['latency_ms']['p50']} | {row['latency_ms']['p95']} |"
            )
        lines += ["", "Data: LoCoMo (Maharana et al., ACL 2024), CC BY-NC 4.0, internal benchmarking only.", ""]
    if results.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in results["notes"]], ""]
    return "\n".join(lines)


def _at_scale(at_scale: dict[str, Any], empty: dict[str, Any] | None) -> list[str]:
    ingested, searched = at_scale["ingest"], at_scale["search_after"]["latency_ms"]
    stored = f"{at_scale['memories_before']:,}"
    lines = [
        f"### At scale: {ingested['conversations']} conversations ingested into {stored} stored memories",
        "",
        "The same pipeline (threaded workers, LLM stand-in at 0 ms) writing into the store just measured, then "
        "engram's API search timed again with the table as the writes' own upkeep left it "
        f"({at_scale['table']['fragments']} fragments, {at_scale['table']['versions']} versions kept).",
        "",
        "| measure | into an empty store (section 1) | into the stored memories |",
        "|---|---|---|",
        f"| ingest conv/s (ok) | {ok_rate(empty) if empty else '—'} | {ok_rate(ingested)} |",
        f"| job latency p50 / p95 ms | {empty['latency_ms'].get('p50') if empty else '—'} / "
        f"{empty['latency_ms'].get('p95') if empty else '—'} | {ingested['latency_ms'].get('p50')} / "
        f"{ingested['latency_ms'].get('p95')} |",
        f"| errors | {empty['errors'] if empty else '—'} | {ingested['errors']} |",
        f"| search p50 / p95 / p99 ms afterwards | — | {searched.get('p50')} / {searched.get('p95')} / "
        f"{searched.get('p99')} |",
        "",
    ]
    return lines


def plots(results: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    ingest = results.get("ingest")
    if ingest:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        latencies = sorted({r["llm_latency_ms"] for r in ingest})
        labels = list(dict.fromkeys(f"{r['system']} {r['mode']}" for r in ingest))
        width = 0.8 / len(labels)
        for i, label in enumerate(labels):
            values = [
                next(
                    (
                        ok_rate(r)
                        for r in ingest
                        if f"{r['system']} {r['mode']}" == label and r["llm_latency_ms"] == lat
                    ),
                    0,
                )
                for lat in latencies
            ]
            ax.bar([x + i * width for x in range(len(latencies))], values, width, label=label)
        ax.set_xticks(
            [x + width * (len(labels) - 1) / 2 for x in range(len(latencies))],
            [f"LLM latency {lat:.0f} ms" for lat in latencies],
        )
        ax.set_ylabel("conversations ingested without error / s")
        ax.set_title("Ingest throughput")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "ingest.png", dpi=110)
        plt.close(fig)
        written.append("ingest.png")
    search = results.get("search")
    if search:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        sizes = list(search["sizes"])
        keys = (("engram_api", "engram API"), ("engram_in_process", "engram in-process"), ("mem0", "mem0"))
        width = 0.8 / len(keys)
        for i, (key, label) in enumerate(keys):
            p95 = [search["sizes"][s][key]["latency_ms"]["p95"] for s in sizes]
            p50 = [search["sizes"][s][key]["latency_ms"]["p50"] for s in sizes]
            xs = [x + i * width for x in range(len(sizes))]
            ax.bar(xs, p95, width, label=f"{label} p95", alpha=0.45)
            ax.scatter(xs, p50, color="black", s=12)
        ax.set_yscale("log")
        ax.set_xticks([x + width for x in range(len(sizes))], [f"{int(s):,} memories" for s in sizes])
        ax.set_ylabel("ms (log; bar p95, dot p50)")
        ax.set_title("Search latency incl. query embedding")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "search.png", dpi=110)
        plt.close(fig)
        written.append("search.png")
    load = results.get("load")
    if load and "engram" in load:
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
        names = ["engram", "bare"]
        left.bar(names, [load[n]["requests_per_second"] for n in names], color=["C0", "grey"])
        left.set_ylabel("requests / s")
        right.bar(names, [load[n]["latency_ms"].get("p99", 0) for n in names], color=["C0", "grey"])
        right.set_ylabel("p99 ms")
        fig.suptitle("POST /v1/memories/ under load vs bare FastAPI")
        fig.tight_layout()
        fig.savefig(out / "load.png", dpi=110)
        plt.close(fig)
        written.append("load.png")
    locomo = results.get("locomo")
    if locomo:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        systems = list(locomo["systems"])
        width = 0.8 / len(systems)
        for i, name in enumerate(systems):
            h = locomo["systems"][name]["hit"]["overall"]
            ax.bar([x + i * width for x in range(3)], [h["@1"], h["@5"], h["@10"]], width, label=name)
        ax.set_xticks([x + width * (len(systems) - 1) / 2 for x in range(3)], ["hit@1", "hit@5", "hit@10"])
        ax.set_ylim(0, 1)
        ax.set_title(f"LoCoMo retrieval ({locomo['questions']} questions)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "locomo.png", dpi=110)
        plt.close(fig)
        written.append("locomo.png")
    return written


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results["targets"] = targets(results)
    results["plots"] = plots(results, out)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=json_default) + "\n")
    (out / "results.md").write_text(markdown(results))
