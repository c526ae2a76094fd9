"""The benchmark suite of django-idempotency (issue 6). One command:

    make bench                 # the full run, by hand (tens of minutes)
    make bench-smoke           # a few hundred requests; CI runs it
    make bench ARGS="--only overhead,peers --scale-rows 1000000"

Every configuration runs in its own process (worker.py) and is measured there
in-process through Django's WSGI handler, interleaved in rounds with the
baselines of the same process: report ratios, never absolute figures, since
the machine is shared. Results go to benchmarks/published/ as JSON, Markdown and
a PNG chart, and a table is printed.

Smoke mode fails (non-zero exit) only when the benchmark itself breaks: an
endpoint answering the wrong status, a worker crashing. Slow figures and
missed targets never fail it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script: its directory is first on sys.path, so the modules beside
# it (report, common, the sections) import by their names.
import report
from common import (
    CREATED,
    CREATED_MARIADB,
    HERE,
    ROOT,
    SCENARIOS,
    drop_mariadb_database,
    drop_pg_database,
    fresh_database,
    fresh_pg_database,
    log,
    mariadb_admin,
    mariadb_reachable,
    pg_admin,
    pg_name,
    pg_reachable,
    tag,
)

BENCH_VENV = HERE / ".venv-bench"
REQUIREMENTS = HERE / "requirements-bench.txt"
SECTIONS = ("overhead", "redis", "whatif", "scale", "purge", "peers", "correctness")
VARIANTS = ["plain", "ours", "ours-atomic", "floor", "floor-atomic"]


def bench_python(args: argparse.Namespace) -> str:
    """The interpreter of the workers: the benchmark's own virtualenv in full
    mode (peers, matplotlib; never the package's dependencies), the current
    one in smoke mode."""
    if args.python:
        given: str = args.python
        return given
    if args.smoke:
        return sys.executable
    python = BENCH_VENV / "bin" / "python"
    stamp = BENCH_VENV / ".installed"
    if not stamp.exists() or stamp.read_text() != REQUIREMENTS.read_text():
        log(f"creating {BENCH_VENV.relative_to(ROOT)} (peers, matplotlib, pyinstrument)")
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True
        )
        stamp.write_text(REQUIREMENTS.read_text())
    return str(python)


class Runner:
    def __init__(self, args: argparse.Namespace, python: str, scratch: Path) -> None:
        self.args = args
        self.python = python
        self.scratch = scratch
        self.sqlite_files = 0

    def config(self, db: str, name: str | None = None, **extra: Any) -> dict[str, Any]:
        if db == "sqlite" and name is None:
            self.sqlite_files += 1
            name = str(self.scratch / f"bench-{self.sqlite_files}.sqlite3")
        return {"db": db, "name": name, **extra}

    def worker(self, config: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
        out = self.scratch / "worker-out.json"
        out.unlink(missing_ok=True)
        env = {
            **os.environ,
            "BENCH_CONFIG": json.dumps(config),
            "BENCH_PLAN": json.dumps(plan),
            "BENCH_OUT": str(out),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
        }
        proc = subprocess.run(
            [self.python, str(HERE / "worker.py")], env=env, capture_output=True, text=True
        )
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(
                f"worker failed ({config}, {plan.get('action', 'measure')}):\n{proc.stderr[-4000:]}"
            )
        measured: dict[str, Any] = json.loads(out.read_text())
        return measured

    def plan(self, variants: list[str], scenarios: list[str]) -> dict[str, Any]:
        return {
            "action": "measure",
            "variants": variants,
            "scenarios": scenarios,
            "block": self.args.block,
            "rounds": self.args.rounds,
            "pool": self.args.pool,
        }


def cache_lock_available() -> bool:
    """Whether the engine honours IDEMPOTENCY['LOCK'] = 'cache' yet.

    The setting is parsed before the engine uses it; measuring a setting the
    engine ignores would publish the database figures twice under two names.
    """
    package = ROOT / "django_idempotency"
    return any(
        "django.core.cache" in path.read_text() and path.name not in ("checks.py", "conf.py")
        for path in package.glob("*.py")
    )


def section_overhead(run: Runner, dbs: list[str], results: dict[str, Any]) -> None:
    for sync in run.args.sync.split(","):
        for db in dbs:
            if db == "mysql" and sync != "on":
                # A server-wide setting on MariaDB (benchsite/settings.py).
                log("MariaDB: durable commits only, skipping synchronous commit off")
                continue
            name = fresh_database(db, "overhead")
            log(f"overhead and floor on {db}, synchronous commit {sync}")
            out = run.worker(
                run.config(db, name, lock="database", sync=sync), run.plan(VARIANTS, SCENARIOS)
            )
            results["overhead"] += tag(out["rows"], db=db, lock="database", sync=sync)


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def section_redis(run: Runner, dbs: list[str], results: dict[str, Any]) -> None:
    if not redis_reachable():
        results["pending"].append("redis: no Redis on 127.0.0.1:6379")
        log("Redis not reachable; skipping the Redis lock")
        return
    if not cache_lock_available():
        results["pending"].append(
            "redis: the engine does not use IDEMPOTENCY['LOCK'] = 'cache' yet "
            "(no django.core.cache use in django_idempotency/); rerun with --only redis"
        )
        log("redis lock: pending (engine does not use it yet)")
        return
    for db in dbs:
        name = fresh_database(db, "redis")
        sync = "on" if db == "mysql" else run.args.sync.split(",")[0]
        log(f"Redis lock on {db}, synchronous commit {sync}")
        out = run.worker(
            run.config(db, name, lock="cache", sync=sync),
            run.plan(["plain", "ours", "ours-atomic", "floor"], SCENARIOS),
        )
        results["overhead"] += tag(out["rows"], db=db, lock="cache", sync=sync)


#: Changes outside the app's code that could close the gap to the floor,
#: measured so that the lead can decide: (label, config extras, plan extras).
WHATIFS = [
    ("as shipped", {}, {}),
    ("server-side binding (prepared statements)", {"server_binding": True}, {}),
    # Migration 0003 already dropped the (state, locked_until) index.
    (
        "without the created_at index (the admin's order)",
        {},
        {"drop_indexes": ["idempotency_created_idx"]},
    ),
]


def section_whatif(run: Runner, have_pg: bool, results: dict[str, Any]) -> None:
    if not have_pg:
        return
    for label, config, plan in WHATIFS:
        name = pg_name("whatif")
        fresh_pg_database(name)
        log(f"what-if on PostgreSQL: {label}")
        out = run.worker(
            run.config("postgresql", name, sync="off", **config),
            {**run.plan(["plain", "ours", "floor"], ["none", "first", "replay"]), **plan},
        )
        drop_pg_database(name)
        results.setdefault("whatif", []).extend(tag(out["rows"], whatif=label))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="a few hundred requests, no peers")
    parser.add_argument("--only", default="", help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument(
        "--db",
        default="sqlite,postgresql,mysql",
        help="databases for overhead: sqlite, postgresql, mysql (MariaDB)",
    )
    parser.add_argument(
        "--sync",
        default="on,off",
        help="synchronous commit: on (durable, as in production), off (CPU cost only), or both",
    )
    parser.add_argument("--block", type=int, default=100, help="requests per block")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds")
    parser.add_argument("--pool", type=int, default=100, help="completed keys replayed")
    parser.add_argument(
        "--scale-rows", default="1000000,10000000", help="pre-existing record counts"
    )
    parser.add_argument(
        "--purge-rows", type=int, default=1_000_000, help="expired records to purge"
    )
    parser.add_argument("--peers", default="", help="only these peers (comma-separated)")
    parser.add_argument("--concurrency", type=int, default=16, help="identical requests at once")
    parser.add_argument("--python", help="interpreter for the workers")
    parser.add_argument(
        "--out",
        help="output directory (default: benchmarks/published; smoke: benchmarks/results/smoke)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench databases")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="update the sections run in an existing results.json, keep the others",
    )
    args = parser.parse_args()
    if args.smoke:
        args.block, args.rounds, args.pool, args.sync = 8, 2, 8, "on"
        sections = ["overhead", "redis"]
    else:
        sections = [s for s in (args.only.split(",") if args.only else SECTIONS) if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")

    started = time.time()
    python = bench_python(args)
    have_pg = pg_reachable()
    dbs = [db for db in args.db.split(",") if db and (db != "postgresql" or have_pg)]
    if "mysql" in dbs and not mariadb_reachable():
        dbs.remove("mysql")
    results: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(["benchmarks/run.py", *sys.argv[1:]]),
        "mode": "smoke" if args.smoke else "full",
        "settings": {"block": args.block, "rounds": args.rounds, "pool": args.pool},
        "overhead": [],
        "scale": [],
        "peers": [],
        "correctness": [],
        "purge": [],
        "profiles": {},
        "pending": [],
    }
    # Full runs publish (docs/performance.md includes published/results.md);
    # smoke runs and --out runs are scratch, ignored by git.
    out = Path(args.out or (HERE / "results" / "smoke" if args.smoke else HERE / "published"))
    if args.merge and (out / "results.json").exists():
        results = merge_base(json.loads((out / "results.json").read_text()), sections, results, dbs)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-idem-") as tmp:
            run = Runner(args, python, Path(tmp))
            if "overhead" in sections:
                section_overhead(run, dbs, results)
            if "redis" in sections:
                section_redis(run, dbs, results)
            if "whatif" in sections:
                section_whatif(run, have_pg, results)
            if "scale" in sections or "purge" in sections:
                import scale

                if "scale" in sections:
                    scale.section(run, have_pg, args, results)
                if "purge" in sections:
                    scale.purge_section(run, have_pg, args, results)
            if "peers" in sections or "correctness" in sections:
                import peers_run

                peers_run.section(run, have_pg, args, sections, results)
            if not args.smoke:
                (out / "results.raw.json").parent.mkdir(parents=True, exist_ok=True)
                (out / "results.raw.json").write_text(json.dumps(results, indent=1))
                profile_missed(run, have_pg, results)
    finally:
        if have_pg and not args.keep:
            for name in sorted(CREATED):
                drop_pg_database(name)
        if not args.keep:
            for name in sorted(CREATED_MARIADB):
                drop_mariadb_database(name)
    results["elapsed_s"] = round(time.time() - started, 1) + results.get("elapsed_before_s", 0)
    # The raw measurements first: a bug in the report must not cost a run.
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.raw.json").write_text(json.dumps(results, indent=1))
    report.write_all(results, out, python=python, chart=not args.smoke)
    if not args.smoke and args.out is None:
        # docs/performance.md shows the chart; MkDocs only serves files in docs/.
        shutil.copyfile(out / "latency.png", ROOT / "docs" / "images" / "benchmark-latency.png")
    print(report.terminal(results))
    log(f"wrote {out}/results.json, results.md{'' if args.smoke else ', latency.png'}")
    return 0


def merge_base(
    old: dict[str, Any], sections: list[str], new: dict[str, Any], dbs: list[str]
) -> dict[str, Any]:
    """The previous results without the rows of the sections about to run
    (for the overhead sections, only those of the databases about to run)."""
    kept = {**old}
    kept["elapsed_before_s"] = old.get("elapsed_s", 0)
    # What the earlier run did not record (e.g. a database it did not use).
    kept["machine"] = {**new["machine"], **old.get("machine", {})}
    kept["command"] = f"{old.get('command')}; then {new['command']}"
    kept["pending"] = []
    kept["profiles"] = {}
    kept.pop("targets", None)
    rerun = {"database"} if "overhead" in sections else set()
    rerun |= {"cache"} if "redis" in sections else set()
    kept["overhead"] = [
        r for r in old["overhead"] if not (r.get("lock") in rerun and r.get("db") in dbs)
    ]
    for name in ("scale", "purge", "peers", "correctness", "whatif"):
        if name in sections:
            kept[name] = []
    return kept


def profile_missed(run: Runner, have_pg: bool, results: dict[str, Any]) -> None:
    """A cProfile of every PostgreSQL path whose target was missed."""
    if not have_pg:
        return
    for target in report.targets(results):
        if target["met"] is not False or not target.get("profile"):
            continue
        variant, scenario, sync = target["profile"]
        name = pg_name("profile")
        fresh_pg_database(name)
        log(f"profiling {variant}/{scenario} (target missed: {target['name']})")
        out = run.worker(
            run.config("postgresql", name, sync=sync),
            {"action": "profile", "variant": variant, "scenario": scenario, "block": 2000},
        )
        results["profiles"][f"{variant}/{scenario}, sync {sync}"] = out["profile"]
        drop_pg_database(name)


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
        info["memory_gb"] = round(int(mem[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        with pg_admin() as conn:
            info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    except Exception:
        pass
    try:
        conn = mariadb_admin()
        with conn.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            info["mariadb"] = cursor.fetchone()[0]
        conn.close()
    except Exception:
        pass
    import sqlite3

    info["sqlite"] = sqlite3.sqlite_version
    info["loadavg_at_start"] = os.getloadavg()[0]
    return info


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:
        print(f"benchmark broken: {exc}", file=sys.stderr)
        sys.exit(1)
