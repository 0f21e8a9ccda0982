"""Redacting state-backend URLs through the gateway's one redaction function."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from gateway._redact import redact


def redact_url(url: str) -> str:
    """Return ``url`` without its userinfo or a ``password=`` query value.

    Example:
        >>> redact_url("redis://:hunter2@cache:6379/0")
        'redis://<redacted>@cache:6379/0'
    """
    try:
        passwords = parse_qs(urlsplit(url).query).get("password", [])
    except ValueError:  # a malformed URL: redact what the regexes find
        passwords = []
    return redact(url, passwords)
