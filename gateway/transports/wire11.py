"""What the blocking and the asyncio upstream pools share: targets, timeouts, framing, decoding, errors.

HTTP/1.1 framing is h11's (the same parser httpcore uses); this module only turns a provider's
request into h11 events and h11's answer into bytes, and says when a pool may be used at all
(``PoolSettings.of``): only over the HTTP client's own default transport with nothing that would
change what goes on the wire (no proxy, no event hooks, no auth, no cookies, no default query, no
HTTP/2, no Unix socket or local address). Anything else keeps going through the client itself.
"""

from __future__ import annotations

import socket
import ssl
import sys
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import h11

from gateway._redact import redact
from gateway.core.errors import APIConnectionError, APIError, APITimeoutError

# What the pool decodes itself, in bounded steps; the client package's own decoders add what it
# offers (zstd, br where their libraries are installed), so the client's Accept-Encoding is kept.
ACCEPT_ENCODING = b"gzip, deflate"
_OWN_ENCODINGS = frozenset({"identity", "gzip", "x-gzip", "deflate"})
READ_SIZE = 64 * 1024
PIECE = 1024 * 1024  # the most one decompression step may produce, so a bomb is counted as it grows
REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Target:
    """One request as it goes on the wire."""

    method: str
    url: str  # absolute, query included (for error messages and the lazily built request object)
    origin: Origin
    path: bytes  # request target: path and query
    headers: list[tuple[bytes, bytes]]
    body: bytes | None


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float | None
    read: float | None
    write: float | None
    pool: float | None

    @classmethod
    def of(cls, value: Any) -> Timeouts:
        """A float or ``None`` (all four), a mapping, or an httpx/httpx2 ``Timeout``."""
        if value is None or isinstance(value, (int, float)):
            v = None if value is None else float(value)
            return cls(v, v, v, v)
        if isinstance(value, Mapping):
            return cls(*(value.get(k) for k in ("connect", "read", "write", "pool")))
        return cls(value.connect, value.read, value.write, value.pool)


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """What the HTTP client's own transport was configured with, when a pool may stand in for it."""

    ssl_context: ssl.SSLContext
    max_connections: int
    max_keepalive: int
    keepalive_expiry: float | None

    @classmethod
    def of(cls, inner: Any, module: ModuleType) -> PoolSettings | None:
        """Settings read off the client's default transport, or ``None`` when the pool must not replace it."""
        if type(inner) not in (
            getattr(module, "HTTPTransport", None),
            getattr(module, "AsyncHTTPTransport", None),
        ):
            return None
        pool: Any = getattr(inner, "_pool", None)
        core = sys.modules.get("httpcore2" if module.__name__ == "httpx2" else "httpcore")
        if core is None or type(pool) not in (core.ConnectionPool, core.AsyncConnectionPool):
            return None
        plain = {"_http2": False, "_uds": None, "_local_address": None, "_socket_options": None}
        if any(getattr(pool, name, object()) != want for name, want in plain.items()):
            return None
        if getattr(pool, "_proxy", None) is not None or not getattr(pool, "_http1", True):
            return None
        context = getattr(pool, "_ssl_context", None)
        if not isinstance(context, ssl.SSLContext):
            return None
        return cls(context, pool._max_connections, pool._max_keepalive_connections, pool._keepalive_expiry)


def client_allows(client: Any) -> bool:
    """Nothing on the client itself would change the request (checked on every call: cheap reads)."""
    hooks = client._event_hooks
    return not (
        any(t is not None for t in client._mounts.values())
        or hooks["request"]
        or hooks["response"]
        or client._auth is not None
        or client._params
        or _has_cookies(client._cookies.jar)
    )


def _has_cookies(jar: Any) -> bool:
    cookies = getattr(jar, "_cookies", None)  # CookieJar's own dict: ``len(jar)`` walks every cookie
    return bool(cookies) if isinstance(cookies, dict) else bool(jar)


