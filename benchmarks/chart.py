"""The PNG chart of a results.json: latency by scenario, by table size, and
by package. Runs in the benchmark's virtualenv, the only one with matplotlib.

    python benchmarks/chart.py results.json latency.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt

SCENARIOS = ["none", "first", "replay", "mismatch", "in_progress"]
LABELS = ["no key", "first", "replay", "mismatch", "in progress"]


#: Panel titles: the databases' names, not Django's vendor strings.
DATABASE_NAMES = {"mysql": "MariaDB", "postgresql": "PostgreSQL", "sqlite": "SQLite"}


def by_scenario(ax: Any, rows: list[dict[str, Any]], title: str) -> None:
    variants = [
        v
        for v in ("plain", "floor", "ours", "floor-atomic", "ours-atomic")
        if any(r["variant"] == v for r in rows)
    ]
    width = 0.8 / max(1, len(variants))
    for i, variant in enumerate(variants):
        xs, ys = [], []
        for j, scenario in enumerate(SCENARIOS):
            row = next(
                (r for r in rows if r["variant"] == variant and r["scenario"] == scenario), None
            )
            if row and row.get("median_us"):
                xs.append(j + i * width)
                ys.append(row["median_us"] / 1000)
        # Medians only: on a shared machine the p99 is the neighbours' noise
        # (the tables carry it).
        ax.bar(xs, ys, width, label=variant)
    ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(SCENARIOS))], LABELS)
    ax.set_ylabel("ms per request (median)")
    ax.set_title(title)
    ax.legend(fontsize="small")


def by_size(ax: Any, rows: list[dict[str, Any]]) -> None:
    for scenario in ("first", "replay", "mismatch"):
        points = sorted(
            (r["table_rows"], r["x_plain"])
            for r in rows
            if r["variant"] == "ours" and r["scenario"] == scenario and r.get("phase") != "after"
        )
        if points:
            ax.plot(
                [max(p[0], 1) for p in points], [p[1] for p in points], marker="o", label=scenario
            )
    ax.set_xscale("log")
    ax.set_xlabel("records already in the table (0 drawn at 1)")
    ax.set_ylabel("latency / unprotected endpoint (median)")
    ax.set_title("By table size (PostgreSQL)")
    ax.legend(fontsize="small")


def by_package(ax: Any, results: dict[str, Any]) -> None:
    packages: dict[str, dict[str, float]] = {}
    for r in results.get("peers") or []:
        if r.get("x_plain") is not None:
            packages.setdefault(f"{r['package']}\n({r['mode']})", {})[r["scenario"]] = r["x_plain"]
    names = list(packages)
    scenarios = ["first", "replay", "mismatch", "in_progress"]
    width = 0.8 / len(scenarios)
    for i, scenario in enumerate(scenarios):
        ax.bar(
            [j + i * width for j in range(len(names))],
            [packages[n].get(scenario, 0) for n in names],
            width,
            label=scenario,
        )
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(
        [j + width * 1.5 for j in range(len(names))], names, rotation=25, ha="right", fontsize=7
    )
    ax.set_ylabel("latency / unprotected endpoint (median)")
    ax.set_title("Against the peers (PostgreSQL, sync on)")
    ax.legend(fontsize="small")


def _in_process(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """x plain of first requests and replays in-process, by http.json's endpoint names."""
    out: dict[str, dict[str, float]] = {}
    wanted = {
        ("database", "ours"): "ours",
        ("database", "floor"): "floor",
        ("cache", "ours"): "ours-redis",
    }
    for lock in ("database", "cache"):
        rows = [
            r
            for r in results["overhead"]
            if r["db"] == "postgresql" and r["lock"] == lock and r.get("sync", "on") == "on"
        ]
        plain = next((r for r in rows if r["variant"] == "plain" and r["scenario"] == "none"), None)
        for r in rows:
            name = wanted.get((lock, r["variant"]))
            if plain and name and r["scenario"] in ("first", "replay"):
                out.setdefault(name, {})[r["scenario"]] = r["median_us"] / plain["median_us"]
    from peers import PEERS

    modes = {(p["package"], p["mode"]): name for name, p in PEERS.items()}
    for r in results.get("peers") or []:
        name = modes.get((r["package"], r["mode"]))
        if name and r.get("x_plain") is not None and r["scenario"] in ("first", "replay"):
            out.setdefault(name, {})[r["scenario"]] = r["x_plain"]
    return out


def over_http(ax: Any, results: dict[str, Any], http: dict[str, Any]) -> None:
    """In-process and over HTTP side by side: latency against the unprotected
    endpoint of the same run (HTTP: wrk's p50 at one connection)."""
    inproc = _in_process(results)
    names = [e["name"] for e in http["endpoints"] if e["name"] != "plain"]
    series: list[tuple[str, list[float]]] = [
        ("first, in-process", [inproc.get(n, {}).get("first") or 0 for n in names]),
        ("first, HTTP", [_http(http, n, "first") or 0 for n in names]),
        ("replay, in-process", [inproc.get(n, {}).get("replay") or 0 for n in names]),
        ("replay, HTTP", [_http(http, n, "replay") or 0 for n in names]),
    ]
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        ax.bar(
            [j + i * width for j in range(len(names))],
            values,
            width,
            label=label,
        )
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(
        [j + width * 1.5 for j in range(len(names))], names, rotation=25, ha="right", fontsize=7
    )
    ax.set_ylabel("latency / unprotected endpoint (median)")
    ax.set_title("In-process and over HTTP (gunicorn + wrk), PostgreSQL, sync on")
    ax.legend(fontsize="small")


def _http(http: dict[str, Any], name: str, scenario: str) -> float | None:
    entry: dict[str, Any] = next((e for e in http["endpoints"] if e["name"] == name), {})
    got = entry.get(scenario)
    return float(got["x_plain_p50"]) if got else None


def main(source: str, target: str) -> int:
    results = json.loads(Path(source).read_text())
    # http_run.py's results, when they sit beside (benchmarks/published/http.json).
    http_file = Path(source).with_name("http.json")
    http = json.loads(http_file.read_text()) if http_file.exists() else None
    groups = sorted({(r["db"], r["lock"], r.get("sync", "on")) for r in results["overhead"]})
    panels = len(groups) + bool(results.get("scale")) + bool(results.get("peers")) + bool(http)
    if panels == 0:
        return 0  # nothing to draw (a correctness-only run)
    cols = 2
    rows = (panels + 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 4.5 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax, (db, lock, sync) in zip(flat, groups, strict=False):
        picked = [
            r
            for r in results["overhead"]
            if (r["db"], r["lock"], r.get("sync", "on")) == (db, lock, sync)
        ]
        name = DATABASE_NAMES.get(db, db)
        by_scenario(ax, picked, f"{name}, lock {lock}, synchronous commit {sync}")
    rest = flat[len(groups) :]
    if results.get("scale"):
        by_size(rest.pop(0), results["scale"])
    if results.get("peers"):
        by_package(rest.pop(0), results)
    if http:
        over_http(rest.pop(0), results, http)
    for ax in rest:
        ax.axis("off")
    fig.suptitle(f"django-idempotency benchmark ({results['mode']} run)")
    # Room for the title above the first row of panels.
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / (4.5 * rows)))
    fig.savefig(target, dpi=90)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
