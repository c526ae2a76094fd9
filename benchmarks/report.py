"""Turns the measurements into the terminal table, JSON, Markdown and targets.

Every latency is also given relative to the unprotected endpoint measured in
the same process ("x plain"): on a shared machine that ratio is what
survives from one run to the next, not the microseconds.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

SCENARIO_TITLES = {
    "none": "(a) no app",
    "first": "(b) first request",
    "replay": "(c) replay",
    "mismatch": "(d) mismatch",
    "in_progress": "(d) in progress",
}


def _find(rows: Iterable[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def with_ratios(rows: list[dict[str, Any]], group: tuple[str, ...]) -> list[dict[str, Any]]:
    """Adds x_plain: median latency over the plain endpoint's of the same group."""
    out = []
    for row in rows:
        base = _find(rows, variant="plain", scenario="none", **{k: row.get(k) for k in group})
        ratio = row["median_us"] / base["median_us"] if base else None
        out.append({**row, "x_plain": ratio})
    return out


def overhead_ratio(
    rows: list[dict[str, Any]], ours: str, floor: str, scenario: str, **group: Any
) -> dict[str, Any] | None:
    """How our added latency compares with the floor's added latency."""
    plain = _find(rows, variant="plain", scenario="none", **group)
    mine = _find(rows, variant=ours, scenario=scenario, **group)
    least = _find(rows, variant=floor, scenario=scenario, **group)
    if not (plain and mine and least):
        return None
    added_mine = mine["median_us"] - plain["median_us"]
    added_floor = least["median_us"] - plain["median_us"]
    return {
        "ours_added_us": added_mine,
        "floor_added_us": added_floor,
        "overhead_ratio": added_mine / added_floor if added_floor > 0 else None,
        "total_ratio": mine["median_us"] / least["median_us"],
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each met (True), missed (False) or unmeasured (None)."""
    out: list[dict[str, Any]] = []
    syncs = sorted(
        {r["sync"] for r in results["overhead"] if r.get("db") == "postgresql"}, reverse=True
    )
    for sync in syncs:
        group = {"db": "postgresql", "lock": "database", "sync": sync}
        rows = [r for r in results["overhead"] if all(r.get(k) == v for k, v in group.items())]
        first = overhead_ratio(rows, "ours", "floor", "first", **group)
        value: float | None = None if first is None else first["overhead_ratio"]
        out.append(
            {
                "name": f"first-request overhead within 1.3x of the floor (PostgreSQL, {sync=})",
                "value": None
                if first is None or value is None
                else f"{value:.2f}x the floor's added latency "
                f"({first['ours_added_us']:.0f} vs {first['floor_added_us']:.0f} us; "
                f"whole request {first['total_ratio']:.2f}x the floor's)",
                "met": None if value is None else value <= 1.3,
                "profile": ("ours", "first", sync),
            }
        )
        plain = _find(rows, variant="plain", scenario="none")
        replay = _find(rows, variant="ours", scenario="replay")
        out.append(
            {
                "name": f"replay cheaper than the unprotected view (PostgreSQL, {sync=})",
                "value": None
                if not (plain and replay)
                else f"replay {replay['median_us'] / plain['median_us']:.2f}x the unprotected one",
                "met": None if not (plain and replay) else replay["median_us"] < plain["median_us"],
                "profile": ("ours", "replay", sync),
            }
        )
    out.append(scale_target(results))
    out.append(peers_target(results))
    return out


def empty_x_plain(rows: list[dict[str, Any]], variant: str, scenario: str) -> float | None:
    """The empty table's figure: the mean of its measurements before and after."""
    values = [
        r["x_plain"]
        for r in rows
        if r["table_rows"] == 0 and r["variant"] == variant and r["scenario"] == scenario
    ]
    return sum(values) / len(values) if values else None


def scale_target(results: dict[str, Any]) -> dict[str, Any]:
    rows = results.get("scale") or []
    sizes = sorted({r["table_rows"] for r in rows})
    name = "per-request cost at 10M rows within 10% of an empty table"
    if len(sizes) < 2:
        return {"name": name, "value": None, "met": None}
    largest = sizes[-1]
    worst = 0.0
    parts = []
    for scenario in ("first", "replay", "mismatch"):
        empty = empty_x_plain(rows, "ours", scenario)
        big = _find(rows, table_rows=largest, variant="ours", scenario=scenario)
        if not (empty and big):
            continue
        # Normalised by the plain endpoint of the same process, so that a
        # noisier minute does not pass for a slower table.
        ratio = big["x_plain"] / empty
        worst = max(worst, ratio)
        parts.append(f"{scenario} {ratio:.3f}x")
    label = f"at {largest:,} rows: " + ", ".join(parts)
    if largest < 10_000_000:
        label += " (10M not measured in this run)"
    return {"name": name, "value": label, "met": worst <= 1.10 if parts else None}


def peers_target(results: dict[str, Any]) -> dict[str, Any]:
    name = "ahead of every peer that is also correct under concurrency (PostgreSQL, first request)"
    peers = results.get("peers") or []
    checks = {(c["package"], c["mode"]): c for c in results.get("correctness") or []}
    # Ours as measured by the peers section: the same way, in the same minutes.
    mine = _find(peers, package="django-idempotency", scenario="first")
    if mine is None or mine.get("x_plain") is None:
        return {"name": name, "value": None, "met": None}
    behind, compared = [], []
    for row in peers:
        if row["package"] == "django-idempotency" or row["scenario"] != "first":
            continue
        check = checks.get((row["package"], row["mode"]))
        if not check or check.get("views_ran") != 1 or row.get("x_plain") is None:
            continue
        label = f"{row['package']} ({row['mode']})"
        compared.append(label)
        if row["x_plain"] <= mine["x_plain"]:
            behind.append(f"{label} {row['x_plain']:.2f}x plain vs ours {mine['x_plain']:.2f}x")
    ours = checks.get((mine["package"], mine["mode"]))
    if ours is not None and ours.get("views_ran") != 1:
        behind.append(f"ours ran the view {ours.get('views_ran')} times under concurrency")
    if not compared:
        return {"name": name, "value": "no peer was correct under concurrency", "met": not behind}
    value = ("behind " + "; ".join(behind)) if behind else f"ahead of {', '.join(compared)}"
    return {"name": name, "value": value, "met": not behind}


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def overhead_table(results: dict[str, Any]) -> list[list[str]]:
    rows = with_ratios(results["overhead"], ("db", "lock", "sync"))
    table = [
        [
            "db",
            "lock",
            "sync",
            "endpoint",
            "scenario",
            "stmts",
            "median us",
            "p99 us",
            "req/s",
            "x plain",
        ]
    ]
    for row in rows:
        table.append(
            [
                row["db"],
                row["lock"],
                row["sync"],
                row["variant"],
                SCENARIO_TITLES[row["scenario"]],
                str(row["statements"]),
                _fmt(row["median_us"], ".0f"),
                _fmt(row["p99_us"], ".0f"),
                _fmt(row["rps"], ".0f"),
                _fmt(row["x_plain"], ".2f"),
            ]
        )
    return table


def floor_table(results: dict[str, Any]) -> list[list[str]]:
    table = [
        [
            "db",
            "lock",
            "sync",
            "ours",
            "scenario",
            "ours added us",
            "floor added us",
            "overhead / floor",
            "request / floor",
        ]
    ]
    groups = sorted({(r["db"], r["lock"], r["sync"]) for r in results["overhead"]})
    for db, lock, sync in groups:
        for ours, floor in (("ours", "floor"), ("ours-atomic", "floor-atomic")):
            for scenario in ("first", "replay", "mismatch", "in_progress"):
                ratio = overhead_ratio(
                    results["overhead"], ours, floor, scenario, db=db, lock=lock, sync=sync
                )
                if ratio is None:
                    continue
                table.append(
                    [
                        db,
                        lock,
                        sync,
                        ours,
                        SCENARIO_TITLES[scenario],
                        _fmt(ratio["ours_added_us"], ".0f"),
                        _fmt(ratio["floor_added_us"], ".0f"),
                        _fmt(ratio["overhead_ratio"], ".2f"),
                        _fmt(ratio["total_ratio"], ".2f"),
                    ]
                )
    return table


def scale_table(results: dict[str, Any]) -> list[list[str]]:
    table = [
        ["records", "endpoint", "scenario", "stmts", "median us", "p99 us", "x plain", "vs empty"]
    ]
    rows = results.get("scale") or []
    for row in rows:
        empty = empty_x_plain(rows, row["variant"], row["scenario"])
        drift = row["x_plain"] / empty if empty and row.get("x_plain") else None
        table.append(
            [
                f"{row['table_rows']:,}" + (f" ({row['phase']})" if row.get("phase") else ""),
                row["variant"],
                SCENARIO_TITLES[row["scenario"]],
                str(row["statements"]),
                _fmt(row["median_us"], ".0f"),
                _fmt(row["p99_us"], ".0f"),
                _fmt(row.get("x_plain"), ".2f"),
                _fmt(drift, ".3f"),
            ]
        )
    return table


def peers_table(results: dict[str, Any]) -> list[list[str]]:
    table = [["package", "mode", "scenario", "stmts", "median us", "p99 us", "x plain", "note"]]
    for row in results.get("peers") or []:
        table.append(
            [
                row["package"],
                row["mode"],
                SCENARIO_TITLES.get(row["scenario"], row["scenario"]),
                _fmt(row.get("statements"), "d"),
                _fmt(row.get("median_us"), ".0f"),
                _fmt(row.get("p99_us"), ".0f"),
                _fmt(row.get("x_plain"), ".2f"),
                row.get("note", ""),
            ]
        )
    return table


def correctness_table(results: dict[str, Any]) -> list[list[str]]:
    table = [
        [
            "package",
            "mode",
            "identical requests at once",
            "views ran",
            "answers",
            "2nd user got 1st user's response",
            "note",
        ]
    ]
    for row in results.get("correctness") or []:
        table.append(
            [
                row["package"],
                row["mode"],
                str(row.get("requests", "-")),
                str(row.get("views_ran", "-")),
                row.get("answers", "-"),
                {True: "YES (leak)", False: "no", None: "-"}[row.get("cross_user_leak")],
                row.get("note", ""),
            ]
        )
    return table


def purge_table(results: dict[str, Any]) -> list[list[str]]:
    table = [
        [
            "expired rows",
            "rows/s deleted",
            "requests served meanwhile",
            "worst request ms",
            "median request ms",
            "note",
        ]
    ]
    for row in results.get("purge") or []:
        table.append(
            [
                f"{row.get('rows', 0):,}",
                _fmt(row.get("rows_per_s"), ".0f"),
                _fmt(row.get("requests"), "d"),
                _fmt(row.get("worst_ms"), ".1f"),
                _fmt(row.get("median_ms"), ".2f"),
                row.get("note", ""),
            ]
        )
    return table


def whatif_table(results: dict[str, Any]) -> list[list[str]]:
    table = [["PostgreSQL, sync off", "first: overhead / floor", "first x plain", "replay x plain"]]
    rows = results.get("whatif") or []
    for label in dict.fromkeys(r["whatif"] for r in rows):
        group = [r for r in rows if r["whatif"] == label]
        first = overhead_ratio(group, "ours", "floor", "first")
        plain = _find(group, variant="plain")
        mine = _find(group, variant="ours", scenario="first")
        replay = _find(group, variant="ours", scenario="replay")
        table.append(
            [
                label,
                _fmt(first and first["overhead_ratio"], ".2f"),
                _fmt(mine and plain and mine["median_us"] / plain["median_us"], ".2f"),
                _fmt(replay and plain and replay["median_us"] / plain["median_us"], ".2f"),
            ]
        )
    return table


def targets_table(results: dict[str, Any]) -> list[list[str]]:
    table = [["target", "result", "met"]]
    for target in targets(results):
        table.append(
            [
                target["name"],
                target["value"] or "not measured",
                {True: "yes", False: "NO", None: "-"}[target["met"]],
            ]
        )
    return table


def sections(results: dict[str, Any]) -> list[tuple[str, list[list[str]]]]:
    out = [
        ("Overhead (in-process WSGI, one INSERT per request)", overhead_table(results)),
        ("Against the floor (added latency over the plain endpoint)", floor_table(results)),
    ]
    if results.get("whatif"):
        out.append(("What if (not shipped; evidence for the missed target)", whatif_table(results)))
    if results.get("scale"):
        sync = results["scale"][0].get("sync")
        title = f"Scale (PostgreSQL, records already in the table, synchronous commit {sync})"
        out.append((title, scale_table(results)))
    if results.get("purge"):
        out.append(("Purge", purge_table(results)))
    if results.get("peers"):
        sync = results["peers"][0].get("sync")
        title = f"Peers (PostgreSQL, same endpoint, synchronous commit {sync})"
        out.append((title, peers_table(results)))
    if results.get("correctness"):
        out.append(
            ("Correctness (gunicorn, separate worker processes)", correctness_table(results))
        )
    out.append(("Targets", targets_table(results)))
    return out


def _cell(text: str) -> str:
    """One line per cell: a traceback in a note keeps only its last line."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return (lines[-1] if lines else "")[:240]


def _plain(table: list[list[str]]) -> str:
    table = [[_cell(c) for c in row] for row in table]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for n, row in enumerate(table):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _markdown(table: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(_cell(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(table[0]), line(["---"] * len(table[0])), *(line(r) for r in table[1:])])


def terminal(results: dict[str, Any]) -> str:
    parts = []
    for title, table in sections(results):
        parts.append(f"\n== {title}\n{_plain(table)}")
    for item in results.get("pending") or []:
        parts.append(f"pending: {item}")
    parts.append(f"\n({results['mode']} run, {results.get('elapsed_s', 0):.0f} s)")
    return "\n".join(parts)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    parts = [
        "## Measured figures",
        "",
        "<!-- Generated by benchmarks/run.py; docs/performance.md includes this file. -->",
        "",
        f"Command: `{results['command']}` ({results['mode']} mode, "
        f"{results.get('elapsed_s', 0):.0f} s). "
        f"Machine: {m.get('cpu', '?')}, {m.get('cpus')} CPUs, {m.get('memory_gb', '?')} GB, "
        f"Python {m.get('python')}, PostgreSQL {m.get('postgresql', '-')}, "
        f"SQLite {m.get('sqlite')}, MariaDB {m.get('mariadb', '-')}, "
        f"load average {m.get('loadavg_at_start', 0):.2f} at start.",
    ]
    for title, table in sections(results):
        parts += ["", f"### {title}", "", _markdown(table)]
    if results.get("pending"):
        parts += ["", "### Pending", ""] + [f"- {p}" for p in results["pending"]]
    for name, text in (results.get("profiles") or {}).items():
        parts += ["", f"### Profile: {name}", "", "```text", text.strip(), "```"]
    return "\n".join(parts) + "\n"


def write_all(results: dict[str, Any], out: Path, python: str, chart: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results = {**results, "targets": targets(results)}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown(results))
    if chart:
        # matplotlib lives in the benchmark's virtualenv only.
        subprocess.run(
            [python, str(HERE / "chart.py"), str(out / "results.json"), str(out / "latency.png")],
            check=True,
        )
