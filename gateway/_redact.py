"""Secrets are redacted in one place: repr, logs, spans and exception messages all call ``redact``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "x-goog-api-key", "api-key"}
)
REDACTED = "<redacted>"

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^@/\s]+)@")
_KEY_PARAM = re.compile(r"(?P<name>[?&](?:key|api_key|api-key|access_token|token)=)[^&#\s]+", re.IGNORECASE)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
# Provider key shapes, wherever they appear (a key pasted into a prompt, echoed in an error body):
# OpenAI/Anthropic sk-…, AWS AKIA…, GitHub gh?_…, Slack xox?-…, Google AIza…, Groq gsk_…, xAI xai-…,
# Hugging Face hf_….
KEY_SHAPES = (
    r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{30,}"
    r"|\bxox[abpr]-[A-Za-z0-9-]{10,}|\bAIza[0-9A-Za-z_-]{35}|\bgsk_[A-Za-z0-9]{20,}|\bxai-[A-Za-z0-9]{20,}"
    r"|\bhf_[A-Za-z0-9]{30,}"
)
_KEYS = re.compile(KEY_SHAPES)

_known_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so that ``redact`` also removes it where it appears verbatim."""
    if value and len(value) >= 8:
        _known_secrets.add(value)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove URL userinfo, ``key=`` query values, bearer tokens, provider key shapes (``KEY_SHAPES``)
    and known secret values from ``text``."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    text = _KEY_PARAM.sub(lambda m: f"{m['name']}{REDACTED}", text)
    text = _BEARER.sub(lambda m: f"{m[1]}{REDACTED}", text)
    text = _KEYS.sub(REDACTED, text)
    for secret in (*_known_secrets, *secrets):
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: (REDACTED if k.lower() in SENSITIVE_HEADERS else redact(v)) for k, v in headers.items()}


def redact_url(url: str) -> str:
    return redact(url)
