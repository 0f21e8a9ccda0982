"""The errors a caller sees: the openai SDK's own classes, plus what only a gateway raises.

Switchyard answers the SDK over HTTP, so the SDK raises its own classes (``openai.RateLimitError``
for a 429, ``openai.APIConnectionError`` when no upstream could be reached, …) and every library's
``except openai.X`` keeps working. Where the answer is the gateway's own, the client raises a
subclass named for it (chosen from the body's ``code`` or the ``x-switchyard-error`` header):

```
openai.APIStatusError
├── openai.BadRequestError            400
│   ├── NoRouteError                      code no_route: no candidate survived the route's filters
│   ├── UnsupportedParameterError         code unsupported_parameter: the target cannot honour ``param``
│   └── ContextLengthExceededError        code context_length_exceeded
├── openai.RateLimitError             429
│   └── BudgetExceededError               code budget_exceeded or rate_limited: the policy refused, before any call
├── openai.InternalServerError        >= 500
│   └── OverloadedError                   529 (Anthropic's overloaded_error)
└── AllAttemptsFailedError            every candidate failed; also a subclass of the most telling
                                      attempt's class (a RateLimitError when that was a 429)
openai.APIError
└── (a stream that fails after content reached the caller: ``APIError`` with code stream_interrupted)
openai.OpenAIError
└── GatewayError                       PolicyError (file:line:column), StateBackendError, MissingDependencyError
```
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import openai
from openai import (
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
    OpenAIError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)

from gateway.core.errors import GatewayError, MissingDependencyError, PolicyError, StateBackendError

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AllAttemptsFailedError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ConflictError",
    "ContentFilterFinishReasonError",
    "ContextLengthExceededError",
    "GatewayError",
    "InternalServerError",
    "LengthFinishReasonError",
    "MissingDependencyError",
    "NoRouteError",
    "NotFoundError",
    "OpenAIError",
    "OverloadedError",
    "PermissionDeniedError",
    "PolicyError",
    "RateLimitError",
    "StateBackendError",
    "STREAM_INTERRUPTED",
    "UnprocessableEntityError",
    "UnsupportedParameterError",
    "status_error",
]

STREAM_INTERRUPTED = "stream_interrupted"


class NoRouteError(BadRequestError):
    """No candidate of the route could serve the request; ``body["message"]`` says why each was excluded."""


class UnsupportedParameterError(BadRequestError):
    """The chosen target cannot honour a parameter; ``param`` names it (before any upstream call)."""


class ContextLengthExceededError(BadRequestError):
    """The prompt does not fit the model's context window."""


class BudgetExceededError(RateLimitError):
    """A budget or rate limit of the policy refused the request before any upstream call.

    ``budget`` names it; ``retry_after_s`` is set only when waiting can help (a window that resets).
    """

    @property
    def budget(self) -> str | None:
        value = _field(self.body, "budget")
        return value if isinstance(value, str) else None

    @property
    def retry_after_s(self) -> float | None:
        value = self.response.headers.get("retry-after")
        return float(value) if value else None


class OverloadedError(InternalServerError):
    """Anthropic's 529 ``overloaded_error``."""


class AllAttemptsFailedError(APIStatusError):
    """Every candidate failed; ``attempts`` lists each (candidate, outcome, status, duration).

    The instance is also of the most telling attempt's own class, so ``except openai.RateLimitError``
    still catches a route whose every candidate answered 429.
    """

    @property
    def attempts(self) -> list[dict[str, Any]]:
        found = self.body.get("attempts") if isinstance(self.body, Mapping) else None
        return list(found) if isinstance(found, list) else []


_BY_CODE: dict[str, type[APIStatusError]] = {
    "no_route": NoRouteError,
    "unsupported_parameter": UnsupportedParameterError,
    "context_length_exceeded": ContextLengthExceededError,
    "budget_exceeded": BudgetExceededError,
    "rate_limited": BudgetExceededError,
}


def status_error(
    sdk_class: type[APIStatusError], message: str, *, body: object, response: Any
) -> APIStatusError:
    """The error the client raises for a status answer: the SDK's class, or the gateway's subclass of it."""
    data = body.get("error", body) if isinstance(body, Mapping) else body
    cls: type[APIStatusError] = sdk_class
    if response.headers.get("x-switchyard-error") == "all_attempts_failed":
        cls = _all_failed(sdk_class)
    elif response.status_code == 529:
        cls = OverloadedError
    else:
        code = _field(data, "code") if response.headers.get("x-switchyard-error") else None
        special = _BY_CODE.get(code or "")
        if special is not None and issubclass(special, sdk_class):
            cls = special
    return cls(message, response=response, body=data)


_ALL_FAILED: dict[type[APIStatusError], type[APIStatusError]] = {APIStatusError: AllAttemptsFailedError}


def _all_failed(base: type[APIStatusError]) -> type[APIStatusError]:
    """``AllAttemptsFailedError`` that is also ``base`` (made once per base class)."""
    found = _ALL_FAILED.get(base)
    if found is None:
        found = type("AllAttemptsFailedError", (AllAttemptsFailedError, base), {"__module__": __name__})
        _ALL_FAILED[base] = found
    return found


def _field(body: object, name: str) -> Any:
    return body.get(name) if isinstance(body, Mapping) else None


def sdk_class_for(status: int) -> type[APIStatusError]:
    """The class the openai SDK raises for ``status``."""
    return {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        403: openai.PermissionDeniedError,
        404: openai.NotFoundError,
        409: openai.ConflictError,
        422: openai.UnprocessableEntityError,
        429: openai.RateLimitError,
    }.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
