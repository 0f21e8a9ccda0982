"""Sending a provider's ``HTTPRequestSpec`` upstream, and the one place transport errors are translated.

The bytes go over the application's own HTTP client (the one the openai SDK was given, or the
SDK's default): an ``httpx2`` client under openai 3.x, an ``httpx`` client under 2.x. The two
packages share one API, so this module works with whichever module the client comes from
(``http_module``). Parsing and framing are that client's (h11 via httpcore/httpcore2); what this
module adds is what a gateway owes its callers:

- headers h11 could not send (control characters such as CR, LF or NUL, non-ASCII) are refused
  before anything is sent (``InvalidHeaderError``, a 400 naming the header, never its value);
- response bodies and single SSE events are capped (``Limits``), so a hostile upstream costs
  bounded memory (a gzip bomb is counted after decompression);
- every exception of the HTTP package becomes ``APITimeoutError`` or ``APIConnectionError``
  (raised ``from`` the original), including malformed framing (a bad chunk size, a non-integer
  content-length: httpcore's ``RemoteProtocolError``), so the attempt loop retries and falls back;
- nothing is re-sent behind the attempt loop's back: the clients' own transports have
  ``retries=0`` (httpcore then retries nothing, not even a connect), and a reused connection that
  closes without answering surfaces as an error of that attempt.

Requests carry the extension ``switchyard: "upstream"``, which Switchyard's mounted transport
(``gateway/sdk/transport.py``) passes straight to the client's own transport.
"""

from __future__ import annotations

import re
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from gateway import _json
from gateway._redact import redact
from gateway.core.errors import APIConnectionError, APIError, APITimeoutError, BadRequestError
from providers.base import HTTPRequestSpec

USER_AGENT = "switchyard/0.1"
UPSTREAM = {"switchyard": "upstream"}


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on what one upstream answer may make the gateway hold (bytes, after decompression)."""

    max_body_bytes: int = 32 * 1024 * 1024
    max_event_bytes: int = 8 * 1024 * 1024


DEFAULT_LIMITS = Limits()


class InvalidHeaderError(BadRequestError):
    """A header that HTTP/1.1 cannot carry (a control character such as CR, LF or NUL, or a character
    outside ASCII): refused before any call. The message names the header, never its value."""

    def __init__(self, name: str, *, in_name: bool = False) -> None:
        where = "name" if in_name else "value"
        message = f"header {name!r} has a {where} with a control or non-ASCII character, which cannot be sent"
        body = {
            "message": message,
            "type": "invalid_request_error",
            "param": f"headers.{name}",
            "code": "invalid_header",
        }
        super().__init__(message, body=body, status_code=400)


class BodyTooLargeError(APIError):
    """An upstream answer larger than ``Limits`` allows: a deployment fault, so it falls back."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"the upstream's {what} exceeded {limit} bytes", None, body=None)


@dataclass(slots=True)
class RawResponse:
    """What the upstream answered to a non-streaming request."""

    status: int
    headers: Any  # the client's Headers
    body: bytes
    http_response: Any  # the client's Response, or the pool's (``PooledResponse``)

    @property
    def http_request(self) -> Any:
        return self.http_response.request


def http_module(client: Any) -> ModuleType:
    """``httpx2`` or ``httpx``: the package the client comes from."""
    return (
        sys.modules[type(client).__module__.partition(".")[0]]
        if _is_http_client(client)
        else _fallback(client)
    )


def _is_http_client(client: Any) -> bool:
    root = type(client).__module__.partition(".")[0]
    return root in ("httpx", "httpx2")


def _fallback(client: Any) -> ModuleType:
    for base in type(client).__mro__:
        root = base.__module__.partition(".")[0]
        if root in ("httpx", "httpx2"):
            return sys.modules[root]
    raise TypeError(f"expected an httpx or httpx2 client, got {type(client).__name__}")


def map_http_error(exc: BaseException, request: Any = None) -> APIError:
    """Translate an exception of httpx or httpx2 into the gateway's error tree."""
    if request is None:
        try:
            request = getattr(exc, "request", None)
        except RuntimeError:
            request = None
    if type(exc).__name__ in _TIMEOUTS:
        return APITimeoutError(request)
    detail = redact(str(exc)) or type(exc).__name__
    return APIConnectionError(message=f"Connection error: {detail}", request=request)


