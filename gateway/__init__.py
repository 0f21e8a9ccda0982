"""Switchyard: one OpenAI-shaped client for every model, under the openai SDK.

Change one import line (``from gateway import OpenAI``), or write ``import gateway as openai``:
this module's clients are subclasses of the SDK's, its errors are the SDK's (plus the gateway's
own subclasses, ``gateway.errors``), and every other name of the ``openai`` module (types,
``Stream``, ``DefaultHttpxClient``, ``pydantic_function_tool``, ``NOT_GIVEN``, …) is the SDK's own,
reached through this module. Heavy machinery (policies, the local engine, the CLI's output) loads
only when used.
"""

from __future__ import annotations

import sys as _sys
from typing import Any as _Any

if "httpx" not in _sys.modules:
    # httpx (which openai 2.x runs on) imports its command-line tool at import time when `rich` is
    # installed: tens of milliseconds, and rich must load only when used. Blocking that one
    # submodule makes httpx fall back to its stub `httpx.main`; nothing else of httpx changes.
    _sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import openai as _openai  # noqa: E402
from openai import (
    NOT_GIVEN,
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContentFilterFinishReasonError,
    InternalServerError,
    LengthFinishReasonError,
    NotFoundError,
    NotGiven,
    Omit,
    OpenAIError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
    not_given,
    omit,
    pydantic_function_tool,
)

from gateway.errors import (
    AllAttemptsFailedError,
    BudgetExceededError,
    ContextLengthExceededError,
    GatewayError,
    MissingDependencyError,
    NoRouteError,
    OverloadedError,
    PolicyError,
    StateBackendError,
    UnsupportedParameterError,
)
from gateway.sdk.clients import AsyncAzureOpenAI, AsyncOpenAI, AzureOpenAI, OpenAI
from gateway.sdk.info import info

__version__ = "0.2.0"

Client = OpenAI
AsyncClient = AsyncOpenAI

# The module-level client's settings, as openai's (``gateway/sdk/module_client.py``); ``default_policy``
# is ours (the client's ``policy=``; not ``policy``, which is the name of a subpackage).
api_key: str | None = None
organization: str | None = None
project: str | None = None
webhook_secret: str | None = None
base_url: str | None = None
timeout: _Any = _openai.DEFAULT_TIMEOUT
max_retries: int = _openai.DEFAULT_MAX_RETRIES
default_headers: _Any = None
default_query: _Any = None
http_client: _Any = None
default_policy: _Any = None


def feedback(
    reply_or_id: _Any, *, score: float | None = None, label: str | None = None, **options: _Any
) -> _Any:
    """Attach a user's score (0..1) or label to a captured reply (see ``gateway.capture.feedback``)."""
    from gateway.capture import feedback as attach

    return attach(reply_or_id, score=score, label=label, **options)


def __getattr__(name: str) -> _Any:
    """Every other name of the ``openai`` module, so that ``import gateway as openai`` keeps working."""
    from gateway.sdk import module_client

    proxy = module_client.resource(name)  # chat, responses, files, …: the module-level client's
    if proxy is not None:
        return proxy
    try:
        return getattr(_openai, name)
    except AttributeError:
        raise AttributeError(f"module 'gateway' has no attribute {name!r}") from None


__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AllAttemptsFailedError",
    "AsyncAzureOpenAI",
    "AsyncClient",
    "AsyncOpenAI",
    "AuthenticationError",
    "AzureOpenAI",
    "BadRequestError",
    "BudgetExceededError",
    "Client",
    "ConflictError",
    "ContentFilterFinishReasonError",
    "ContextLengthExceededError",
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
    "UnprocessableEntityError",
    "UnsupportedParameterError",
    "__version__",
    "feedback",
    "info",
    "not_given",
    "omit",
    "pydantic_function_tool",
]
