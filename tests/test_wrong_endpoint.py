"""A whole run pointed at something that is not the ECS API: it stops, says so, and fast.

Each test starts a plain server on 127.0.0.1 (a web page, nginx's 404, an empty 200,
another product's JSON, a server that drops every connection, one that does not speak
HTTP, one that redirects) and runs ``run_job`` with 200 rows against it. The run must
stop as a configuration error (exit 3) naming the endpoint and what it answered, after a
handful of requests: before this, such a run sent 6 reads per row (1200 requests, about
three minutes) and ended with exit 1. Counts of requests are asserted, never durations.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from bulk_attach.api.credentials import Credentials
from bulk_attach.core.outcomes import Status
from bulk_attach.engine.control import StopReason
from bulk_attach.errors import ExitCode
from bulk_attach.files.report import read_report
from bulk_attach.job import JobResult, run_job
from bulk_attach.progress import render_summary
from bulk_attach.settings import AttemptSettings, ClientSettings, RunSettings

ROWS = 200
# The default attempts, with short delays: the delays are not what is tested.
FAST = AttemptSettings(base_delay=0.005, max_delay=0.05, throttle_base_delay=0.005)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

NGINX_404 = (
    "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
    "<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx/1.24.0</center>\r\n"
    "</body>\r\n</html>\r\n"
)


async def welcome_page(request: web.Request) -> web.StreamResponse:
    return web.Response(
        text="<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head></html>",
        content_type="text/html",
    )


async def nginx_404(request: web.Request) -> web.StreamResponse:
    return web.Response(status=404, text=NGINX_404, content_type="text/html")


async def empty_200(request: web.Request) -> web.StreamResponse:
    return web.Response(status=200, body=b"")


async def other_json_api(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok", "data": {"items": [], "total": 0}})


async def other_json_error(request: web.Request) -> web.StreamResponse:
    return web.json_response({"error": "unauthorized", "code": 401}, status=401)


async def redirect(request: web.Request) -> web.StreamResponse:
    return web.Response(status=301, headers={"Location": "https://127.0.0.1:1/"})


async def drop(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.abort()
    await asyncio.sleep(0)
    return web.Response()


@asynccontextmanager
async def web_server(handler: Handler, hits: list[str]) -> AsyncIterator[str]:
    async def counted(request: web.Request) -> web.StreamResponse:
        hits.append(request.method)
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", counted)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def not_http_server(hits: list[str]) -> AsyncIterator[str]:
    """A TCP service that answers every request with a banner, not HTTP."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append("tcp")
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def run_against(endpoint: str, tmp_path: Path, vpcs: int) -> JobResult:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "RegionId,InstanceId,VpcId\n"
        + "".join(f"cn-hangzhou,i-{n:05d},vpc-{n % vpcs}\n" for n in range(ROWS)),
        encoding="utf-8",
    )
    settings = RunSettings(
        input_path=pairs, report_path=tmp_path / "report.csv", rate=None, attempts=FAST
    )
    client = ClientSettings(endpoint=endpoint, read_timeout=5.0)
    return await run_job(settings, client, Credentials("LTAI5tWrongEndpoint01", "secret-x"))


def assert_stopped_as_misconfigured(result: JobResult, endpoint: str, *, said: str) -> None:
    assert result.exit_code == ExitCode.CONFIG
    assert result.stop_reason is StopReason.FATAL
    detail = result.summary["stop_detail"]
    assert endpoint in detail
    assert said in detail
    # The summary the CLI prints carries it, so the user sees why the run stopped.
    assert endpoint in render_summary(result.summary)
    rows = list(read_report(result.report_path))
    assert len(rows) == ROWS
    statuses = Counter(row.status for row in rows)
    assert set(statuses) <= {Status.FAILED, Status.SKIPPED}
    assert statuses[Status.FAILED] <= 16  # at most the rows in flight (the concurrency)


@pytest.mark.parametrize("vpcs", [1, 4, ROWS])
@pytest.mark.parametrize(
    ("handler", "said"),
    [
        (welcome_page, "HTTP 200 (text/html"),
        (nginx_404, "'404 Not Found'"),
        (empty_200, "HTTP 200 (no content type, 0 bytes)"),
        (other_json_api, "HTTP 200 (application/json"),
        (other_json_error, "HTTP 401 (application/json"),
        (redirect, "HTTP 301"),
    ],
    ids=["page", "nginx-404", "empty-200", "json", "json-error", "redirect"],
)
async def test_a_server_that_is_not_the_api_stops_the_run_in_a_few_requests(
    tmp_path: Path, handler: Handler, said: str, vpcs: int
) -> None:
    hits: list[str] = []
    async with web_server(handler, hits) as endpoint:
        result = await run_against(endpoint, tmp_path, vpcs)
    assert_stopped_as_misconfigured(result, endpoint, said=said)
    assert "not the API" in result.summary["stop_detail"]
    assert len(hits) <= 16 + 3  # one wave of reads at most; 1200 before


@pytest.mark.parametrize("vpcs", [1, 4, ROWS])
async def test_a_server_that_drops_every_connection_stops_the_run(
    tmp_path: Path, vpcs: int
) -> None:
    hits: list[str] = []
    async with web_server(drop, hits) as endpoint:
        result = await run_against(endpoint, tmp_path, vpcs)
    assert_stopped_as_misconfigured(result, endpoint, said="lost")
    assert "never reached" in result.summary["stop_detail"]
    assert len(hits) <= 16 + 12


async def test_a_server_that_does_not_speak_http_stops_the_run(tmp_path: Path) -> None:
    hits: list[str] = []
    async with not_http_server(hits) as endpoint:
        result = await run_against(endpoint, tmp_path, 4)
    assert_stopped_as_misconfigured(result, endpoint, said="malformed HTTP answer")
    assert len(hits) <= 16 + 3
