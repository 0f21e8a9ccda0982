"""The asyncio HTTP/1.1 transport: bodies, keep-alive, stale connections, timeouts, bad servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

import gateway
from gateway._aio_transport import AsyncioTransport
from tests.servers.http import Hang, JSONReply, LoopbackServer, Recorded, Reply, SSEReply

MESSAGES = [{"role": "user", "content": "hi"}]


def _replies(rec: Recorded) -> Reply:
    match rec.path:
        case "/json":
            return JSONReply(body={"ok": True}, headers={"x-a": "1"})
        case "/chunked":
            return SSEReply([b"data: 1\n\n", b"data: 2\n\n"])
        case "/hang":
            return Hang(seconds=5)
        case _:
            return JSONReply(status=404, body={"error": {"message": "nope"}})


async def test_bodies_and_keep_alive() -> None:
    with LoopbackServer(_replies) as server:
        async with httpx.AsyncClient(transport=AsyncioTransport()) as client:
            for _ in range(3):
                response = await client.post(server.base_url + "/json", json={"x": 1})
                assert (response.status_code, response.json(), response.headers["x-a"]) == (
                    200,
                    {"ok": True},
                    "1",
                )
            chunked = await client.post(server.base_url + "/chunked")
            assert chunked.content == b"data: 1\n\ndata: 2\n\n"
            missing = await client.get(server.base_url + "/other")
            assert missing.status_code == 404
        assert server.connections == 1
        assert [r.json() for r in server.log[:3]] == [{"x": 1}] * 3


async def test_read_timeout_and_refused_connection() -> None:
    with LoopbackServer(_replies) as server:
        async with httpx.AsyncClient(
            transport=AsyncioTransport(), timeout=httpx.Timeout(5, read=0.2)
        ) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(server.base_url + "/hang")
    async with httpx.AsyncClient(transport=AsyncioTransport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post("http://127.0.0.1:9/json")


async def _raw_server(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_a_closed_idle_connection_is_replaced_once() -> None:
    served = 0

    async def once_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        await reader.readuntil(b"\r\n\r\n")
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()  # the server drops the keep-alive connection after one response
        await writer.wait_closed()

    server, url = await _raw_server(once_per_connection)
    async with server, httpx.AsyncClient(transport=AsyncioTransport()) as client:
        first = await client.get(url)
        await asyncio.sleep(0.1)
        second = await client.get(url)
    assert (first.text, second.text, served) == ("ok", "ok", 2)


# asyncio's server may finalize the handler's socket after the loop closes (a test-server artefact).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_malformed_status_line_is_a_protocol_error() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SPDY/9 lol\r\n\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server, url = await _raw_server(garbage)
    async with server:
        async with gateway.AsyncOpenAI(api_key="k", base_url=url, max_retries=0) as client:
            with pytest.raises(gateway.APIConnectionError):
                await client.chat.completions.create(model="m", messages=MESSAGES)


async def test_a_body_cut_short_is_an_error() -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"id":')
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server, url = await _raw_server(short)
    async with server, httpx.AsyncClient(transport=AsyncioTransport()) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(url)
