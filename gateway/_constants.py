"""Defaults, in one place. They match the openai SDK's values unless a policy says otherwise."""

from __future__ import annotations

DEFAULT_TIMEOUT = {"connect": 5.0, "read": 600.0, "write": 600.0, "pool": 600.0}
DEFAULT_MAX_RETRIES = 2
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER_DELAY = 60.0
ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_ANTHROPIC_MAX_TOKENS = 4096
