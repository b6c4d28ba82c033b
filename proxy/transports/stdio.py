"""Stdio upstream: MCP servers run as subprocesses the gateway owns, behind a Streamable HTTP face.

`StdioUpstream.send()` has the same shape as `HttpUpstream.send()`: it takes the HTTP method,
headers and body the client sent to /mcp/<slug> and answers with the `UpstreamResponse` a
Streamable HTTP server would have given, so the pipeline never needs to know which transport
is underneath. Each subprocess speaks newline-delimited JSON-RPC on stdin/stdout.

How each protocol revision maps (the era is chosen like the SDK's session manager does, from
the `Mcp-Protocol-Version` header: absent or a handshake revision -> sessions, anything else ->
the 2026-07-28 per-request path, where unknown versions get the -32022 rejection):

* 2025-03-26, 2025-06-18, 2025-11-25 (and 2024-11-05): one subprocess per MCP session. An
  `initialize` POST without `Mcp-Session-Id` starts a process, the session id is minted here
  (`secrets.token_urlsafe`) and returned in `mcp-session-id`; the process lives until DELETE,
  idle reaping, eviction or its own exit. JSON-RPC batches (allowed by 2025-03-26 only) are
  refused with 400, as the official SDK server does.
* 2026-07-28: no initialize, no sessions; every request carries its own `_meta` envelope and
  `server/discover` is an ordinary request (the SDK client probes with it first). The SDK's
  stdio server picks its era from the first request it reads, so a process that first sees an
  enveloped request serves 2026-07-28 for life and needs no handshake from the gateway. Such
  processes form a per-connection pool of *workers*, each leased to exactly one request at a
  time: stdio carries no request id on notifications (log messages, progress), so exclusivity
  is what guarantees that everything a worker emits while leased belongs to that request and
  never to another client's. A worker whose request completes goes back to the pool; one whose
  request is abandoned (client went away - which is cancellation in 2026-07-28) or timed out is
  terminated, because the server will not answer a cancelled request and its late output must
  not reach the next lease. The adapter enforces the HTTP-level checks the stdio server cannot
  see: routing headers must match the body (`Mcp-Method`, `Mcp-Name`, version) and
  notification POSTs are acknowledged with 202 and dropped, as the SDK's HTTP entry does.
  `Mcp-Param-*` headers are not checked against tool schemas here (the body is authoritative).

Responses: a request's POST is answered with `application/json` when the first thing the
process emits for it is its response (and the client accepts JSON); otherwise with
`text/event-stream` carrying every related message and ending with the response. Related, in
a session, means: progress notifications by `progressToken`; list-changed / resource-updated
notifications go to the GET stream (they are session-level); any other server message (log,
sampling/elicitation/roots request) goes to the oldest request still in flight, else to the GET
stream. A GET stream that is not attached buffers up to `GET_BACKLOG` messages.

Limits: `max_sessions` caps live processes (sessions and workers together). At the cap, the
least recently used *idle* process is evicted (idle workers first, they hold no state; a
session's client then gets 404 and, per the spec, starts a new one); when every process is
busy the new session/request is refused with 503 (`upstream.session_limit`). Idle processes
are reaped after `idle_timeout`. A line longer than `max_line_bytes` is discarded; if it was a
response, its request fails with `upstream.message_too_large`. `timeout` is an inactivity
limit (the longest wait for the next message of a request, like httpx's read timeout); a
freshly started process gets `start_timeout` on top for its first answer.

Credentials: `StdioCommand.env` is merged over PATH, HOME and LANG only - never the gateway's
own environment, which holds its secrets. Values of `env` are never logged, and are redacted
from the child's stderr before that is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    InboundLadderRejection,
    classify_inbound_request,
    unsupported_protocol_version_rejection,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from proxy import jsonrpc
from proxy.sse import SseEvent
from proxy.transports.http import UpstreamError, UpstreamResponse

log = logging.getLogger("wardgate.gateway.stdio")

MAX_LINE_BYTES = 16 * 1024 * 1024
DEFAULT_REQUEST_TIMEOUT = 60.0
BASE_ENV_NAMES = ("PATH", "HOME", "LANG")
# Closing stdin is the stdio spec's polite shutdown; SIGTERM and SIGKILL follow for the deaf.
STDIN_CLOSE_GRACE = 1.0
SIGTERM_GRACE = 3.0
# Notifications queued for one request before further ones are dropped (a client that stops
# reading must not make the gateway buffer without bound); responses are never dropped.
REQUEST_BACKLOG = 1000
GET_BACKLOG = 256
STDERR_TAIL_LINES = 20

_READ_CHUNK = 64 * 1024
_PARSE_ERROR = -32700
_INVALID_REQUEST = -32600
_INTERNAL_ERROR = -32603
_UNSUPPORTED_PROTOCOL_VERSION = -32022
# Session-level by nature: the SDK sends these on the standalone channel, never a request's.
_SESSION_LEVEL = frozenset({
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
    "notifications/resources/updated",
})
# How the SDK serialises a response: `{"jsonrpc":"2.0","id":<id>,"result"|"error"`. Used only
# to name the victim of a discarded oversized line, so a miss just means a timeout instead.
_RESPONSE_PREFIX = re.compile(
    rb'^\s*\{\s*"jsonrpc"\s*:\s*"2\.0"\s*,\s*"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")\s*,'
    rb'\s*"(?:result|error)"'
)

Era = Literal["legacy", "modern"]


@dataclass(frozen=True)
class StdioCommand:
    """How to start one upstream: `argv` is exec'd directly (no shell); `env` holds the
    credentials the gateway injects and is the child's only source of secrets."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        # Workers started with other credentials must not be reused after a rotation.
        material = json.dumps([list(self.argv), sorted(self.env.items())])
        return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class StdioProcessInfo:
    """A read-only view of one live upstream process (for operators and tests)."""

    key: str
    pid: int | None
    era: Era
    session_id: str | None
    busy: bool
    idle_seconds: float
    skipped_lines: int
    oversized_lines: int
    dropped_messages: int


