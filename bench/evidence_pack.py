"""Evidence-pack build time and peak memory at 100k and 1M audit records, and the audit chain
verification rate.

For each size: a scratch database is created and migrated, N records are generated through the
real record and chain code (`manage.py generate_audit_load`, spread over 30 days), the head is
checkpointed and exported (`audit_checkpoint --export`, as the hourly beat task does), then the
chain is verified in fresh processes: in full with one process, in full split over the default
number of worker processes, and incrementally (from the verified-through marker the full run
left). Then a pack for every control over those 30 days is built in-process (no Celery: the
build itself is measured) in a fresh process, so its peak RSS is the build's alone. The pack's
chain verification (incremental, as in production) runs in a child process during the build;
its peak RSS is reported separately.

    python bench/evidence_pack.py                       # 100k and 1M, temporary SQLite files
    python bench/evidence_pack.py --sizes 100000        # one size
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wardgate python bench/evidence_pack.py
        # PostgreSQL: creates (and drops) databases <name>_bench_<N> beside that one; the
        # database named in the URL is never written
    python bench/evidence_pack.py --keep --workdir /tmp/packbench   # keep the scratch DBs and
        # reuse them on the next run (generating 1M records takes minutes)

Targets (issue 13): verification >= 200,000 records/s; a 1M-record pack in under 20 s (and under
300 MB RSS). The machine's load average is printed with each result: on a shared machine, wall
times vary with it; CPU seconds (this process's and its workers') vary less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
START = "2026-03-01"
DAYS = 30
# The generated records (each build appends a reports.pack_built record of its own).
COUNT_GENERATED = "SELECT COUNT(*) FROM audit_record WHERE event NOT LIKE 'reports.%'"


def _child_build() -> None:
    """Runs in a fresh process: build one pack over the bench period, print measurements."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardgate.settings")
    import django

    django.setup()
    import datetime as dt

    from reports.services import evidence_pack_build, evidence_pack_request

    first = dt.date.fromisoformat(START)
    start = dt.datetime.combine(first, dt.time.min, tzinfo=dt.UTC)
    from django.contrib.auth import get_user_model

    bench_user = get_user_model().objects.get_or_create(username="bench-auditor")[0]
    pack = evidence_pack_request(period_start=start, period_end=start + dt.timedelta(days=DAYS),
                                 created_by=bench_user, enqueue=False)
    stages: dict[str, float] = {}
    last = [time.perf_counter(), ""]

    def progress(percent: int, stage: str, records: int) -> None:
        now = time.perf_counter()
        if last[1]:
            stages[str(last[1])] = stages.get(str(last[1]), 0.0) + now - float(last[0])
        last[0], last[1] = now, stage

    cpu0 = time.process_time()
    began = time.perf_counter()
    pack = evidence_pack_build(pack=pack, progress=progress)
    wall = time.perf_counter() - began
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({
        "status": pack.status, "error": pack.error, "wall_s": wall,
        "cpu_s": time.process_time() - cpu0, "child_cpu_s": kids.ru_utime + kids.ru_stime,
        "peak_rss_mb": own.ru_maxrss / 1024, "child_peak_rss_mb": kids.ru_maxrss / 1024,
        "records": pack.summary.get("records"), "zip_mb": (pack.file_size or 0) / 2**20,
        "chain_ok": pack.summary.get("chain_ok"), "stages": stages,
        "chain_mode": _pack_chain_mode(pack),
    }))


def _pack_chain_mode(pack: Any) -> str:
    """The mode the pack states in chain/verification.json."""
    import zipfile

    from reports.config import reports_config

    try:
        with zipfile.ZipFile(reports_config().pack_dir / pack.file_name) as archive:
            body = json.loads(archive.read("chain/verification.json"))
        return f"{body.get('mode')} ({body.get('mode_reason')})"
    except (OSError, KeyError, ValueError, AttributeError) as exc:
        return f"unknown ({exc})"