def _decoders(module: ModuleType) -> Mapping[str, Any]:
    """The client package's content decoders by encoding (``httpx._decoders``), or none."""
    found = getattr(getattr(module, "_decoders", None), "SUPPORTED_DECODERS", None)
    return found if isinstance(found, Mapping) else {}


_accepted: dict[tuple[str, bytes], bool] = {}


def _decodable(module: ModuleType, value: bytes) -> bool:
    """Every encoding an Accept-Encoding value names can be decoded here (cached per value)."""
    key = (module.__name__, value)
    known = _accepted.get(key)
    if known is None:
        names = {part.split(b";")[0].strip().decode("latin-1").lower() for part in value.split(b",")}
        known = all(n in _OWN_ENCODINGS or n in _decoders(module) for n in names if n)
        if len(_accepted) < 256:
            _accepted[key] = known
    return known


def target(
    method: str,
    url: str,
    params: Mapping[str, Any],
    headers: Mapping[str, str],
    client_headers: Any,
    body: bytes | None,
    module: ModuleType,
) -> Target | None:
    """The wire form of a request, or ``None`` when the URL is one the pool does not speak (http and
    https to an ASCII host only; the client handles the rest)."""
    where = _where(url)
    if where is None:
        return None
    origin, base, path, query, host_value = where
    if params:
        extra = urlencode(list(params.items()), doseq=True)
        query = f"{query}&{extra}" if query else extra
    path = path + (f"?{query}" if query else "")
    full = base + path
    merged: dict[bytes, tuple[bytes, bytes]] = {}
    for name, value in client_headers.raw:
        merged[name.lower()] = (name, value)
    for name, value in headers.items():
        raw = name.encode("ascii")
        merged[raw.lower()] = (raw, value.encode("ascii"))
    accept = merged.get(b"accept-encoding")
    if accept is None or not _decodable(module, accept[1]):
        merged[b"accept-encoding"] = (b"Accept-Encoding", ACCEPT_ENCODING)
    merged.pop(b"host", None)  # the target's own, below; a caller's Host header cannot redirect the call
    merged.pop(b"content-length", None)  # framing is the body's, below
    lines = [(b"Host", host_value), *merged.values()]
    if body is not None:
        lines.append((b"Content-Length", str(len(body)).encode("ascii")))
    return Target(method, full, origin, path.encode("ascii"), lines, body)


_Where = tuple[Origin, str, str, str, bytes]  # origin, "scheme://netloc", path, query, Host header
_places: dict[str, _Where | None] = {}


def _where(url: str) -> _Where | None:
    """A URL's parts as the pool needs them (cached: a deployment's URL repeats on every call)."""
    try:
        return _places[url]
    except KeyError:
        pass
    parts = urlsplit(url)
    scheme, host = parts.scheme, parts.hostname
    found: _Where | None = None
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        port = 0
    plain = scheme in ("http", "https") and host and host.isascii() and parts.username is None and port
    if plain and host is not None:
        default_port = port == (443 if scheme == "https" else 80)
        host_value = (host if default_port else f"{host}:{port}").encode("ascii")
        found = (
            Origin(scheme, host, port),
            f"{scheme}://{parts.netloc}",
            parts.path or "/",
            parts.query,
            host_value,
        )
    if len(_places) < 1024:
        _places[url] = found
    return found


