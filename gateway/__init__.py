"""Switchyard: one OpenAI-shaped client for every model.

Change one import line (``from gateway import OpenAI``), or ``import gateway as openai`` for code that
writes ``openai.RateLimitError`` everywhere: this module exposes the openai module-level names such
programs use. Heavy machinery (policies, the local engine, the CLI's output) loads only when used.
"""

from __future__ import annotations

import sys as _sys

if "httpx" not in _sys.modules:
    # httpx imports its command-line tool at import time when `rich` is installed (rich, pygments
    # and click: tens of milliseconds, and rich must load only when used). Blocking that one
    # submodule makes httpx fall back to its stub `httpx.main`; nothing else of httpx changes.
    _sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx as _httpx

from gateway._constants import DEFAULT_CONNECTION_LIMITS, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from gateway.client import AsyncOpenAI, OpenAI
from gateway.errors import (
    AllAttemptsFailedError,
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ConflictError,
    ContentFilterFinishReasonError,
    ContextLengthExceededError,
    GatewayError,
    InternalServerError,
    LengthFinishReasonError,
    MissingDependencyError,
    NoRouteError,
    NotFoundError,
    OpenAIError,
    OverloadedError,
    PermissionDeniedError,
    PolicyError,
    RateLimitError,
    StateBackendError,
    StreamInterruptedError,
    UnprocessableEntityError,
    UnsupportedParameterError,
)
from gateway.streaming import AsyncStream, Stream
from gateway.structured import pydantic_function_tool
from gateway.types import NOT_GIVEN, BaseModel, NotGiven, Omit, not_given, omit

__version__ = "0.1.0"

Timeout = _httpx.Timeout
Client = OpenAI
AsyncClient = AsyncOpenAI

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AllAttemptsFailedError",
    "AsyncClient",
    "AsyncOpenAI",
    "AsyncStream",
    "AuthenticationError",
    "BadRequestError",
    "BaseModel",
    "BudgetExceededError",
    "Client",
    "ConflictError",
    "ContentFilterFinishReasonError",
    "ContextLengthExceededError",
    "DEFAULT_CONNECTION_LIMITS",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "GatewayError",
    "InternalServerError",
    "LengthFinishReasonError",
    "MissingDependencyError",
    "NOT_GIVEN",
    "NoRouteError",
    "NotFoundError",
    "NotGiven",
    "Omit",
    "OpenAI",
    "OpenAIError",
    "OverloadedError",
    "PermissionDeniedError",
    "PolicyError",
    "RateLimitError",
    "StateBackendError",
    "Stream",
    "StreamInterruptedError",
    "Timeout",
    "UnprocessableEntityError",
    "UnsupportedParameterError",
    "__version__",
    "not_given",
    "omit",
    "pydantic_function_tool",
]
