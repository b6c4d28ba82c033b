"""Prometheus metrics of the gateway, served at /metrics (prometheus-client).

Labels carry only bounded, non-identifying values: the connection slug, the MCP method, the tool
name (as accepted in the catalogue; anything else is "other"), the decision, the rule, the
masking class, the upstream failure kind. Never an identity, an argument, SQL or a value.

With `PROMETHEUS_MULTIPROC_DIR` set (before the process starts: prometheus-client picks its
value store at import), every worker process writes its figures to files there and a scrape of
any worker sums them all (`MultiProcessCollector`); unset, one process, one registry.

Cost: prometheus-client's own `inc`/`observe` take 2-10 us each (a lock; in multiprocess mode a
write to a memory-mapped file) and a call makes about twenty, so the hot path only gathers its
figures here in plain dicts and lists (`_Counted`, `_Gathered`: well under a microsecond each;
stage timers bound once), and they are folded into prometheus-client once a second
(`flush_every`, run by the pipeline) and before every scrape of this process: a scrape may miss
another worker's latest second.
"""

from __future__ import annotations

import asyncio
import os
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# Our own registry: no library's metrics mix in (and no name clash with them).
REGISTRY = CollectorRegistry(auto_describe=True)

# Gateway work is sub-millisecond to seconds; the top buckets catch upstream calls and holds.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

CALLS = Counter("wardgate_gateway_calls", "MCP requests answered, by outcome",
                ["connection", "method", "tool", "decision"], registry=REGISTRY)
CALL_SECONDS = Histogram("wardgate_gateway_call_seconds",
                         "Time from the request reaching the gateway to its answer",
                         buckets=_BUCKETS, registry=REGISTRY)
STAGE_SECONDS = Histogram("wardgate_gateway_stage_seconds", "Time spent in each pipeline stage",
                          ["stage"], buckets=_BUCKETS, registry=REGISTRY)
MASKED_CELLS = Counter("wardgate_gateway_masked_cells", "Result cells masked, by PII class",
                       ["connection", "class"], registry=REGISTRY)
DENIALS = Counter("wardgate_gateway_denials", "Refusals, by the rule that refused",
                  ["connection", "rule"], registry=REGISTRY)
UPSTREAM_ERRORS = Counter("wardgate_gateway_upstream_errors",
                          "Upstream failures, by kind (unreachable, timeout, jsonrpc_error...)",
                          ["connection", "kind"], registry=REGISTRY)
OPEN_STREAMS = Gauge("wardgate_gateway_open_streams", "GET streams open now",
                     ["connection"], multiprocess_mode="livesum", registry=REGISTRY)
AUDIT_QUEUE_DEPTH = Gauge("wardgate_audit_queue_depth",
                          "Audit records waiting for the writer's next batch",
                          multiprocess_mode="livesum", registry=REGISTRY)
AUDIT_COMMIT_SECONDS = Histogram("wardgate_audit_commit_seconds",
                                 "Time to commit one batch of audit records",
                                 buckets=_BUCKETS, registry=REGISTRY)
AUDIT_FAILED_BATCHES = Counter("wardgate_audit_failed_batches",
                               "Audit batches that failed to commit (their calls failed closed)",
                               registry=REGISTRY)

# Stage label values: proxy.stages' names, then the handler steps (the two records apart).
HANDLER_STAGES = ("authorize", "hold", "record_decision", "forward", "mask", "record_outcome")

# Methods worth a label of their own; anything else a client sends is "other".
KNOWN_METHODS = frozenset({
    "", "GET", "DELETE", "response", "initialize", "ping", "server/discover", "tools/list",
    "tools/call", "resources/list", "resources/templates/list", "resources/read",
    "resources/subscribe", "resources/unsubscribe", "prompts/list", "prompts/get",
    "completion/complete", "logging/setLevel", "notifications/initialized",
    "notifications/cancelled", "notifications/progress", "notifications/roots/list_changed",
})
_LABEL_SAFE = re.compile(r"[a-z0-9_.:-]{1,64}")
OTHER = "other"


@lru_cache(maxsize=1024)
def bounded(value: str) -> str:
    """A rule or class as a label: our ids are short and lower-case; anything else is other."""
    return value if _LABEL_SAFE.fullmatch(value) else OTHER


class _Gathered:
    """One histogram child's observations since the last flush: counts per bucket and sum.
    Observed and flushed on the event loop's thread."""

    __slots__ = ("child", "bounds", "counts", "total")

    def __init__(self, child: Any) -> None:
        self.child = child
        # prometheus-client's own bounds (+Inf last), so a bucket index here is one there.
        self.bounds: list[float] = list(child._upper_bounds)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        # The first bound >= seconds: the bucket Histogram.observe would pick.
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def flush(self) -> None:
        counts, total = self.counts, self.total
        if not any(counts):
            return
        self.counts, self.total = [0] * len(counts), 0.0
        for bucket, n in zip(self.child._buckets, counts, strict=True):
            if n:
                bucket.inc(n)
        self.child._sum.inc(total)


# Everything gathered in this process, folded into prometheus-client by `flush`.
_flushed: list[Any] = []


