"""Where the gateway's CPU goes per `execute_sql` call (static upstream, as in
bench/gateway_overhead.py): gateway CPU per call for a 10-row and a 1,000 x 6 PII result
(several repetitions, from /proc of the gateway process, no profiler attached), the split
between its threads (event loop, audit writer, others), then a cProfile of the event-loop
thread on the CPU clock (time.process_time), top functions by own and by cumulative time.

    python bench/gateway_profile.py [--calls 200] [--reps 5] [--top 25] [--no-profile]
                                    [--compare TREE]

Before/after in one run, under the same load: `git archive <base> | tar -x -C /tmp/base`, then
`--compare /tmp/base --no-profile`.

The gateway runs as its own process (uvicorn, as served), started by this script with a
profiler that SIGUSR1 starts afresh and SIGUSR2 stops and writes out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import pstats
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SIZES = {"10 rows": (10, 6), "1,000 x 6": (1000, 6)}


def serve_profiled(port: int, out_dir: Path) -> None:
    """The gateway under a CPU-clock profiler that signals turn on (USR1) and dump (USR2)."""
    import cProfile

    import uvicorn

    from wardgate.asgi import application  # sets Django up  # isort: skip
    from audit.writer import AuditWriter

    state: dict[str, cProfile.Profile | int | None] = {"profile": None, "writer": None, "n": 0}
    append_batch = AuditWriter._append_batch

    def profiled_append_batch(self: AuditWriter, entries: list) -> list:
        # The writer's own thread: profiled on that thread's CPU clock while a profile runs.
        profile = state["writer"]
        if not isinstance(profile, cProfile.Profile):
            return append_batch(self, entries)
        profile.enable()
        try:
            return append_batch(self, entries)
        finally:
            profile.disable()

    AuditWriter._append_batch = profiled_append_batch  # type: ignore[method-assign]

    def start(*_: object) -> None:
        state["writer"] = cProfile.Profile(time.thread_time)
        profile = cProfile.Profile(time.thread_time)
        state["profile"] = profile
        profile.enable()

    def dump(*_: object) -> None:
        profile, writer = state["profile"], state["writer"]
        if isinstance(profile, cProfile.Profile) and isinstance(writer, cProfile.Profile):
            profile.disable()
            state["profile"] = state["writer"] = None
            n = int(state["n"] or 0) + 1  # type: ignore[arg-type]
            state["n"] = n
            profile.dump_stats(str(out_dir / f"{n}.prof"))
            writer.dump_stats(str(out_dir / f"{n}.writer.prof"))
            (out_dir / f"{n}.done").write_text("")

    def name_threads() -> None:
        written: dict[int | None, str] = {}
        while True:
            names = {t.native_id: t.name for t in threading.enumerate()}
            if names != written:
                (out_dir / "threads.json").write_text(json.dumps(names))
                written = names
            time.sleep(0.5)

    threading.Thread(target=name_threads, name=NAMING_THREAD, daemon=True).start()

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, dump)
    uvicorn.run(application, host="127.0.0.1", port=port, log_level="warning",
                access_log=False)


THREAD_NAMES: dict[str, str] = {}
NAMING_THREAD = "bench-thread-names"  # this script's own thread in the gateway: not counted


def thread_cpu(pid: int, names_file: Path) -> dict[str, float]:
    """CPU seconds per thread name of `pid` (Python's names, from the gateway; threads of one
    name summed, ThreadPoolExecutor numbering dropped)."""
    with contextlib.suppress(OSError, ValueError):  # not written yet, or being written
        THREAD_NAMES.update(json.loads(names_file.read_text()))
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = THREAD_NAMES.get(task.name, "other")
        name = "event loop" if task.name == str(pid) else name.rstrip("_0123456789")
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


async def cpu_per_call(url: str, token: str, pid: int, names: Path, calls: int, sql: str
                       ) -> tuple[float, dict[str, float]]:
    from gateway_overhead import run_calls

    before = thread_cpu(pid, names)
    await run_calls(url, token, calls, 1, sql)
    after = thread_cpu(pid, names)
    split = {k: (after[k] - before.get(k, 0.0)) / calls * 1000 for k in after
             if k != NAMING_THREAD}
    return sum(split.values()), split


def profile_once(pid: int, out_dir: Path, url: str, token: str, calls: int, sql: str,
                 top: int) -> None:
    from gateway_overhead import run_calls

    n = len(list(out_dir.glob("*.done"))) + 1
    os.kill(pid, signal.SIGUSR1)
    time.sleep(0.2)
    asyncio.run(run_calls(url, token, calls, 1, sql))
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while not (out_dir / f"{n}.done").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    for part, top_n in (("event loop", top), ("audit writer", top // 2)):
        print_profile(out_dir / f"{n}{'.writer' if part == 'audit writer' else ''}.prof", part,
                      calls, top_n)


def print_profile(path: Path, part: str, calls: int, top: int) -> None:
    stats = pstats.Stats(str(path), stream=io.StringIO())
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"  profiled {part} CPU (with profiler overhead): {total / calls * 1000:.2f} ms/call")
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        stats.stream = buf  # type: ignore[attr-defined]
        stats.sort_stats(key).print_stats(top)
        lines = buf.getvalue().splitlines()
        start = next(i for i, line in enumerate(lines) if "ncalls" in line)
        print(f"  -- {part}: top {top} by {key}")
        for line in lines[start:start + top + 1]:
            print("  " + line.replace(str(ROOT) + "/", "").replace(sys.prefix, "<venv>"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="calls per repetition (10 rows)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--compare", type=Path, metavar="TREE",
                        help="also measure the gateway of another source tree (e.g. a git "
                             "archive of the base commit), alternating repetitions with this one")
    parser.add_argument("--serve-profiled", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_profiled:
        serve_profiled(int(args.serve_profiled[0]), Path(args.serve_profiled[1]))
        return
    from gateway_overhead import SIZED_SQL, bench_stack, run_calls

    work = Path(tempfile.mkdtemp(prefix="wardgate-profile-"))
    with bench_stack(work) as stack:
        out_dir = work / "profiles"
        out_dir.mkdir()
        port = stack.free_port()
        gateway = stack.spawn([sys.executable, str(Path(__file__).resolve()), "--serve-profiled",
                               str(port), str(out_dir)])
        stack.wait_http(f"http://127.0.0.1:{port}/healthz", gateway, "gateway")
        # (label, pid, url, file naming its threads)
        gateways = [("this tree", gateway.pid, f"http://127.0.0.1:{port}/mcp/static",
                     out_dir / "threads.json")]
        if args.compare:
            # The other tree's gateway, served as usual (uvicorn from that directory), against
            # the same database and upstream; repetitions alternate between the two.
            other_port = stack.free_port()
            other = stack.spawn([sys.executable, "-m", "uvicorn", "wardgate.asgi:application",
                                 "--port", str(other_port), "--log-level", "warning",
                                 "--no-access-log"], cwd=str(args.compare.resolve()))
            stack.wait_http(f"http://127.0.0.1:{other_port}/healthz", other, "compared gateway")
            gateways.append((str(args.compare), other.pid,
                             f"http://127.0.0.1:{other_port}/mcp/static", out_dir / "none.json"))
        print(f"Gateway CPU per execute_sql call (static upstream, {os.cpu_count()} cores, "
              f"{args.reps} repetitions; ms/call)")
        for label, size in SIZES.items():
            sql = SIZED_SQL[size]
            calls = args.calls if size[0] < 1000 else max(10, args.calls // 5)
            figures: dict[str, list[tuple[float, dict[str, float]]]] = {}
            for name, _, url, _ in gateways:
                asyncio.run(run_calls(url, stack.token, 30, 1, sql))  # warm: caches, analysis
                figures[name] = []
            for _ in range(args.reps):
                for name, pid, url, names_file in gateways:
                    figures[name].append(asyncio.run(cpu_per_call(url, stack.token, pid,
                                                                  names_file, calls, sql)))
            print(f"\n[{label}] {calls} sequential calls x {args.reps}")
            for name, _, _, _ in gateways:
                totals = [f[0] for f in figures[name]]
                print(f"  {name}: gateway CPU median {statistics.median(totals):.2f}, "
                      f"min {min(totals):.2f}, max {max(totals):.2f} ms/call  "
                      f"({' '.join(f'{t:.2f}' for t in totals)})")
                threads = sorted({k for f in figures[name] for k in f[1]})
                split = {k: statistics.median(f[1].get(k, 0.0) for f in figures[name])
                         for k in threads}
                print("    by thread (median): " + ", ".join(
                    f"{k} {v:.2f}" for k, v in sorted(split.items(), key=lambda kv: -kv[1])
                    if v))
            if not args.no_profile:
                profile_once(gateway.pid, out_dir, gateways[0][2], stack.token, calls, sql,
                             args.top)

if __name__ == "__main__":
    main()