def _child_verify(mode: str) -> None:
    """Runs in a fresh process: one verify_log, timed (CPU includes forked range workers)."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wardgate.settings")
    import django

    django.setup()
    from audit.verify import default_workers, verify_log

    workers = 1 if mode == "full-1" else default_workers()
    cpu0 = time.process_time()
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    result = verify_log(incremental=mode == "incremental", workers=workers)
    wall = time.perf_counter() - began
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = (kids.ru_utime + kids.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    print(json.dumps({
        "ok": result.ok, "mode": result.mode, "reason": result.mode_reason, "wall_s": wall,
        "cpu_s": time.process_time() - cpu0 + worker_cpu, "workers": workers,
        "recomputed": result.chain.records_checked, "head_seq": result.chain.head_seq,
        "problems": list(result.problems)[:3], "chain_problem": result.chain.problem,
    }))


def _verify(env: dict[str, str], mode: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child-verify", mode],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"verification ({mode}) failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if not result["ok"]:
        sys.exit(f"verification ({mode}) did not pass: {result}")
    return result


def _scratch_url(base: str | None, size: int, workdir: Path) -> tuple[str, bool]:
    """(url, is_postgres) of the scratch database for one size."""
    if base and base.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(base)
        name = parts.path.lstrip("/") or "wardgate"
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}_bench_{size}", "", "")), True
    return f"sqlite:///{workdir / f'bench_{size}.sqlite3'}", False


def _postgres_admin(url: str, sql: str) -> None:
    import psycopg

    parts = urlsplit(url)
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql)


def _records_in(url: str, is_pg: bool) -> int:
    try:
        if is_pg:
            import psycopg

            with psycopg.connect(url) as conn:
                row = conn.execute(COUNT_GENERATED).fetchone()
        else:
            import sqlite3

            path = url.removeprefix("sqlite:///")
            if not Path(path).exists():
                return 0
            db = sqlite3.connect(path)
            try:
                row = db.execute(COUNT_GENERATED).fetchone()
            finally:
                db.close()
        return int(row[0]) if row else 0
    except Exception:
        return 0


def _manage(env: dict[str, str], *args: str) -> float:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - began


def bench(size: int, base_url: str | None, workdir: Path, keep: bool) -> dict[str, Any]:
    url, is_pg = _scratch_url(base_url, size, workdir)
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "wardgate.settings",
           "WARDGATE_VAR_DIR": str(workdir / f"var_{size}"),
           "WARDGATE_PACK_DIR": str(workdir / f"packs_{size}")}
    have = _records_in(url, is_pg)
    generate_s = None
    if have != size:
        if is_pg:
            name = urlsplit(url).path.lstrip("/")
            _postgres_admin(url, f'DROP DATABASE IF EXISTS "{name}"')
            _postgres_admin(url, f'CREATE DATABASE "{name}"')
        else:
            Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
        _manage(env, "migrate", "--noinput")
        generate_s = _manage(env, "generate_audit_load", str(size), "--start", START, "--days",
                             str(DAYS), "--batch-size", "5000")
    else:
        _manage(env, "migrate", "--noinput")
    _manage(env, "audit_checkpoint", "--export")
    verification = {mode: _verify(env, mode) for mode in ("full-1", "full", "incremental")}
    load_before = os.getloadavg()[0]
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child-build"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the build failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(size=size, database="postgresql" if is_pg else "sqlite",
                  generate_s=generate_s, load_avg=(load_before, os.getloadavg()[0]),
                  verification=verification)
    if not keep and is_pg:
        _postgres_admin(url, f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}"')
    return result


def main() -> None:
    if "--child-build" in sys.argv:
        _child_build()
        return
    if "--child-verify" in sys.argv:
        _child_verify(sys.argv[sys.argv.index("--child-verify") + 1])
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--workdir", default="", help="where scratch SQLite files and packs go")
    parser.add_argument("--keep", action="store_true",
                        help="keep scratch databases (and reuse them when they hold N records)")
    args = parser.parse_args()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="packbench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    base_url = os.environ.get("DATABASE_URL")
    for size in (int(s) for s in args.sizes.split(",") if s.strip()):
        r = bench(size, base_url, workdir, args.keep)
        generated = f"{r['generate_s']:.0f}s" if r["generate_s"] is not None else "reused"
        print(f"{r['size']:>9,} records ({r['database']}): build {r['wall_s']:.1f}s wall, "
              f"{r['cpu_s']:.1f}s CPU + {r['child_cpu_s']:.1f}s CPU verifying the chain; "
              f"peak RSS {r['peak_rss_mb']:.0f} MB (verifier {r['child_peak_rss_mb']:.0f} MB); "
              f"zip {r['zip_mb']:.0f} MB; chain ok {r['chain_ok']}; generated {generated}; "
              f"load avg {r['load_avg'][0]:.1f}->{r['load_avg'][1]:.1f}", flush=True)
        print("    " + ", ".join(f"{k} {v:.1f}s" for k, v in r["stages"].items() if v >= 0.05),
              flush=True)
        for mode, v in r["verification"].items():
            label = {"full-1": "full, 1 process", "full": f"full, {v['workers']} processes",
                     "incremental": "incremental"}[mode]
            print(f"    verification {label}: {v['head_seq'] / v['wall_s']:,.0f} records/s "
                  f"({v['head_seq']:,} records in {v['wall_s']:.2f}s wall, {v['cpu_s']:.2f}s CPU "
                  f"= {v['head_seq'] / max(v['cpu_s'], 1e-9):,.0f} records per CPU-second; "
                  f"{v['recomputed']:,} recomputed; mode {v['mode']})", flush=True)
        print(f"    pack chain verification: {r['chain_mode']}; {r['size']:,}-record build "
              f"{r['wall_s']:.1f}s wall", flush=True)
    if not args.keep and not args.workdir:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