def _gather(child: Any) -> Callable[[float], None]:
    gathered = _Gathered(child)
    _flushed.append(gathered)
    return gathered.observe


# The audit queue's depth as last reported, and as last written to the gauge (a sample: set
# once a second, not on every write).
_queue_depth = [0, 0]


def flush() -> None:
    """Fold the gathered figures into prometheus-client's metrics; sample the queue."""
    for gathered in _flushed:
        gathered.flush()
    depth = _queue_depth[0]
    if depth != _queue_depth[1]:
        _queue_depth[1] = depth
        AUDIT_QUEUE_DEPTH.set(depth)


async def flush_every(seconds: float = 1.0) -> None:
    """Run for the life of the gateway (proxy.pipeline)."""
    while True:
        await asyncio.sleep(seconds)
        flush()


_stage_timers: dict[str, Callable[[float], None]] = {}


def stage_timer(name: str) -> Callable[[float], None]:
    """The `observe` of one stage's histogram (looked up once, not per call)."""
    timer = _stage_timers.get(name)
    if timer is None:
        timer = _stage_timers[name] = _gather(STAGE_SECONDS.labels(name))
    return timer


observe_authorize = stage_timer("authorize")
observe_hold = stage_timer("hold")
observe_record_decision = stage_timer("record_decision")
observe_record_outcome = stage_timer("record_outcome")
observe_forward = stage_timer("forward")
observe_mask = stage_timer("mask")


class _Children:
    """label values -> bound child; a dict hit is cheaper than prometheus' labels()."""

    __slots__ = ("metric", "children")

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], Any] = {}

    def get(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.metric.labels(*values)
        return child


class _Counted(_Children):
    """A labelled counter whose increments are gathered here and added by `flush`."""

    __slots__ = ("pending",)

    def __init__(self, metric: Any) -> None:
        super().__init__(metric)
        self.pending: dict[tuple[str, ...], float] = {}
        _flushed.append(self)

    def add(self, values: tuple[str, ...], amount: float = 1.0) -> None:
        self.pending[values] = self.pending.get(values, 0.0) + amount

    def flush(self) -> None:
        if self.pending:
            pending, self.pending = self.pending, {}
            for values, amount in pending.items():
                self.get(*values).inc(amount)


_calls = _Counted(CALLS)
_masked = _Counted(MASKED_CELLS)
_denials = _Counted(DENIALS)
_upstream = _Counted(UPSTREAM_ERRORS)
_streams = _Children(OPEN_STREAMS)
# Slugs that resolved to a connection in this process: only these become a label before
# (or without) resolution, so a client cannot mint label values by inventing slugs.
_known_connections: set[str] = set()


def connection_label(slug: str, resolved: bool) -> str:
    if resolved:
        _known_connections.add(slug)
        return slug
    return slug if slug in _known_connections else OTHER


observe_call = _gather(CALL_SECONDS)
observe_commit = _gather(AUDIT_COMMIT_SECONDS)


def call_finished(*, connection: str, method: str, tool: str, decision: str,
                  reasons: Iterable[dict[str, str]], masking: Iterable[dict[str, Any]],
                  upstream_latency_ms: float | None, upstream_error: bool,
                  seconds: float) -> None:
    """Count one answered request; `tool` must already be bounded (accepted, or other)."""
    if method not in KNOWN_METHODS:
        method = OTHER
    _calls.add((connection, method, tool, decision or "error"))
    observe_call(seconds)
    if upstream_latency_ms is not None:
        observe_forward(upstream_latency_ms / 1000)
    for item in masking:
        count = item.get("count")
        if isinstance(count, int) and count > 0:
            _masked.add((connection, bounded(str(item.get("class", "")))), count)
    if decision == "deny":
        for reason in reasons:
            _denials.add((connection, bounded(reason.get("rule", ""))))
    for reason in reasons:
        rule = reason.get("rule", "")
        if rule.startswith("upstream."):
            _upstream.add((connection, bounded(rule[len("upstream."):])))
    if upstream_error:  # the upstream answered a data request with a JSON-RPC error
        _upstream.add((connection, "jsonrpc_error"))


def stream_opened(connection: str) -> Callable[[], None]:
    """Count an open GET stream; call what is returned when it closes."""
    gauge = _streams.get(connection)
    gauge.inc()
    return gauge.dec


def audit_queue_depth(depth: int) -> None:
    _queue_depth[0] = depth


def audit_batch_committed(seconds: float, size: int, ok: bool) -> None:
    if ok:
        observe_commit(seconds)
    else:
        AUDIT_FAILED_BATCHES.inc()


def process_exiting() -> None:
    """Drop this process's live gauges from the shared directory (multiprocess mode)."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(os.getpid())


# ---------------------------------------------------------------------------- exposition


def _exposition_registry() -> CollectorRegistry:
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    ProcessCollector(registry=REGISTRY)  # this process's CPU and memory
    return REGISTRY


_exposed = _exposition_registry()


def exposition() -> tuple[bytes, str]:
    """The scrape body and its content type."""
    flush()
    return generate_latest(_exposed), CONTENT_TYPE_LATEST