def redirected(t: Target, status: int, headers: Any) -> Target | None:
    """The request a redirect asks for, as the client's ``send`` would make it (``303``, and ``301``/``302``
    after a POST, become a GET without a body; the credentials go only to the same origin), or ``None``
    for a redirect that cannot be followed (no ``Location``, another scheme)."""
    location = headers.get("location")
    if not location:
        return None
    where = _where(urljoin(t.url, location))
    if where is None:
        return None
    origin, base, path, query, host_value = where
    method, body = t.method, t.body
    if status == 303 or (status in (301, 302) and method == "POST"):
        method, body = ("GET" if method != "HEAD" else "HEAD"), None
    dropped = {b"host", b"content-length"}
    if body is None:
        dropped |= {b"content-type", b"transfer-encoding"}
    if origin != t.origin:
        dropped.add(b"authorization")
    lines = [(b"Host", host_value), *((n, v) for n, v in t.headers if n.lower() not in dropped)]
    if body is not None:
        lines.append((b"Content-Length", str(len(body)).encode("ascii")))
    path = path + (f"?{query}" if query else "")
    return Target(method, base + path, origin, path.encode("ascii"), lines, body)


def request_bytes(conn: h11.Connection, t: Target) -> bytes:
    """The request, framed by ``conn`` (h11 checks the framing and advances its state)."""
    return b"".join(conn.send(event) or b"" for event in request_events(t))


def head_of(conn: h11.Connection) -> h11.Response | None:
    """The response head once h11 has it, ``None`` while it needs more bytes (1xx heads skipped); a
    server that closed first is h11's ``RemoteProtocolError``. Both pools read around this."""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            return None
        if isinstance(event, h11.Response):
            return event
        if not isinstance(event, h11.InformationalResponse):
            raise h11.RemoteProtocolError("Server disconnected without sending a response.")


def body_step(conn: h11.Connection, decoder: Decoder) -> tuple[Iterator[bytes], bool] | None:
    """The next body event: its decoded pieces (lazily, so caps count them as they grow) and whether
    the body ended; ``None`` while h11 needs more bytes."""
    event = conn.next_event()
    if event is h11.NEED_DATA:
        return None
    if isinstance(event, h11.Data):
        return decoder.feed(bytes(event.data)), False
    if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
        tail = decoder.finish()
        return iter([tail] if tail else []), True
    return iter(()), False


class PooledBase:
    """What both pools' responses hold; quacks like the client's ``Response`` where the core reads one
    (``status_code``, ``headers``, ``request``, ``extensions``)."""

    pooled = True  # how ``http.py`` tells it from the client's own response

    def __init__(
        self,
        module: ModuleType,
        status: int,
        raw_headers: list[tuple[bytes, bytes]],
        lazy: LazyRequest,
        decoder: Decoder,
        sock: Any,
    ) -> None:
        self.status_code = status
        self.headers = module.Headers(raw_headers)
        self._lazy = lazy
        self._decoder = decoder
        self.extensions = {"network_stream": SocketInfo(sock)}

    @property
    def request(self) -> Any:
        return self._lazy.get()


def request_events(t: Target) -> list[Any]:
    events: list[Any] = [h11.Request(method=t.method, target=t.path, headers=t.headers)]
    if t.body:
        events.append(h11.Data(data=t.body))
    events.append(h11.EndOfMessage())
    return events


class DecodeError(ValueError):
    """A body whose ``Content-Encoding`` is unknown or whose encoded bytes are broken."""


class Decoder:
    """``Content-Encoding`` undone: gzip and deflate here, in steps of at most ``PIECE`` bytes; other
    encodings the client package offers (zstd, br) by its own decoder, as the client would."""

    def __init__(self, encoding: str, module: ModuleType) -> None:
        encoding = encoding.strip().lower()
        self._raw = encoding in ("", "identity")
        self._deflate_guess = encoding == "deflate"
        self._foreign: Any = None
        if encoding == "gzip" or encoding == "x-gzip":
            self._z: Any = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif self._deflate_guess:
            self._z = zlib.decompressobj()
        elif not self._raw:
            decoder = _decoders(module).get(encoding)
            if decoder is None:
                raise DecodeError(f"unsupported content-encoding {encoding!r}")
            self._foreign = decoder()

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._raw:
            if data:
                yield data
            return
        if self._foreign is not None:
            try:
                out = self._foreign.decode(data)
            except Exception as exc:  # noqa: BLE001 - the client package's DecodingError, whichever it is
                raise DecodeError(str(exc)) from exc
            if out:
                yield out
            return
        try:
            out = self._z.decompress(data, PIECE)
        except zlib.error:
            if not self._deflate_guess:
                raise
            self._z = zlib.decompressobj(-zlib.MAX_WBITS)  # deflate sent without its zlib header
            out = self._z.decompress(data, PIECE)
        self._deflate_guess = False
        while True:
            if out:
                yield out
            tail = self._z.unconsumed_tail
            if not tail:
                return
            out = self._z.decompress(tail, PIECE)

    def finish(self) -> bytes:
        """What a foreign decoder still holds at the end of the body (zlib's steps hold nothing)."""
        if self._foreign is None:
            return b""
        try:
            return bytes(self._foreign.flush())
        except Exception as exc:  # noqa: BLE001
            raise DecodeError(str(exc)) from exc


