"""A small, strict HTTP/1.1 client for direct routes: keep-alive pools on ``asyncio.Protocol``.

The API client sends one kind of request (``POST`` with an empty body) and reads one kind of
answer (a small JSON document), so this speaks only what that needs: a request head written
as given, an answer framed by ``Content-Length``, ``Transfer-Encoding: chunked`` or the
connection's close, optionally gzip or deflate encoded; no redirects, no cookies, no proxies
(a proxied route goes through aiohttp, in ``client.py``). It is cheaper per request than
aiohttp, and importing it builds nothing: a TLS context is made on the first https use.

What matters most is what a failure says about the request, so the errors are a tree:
::

    HttpFailure
    ├── NotSent                 nothing was written: the request did not reach the service
    │   ├── ConnectFailed       refused, unreachable, name not resolved, TLS handshake failed
    │   │   └── CertificateFailed   the server's certificate was not trusted
    │   └── ConnectTimeout      no connection (a pool slot, TCP, TLS) within the connect timeout
    └── MaybeSent               the request was written: the service may have acted on it
        ├── ReadTimeout         no byte of the answer within the read timeout
        ├── ConnectionLost      closed or reset before the answer was whole, or its body
        │                       could not be decoded
        └── MalformedAnswer     not HTTP/1.x: status line, headers or chunk framing

A pooled connection the server closed while it was idle (its end of stream already seen) is
discarded before anything is written, and another is taken: not a failure. Once bytes are
written, nothing is ever sent again here: the engine reads back before any re-send.
Exceptions that are not the network's (a bug, a cancellation) go through untouched.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Final

__all__ = [
    "DEFAULT_PORTS",
    "CertificateFailed",
    "ConnectFailed",
    "ConnectTimeout",
    "ConnectionLost",
    "HttpFailure",
    "HttpPool",
    "MalformedAnswer",
    "MaybeSent",
    "NotSent",
    "ReadTimeout",
    "Response",
]

# An idle connection older than this is closed rather than reused (aiohttp's default):
# servers drop idle connections, and one dropped as we write is an ambiguous failure.
KEEPALIVE_SECONDS: Final = 15.0
# The status line and headers of an answer; a longer head is not an API answer.
MAX_HEAD_BYTES: Final = 65536
_READ_SIZE: Final = 65536
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) (\d{3})(?: [^\r\n]*)?")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")
_DIGITS = re.compile(r"[0-9]{1,18}")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class HttpFailure(Exception):
    """A request that did not get a whole HTTP answer. ``str()`` holds no URL and no query."""


class NotSent(HttpFailure):
    """Nothing was written to the server."""


class ConnectFailed(NotSent):
    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"cannot connect to {host}:{port}: {reason}")
        self.host, self.port, self.reason = host, port, reason


class CertificateFailed(ConnectFailed):
    pass


class ConnectTimeout(NotSent):
    pass


class MaybeSent(HttpFailure):
    """The request was written, whole or in part."""


class ReadTimeout(MaybeSent):
    pass


class ConnectionLost(MaybeSent):
    pass


class MalformedAnswer(MaybeSent):
    pass


Origin = tuple[str, str, int]  # scheme, host, port


class _Connection(asyncio.Protocol):
    """One socket: bytes received are buffered; the reader waits for more with a deadline."""

    __slots__ = ("_buffer", "_closed", "_loop", "_transport", "_waiter", "idle_since", "origin")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._closed = False  # end of stream or lost: nothing more will come
        self._waiter: asyncio.Future[bool] | None = None
        self.idle_since = 0.0
        self.origin: Origin = ("", "", 0)

    # --- protocol callbacks ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - a stream socket
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._wake(True)

    def eof_received(self) -> bool:
        self._closed = True
        self._wake(True)
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._wake(True)

    def _wake(self, value: bool) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(value)

    # --- the pool's side ---

    @property
    def reusable(self) -> bool:
        """Open, and nothing unasked arrived while idle (no end of stream, no bytes)."""
        transport = self._transport
        return (
            not self._closed
            and not self._buffer
            and transport is not None
            and not transport.is_closing()
        )

    def write(self, data: bytes) -> None:
        assert self._transport is not None  # noqa: S101 - set by connection_made
        self._transport.write(data)

    def close(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.abort()

    # --- reading an answer ---

    async def _more(self, read_timeout: float) -> bool:
        """Wait for more bytes; False at end of stream. ``ReadTimeout`` after
        ``read_timeout`` seconds without any (aiohttp's ``sock_read``)."""
        if self._closed:
            return False
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(read_timeout, self._wake, False)
        try:
            arrived = await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if not arrived:
            raise ReadTimeout(f"no data within {read_timeout:g} s")
        return bool(self._buffer) or not self._closed

    async def read_head(self, read_timeout: float) -> bytes:
        """The status line and headers, without the blank line that ends them."""
        buffer = self._buffer
        start = 0
        status_checked = False
        while True:
            end = buffer.find(b"\r\n\r\n", start)
            if end >= 0:
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                return head
            if len(buffer) > MAX_HEAD_BYTES:
                raise MalformedAnswer(f"a header section over {MAX_HEAD_BYTES} bytes")
            if not status_checked:  # a banner that is not HTTP is said at once
                status_checked = _check_status_line(buffer)
            start = max(0, len(buffer) - 3)
            if not await self._more(read_timeout):
                raise ConnectionLost(
                    "closed before an answer" if not buffer else "closed in the answer's headers"
                )

    async def read_exactly(self, size: int, read_timeout: float) -> bytes:
        buffer = self._buffer
        while len(buffer) < size:
            if not await self._more(read_timeout):
                raise ConnectionLost(f"closed {size - len(buffer)} bytes before the body's end")
        data = bytes(buffer[:size])
        del buffer[:size]
        return data

    async def read_line(self, read_timeout: float, what: str) -> bytes:
        buffer = self._buffer
        start = 0
        while True:
            end = buffer.find(b"\r\n", start)
            if end >= 0:
                line = bytes(buffer[:end])
                del buffer[: end + 2]
                return line
            if len(buffer) > MAX_HEAD_BYTES:
                raise MalformedAnswer(f"a {what} over {MAX_HEAD_BYTES} bytes")
            start = max(0, len(buffer) - 1)
            if not await self._more(read_timeout):
                raise ConnectionLost(f"closed in a {what}")

    async def read_some(self, read_timeout: float) -> bytes:
        """What has arrived (waiting for some); b"" at end of stream."""
        if not self._buffer and not await self._more(read_timeout):
            return b""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


class _Decoder:
    """Content-Encoding gzip or deflate, bounded: never inflates past ``limit`` + 1 bytes."""

    __slots__ = ("_fed", "_inflate", "_limit")

    def __init__(self, encoding: str, limit: int) -> None:
        # gzip: wbits 16+; deflate: zlib-wrapped (32+ detects the zlib or gzip header).
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else 47)
        self._limit = limit
        self._fed = False

    def feed(self, data: bytes, size: int) -> bytes:
        self._fed = self._fed or bool(data)
        try:
            return self._inflate.decompress(data, self._limit + 1 - size)
        except zlib.error:
            raise ConnectionLost("the body does not decode as its Content-Encoding") from None

    def finish(self) -> None:
        if self._fed and not self._inflate.eof:
            raise ConnectionLost("the body ends before its Content-Encoding does")