_TIMEOUTS = frozenset({"TimeoutException", "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout"})


# What the HTTP stack raises beyond its own tree, mapped like it (the openai SDK treats any exception
# of a send as a connection error): a socket's OSError, "Event loop is closed" (a RuntimeError).
_STACK_ERRORS: tuple[type[BaseException], ...] = (OSError, RuntimeError)


def _errors(client: Any) -> tuple[type[BaseException], ...]:
    module = http_module(client)
    return (module.HTTPError, module.StreamError, module.InvalidURL, *_STACK_ERRORS)


# What h11 sends: a name is an RFC 9110 token; a value is visible ASCII, with spaces and tabs inside.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*|")


_TOKENS: set[str] = set()  # header names already found to be tokens (names repeat on every call)


def check_headers(headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        if name not in _TOKENS:
            if not _TOKEN.fullmatch(name):
                raise InvalidHeaderError(name.encode("ascii", "backslashreplace").decode(), in_name=True)
            if len(_TOKENS) < 4096:
                _TOKENS.add(name)
        # the common case, without a regex: printable ASCII (tabs and spaces take the full check)
        if value.isprintable() and value.isascii() and value == value.strip():
            continue
        if not _VALUE.fullmatch(value.strip(" \t")):
            raise InvalidHeaderError(name)


def _headers_and_body(
    spec: HTTPRequestSpec, extra_headers: Mapping[str, str]
) -> tuple[dict[str, str], bytes | None]:
    headers = {"user-agent": USER_AGENT, **spec.headers, **extra_headers}
    headers = {k: v for k, v in headers.items() if v is not None}
    check_headers(headers)
    content = _json.dumps_bytes(spec.json) if spec.json is not None else None
    if content is not None:
        headers.setdefault("content-type", "application/json")
    return headers, content


def build_request(client: Any, spec: HTTPRequestSpec, extra_headers: Mapping[str, str], timeout: Any) -> Any:
    headers, content = _headers_and_body(spec, extra_headers)
    module = http_module(client)
    return client.build_request(
        spec.method,
        spec.url,
        headers=headers,
        params=dict(spec.params) or None,
        content=content,
        timeout=to_timeout(module, timeout),
        extensions=dict(UPSTREAM),
    )


def to_timeout(module: ModuleType, value: Any) -> Any:
    """The client module's ``Timeout`` for a float, ``None``, a timeout dict or another package's Timeout."""
    if isinstance(value, module.Timeout):
        return value
    if isinstance(value, Mapping):
        return module.Timeout(**{k: value.get(k) for k in ("connect", "read", "write", "pool")})
    if hasattr(value, "as_dict"):
        return module.Timeout(**value.as_dict())
    return module.Timeout(value)


def _pool_of(client: Any) -> Any:
    """The upstream pool Switchyard's mounted transport keeps for this client, when it may be used."""
    pool_for = getattr(getattr(client, "_transport", None), "upstream_pool", None)
    return pool_for(client) if pool_for is not None else None


def _pooled(client: Any, spec: HTTPRequestSpec, extra_headers: Mapping[str, str]) -> tuple[Any, Any] | None:
    """``(pool, target)`` for a call the pool can make, else ``None`` (the client sends it)."""
    pool = _pool_of(client)
    if pool is None:
        return None
    from gateway.transports import wire11  # with the pool (h11): not at ``import gateway``

    headers, content = _headers_and_body(spec, extra_headers)
    t = wire11.target(spec.method, spec.url, spec.params, headers, client.headers, content, pool.module)
    return None if t is None else (pool, t)


def _open_pooled(client: Any, pool: Any, t: Any, timeout: Any) -> Any:
    """Send through the pool, following redirects as the client would (``follow_redirects``,
    ``max_redirects``); a redirect that cannot be followed is answered as it came."""
    for _ in range(client.max_redirects + 1):
        answer = pool.open(t, timeout)
        following = _redirect(client, t, answer)
        if following is None:
            return answer
        answer.close()
        t = following
    raise _too_many_redirects(client)


async def _aopen_pooled(client: Any, pool: Any, t: Any, timeout: Any) -> Any:
    for _ in range(client.max_redirects + 1):
        answer = await pool.open(t, timeout)
        following = _redirect(client, t, answer)
        if following is None:
            return answer
        await answer.aclose()
        t = following
    raise _too_many_redirects(client)


def _redirect(client: Any, t: Any, answer: Any) -> Any:
    """The request a pooled answer redirects to, when the client would follow it; else ``None``."""
    from gateway.transports import wire11

    if answer.status_code not in wire11.REDIRECTS or not client.follow_redirects:
        return None
    return wire11.redirected(t, answer.status_code, answer.headers)


def _too_many_redirects(client: Any) -> APIConnectionError:
    return APIConnectionError(
        message=f"Connection error: more than {client.max_redirects} redirects", request=None
    )


def send(
    client: Any,
    spec: HTTPRequestSpec,
    *,
    extra_headers: Mapping[str, str] = {},
    timeout: Any,
    limits: Limits | None = None,
) -> RawResponse:
    cap = (limits or DEFAULT_LIMITS).max_body_bytes
    pooled = _pooled(client, spec, extra_headers)
    if pooled is not None:
        answer = _open_pooled(client, pooled[0], pooled[1], timeout)
        try:
            body = _read_capped(answer.iter_bytes(), cap)
        except APIError as exc:
            raise _answered(exc, answer.status_code) from exc.__cause__
        finally:
            answer.close()
        return RawResponse(answer.status_code, answer.headers, body, answer)
    request = build_request(client, spec, extra_headers, timeout)
    errors = _errors(client)
    try:
        response = client.send(request, stream=True)
    except errors as exc:
        raise map_http_error(exc, request) from exc
    try:
        body = _read_capped(response.iter_bytes(), cap)
    except errors as exc:
        raise _answered(map_http_error(exc, request), response.status_code) from exc
    except APIError as exc:
        raise _answered(exc, response.status_code) from exc.__cause__
    finally:
        response.close()
    return RawResponse(response.status_code, response.headers, body, response)


def _answered(exc: APIError, status: int) -> APIError:
    """A body that failed after the upstream answered: a success status says it took the request."""
    if status < 400:
        exc.answered_status = status
    return exc


async def send_async(
    client: Any,
    spec: HTTPRequestSpec,
    *,
    extra_headers: Mapping[str, str] = {},
    timeout: Any,
    limits: Limits | None = None,
) -> RawResponse:
    cap = (limits or DEFAULT_LIMITS).max_body_bytes
    pooled = _pooled(client, spec, extra_headers)
    if pooled is not None:
        answer = await _aopen_pooled(client, *pooled, timeout)
        try:
            body = await _aread_capped(answer.aiter_bytes(), cap)
        except APIError as exc:
            raise _answered(exc, answer.status_code) from exc.__cause__
        finally:
            await answer.aclose()
        return RawResponse(answer.status_code, answer.headers, body, answer)
    request = build_request(client, spec, extra_headers, timeout)
    errors = _errors(client)
    try:
        response = await client.send(request, stream=True)
    except errors as exc:
        raise map_http_error(exc, request) from exc
    try:
        body = await _aread_capped(response.aiter_bytes(), cap)
    except errors as exc:
        raise _answered(map_http_error(exc, request), response.status_code) from exc
    except APIError as exc:
        raise _answered(exc, response.status_code) from exc.__cause__
    finally:
        await response.aclose()
    return RawResponse(response.status_code, response.headers, body, response)


def _read_capped(pieces: Iterator[bytes], limit: int) -> bytes:
    out = bytearray()
    for piece in pieces:
        out += piece
        if len(out) > limit:
            raise BodyTooLargeError("body", limit)
    return bytes(out)


async def _aread_capped(pieces: AsyncIterator[bytes], limit: int) -> bytes:
    out = bytearray()
    async for piece in pieces:
        out += piece
        if len(out) > limit:
            raise BodyTooLargeError("body", limit)
    return bytes(out)


@contextmanager
def open_stream(
    client: Any, spec: HTTPRequestSpec, *, extra_headers: Mapping[str, str] = {}, timeout: Any
) -> Iterator[Any]:
    """Open a streaming response; the body is read by the caller, errors are translated here."""
    pooled = _pooled(client, spec, extra_headers)
    if pooled is not None:
        answer = _open_pooled(client, pooled[0], pooled[1], timeout)
        try:
            yield answer
        finally:
            answer.close()
        return
    request = build_request(client, spec, extra_headers, timeout)
    try:
        response = client.send(request, stream=True)
    except _errors(client) as exc:
        raise map_http_error(exc, request) from exc
    try:
        yield response
    finally:
        response.close()


@asynccontextmanager
async def open_stream_async(
    client: Any, spec: HTTPRequestSpec, *, extra_headers: Mapping[str, str] = {}, timeout: Any
) -> AsyncIterator[Any]:
    pooled = _pooled(client, spec, extra_headers)
    if pooled is not None:
        answer = await _aopen_pooled(client, *pooled, timeout)
        try:
            yield answer
        finally:
            await answer.aclose()
        return
    request = build_request(client, spec, extra_headers, timeout)
    try:
        response = await client.send(request, stream=True)
    except _errors(client) as exc:
        raise map_http_error(exc, request) from exc
    try:
        yield response
    finally:
        await response.aclose()


def iter_bytes(response: Any) -> Iterator[bytes]:
    if getattr(response, "pooled", False):  # the pool's (pool.py): its errors are the gateway's already
        yield from response.iter_bytes()
        return
    try:
        yield from response.iter_bytes()
    except _errors_of_response(response) as exc:
        raise map_http_error(exc, response.request) from exc


async def aiter_bytes(response: Any) -> AsyncIterator[bytes]:
    if getattr(response, "pooled", False):
        async for piece in response.aiter_bytes():
            yield piece
        return
    try:
        async for piece in response.aiter_bytes():
            yield piece
    except _errors_of_response(response) as exc:
        raise map_http_error(exc, response.request) from exc


def _errors_of_response(response: Any) -> tuple[type[BaseException], ...]:
    if getattr(response, "pooled", False):
        return (APIError,)
    module = sys.modules[type(response).__module__.partition(".")[0]]
    return (module.HTTPError, module.StreamError, *_STACK_ERRORS)


def read_error_body(response: Any, limit: int = 1024 * 1024) -> bytes:
    errors: tuple[type[BaseException], ...] = (BodyTooLargeError, *_errors_of_response(response))
    try:
        return _read_capped(response.iter_bytes(), limit)
    except errors:
        return b""


async def aread_error_body(response: Any, limit: int = 1024 * 1024) -> bytes:
    errors: tuple[type[BaseException], ...] = (BodyTooLargeError, *_errors_of_response(response))
    try:
        return await _aread_capped(response.aiter_bytes(), limit)
    except errors:
        return b""


class Watchdog:
    """Shuts a blocking stream's socket at a deadline, so a read in progress ends on time.

    A blocking read cannot have its timeout changed once it has started (httpcore reads the body
    with the timeout it had when the body began), so a stream that trickles and then stalls would
    otherwise overrun the total deadline by a whole read timeout. One daemon thread, started on
    first use, serves every stream; ``disarm`` must be called when the stream ends.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, Any]] = {}
        self._next = 0
        self._thread: threading.Thread | None = None

    def arm(self, response: Any, at: float, clock: Any = time.monotonic) -> int:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._cond:
            self._next += 1
            if sock is not None:
                self._armed[self._next] = (at - clock() + time.monotonic(), sock)
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._loop, name="switchyard-watchdog", daemon=True
                    )
                    self._thread.start()
                self._cond.notify()
            return self._next

    def disarm(self, handle: int) -> None:
        with self._cond:
            self._armed.pop(handle, None)

    def _loop(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [h for h, (at, _) in self._armed.items() if at <= now]
                for handle in due:
                    _, sock = self._armed.pop(handle)
                    _shut(sock)
                soonest = min((at for at, _ in self._armed.values()), default=None)
                self._cond.wait(None if soonest is None else max(0.0, soonest - now))


def _shut(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed by its owner: nothing left to interrupt
        return


WATCHDOG = Watchdog()