# -- small helpers --------------------------------------------------------------------------


def _id_key(value: Any) -> str:
    # JSON text keeps 1 and "1" apart, as JSON-RPC requires.
    return json.dumps(value, separators=(",", ":"))


def _dumps(data: Any) -> bytes:
    # Compact JSON escapes every newline inside strings, so one message is one line.
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _is_response(data: Mapping[str, Any]) -> bool:
    return "method" not in data and "id" in data and ("result" in data or "error" in data)


def _progress_token(data: Mapping[str, Any]) -> str | None:
    params = data.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    if isinstance(token, bool) or not isinstance(token, str | int):
        return None
    return _id_key(token)


def _accepts(headers: Mapping[str, str]) -> tuple[bool, bool]:
    accept = headers.get("accept")
    if not accept:
        return True, True
    types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    wildcard = "*/*" in types
    json_ok = wildcard or "application/json" in types or "application/*" in types
    sse_ok = wildcard or "text/event-stream" in types or "text/*" in types
    return json_ok, sse_ok


def _error_response(
    status: int, code: int, message: str, reason: str, *, id_: Any = None,
    headers: dict[str, str] | None = None, data: dict[str, Any] | None = None,
) -> UpstreamResponse:
    body = _dumps(jsonrpc.error(id_, code, message, {"reason": reason, **(data or {})}))
    all_headers = {"content-type": "application/json"} | (headers or {})
    return UpstreamResponse(status, all_headers, body=body)


def _session_headers(session_id: str | None) -> dict[str, str]:
    return {"mcp-session-id": session_id} if session_id else {}


def _base_env() -> dict[str, str]:
    return {name: os.environ[name] for name in BASE_ENV_NAMES if name in os.environ}


# -- mailboxes and messages -----------------------------------------------------------------


@dataclass(slots=True)
class _Message:
    raw: str
    data: dict[str, Any]


class _End:
    """Marks a GET stream whose session is gone."""


_END = _End()
_Item = _Message | UpstreamError | _End


