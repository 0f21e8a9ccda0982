"""JSON encoding of request bodies, in one place (compact, UTF-8)."""

from __future__ import annotations

import json
from typing import Any

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps_bytes(value: Any) -> bytes:
    return _encoder.encode(value).encode()
