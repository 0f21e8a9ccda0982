"""The blocking socket transport: bodies, keep-alive, stale connections, timeouts, bad servers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

import gateway
from gateway._sync_transport import SocketTransport
from tests.client.test_aio_transport import _replies
from tests.servers.http import LoopbackServer


def test_bodies_and_keep_alive() -> None:
    with LoopbackServer(_replies) as server, httpx.Client(transport=SocketTransport()) as client:
        for _ in range(3):
            response = client.post(server.base_url + "/json", json={"x": 1})
            assert (response.status_code, response.json(), response.headers["x-a"]) == (
                200,
                {"ok": True},
                "1",
            )
        with client.stream("POST", server.base_url + "/chunked") as chunked:
            assert b"".join(chunked.iter_bytes()) == b"data: 1\n\ndata: 2\n\n"
        assert client.get(server.base_url + "/other").status_code == 404
        assert server.connections == 1


def test_read_timeout_and_refused_connection() -> None:
    with LoopbackServer(_replies) as server:
        with httpx.Client(transport=SocketTransport(), timeout=httpx.Timeout(5, read=0.2)) as client:
            with pytest.raises(httpx.ReadTimeout):
                client.post(server.base_url + "/hang")
    with httpx.Client(transport=SocketTransport()) as client, pytest.raises(httpx.ConnectError):
        client.post("http://127.0.0.1:9/json")


@contextmanager
def raw_server(handle: Callable[[socket.socket], None]) -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                handle(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        listener.close()


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)


def test_a_closed_idle_connection_is_replaced_once() -> None:
    served = []

    def once(conn: socket.socket) -> None:
        _read_request(conn)
        served.append(1)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")  # then closes (the with block)

    with raw_server(once) as url, httpx.Client(transport=SocketTransport()) as client:
        assert client.get(url).text == "ok"
        assert client.get(url).text == "ok"
    assert len(served) == 2


def test_malformed_status_line_and_short_body() -> None:
    def garbage(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"SPDY/9 lol\r\n\r\n")

    with raw_server(garbage) as url, gateway.OpenAI(api_key="k", base_url=url, max_retries=0) as client:
        with pytest.raises(gateway.APIConnectionError):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])

    def short(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"id":')

    with raw_server(short) as url, httpx.Client(transport=SocketTransport()) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(url)