def encoding_of(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"content-encoding":
            return value.decode("latin-1")
    return ""


def reusable(conn: h11.Connection) -> bool:
    return conn.our_state is h11.DONE and conn.their_state is h11.DONE


def mapped(exc: BaseException, request: Any) -> APIError:
    """A socket, TLS, framing or decoding failure as the attempt loop's error (retried, then fallen back)."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return APITimeoutError(request)
    detail = redact(str(exc)) or type(exc).__name__
    return APIConnectionError(message=f"Connection error: {detail}", request=request)


# What a pooled call can raise beneath it (h11's framing errors, sockets and TLS, zlib).
FAILURES: tuple[type[BaseException], ...] = (h11.ProtocolError, OSError, zlib.error, EOFError, DecodeError)


class IdleConnections:
    """What both pools keep: the connections open (idle ones included, ``count``) and each origin's
    idle ones, newest last. The blocking pool calls these under its lock; the asyncio one on its loop."""

    def __init__(self, settings: PoolSettings) -> None:
        self.settings = settings
        self.idle: dict[Origin, deque[Any]] = {}
        self.count = 0

    def take(self, origin: Origin, usable: Callable[[Any], bool]) -> Any:
        """The newest idle connection to ``origin`` that has not expired and is ``usable``; the others
        met on the way are closed."""
        idle = self.idle.get(origin)
        expiry = self.settings.keepalive_expiry
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if (expiry is None or now - conn.idle_since < expiry) and usable(conn):
                return conn
            conn.close()
            self.count -= 1
        return None

    def evict_other(self) -> bool:
        """Close the oldest idle connection of any origin, to make room under the connection limit."""
        for idle in self.idle.values():
            if idle:
                idle.popleft().close()
                self.count -= 1
                return True
        return False

    def keep(self, conn: Any) -> bool:
        """Park a finished connection as idle, if there is room under the keep-alive limit."""
        if sum(len(q) for q in self.idle.values()) >= self.settings.max_keepalive:
            return False
        conn.idle_since = time.monotonic()
        self.idle.setdefault(conn.origin, deque()).append(conn)
        return True

    def close_all(self) -> None:
        for idle in self.idle.values():
            while idle:
                idle.pop().close()
                self.count -= 1


class LazyRequest:
    """The client package's ``Request`` for a pooled call, built only when asked (errors carry it)."""

    __slots__ = ("_module", "_target", "_built")

    def __init__(self, module: ModuleType, t: Target) -> None:
        self._module = module
        self._target = t
        self._built: Any = None

    def get(self) -> Any:
        if self._built is None:
            t = self._target
            headers = [(n, v) for n, v in t.headers if n.lower() != b"authorization"]
            self._built = self._module.Request(t.method, t.url, headers=headers, content=t.body or b"")
        return self._built


class SocketInfo:
    """``response.extensions["network_stream"]`` as httpcore offers it (the watchdog reads the socket)."""

    __slots__ = ("_sock",)

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def get_extra_info(self, name: str) -> Any:
        return self._sock if name == "socket" else None
