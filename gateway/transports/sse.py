"""Incremental ``text/event-stream`` decoding (the WHATWG algorithm), fed bytes as they arrive.

An event split across TCP writes, CRLF or CR line endings, comments and multi-line ``data`` are
handled; a partial event at the end of the body is reported by ``pending`` so that callers can tell
a clean end from a cut one.
"""

from __future__ import annotations

from providers.base import ServerSentEvent


class SSEDecoder:
    """Decodes one body. ``max_event_bytes`` caps one event (its lines and data together): a hostile
    upstream's endless event raises ``BodyTooLargeError`` instead of growing without bound."""

    def __init__(self, max_event_bytes: int | None = None) -> None:
        if max_event_bytes is None:
            from gateway.transports.http import DEFAULT_LIMITS

            max_event_bytes = DEFAULT_LIMITS.max_event_bytes
        self._max = max_event_bytes
        self._size = 0
        self._buffer = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Add bytes; return the events they complete."""
        self._buffer += chunk
        events: list[ServerSentEvent] = []
        while True:
            line, found = self._next_line()
            if not found:
                if len(self._buffer) + self._size > self._max:
                    _too_large(self._max)
                return events
            event = self._line(line)
            if event is not None:
                events.append(event)

    def _next_line(self) -> tuple[bytes, bool]:
        buf = self._buffer
        nl = buf.find(b"\n")
        cr = buf.find(b"\r", 0, nl if nl >= 0 else len(buf))
        if cr >= 0 and cr + 1 < len(buf) and (nl < 0 or cr < nl):
            # \r\n ends the line at the \r; a lone \r ends it too.
            skip = 2 if buf[cr + 1 : cr + 2] == b"\n" else 1
            self._buffer = buf[cr + skip :]
            return buf[:cr], True
        if nl < 0:
            return b"", False
        self._buffer = buf[nl + 1 :]
        return buf[:nl], True

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        if not raw:
            return self._dispatch()
        line = raw.decode("utf-8", "replace")
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
            self._size += len(raw)
            if self._size > self._max:
                _too_large(self._max)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data and self._event is None:
            return None
        event = ServerSentEvent(data="\n".join(self._data), event=self._event, id=self._id, retry=self._retry)
        self._data, self._event, self._retry = [], None, None
        self._size = 0
        return event

    def flush(self) -> list[ServerSentEvent]:
        """The body ended: dispatch a final event that lacked its blank line."""
        events = []
        if self._buffer:
            event = self._line(self._buffer.rstrip(b"\r"))
            self._buffer = b""
            if event is not None:
                events.append(event)
        last = self._dispatch()
        if last is not None:
            events.append(last)
        return events

    @property
    def pending(self) -> bool:
        """Whether a partial event is buffered."""
        return bool(self._buffer or self._data)


def _too_large(limit: int) -> None:
    from gateway.transports.http import BodyTooLargeError

    raise BodyTooLargeError("server-sent event", limit)