class _Mailbox:
    """A FIFO the reader task fills and one consumer drains, with a cap on droppable items."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.dropped = 0
        self._items: deque[_Item] = deque()
        self._ready = asyncio.Event()

    def put(self, item: _Item, *, droppable: bool) -> bool:
        if droppable and len(self._items) >= self.cap:
            self.dropped += 1
            return False
        self._items.append(item)
        self._ready.set()
        return True

    async def get(self, timeout: float | None) -> _Item:
        while not self._items:
            self._ready.clear()
            if timeout is None:
                await self._ready.wait()
            else:
                await asyncio.wait_for(self._ready.wait(), timeout)
        return self._items.popleft()


@dataclass(eq=False)
class _Waiter:
    """One client request waiting for its answer from a process."""

    id_key: str
    request_id: Any
    method: str
    progress_key: str | None
    mailbox: _Mailbox = field(default_factory=lambda: _Mailbox(REQUEST_BACKLOG))
    on_answer: Callable[[_Message], None] | None = None


# -- one subprocess -------------------------------------------------------------------------


class _Channel:
    """One upstream subprocess: its pipes, its reader task and the routing of what it says."""

    def __init__(
        self, pool: StdioSessionPool, key: str, command: StdioCommand, era: Era,
        session_id: str | None,
    ) -> None:
        self.pool = pool
        self.key = key
        self.command = command
        self.fingerprint = command.fingerprint()
        self.era: Era = era
        self.session_id = session_id
        self.proc: asyncio.subprocess.Process | None = None
        self.pending: dict[str, _Waiter] = {}
        self.by_progress: dict[str, _Waiter] = {}
        self.get_box = _Mailbox(GET_BACKLOG)
        self.get_attached = False
        self.leased = era == "modern"  # a worker is born for the request that asked for it
        self.fresh = True  # no answer yet: the first one also pays for start-up
        self.starting = True  # not idle (not evictable) before its first request is registered
        self.last_used = time.monotonic()
        self.skipped_lines = 0
        self.oversized_lines = 0
        self.dropped_messages = 0
        self.exit_code: int | None = None
        self.closing = False
        self.finished = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._reader_done = asyncio.Event()
        self._stderr_done = asyncio.Event()
        self._stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        # Longest first, so a secret containing another is redacted whole.
        self._secrets = sorted((v for v in command.env.values() if len(v) >= 4), key=len,
                               reverse=True)

    # lifecycle

    @property
    def alive(self) -> bool:
        return not self.closing and not self.finished.is_set()

    @property
    def idle(self) -> bool:
        return not (self.pending or self.get_attached or self.leased or self.starting)

    @property
    def label(self) -> str:
        pid = self.proc.pid if self.proc else "-"
        return f"{self.key} pid={pid} ({self.era})"

    async def start(self) -> None:
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                # Piped and drained (redacted) rather than inherited: the child's chatter must
                # neither land on the gateway's own stderr nor carry its secrets into our logs.
                stderr=asyncio.subprocess.PIPE,
                env=_base_env() | dict(self.command.env),
                # Own process group: a Ctrl-C meant for the gateway does not hit the children
                # directly, and termination can reach their own children (npx, uvx...).
                start_new_session=os.name == "posix",
            )
        except (OSError, ValueError) as exc:
            self.finished.set()
            raise UpstreamError(
                "upstream.unreachable",
                f"The upstream MCP server could not be started ({type(exc).__name__})",
            ) from exc
        self.starting = False  # the caller registers its request before the next await
        if self.closing:  # closed (e.g. close_all) while it was being started
            self._signal(signal.SIGKILL)
        log.info("started stdio upstream %s", self.label)
        self._tasks = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
            asyncio.create_task(self._watch_exit()),
        ]

    async def close(self, why: str) -> None:
        """Terminate the process: stdin EOF, then SIGTERM, then SIGKILL; returns once it is gone."""
        self.pool._forget(self)
        if self.closing or self.proc is None:
            # Already closing, or still starting: start() kills what it started once it sees
            # `closing`, and the exit watcher (or a failed start) sets `finished`.
            self.closing = True
            await self.finished.wait()
            return
        self.closing = True
        log.info("closing stdio upstream %s: %s", self.label, why)
        proc = self.proc
        if proc.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                proc.stdin.close()
        for sig, grace in ((None, STDIN_CLOSE_GRACE), (signal.SIGTERM, SIGTERM_GRACE),
                           (signal.SIGKILL, None)):
            if sig is not None:
                self._signal(sig)
            try:
                await asyncio.wait_for(asyncio.shield(self.finished.wait()), grace)
                return
            except TimeoutError:
                continue

    def _signal(self, sig: int) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.name == "posix":
                os.killpg(proc.pid, sig)
            else:  # pragma: no cover - no process groups
                proc.send_signal(sig)

    async def _watch_exit(self) -> None:
        assert self.proc is not None
        code = await self.proc.wait()
        # Let the readers take in what the process wrote before it died (its last stderr
        # lines are the likeliest explanation of the exit).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(self._reader_done.wait(), self._stderr_done.wait()), 1.0
            )
        self._finish(code)

    def _finish(self, code: int) -> None:
        if self.finished.is_set():
            return
        self.exit_code = code
        if not self.closing:
            tail = " | ".join(self._stderr_tail)
            log.warning("stdio upstream %s exited with code %s; stderr tail: %s", self.label, code,
                        tail or "(empty)")
        self.pool._forget(self)
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self.proc.stdin.close()
        if self.proc is not None and os.name == "posix" and not self._reader_done.is_set():
            # Someone in the group still holds our stdout (grandchildren of a wrapper such as
            # npx): they would outlive their session. While they live, the group id cannot
            # have been reused, so this signal cannot reach an unrelated process.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        error = UpstreamError(
            "upstream.exited",
            "The upstream MCP session was closed" if self.closing
            else f"The upstream MCP server exited (exit code {code})",
        )
        for waiter in list(self.pending.values()):
            waiter.mailbox.put(error, droppable=False)
        self.pending.clear()
        self.by_progress.clear()
        self.get_box.put(_END, droppable=False)
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self.finished.set()

    # writing

    async def write(self, data: Mapping[str, Any], timeout: float | None) -> None:
        proc = self.proc
        if not self.alive or proc is None or proc.stdin is None:
            raise UpstreamError("upstream.exited", "The upstream MCP server is no longer running")
        line = _dumps(data) + b"\n"
        async with self._write_lock:
            try:
                proc.stdin.write(line)
                # A child that stops reading stdin fills the pipe; do not wait for it forever.
                await asyncio.wait_for(proc.stdin.drain(), timeout)
            except TimeoutError as exc:
                raise UpstreamError("upstream.timeout",
                                    "The upstream MCP server stopped reading its input") from exc
            except (OSError, RuntimeError) as exc:  # broken pipe, transport closed
                raise UpstreamError("upstream.exited",
                                    "The upstream MCP server is no longer running") from exc
        self.last_used = time.monotonic()

    def register(self, data: Mapping[str, Any]) -> _Waiter:
        waiter = _Waiter(_id_key(data["id"]), data["id"], str(data.get("method")),
                         _progress_token(data))
        self.pending[waiter.id_key] = waiter
        if waiter.progress_key is not None:
            self.by_progress[waiter.progress_key] = waiter
        return waiter

    def unregister(self, waiter: _Waiter) -> None:
        if self.pending.get(waiter.id_key) is waiter:
            del self.pending[waiter.id_key]
        if waiter.progress_key is not None and self.by_progress.get(waiter.progress_key) is waiter:
            del self.by_progress[waiter.progress_key]
        self.last_used = time.monotonic()

    # reading

    async def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        limit = self.pool.max_line_bytes
        buffer = bytearray()
        discarding = False  # inside an oversized line, dropping bytes up to its newline
        try:
            while chunk := await stdout.read(_READ_CHUNK):
                start = 0
                while True:
                    newline = chunk.find(b"\n", start)
                    piece = chunk[start:] if newline < 0 else chunk[start:newline]
                    if not discarding:
                        buffer += piece
                        if len(buffer) > limit:
                            self._oversized(bytes(buffer[:512]))
                            buffer.clear()
                            discarding = newline < 0
                        elif newline >= 0:
                            self._dispatch_line(bytes(buffer))
                            buffer.clear()
                    elif newline >= 0:
                        discarding = False
                    if newline < 0:
                        break
                    start = newline + 1
            if buffer and not discarding:
                self._dispatch_line(bytes(buffer))
        except Exception:  # the reader must never die silently and strand the waiters
            log.exception("stdio upstream %s: reader failed", self.label)
        finally:
            self._reader_done.set()
            if not self.closing and not self.finished.is_set():
                self.pool._background(self._after_stdout_eof())

    async def _after_stdout_eof(self) -> None:
        # Usually the process is exiting (the watcher then reports its exit code); one that
        # merely closed stdout can no longer answer anyone, so it is closed.
        try:
            await asyncio.wait_for(asyncio.shield(self.finished.wait()), 1.0)
        except TimeoutError:
            await self.close("stdout closed")

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        stderr = self.proc.stderr
        try:
            while True:
                try:
                    line = await stderr.readline()
                except ValueError:  # a line over the stream limit: skip it, keep draining
                    continue
                if not line:
                    return
                self._stderr_line(line)
        finally:
            self._stderr_done.set()

    def _stderr_line(self, line: bytes) -> None:
        # Redact before truncating, so a secret cut in half cannot slip through.
        text = self._redact(line.decode("utf-8", errors="replace").rstrip())[:2000]
        self._stderr_tail.append(text)
        log.debug("stdio upstream %s stderr: %s", self.label, text)

    def _redact(self, text: str) -> str:
        for value in self._secrets:
            text = text.replace(value, "[redacted]")
        return text

    def _oversized(self, prefix: bytes) -> None:
        self.oversized_lines += 1
        log.warning("stdio upstream %s: discarded a line over %d bytes (%d so far)", self.label,
                    self.pool.max_line_bytes, self.oversized_lines)
        match = _RESPONSE_PREFIX.match(prefix)
        if match is None:
            return
        with contextlib.suppress(ValueError):
            waiter = self.pending.get(_id_key(json.loads(match.group(1))))
            if waiter is not None:
                self.unregister(waiter)
                waiter.mailbox.put(UpstreamError(
                    "upstream.message_too_large",
                    f"The upstream response exceeded {self.pool.max_line_bytes} bytes",
                ), droppable=False)

    def _dispatch_line(self, line: bytes) -> None:
        text = line.strip()
        if not text:
            return
        try:
            data = json.loads(text)
        except ValueError:  # also bad UTF-8
            data = None
        if not isinstance(data, dict):
            self.skipped_lines += 1
            # Length only: the content may be anything, secrets included.
            log.warning("stdio upstream %s: skipped a non-JSON-RPC line of %d bytes (%d so far)",
                        self.label, len(text), self.skipped_lines)
            return
        self.last_used = time.monotonic()
        self._route(_Message(text.decode("utf-8"), data))

    def _route(self, message: _Message) -> None:
        data = message.data
        if _is_response(data):
            waiter = self.pending.get(_id_key(data["id"]))
            if waiter is None:
                self._drop(message, "response to no pending request")
                return
            self.unregister(waiter)
            self.fresh = False
            waiter.mailbox.put(message, droppable=False)
            if waiter.on_answer is not None:
                waiter.on_answer(message)
            return
        method = data.get("method")
        if not isinstance(method, str):
            self._drop(message, "neither a request, a notification nor a response")
            return
        is_request = "id" in data
        box = self._target(method, data)
        if box is None:
            self._drop(message, f"{method} related to no request in flight")
        elif not box.put(message, droppable=not is_request or box is self.get_box):
            self._drop(message, f"{method}: the consumer is not keeping up")

    def _target(self, method: str, data: Mapping[str, Any]) -> _Mailbox | None:
        if self.era == "modern":
            # A worker serves one request at a time, so all it says belongs to that request.
            return next(iter(self.pending.values())).mailbox if self.pending else None
        if method == "notifications/progress":
            params = data.get("params")
            token = params.get("progressToken") if isinstance(params, dict) else None
            waiter = self.by_progress.get(_id_key(token))
            return waiter.mailbox if waiter is not None else None
        if method in _SESSION_LEVEL or not self.pending:
            return self.get_box
        # Stdio carries no related-request id; the longest-running request is the likeliest
        # origin, and within one session any of its streams reaches the same client.
        return next(iter(self.pending.values())).mailbox

    def _drop(self, message: _Message, why: str) -> None:
        self.dropped_messages += 1
        log.debug("stdio upstream %s: dropped a message (%s)", self.label, why)

    def info(self) -> StdioProcessInfo:
        return StdioProcessInfo(
            key=self.key, pid=self.proc.pid if self.proc else None, era=self.era,
            session_id=self.session_id, busy=not self.idle,
            idle_seconds=time.monotonic() - self.last_used, skipped_lines=self.skipped_lines,
            oversized_lines=self.oversized_lines, dropped_messages=self.dropped_messages,
        )


# -- responses ------------------------------------------------------------------------------


@dataclass(slots=True)
class StdioResponse(UpstreamResponse):
    """An `UpstreamResponse` whose `aclose()` also tells the adapter the stream was abandoned."""

    _closer: Callable[[], Awaitable[None]] | None = field(default=None, repr=False)

    async def aclose(self) -> None:
        closer, self._closer = self._closer, None
        if closer is not None:
            await closer()


class _EventStream:
    """The SSE events of one request (ends after its response) or of a session's GET stream."""

    def __init__(
        self, mailbox: _Mailbox, *, first: _Message | None, timeout: float | None,
        on_done: Callable[[], None], on_abandon: Callable[[bool], Awaitable[None]],
    ) -> None:
        self._mailbox = mailbox
        self._first = first
        self._timeout = timeout
        self._on_done = on_done
        self._on_abandon = on_abandon
        self._finished = False

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> SseEvent:
        if self._finished:
            raise StopAsyncIteration
        item: _Item
        if self._first is not None:
            item, self._first = self._first, None
        else:
            try:
                item = await self._mailbox.get(self._timeout)
            except TimeoutError:
                self._finished = True
                await self._on_abandon(True)
                raise UpstreamError("upstream.timeout",
                                    "The upstream MCP server timed out") from None
        if isinstance(item, UpstreamError):
            self._finished = True
            self._on_done()
            raise item
        if isinstance(item, _End):
            self._finished = True
            self._on_done()
            raise StopAsyncIteration
        if _is_response(item.data):
            self._finished = True
            self._on_done()
        return SseEvent(data=item.raw, event="message")

    async def aclose(self) -> None:
        if not self._finished:
            self._finished = True
            await self._on_abandon(False)


_SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache"}


# -- the pool and the upstream --------------------------------------------------------------


class StdioSessionPool:
    """Every stdio upstream process of the gateway: sessions, workers, limits and reaping.

    Bound to the event loop that first uses it (its locks and tasks live there).
    """

    def __init__(
        self, *, max_sessions: int = 100, idle_timeout: float = 900.0, start_timeout: float = 20.0,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT, max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.start_timeout = start_timeout
        self.request_timeout = request_timeout
        self.max_line_bytes = max_line_bytes
        self._channels: dict[_Channel, None] = {}  # insertion-ordered set of live processes
        self._sessions: dict[str, _Channel] = {}
        self._idle_workers: dict[str, list[_Channel]] = {}
        self._admission: asyncio.Lock | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def upstream(self, key: str, command: StdioCommand) -> StdioUpstream:
        return StdioUpstream(self, key, command)

    def processes(self) -> list[StdioProcessInfo]:
        return [channel.info() for channel in list(self._channels)]

    def session_ids(self) -> set[str]:
        """The MCP sessions this pool holds a subprocess for."""
        return set(self._sessions)

    async def close_session(self, session_id: str) -> None:
        channel = self._sessions.get(session_id)
        if channel is not None:
            await channel.close("session closed")

    async def close_all(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        channels = list(self._channels)
        await asyncio.gather(*(c.close("gateway shutting down") for c in channels))
        # Evictions and retirements still in flight: awaited, not cancelled - a close cut short
        # could leave a process that ignores stdin EOF running. Each is bounded by the graces.
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # internals used by StdioUpstream and _Channel

    def _background(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # a task nobody references can be garbage-collected mid-flight
        task.add_done_callback(self._tasks.discard)

    def _forget(self, channel: _Channel) -> None:
        self._channels.pop(channel, None)
        if channel.session_id is not None and self._sessions.get(channel.session_id) is channel:
            del self._sessions[channel.session_id]
        workers = self._idle_workers.get(channel.key)
        if workers and channel in workers:
            workers.remove(channel)

    def _session(self, session_id: str, key: str) -> _Channel | None:
        channel = self._sessions.get(session_id)
        # A session belongs to the connection that opened it; elsewhere it does not exist.
        if channel is None or channel.key != key or not channel.alive:
            return None
        return channel

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap())

    async def _reap(self) -> None:
        interval = max(0.05, min(self.idle_timeout / 4, 30.0))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for channel in list(self._channels):
                if channel.idle and now - channel.last_used > self.idle_timeout:
                    self._forget(channel)
                    self._background(channel.close(f"idle for over {self.idle_timeout:g}s"))

    async def _spawn(
        self, key: str, command: StdioCommand, era: Era, session_id: str | None,
    ) -> _Channel | None:
        """Start a process, evicting an idle one at the cap; None when every process is busy."""
        if self._admission is None:
            self._admission = asyncio.Lock()
        async with self._admission:
            if len(self._channels) >= self.max_sessions:
                victim = self._eviction_candidate()
                if victim is None:
                    return None
                self._forget(victim)
                self._background(victim.close(f"evicted: {self.max_sessions} processes open"))
            channel = _Channel(self, key, command, era, session_id)
            self._channels[channel] = None  # reserve the slot before the slow start
            if session_id is not None:
                self._sessions[session_id] = channel
        try:
            await channel.start()
        except BaseException:
            self._forget(channel)
            raise
        return channel

    def _eviction_candidate(self) -> _Channel | None:
        idle = [c for c in self._channels if c.idle]
        if not idle:
            return None
        # Workers first (they hold no client state), then the least recently used session.
        return min(idle, key=lambda c: (c.era != "modern", c.last_used))

    async def _lease(self, key: str, command: StdioCommand) -> _Channel | None:
        fingerprint = command.fingerprint()
        workers = self._idle_workers.setdefault(key, [])
        while workers:
            channel = workers.pop()  # most recently used: warm, and lets the others idle out
            if channel.alive and channel.fingerprint == fingerprint:
                channel.leased = True
                return channel
            self._background(channel.close("stale worker"))
        return await self._spawn(key, command, "modern", None)

    def _release(self, channel: _Channel) -> None:
        channel.leased = False
        channel.last_used = time.monotonic()
        if channel.alive and channel in self._channels:
            self._idle_workers.setdefault(channel.key, []).append(channel)


class StdioUpstream:
    """The Streamable HTTP face of one connection's stdio server (see the module docstring)."""

    def __init__(self, pool: StdioSessionPool, key: str, command: StdioCommand) -> None:
        self.pool = pool
        self.key = key
        self.command = command

    async def send(
        self, method: str, headers: dict[str, str], body: bytes = b"", *,
        timeout: float | None = None,
    ) -> UpstreamResponse:
        headers = {k.lower(): v for k, v in headers.items()}
        timeout = timeout if timeout is not None else self.pool.request_timeout
        self.pool._ensure_reaper()
        version = headers.get("mcp-protocol-version")
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            return await self._send_modern(method, headers, body, timeout)
        return await self._send_legacy(method, headers, body, timeout)

    # 2024-11-05 .. 2025-11-25: sessions

    async def _send_legacy(
        self, method: str, headers: dict[str, str], body: bytes, timeout: float
    ) -> UpstreamResponse:
        session_id = headers.get("mcp-session-id")
        if method not in ("POST", "GET", "DELETE"):
            return _error_response(405, _INVALID_REQUEST, "Method not allowed", "request.method",
                                   headers={"allow": "GET, POST, DELETE"})
        message: dict[str, Any] = {}
        if method == "POST":
            parsed = self._parse(body)
            if isinstance(parsed, UpstreamResponse):
                return parsed
            message = parsed
            if message.get("method") == "initialize" and "id" in message and not session_id:
                return await self._open_session(message, headers, timeout)
        if not session_id:
            return _error_response(400, _INVALID_REQUEST, "Bad Request: Missing session ID",
                                   "session.missing", id_=message.get("id"))
        channel = self.pool._session(session_id, self.key)
        if channel is None:
            return _error_response(404, _INVALID_REQUEST, "Session not found", "session.unknown",
                                   id_=message.get("id"))
        if method == "DELETE":
            await channel.close("deleted by the client")
            return UpstreamResponse(200, _session_headers(session_id))
        if method == "GET":
            return self._attach_get(channel, headers)
        if "method" in message and "id" in message:
            return await self._request(channel, message, headers, timeout, timeout)
        # A notification, or the client's answer to a server request: fire and forget.
        await channel.write(message, timeout)
        channel.last_used = time.monotonic()
        return UpstreamResponse(202, _session_headers(session_id))

    def _parse(self, body: bytes) -> dict[str, Any] | UpstreamResponse:
        try:
            data = json.loads(body)
        except ValueError:
            return _error_response(400, _PARSE_ERROR, "Parse error: body is not JSON",
                                   "request.malformed_json")
        if isinstance(data, list):
            return _error_response(400, _INVALID_REQUEST, "JSON-RPC batches are not supported",
                                   "request.batch")
        if not isinstance(data, dict) or data.get("jsonrpc") != "2.0" or not (
            isinstance(data.get("method"), str) or _is_response(data)
        ):
            return _error_response(400, _INVALID_REQUEST,
                                   "Body must be one JSON-RPC request, notification or response",
                                   "request.invalid")
        return data

    async def _open_session(
        self, message: dict[str, Any], headers: dict[str, str], timeout: float
    ) -> UpstreamResponse:
        json_ok, sse_ok = _accepts(headers)
        if not (json_ok or sse_ok):
            return _error_response(406, _INVALID_REQUEST, "Not Acceptable", "request.accept")
        session_id = secrets.token_urlsafe(32)
        channel = await self.pool._spawn(self.key, self.command, "legacy", session_id)
        if channel is None:
            return self._too_many(message.get("id"))

        def on_answer(answer: _Message) -> None:
            if "error" in answer.data:  # a refused handshake leaves no session behind
                self.pool._background(channel.close("initialize refused"))

        try:
            response = await self._request(
                channel, message, headers, self.pool.start_timeout + timeout, timeout,
                on_answer=on_answer,
            )
        except BaseException:
            self.pool._background(channel.close("initialize failed"))
            raise
        return response

    def _attach_get(self, channel: _Channel, headers: dict[str, str]) -> UpstreamResponse:
        if not _accepts(headers)[1]:
            return _error_response(406, _INVALID_REQUEST,
                                   "Not Acceptable: the GET stream is text/event-stream",
                                   "request.accept", headers=_session_headers(channel.session_id))
        if channel.get_attached:
            return _error_response(409, _INVALID_REQUEST,
                                   "Conflict: Only one SSE stream is allowed per session",
                                   "session.get_conflict",
                                   headers=_session_headers(channel.session_id))
        channel.get_attached = True

        def detach() -> None:
            channel.get_attached = False
            channel.last_used = time.monotonic()

        async def abandon(_timed_out: bool) -> None:
            detach()

        events = _EventStream(channel.get_box, first=None, timeout=None, on_done=detach,
                              on_abandon=abandon)
        return StdioResponse(200, _SSE_HEADERS | _session_headers(channel.session_id),
                             events=events, _closer=events.aclose)

    # 2026-07-28: one leased worker per request

    async def _send_modern(
        self, method: str, headers: dict[str, str], body: bytes, timeout: float
    ) -> UpstreamResponse:
        if method != "POST":
            return _error_response(405, _INVALID_REQUEST,
                                   "Method not allowed: 2026-07-28 has no sessions or GET stream",
                                   "request.method", headers={"allow": "POST"})
        json_ok, sse_ok = _accepts(headers)
        if not (json_ok or sse_ok):
            return _error_response(406, _INVALID_REQUEST, "Not Acceptable", "request.accept")
        parsed = self._parse(body)
        if isinstance(parsed, UpstreamResponse):
            return parsed
        if "id" not in parsed:
            # No client-to-server notifications exist on this wire (cancelling is closing the
            # stream); a worker holds nothing they could act on. Acknowledge and drop, as the SDK.
            version = headers.get("mcp-protocol-version", "")
            if (rejection := unsupported_protocol_version_rejection(version)) is not None:
                return self._rejection(rejection, None)
            return UpstreamResponse(202, {})
        if _is_response(parsed):
            return _error_response(400, _INVALID_REQUEST,
                                   "2026-07-28 has no server-to-client requests to answer",
                                   "request.invalid", id_=parsed.get("id"))
        if parsed["method"] == "initialize":
            # Would turn a fresh worker into a handshake-era server; refuse as the SDK does.
            return _error_response(
                400, _UNSUPPORTED_PROTOCOL_VERSION,
                "This request uses 2026-07-28, where the initialize handshake is not accepted",
                "protocol.unsupported_version", id_=parsed["id"],
                data={"supported": list(MODERN_PROTOCOL_VERSIONS)},
            )
        verdict = classify_inbound_request(parsed, headers=headers)
        if isinstance(verdict, InboundLadderRejection):
            return self._rejection(verdict, parsed["id"])
        channel = await self.pool._lease(self.key, self.command)
        if channel is None:
            return self._too_many(parsed["id"])
        first_timeout = timeout + (self.pool.start_timeout if channel.fresh else 0.0)
        # A listen stream is quiet until something changes; silence there is not a hang.
        listen = parsed["method"] == "subscriptions/listen"
        if listen and not sse_ok:
            self.pool._release(channel)
            return _error_response(406, _INVALID_REQUEST,
                                   "Not Acceptable: subscriptions/listen answers with a stream",
                                   "request.accept", id_=parsed["id"])
        return await self._request(
            channel, parsed, headers, None if listen else first_timeout,
            None if listen else timeout, stream_now=listen,
        )

    def _rejection(self, rejection: InboundLadderRejection, id_: Any) -> UpstreamResponse:
        body = _dumps(jsonrpc.error(id_, rejection.code, rejection.message, rejection.data))
        status = ERROR_CODE_HTTP_STATUS.get(rejection.code, 400)
        return UpstreamResponse(status, {"content-type": "application/json"}, body=body)

    # shared

    def _too_many(self, id_: Any) -> UpstreamResponse:
        return _error_response(
            503, _INTERNAL_ERROR,
            f"Too many upstream sessions: all {self.pool.max_sessions} are busy; retry later",
            "upstream.session_limit", id_=id_,
        )

    async def _request(
        self, channel: _Channel, message: dict[str, Any], headers: dict[str, str],
        first_timeout: float | None, timeout: float | None, *, stream_now: bool = False,
        on_answer: Callable[[_Message], None] | None = None,
    ) -> UpstreamResponse:
        """Write one request and answer with its JSON response or its SSE stream."""
        json_ok, sse_ok = _accepts(headers)
        session = _session_headers(channel.session_id)
        if not (json_ok or sse_ok):
            self._done(channel)
            return _error_response(406, _INVALID_REQUEST, "Not Acceptable", "request.accept",
                                   headers=session)
        if _id_key(message["id"]) in channel.pending:
            self._done(channel)
            return _error_response(409, _INVALID_REQUEST,
                                   "A request with this id is already in flight on this session",
                                   "request.duplicate_id", id_=message["id"], headers=session)
        waiter = channel.register(message)
        waiter.on_answer = on_answer
        try:
            await channel.write(message, timeout)
        except BaseException:
            channel.unregister(waiter)
            await self._abandon(channel, waiter, timed_out=False)
            raise

        async def abandon(timed_out: bool) -> None:
            await self._abandon(channel, waiter, timed_out=timed_out)

        if stream_now and sse_ok:
            events = _EventStream(waiter.mailbox, first=None, timeout=timeout,
                                  on_done=lambda: self._done(channel), on_abandon=abandon)
            return StdioResponse(200, _SSE_HEADERS | session, events=events, _closer=events.aclose)
        try:
            first = await self._next(waiter, first_timeout)
            if not sse_ok:
                # JSON only: what would have gone on the stream has nowhere to go.
                while not _is_response(first.data):
                    channel.dropped_messages += 1
                    first = await self._next(waiter, timeout)
        except asyncio.CancelledError:
            await abandon(False)
            raise
        except UpstreamError as exc:
            if exc.reason == "upstream.timeout":
                await abandon(True)
            else:
                self._done(channel)
            raise
        if _is_response(first.data) and json_ok:
            self._done(channel)
            status = 200
            error = first.data.get("error")
            code = error.get("code") if isinstance(error, dict) else None
            if channel.era == "modern" and isinstance(code, int):
                # As the SDK's 2026-07-28 HTTP entry: e.g. 404 for METHOD_NOT_FOUND.
                status = ERROR_CODE_HTTP_STATUS.get(code, 200)
            return UpstreamResponse(status, {"content-type": "application/json"} | session,
                                    body=first.raw.encode())
        events = _EventStream(waiter.mailbox, first=first, timeout=timeout,
                              on_done=lambda: self._done(channel), on_abandon=abandon)
        return StdioResponse(200, _SSE_HEADERS | session, events=events, _closer=events.aclose)

    async def _next(self, waiter: _Waiter, timeout: float | None) -> _Message:
        try:
            item = await waiter.mailbox.get(timeout)
        except TimeoutError:
            raise UpstreamError("upstream.timeout", "The upstream MCP server timed out") from None
        if isinstance(item, UpstreamError):
            raise item
        assert isinstance(item, _Message)  # request mailboxes never receive _END
        return item

    def _done(self, channel: _Channel) -> None:
        """The request is over (answered or failed): a worker goes back to its pool."""
        if channel.era == "modern" and channel.leased:
            self.pool._release(channel)

    async def _abandon(self, channel: _Channel, waiter: _Waiter, *, timed_out: bool) -> None:
        channel.unregister(waiter)
        if channel.era == "modern":
            # Cancellation on 2026-07-28 leaves the server silent, so the worker's next output
            # could still be this request's: retire it rather than lend it to someone else.
            channel.leased = False
            if channel.alive:
                self.pool._forget(channel)
                self.pool._background(channel.close("request abandoned or timed out"))
            return
        if timed_out and channel.alive:
            # The gateway gave up as the requester; tell the server so it can stop working. A
            # client that merely disconnects is not cancelling (2025 spec), so that case is silent.
            with contextlib.suppress(UpstreamError):
                await channel.write({
                    "jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": waiter.request_id, "reason": "gateway timeout"},
                }, 5.0)
