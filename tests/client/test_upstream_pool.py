"""The core's own upstream pool (``gateway/transports/pool.py``, ``pool_async.py``), over real sockets.

It stands in for the HTTP client's ``send`` on the upstream leg only where the client's own settings
could not change the request, and then must behave as that client would: keep-alive reuse, no reuse
of a connection the server closes, content decoding, the client's TLS context, its connection limit
and pool timeout, redirects. Framing errors, caps and no-hidden-re-send are in ``test_hostile_http.py``,
which runs over this pool too (the default client uses it).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

import gateway
from tests.client.test_hostile_http import OK_BODY, ok
from tests.servers.raw import RawAnswer, RawRequest, RawServer, response

MESSAGES: Any = [{"role": "user", "content": "pool"}]


def create(client: Any) -> Any:
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def test_sequential_calls_share_one_kept_alive_connection() -> None:
    with RawServer(ok) as server:
        client = gateway.OpenAI(base_url=f"{server.base_url}/v1", api_key="sk-pool", max_retries=0)
        for _ in range(3):
            assert create(client).choices[0].message.content == "fine"
    assert [(r.connection, r.index) for r in server.requests] == [(0, 0), (0, 1), (0, 2)]
    first = server.requests[0]
    assert first.headers["host"] == f"127.0.0.1:{server.port}"
    assert first.headers["accept-encoding"] == "gzip, deflate"
    assert first.headers["authorization"] == "Bearer sk-pool"
    assert json.loads(first.body)["messages"] == MESSAGES


def test_keep_alive_works_above_file_descriptor_1024() -> None:
    """The idle check polls (``select`` cannot take a descriptor past FD_SETSIZE, and would have
    made every reused connection look dead in a process with many files open)."""
    import os
    import resource

    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1200:
        pytest.skip("this process may not open 1200 files")
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with RawServer(ok) as server:
            client = gateway.OpenAI(base_url=f"{server.base_url}/v1", api_key="sk-pool", max_retries=0)
            for _ in range(3):
                create(client)
            client.close()
        assert [(r.connection, r.index) for r in server.requests] == [(0, 0), (0, 1), (0, 2)]
    finally:
        for fd in held:
            os.close(fd)


def test_a_connection_the_server_closes_is_not_reused_and_nothing_is_resent() -> None:
    def closing(request: RawRequest) -> RawAnswer:
        headers = {
            "content-type": "application/json",
            "content-length": str(len(OK_BODY)),
            "connection": "close",
        }
        return RawAnswer(response("200 OK", headers, OK_BODY), keep_open=False)

    with RawServer(closing) as server:
        client = gateway.OpenAI(base_url=f"{server.base_url}/v1", api_key="sk-pool", max_retries=0)
        create(client)
        create(client)
    assert [(r.connection, r.index) for r in server.requests] == [(0, 0), (1, 0)]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_an_encoded_body_is_decoded(encoding: str) -> None:
    import zlib

    data = gzip.compress(OK_BODY) if encoding == "gzip" else zlib.compress(OK_BODY)

    def encoded(request: RawRequest) -> RawAnswer:
        headers = {
            "content-type": "application/json",
            "content-length": str(len(data)),
            "content-encoding": encoding,
        }
        return RawAnswer(response("200 OK", headers, data), keep_open=True)

    with RawServer(encoded) as server:
        client = gateway.OpenAI(base_url=f"{server.base_url}/v1", api_key="sk-pool", max_retries=0)
        assert create(client).choices[0].message.content == "fine"


def test_an_encoding_that_was_not_offered_is_a_connection_error() -> None:
    def brotli(request: RawRequest) -> RawAnswer:
        headers = {"content-type": "application/json", "content-length": "4", "content-encoding": "br"}
        return RawAnswer(response("200 OK", headers, b"\x00\x01\x02\x03"))

    with RawServer(brotli) as server:
        client = gateway.OpenAI(base_url=f"{server.base_url}/v1", api_key="sk-pool", max_retries=0)
        with pytest.raises(openai.APIConnectionError, match="content-encoding 'br'"):
            create(client)
    assert len(server.requests) == 1


def test_a_client_with_event_hooks_sends_the_upstream_call_itself() -> None:
    seen: list[str] = []
    hooks = {"request": [lambda request: seen.append(str(request.url))]}
    with RawServer(ok) as server:
        http_client = openai.DefaultHttpxClient(event_hooks=hooks)
        client = gateway.OpenAI(
            base_url=f"{server.base_url}/v1", api_key="sk-pool", max_retries=0, http_client=http_client
        )
        create(client)
    # the SDK's own request and the core's upstream call: the hook sees both, as before the pool
    assert seen == [f"{server.base_url}/v1/chat/completions"] * 2


def test_the_async_client_survives_two_event_loops() -> None:
    with RawServer(ok) as server:
        client = gateway.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="sk-pool", max_retries=0)

        async def two() -> list[str | None]:
            replies = [await create(client), await create(client)]
            return [r.choices[0].message.content for r in replies]

        assert asyncio.run(two()) == ["fine", "fine"]
        assert asyncio.run(two()) == ["fine", "fine"]  # a new loop: the first loop's connection is not reused
    assert [(r.connection, r.index) for r in server.requests] == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_the_connection_limit_waits_then_times_out_on_the_pool() -> None:
    release = threading.Event()

    def slow(request: RawRequest) -> RawAnswer:
        release.wait(10)
        return ok(request)

    with RawServer(slow) as server:
        http_client = openai.DefaultHttpxClient(
            limits=httpx2.Limits(max_connections=1), timeout=httpx2.Timeout(10.0, pool=0.3)
        )
        client = gateway.OpenAI(
            base_url=f"{server.base_url}/v1", api_key="sk-pool", max_retries=0, http_client=http_client
        )
        first: list[Any] = []
        holder = threading.Thread(target=lambda: first.append(create(client)))
        holder.start()
        deadline = time.monotonic() + 5
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(openai.APITimeoutError):
            create(client)
        release.set()
        holder.join(10)
    assert first and first[0].choices[0].message.content == "fine"
    assert len(server.requests) == 1  # the refused call never reached the upstream


def test_a_redirect_is_followed_once_without_resending() -> None:
    def moved(request: RawRequest) -> RawAnswer:
        if request.path.startswith("/old/"):
            location = request.path.replace("/old/", "/new/")
            return RawAnswer(
                response("307 Temporary Redirect", {"location": location, "content-length": "0"}), True
            )
        return ok(request)

    with RawServer(moved) as server:
        client = gateway.OpenAI(base_url=f"{server.base_url}/old/v1", api_key="sk-pool", max_retries=0)
        assert create(client).choices[0].message.content == "fine"
    assert [(r.method, r.path) for r in server.requests] == [
        ("POST", "/old/v1/chat/completions"),
        ("POST", "/new/v1/chat/completions"),
    ]
    assert server.requests[1].body == server.requests[0].body


# --- TLS: the client's own SSL context -----------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class TLSServer:
    """A one-thread HTTPS server answering every request with ``OK_BODY`` (keep-alive)."""

    def __init__(self, cert: Path, key: Path) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        import socket

        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._context = context
        self.requests = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: Any) -> None:
        try:
            conn = self._context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    piece = conn.recv(65536)
                    if not piece:
                        return
                    buffer += piece
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                self.requests += 1
                conn.sendall(ok(None).data)  # type: ignore[arg-type]

    def close(self) -> None:
        self._listener.close()


def test_tls_uses_the_clients_ssl_context(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server = TLSServer(cert, key)
    try:
        url = f"https://127.0.0.1:{server.port}/v1"
        trusting = openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=str(cert)))
        client = gateway.OpenAI(base_url=url, api_key="sk-pool", max_retries=0, http_client=trusting)
        assert create(client).choices[0].message.content == "fine"
        assert create(client).choices[0].message.content == "fine"
        default = gateway.OpenAI(base_url=url, api_key="sk-pool", max_retries=0)
        with pytest.raises(openai.APIConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            create(default)
    finally:
        server.close()
    assert server.requests == 2


def test_tls_with_the_async_client(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server = TLSServer(cert, key)
    try:
        url = f"https://127.0.0.1:{server.port}/v1"

        async def go() -> str | None:
            trusting = openai.DefaultAsyncHttpxClient(verify=ssl.create_default_context(cafile=str(cert)))
            client = gateway.AsyncOpenAI(base_url=url, api_key="sk-pool", max_retries=0, http_client=trusting)
            reply = await create(client)
            await client.close()
            return reply.choices[0].message.content  # type: ignore[no-any-return]

        assert asyncio.run(go()) == "fine"
    finally:
        server.close()