class Response:
    """One answer: its status and headers (names lower-case) are read; ``read`` the body."""

    __slots__ = ("_conn", "_done", "_keep_alive", "_pool", "headers", "status")

    _conn: _Connection | None

    def __init__(
        self,
        pool: HttpPool,
        conn: _Connection,
        status: int,
        headers: dict[str, str],
        keep_alive: bool,
    ) -> None:
        self._pool = pool
        self._conn = conn
        self.status = status
        self.headers = headers
        self._keep_alive = keep_alive
        self._done = False  # the body was read whole: the connection may serve again

    async def read(self, limit: int) -> bytes | None:
        """The whole body, or None when it would exceed ``limit`` bytes (decoded)."""
        conn, headers = self._conn, self.headers
        if conn is None:
            raise RuntimeError("the response was released")
        read_timeout = self._pool.read_timeout
        decoder = _decoder_for(headers.get("content-encoding", ""), limit)
        parts: list[bytes] | None
        if self.status in (204, 304):
            parts = []
        elif "transfer-encoding" in headers:
            parts = await _read_chunked(conn, read_timeout, limit, decoder)
        elif "content-length" in headers:
            parts = await _read_sized(conn, read_timeout, limit, decoder, headers)
        else:
            self._keep_alive = False  # delimited by the close: nothing can follow
            parts = await _read_to_close(conn, read_timeout, limit, decoder)
        if parts is None:
            return None
        if decoder is not None:
            decoder.finish()
        self._done = True
        return b"".join(parts)

    def _release(self, failed: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if failed or not self._done or not self._keep_alive:
            conn.close()
            self._pool._returned(None)
        else:
            self._pool._returned(conn)


class _Exchange:
    """``async with pool.request(...) as response``: the connection goes back to the pool
    only when the body was read whole and the answer allows keep-alive."""

    __slots__ = ("_args", "_pool", "_response")

    def __init__(
        self, pool: HttpPool, args: tuple[Origin, str, str, Iterable[tuple[str, str]]]
    ) -> None:
        self._pool = pool
        self._args = args
        self._response: Response | None = None

    async def __aenter__(self) -> Response:
        self._response = await self._pool._exchange(*self._args)
        return self._response

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._response is not None:
            self._response._release(exc_type is not None)


class HttpPool:
    """Keep-alive connections per (scheme, host, port), at most ``limit`` in use at once
    across all of them (as aiohttp's ``TCPConnector(limit=...)``).

    ``connect_timeout`` bounds the wait for a slot plus the TCP and TLS set-up;
    ``read_timeout`` the wait for each piece of the answer. ``tls`` makes the TLS context,
    called once, on the first https connection.
    """

    __slots__ = (
        "_closed",
        "_idle",
        "_in_use",
        "_limit",
        "_loop",
        "_tls",
        "_tls_factory",
        "_waiters",
        "connect_timeout",
        "read_timeout",
    )

    def __init__(
        self,
        *,
        limit: int,
        connect_timeout: float,
        read_timeout: float,
        tls: Callable[[], ssl.SSLContext],
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._tls_factory = tls
        self._tls: ssl.SSLContext | None = None
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def __repr__(self) -> str:
        idle = sum(len(conns) for conns in self._idle.values())
        return (
            f"<HttpPool {self._in_use}/{self._limit} in use, {idle} idle, "
            f"{len(self._waiters)} waiting>"
        )

    def request(
        self, origin: Origin, method: str, target: str, headers: Iterable[tuple[str, str]]
    ) -> _Exchange:
        """Send ``method target`` with exactly ``headers`` (Host among them) and an empty
        body; the answer's status and headers are read when the context is entered."""
        return _Exchange(self, (origin, method, target, headers))

    async def close(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()

    # --- one exchange ---

    async def _exchange(
        self, origin: Origin, method: str, target: str, headers: Iterable[tuple[str, str]]
    ) -> Response:
        head = _request_head(method, target, headers)
        conn = await self._acquire(origin)
        try:
            conn.write(head)
            status, fields, keep_alive = await _read_answer_head(conn, self.read_timeout)
        except BaseException:
            conn.close()
            self._returned(None)
            raise
        return Response(self, conn, status, fields, keep_alive)

    async def _acquire(self, origin: Origin) -> _Connection:
        if self._closed:
            raise RuntimeError("the HttpPool is closed")
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        if self._in_use < self._limit and not self._waiters:
            # The usual case: a slot and (after the first round) an idle connection.
            self._in_use += 1
            conn = self._take_idle(origin, loop.time())
            if conn is not None:
                return conn
            try:
                return await self._connect_within(origin, loop, waited=False)
            except BaseException:
                self._returned(None)
                raise
        return await self._connect_within(origin, loop, waited=True)

    async def _connect_within(
        self, origin: Origin, loop: asyncio.AbstractEventLoop, *, waited: bool
    ) -> _Connection:
        """A slot (if ``waited``: one this call takes, and gives back if it fails) and a
        connection, within the connect timeout."""
        took_slot = False
        try:
            async with asyncio.timeout(self.connect_timeout):
                if waited:
                    await self._wait_for_slot(loop)
                    took_slot = True
                    conn = self._take_idle(origin, loop.time())
                    if conn is not None:
                        return conn
                return await self._connect(origin, loop)
        except BaseException as error:
            if took_slot:
                self._returned(None)
            if isinstance(error, TimeoutError):
                raise ConnectTimeout(
                    f"no connection to {origin[1]}:{origin[2]} within {self.connect_timeout:g} s"
                ) from None
            raise

    async def _wait_for_slot(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._in_use >= self._limit or self._waiters:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif not waiter.cancelled():
                    self._wake_next()  # the slot handed to us goes to the next in line
                raise
            if self._in_use < self._limit:
                break
        self._in_use += 1

    def _wake_next(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _returned(self, conn: _Connection | None) -> None:
        """A slot is free again, and ``conn`` (if any) may serve another request."""
        self._in_use -= 1
        if conn is not None and not self._closed:
            conn.idle_since = conn._loop.time()
            self._idle.setdefault(conn.origin, deque()).append(conn)
        elif conn is not None:
            conn.close()
        self._wake_next()

    def _take_idle(self, origin: Origin, now: float) -> _Connection | None:
        """The most recently used open connection; stale ones are closed on the way."""
        conns = self._idle.get(origin)
        while conns:
            conn = conns.pop()
            if conn.reusable and now - conn.idle_since < KEEPALIVE_SECONDS:
                return conn
            conn.close()
            if now - conn.idle_since >= KEEPALIVE_SECONDS:
                # Older ones are older still.
                for old in conns:
                    old.close()
                conns.clear()
        return None

    async def _connect(self, origin: Origin, loop: asyncio.AbstractEventLoop) -> _Connection:
        scheme, host, port = origin
        context = None
        if scheme == "https":
            if self._tls is None:
                self._tls = self._tls_factory()
            context = self._tls
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(loop),
                host,
                port,
                ssl=context,
                server_hostname=host if context is not None else None,
                # As aiohttp: a name with an unreachable IPv6 address falls back to IPv4
                # after 0.25 s instead of spending the whole connect timeout on it.
                happy_eyeballs_delay=0.25,
            )
        except ssl.SSLCertVerificationError as error:
            raise CertificateFailed(
                host, port, error.verify_message or error.reason or "not trusted"
            ) from None
        except ssl.SSLError as error:
            raise ConnectFailed(
                host, port, f"TLS: {error.reason or type(error).__name__}"
            ) from None
        except OSError as error:  # refused, unreachable, not resolved (gaierror), reset
            raise ConnectFailed(host, port, error.strerror or type(error).__name__) from None
        conn.origin = origin
        return conn


def origin_of(scheme: str, host: str, port: int | None) -> Origin:
    return (scheme, host, port if port is not None else DEFAULT_PORTS[scheme])


def _request_head(method: str, target: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """The request line and headers, as given; a control character anywhere is our bug."""
    lines = [f"{method} {target} HTTP/1.1"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if _FORBIDDEN.search("".join(lines)) or " " in target or ":" in method:
        raise ValueError(
            "Forbidden control character detected in headers. Potential header injection attack."
        )
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8")


async def _read_answer_head(
    conn: _Connection, read_timeout: float
) -> tuple[int, dict[str, str], bool]:
    """Status, headers (lower-case names) and whether the connection may be kept; interim
    1xx answers are skipped."""
    while True:
        head = await conn.read_head(read_timeout)
        status, version, fields = _parse_head(head)
        if status >= 200 or status == 101:
            break
    if status == 101:
        raise MalformedAnswer("a protocol switch (101) that was not asked for")
    connection = fields.get("connection", "").lower()
    keep_alive = ("close" not in connection) if version == 1 else ("keep-alive" in connection)
    return status, fields, keep_alive


def _check_status_line(buffer: bytearray) -> bool:
    """``MalformedAnswer`` when the start of an answer cannot be a status line: whatever
    follows (more text, or the close), the server does not speak HTTP/1.x. True once the
    whole status line was checked."""
    end = buffer.find(b"\r\n")
    if end >= 0:
        if _STATUS_LINE.fullmatch(buffer, 0, end) is None:
            raise MalformedAnswer(f"a bad status line {bytes(buffer[: min(end, 40)])!r}")
        return True
    if not b"HTTP/1.".startswith(buffer[:7]):
        raise MalformedAnswer(f"not an HTTP answer: {bytes(buffer[:40])!r}")
    return False


def _parse_head(head: bytes) -> tuple[int, int, dict[str, str]]:
    lines = head.split(b"\r\n")
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise MalformedAnswer(f"a bad status line {lines[0][:40]!r}")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise MalformedAnswer(f"a bad header line {line[:40]!r}")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        if key in fields:
            if key in ("content-length", "transfer-encoding") and fields[key] != text:
                raise MalformedAnswer(f"conflicting {key} headers")
            if key not in ("content-length", "transfer-encoding"):
                text = f"{fields[key]}, {text}"
        fields[key] = text
    if "transfer-encoding" in fields:
        codings = [c.strip().lower() for c in fields["transfer-encoding"].split(",")]
        if codings != ["chunked"] or "content-length" in fields:
            raise MalformedAnswer(
                f"an unsupported Transfer-Encoding {fields['transfer-encoding']!r}"
            )
    elif "content-length" in fields and _DIGITS.fullmatch(fields["content-length"]) is None:
        raise MalformedAnswer("a Content-Length that is not a number")
    return int(match.group(2)), int(match.group(1)), fields


def _decoder_for(content_encoding: str, limit: int) -> _Decoder | None:
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise ConnectionLost(f"an unsupported Content-Encoding {encoding!r}")
    return _Decoder("deflate" if encoding == "deflate" else "gzip", limit)


async def _read_sized(
    conn: _Connection,
    read_timeout: float,
    limit: int,
    decoder: _Decoder | None,
    headers: dict[str, str],
) -> list[bytes] | None:
    length = int(headers["content-length"])
    if length > limit:
        return None  # refused before it is read
    data = await conn.read_exactly(length, read_timeout)
    if decoder is not None:
        data = decoder.feed(data, 0)
        if len(data) > limit:
            return None
    return [data]


async def _read_to_close(
    conn: _Connection, read_timeout: float, limit: int, decoder: _Decoder | None
) -> list[bytes] | None:
    parts: list[bytes] = []
    size = 0
    while data := await conn.read_some(read_timeout):
        if decoder is not None:
            data = decoder.feed(data, size)
        size += len(data)
        if size > limit:
            return None
        parts.append(data)
    return parts


async def _read_chunked(
    conn: _Connection, read_timeout: float, limit: int, decoder: _Decoder | None
) -> list[bytes] | None:
    parts: list[bytes] = []
    size = 0
    while True:
        line = await conn.read_line(read_timeout, "chunk size line")
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            raise MalformedAnswer("a chunk size that is not hexadecimal")
        length = int(match.group(1), 16)
        if length == 0:
            break
        if decoder is None and size + length > limit:
            return None
        data = await conn.read_exactly(length, read_timeout)
        if await conn.read_exactly(2, read_timeout) != b"\r\n":
            raise MalformedAnswer("a chunk not followed by CRLF")
        if decoder is not None:
            data = decoder.feed(data, size)
        size += len(data)
        if size > limit:
            return None
        parts.append(data)
    while await conn.read_line(read_timeout, "trailer"):  # trailers, up to the blank line
        pass
    return parts
