"""The direct-route HTTP/1.1 transport (``api/transport.py``) against small scripted servers
on 127.0.0.1: framing, keep-alive, stale connections, and what each failure says was sent."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from bulk_attach.api.transport import (
    CertificateFailed,
    ConnectFailed,
    ConnectionLost,
    ConnectTimeout,
    HttpPool,
    MalformedAnswer,
    MaybeSent,
    NotSent,
    ReadTimeout,
    origin_of,
)

LIMIT = 1024
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def no_tls() -> ssl.SSLContext:
    raise AssertionError("no TLS context is made for plain http")


def make_pool(*, limit: int = 4, connect: float = 2.0, read: float = 2.0) -> HttpPool:
    return HttpPool(limit=limit, connect_timeout=connect, read_timeout=read, tls=no_tls)


@dataclass
class Server:
    """Answers each request head on a connection with the next of ``answers`` (bytes, or a
    handler that takes over the connection); counts connections and requests."""

    answers: list[bytes | Handler]
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                answer = self.answers.pop(0)
                if callable(answer):
                    await answer(reader, writer)
                    return
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def origin(self) -> tuple[str, str, int]:
        return origin_of("http", "127.0.0.1", self.port)


async def fetch(pool: HttpPool, server: Server, limit: int = LIMIT) -> tuple[int, bytes | None]:
    headers = [("Host", f"127.0.0.1:{server.port}"), ("Content-Length", "0")]
    async with pool.request(server.origin, "POST", "/?A=1&B=%20", headers) as response:
        return response.status, await response.read(limit)


def ok(body: bytes, *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body)
    return head + b"".join(line + b"\r\n" for line in extra) + b"\r\n" + body


async def test_the_request_goes_out_as_given() -> None:
    async with Server([ok(b"{}")]) as server:
        pool = make_pool()
        assert await fetch(pool, server) == (200, b"{}")
        await pool.close()
    assert server.heads == [
        b"POST /?A=1&B=%%20 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 0\r\n\r\n"
        % server.port
    ]


async def test_content_length_chunked_and_close_delimited_bodies() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4;ext=1\r\n{"a"\r\n3\r\n:1}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    closing = b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 3000
    async with Server([ok(b"one"), chunked, closing]) as server:
        pool = make_pool()
        assert await fetch(pool, server) == (200, b"one")
        assert await fetch(pool, server) == (200, b'{"a":1}')
        assert await fetch(pool, server, limit=4096) == (200, b"x" * 3000)
        await pool.close()
    assert server.connections == 1  # kept alive until the close-delimited answer


async def test_a_gzip_body_is_decoded() -> None:
    body = gzip.compress(b'{"RequestId":"R"}')
    async with Server([ok(body, b"Content-Encoding: gzip")]) as server:
        pool = make_pool()
        assert await fetch(pool, server) == (200, b'{"RequestId":"R"}')
        await pool.close()


async def test_keep_alive_reuses_one_connection_and_close_does_not() -> None:
    async with Server([ok(b"1"), ok(b"2"), ok(b"3", b"Connection: close"), ok(b"4")]) as server:
        pool = make_pool()
        for expected in (b"1", b"2", b"3"):
            assert await fetch(pool, server) == (200, expected)
        assert server.connections == 1
        assert await fetch(pool, server) == (200, b"4")
        await pool.close()
    assert server.connections == 2


async def test_a_connection_the_server_closed_while_idle_is_replaced_not_an_error() -> None:
    async def answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(ok(b"first"))  # keep-alive promised, then the server drops it idle
        await writer.drain()

    async with Server([answer_then_close, ok(b"second")]) as server:
        pool = make_pool()
        assert await fetch(pool, server) == (200, b"first")
        for _ in range(20):  # let the close arrive
            await asyncio.sleep(0.01)
        assert await fetch(pool, server) == (200, b"second")
        await pool.close()
    assert server.connections == 2
    assert len(server.heads) == 2  # the first connection never saw a second request


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_is_not_sent() -> None:
    pool = make_pool()
    server = Server([])
    server.port = closed_port()
    with pytest.raises(ConnectFailed) as info:
        await fetch(pool, server)
    assert isinstance(info.value, NotSent)
    assert f"127.0.0.1:{server.port}" in str(info.value)
    assert repr(pool).startswith("<HttpPool 0/4 in use")  # the slot came back
    await pool.close()


async def test_an_unknown_host_is_not_sent() -> None:
    pool = make_pool()
    with pytest.raises(ConnectFailed):
        async with pool.request(("http", "no-such-host.invalid", 80), "POST", "/", []):
            pass
    await pool.close()


async def test_waiting_for_a_slot_past_the_connect_timeout_is_not_sent() -> None:
    release = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.write(ok(b"slow"))
        await writer.drain()

    async with Server([slow, ok(b"next")]) as server:
        pool = make_pool(limit=1, connect=0.2)
        first = asyncio.create_task(fetch(pool, server))
        await asyncio.sleep(0.05)
        with pytest.raises(ConnectTimeout):
            await fetch(pool, server)
        release.set()
        assert await first == (200, b"slow")
        assert repr(pool).startswith("<HttpPool 0/1 in use")
        await pool.close()
    assert len(server.heads) == 1


async def test_no_answer_within_the_read_timeout_may_have_been_sent() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with Server([hang]) as server:
        pool = make_pool(read=0.2)
        with pytest.raises(ReadTimeout) as info:
            await fetch(pool, server)
        assert isinstance(info.value, MaybeSent)
        await pool.close()
    assert len(server.heads) == 1


async def test_a_close_mid_body_is_a_lost_connection() -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"Req')
        await writer.drain()

    async def half_chunk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc")
        await writer.drain()

    for handler in (half, half_chunk):
        async with Server([handler]) as server:
            pool = make_pool()
            with pytest.raises(ConnectionLost):
                await fetch(pool, server)
            assert repr(pool).startswith("<HttpPool 0/4 in use, 0 idle")
            await pool.close()


async def test_a_close_before_any_answer_is_a_lost_connection() -> None:
    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        return

    async with Server([close]) as server:
        pool = make_pool()
        with pytest.raises(ConnectionLost):
            await fetch(pool, server)
        await pool.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"BANANA 200 nope\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ],
)
async def test_answers_that_are_not_http_are_malformed(answer: bytes) -> None:
    async with Server([answer]) as server:
        pool = make_pool()
        with pytest.raises(MalformedAnswer):
            await fetch(pool, server)
        await pool.close()


async def test_an_oversize_body_is_refused_and_the_connection_dropped() -> None:
    big = b"y" * (LIMIT + 1)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(
        b"100\r\n" + b"z" * 256 + b"\r\n" for _ in range(5)
    )
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + big
    bomb = ok(gzip.compress(b"0" * 100_000), b"Content-Encoding: gzip")
    for answer in (ok(big), chunked, closing, bomb, ok(b"e" * LIMIT)):
        async with Server([answer, ok(b"after")]) as server:
            pool = make_pool()
            status, body = await fetch(pool, server)
            assert status == 200
            assert await fetch(pool, server) == (200, b"after")
            await pool.close()
            if body is not None:
                assert body == b"e" * LIMIT  # at the limit is still a body
                assert server.connections == 1
            else:
                assert server.connections == 2  # the refused answer's connection was closed


async def test_interim_answers_are_skipped() -> None:
    async with Server([b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"done")]) as server:
        pool = make_pool()
        assert await fetch(pool, server) == (200, b"done")
        await pool.close()


async def test_a_control_character_in_a_header_is_our_bug_and_nothing_is_sent() -> None:
    async with Server([ok(b"")]) as server:
        pool = make_pool()
        with pytest.raises(ValueError, match="control character"):
            async with pool.request(server.origin, "POST", "/", [("X", "a\r\nY: b")]):
                pass
        await pool.close()
    assert server.heads == []


async def test_cancellation_drops_the_connection_and_frees_the_slot() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with Server([hang, ok(b"ok")]) as server:
        pool = make_pool(limit=1)
        task = asyncio.create_task(fetch(pool, server))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert repr(pool).startswith("<HttpPool 0/1 in use, 0 idle")
        assert await fetch(pool, server) == (200, b"ok")
        await pool.close()


async def test_https_verifies_the_certificate_for_the_host_and_makes_its_context_once() -> None:
    import trustme

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    names: list[str | None] = []
    server_context.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,misc]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(ok(b"tls"))
            await writer.drain()

    async def serve_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    server = await asyncio.start_server(serve_forever, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    made: list[ssl.SSLContext] = []

    def trusting() -> ssl.SSLContext:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        made.append(context)
        return context

    try:
        pool = HttpPool(limit=2, connect_timeout=2, read_timeout=2, tls=trusting)
        for _ in range(2):
            async with pool.request(("https", "localhost", port), "POST", "/", []) as response:
                assert await response.read(LIMIT) == b"tls"
        await pool.close()
        assert len(made) == 1
        assert names == ["localhost"]  # SNI is the host; one handshake, the connection kept

        untrusting = HttpPool(
            limit=2, connect_timeout=2, read_timeout=2, tls=ssl.create_default_context
        )
        with pytest.raises(CertificateFailed) as info:
            async with untrusting.request(("https", "localhost", port), "POST", "/", []):
                pass
        assert isinstance(info.value, NotSent)
        await untrusting.close()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("banner", [b"SSH-2.0-OpenSSH_9.6\r\n", b"220 ftp", b"HTTP/2 200\r\n"])
async def test_a_banner_that_is_not_http_is_malformed_even_when_the_server_closes(
    banner: bytes,
) -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(banner)
        await writer.drain()

    async with Server([greet]) as server:
        pool = make_pool()
        with pytest.raises(MalformedAnswer):
            await fetch(pool, server)
        await pool.close()


async def test_a_close_in_the_middle_of_a_status_line_is_a_lost_connection() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 2")
        await writer.drain()

    async with Server([cut]) as server:
        pool = make_pool()
        with pytest.raises(ConnectionLost):
            await fetch(pool, server)
        await pool.close()
