"""Errors: the openai SDK's tree, names and attributes, plus what only a gateway can raise.

```
OpenAIError
├── APIError                        message, request, body, code, param, type
│   ├── APIResponseValidationError  a malformed or truncated upstream response
│   ├── APIStatusError              status_code, response, request_id
│   │   ├── BadRequestError             400
│   │   │   ├── UnsupportedParameterError   a parameter the provider cannot express (raised before any call)
│   │   │   ├── ContextLengthExceededError  the prompt does not fit the model's window
│   │   │   └── NoRouteError                no candidate of the plan survived its filters
│   │   ├── AuthenticationError         401
│   │   ├── PermissionDeniedError       403
│   │   ├── NotFoundError               404
│   │   ├── ConflictError               409
│   │   ├── UnprocessableEntityError    422
│   │   ├── RateLimitError              429
│   │   │   └── BudgetExceededError         a budget or rate limit of the policy, before any call
│   │   ├── InternalServerError         >= 500
│   │   │   └── OverloadedError             Anthropic's 529 overloaded_error
│   │   └── AllAttemptsFailedError      every candidate failed; status of the most telling attempt
│   ├── APIConnectionError
│   │   └── APITimeoutError
│   └── StreamInterruptedError      a stream failed after content reached the caller
├── LengthFinishReasonError         ``parse`` hit max_tokens
├── ContentFilterFinishReasonError  ``parse`` was filtered
└── GatewayError                    code; raised by the gateway itself, not an upstream
    ├── PolicyError (also ValueError)          file, line, column, field_path
    ├── MissingDependencyError (also ImportError)
    └── StateBackendError                      a state store is unreachable or corrupt
```

This is the core's *internal* tree: providers and the request loop raise these, and the core turns
them into HTTP statuses and bodies (``gateway/core/wire.py``), from which the openai SDK raises its
own classes (``gateway/errors.py`` adds the gateway's subclasses of those). Only the root is the
SDK's: ``PolicyError``, ``StateBackendError`` and ``MissingDependencyError``, raised outside a
request (loading a policy, opening state), reach callers as they are, and ``except
openai.OpenAIError`` catches them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openai import OpenAIError as _SDKOpenAIError

from gateway._redact import redact

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
    "StreamInterruptedError",
    "UnprocessableEntityError",
    "UnsupportedParameterError",
    "status_error_class",
    "make_status_error",
]

DOCS_URL = "https://switchyard.dev/errors#"


class OpenAIError(_SDKOpenAIError):
    """Root of every error this library raises: a subclass of the openai SDK's root."""


class APIError(OpenAIError):
    """An error about an API call: carries the request and the decoded error body when there is one."""

    message: str
    request: Any | None
    body: object | None
    code: str | None
    param: str | None
    type: str | None
    # The status the upstream had answered with when reading its body failed (a cut or oversized
    # body): a success status means it read the prompt, so the attempt is metered (estimated).
    answered_status: int | None = None

    def __init__(self, message: str, request: Any | None = None, *, body: object | None) -> None:
        # An upstream may echo the caller's key back (a 401 body): redact before anything keeps it.
        message = redact(message)
        body = _redacted(body)
        super().__init__(message)
        self.request = request
        self.message = message
        self.body = body
        fields = body if isinstance(body, Mapping) else {}
        self.code = _str_or_none(fields.get("code"))
        self.param = _str_or_none(fields.get("param"))
        self.type = _str_or_none(fields.get("type"))

    def __str__(self) -> str:
        return self.message


class APIResponseValidationError(APIError):
    """The upstream answered, but not with something the protocol allows."""

    response: Any | None
    status_code: int

    def __init__(
        self,
        message: str,
        *,
        response: Any | None = None,
        body: object | None = None,
        status_code: int = 200,
    ) -> None:
        super().__init__(
            message, response.request if response is not None and _has_request(response) else None, body=body
        )
        self.response = response
        self.status_code = status_code


class APIStatusError(APIError):
    """The upstream answered with a 4xx or 5xx status."""

    status_code: int
    response: Any | None
    request_id: str | None
    headers: Mapping[str, str]

    def __init__(
        self,
        message: str,
        *,
        response: Any | None = None,
        body: object | None,
        status_code: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        request = response.request if response is not None and _has_request(response) else None
        super().__init__(message, request, body=body)
        self.response = response
        if status_code is None:
            status_code = response.status_code if response is not None else type(self).default_status
        self.status_code = status_code
        self.headers = headers if headers is not None else (response.headers if response is not None else {})
        self.request_id = self.headers.get("x-request-id") or self.headers.get("request-id")

    default_status = 500

    raw_body: bytes | None = None  # the upstream's own error document (redacted), relayed as is

    def keep_document(self, body: bytes) -> None:
        """Keep the upstream's error document as written (secrets redacted): a provider whose protocol
        is the caller's own calls this, so that the caller sees every field the upstream sent."""
        if body:
            self.raw_body = redact(body.decode("utf-8", "replace")).encode()

    def attach(self, request: Any | None, response: Any | None) -> None:
        """Attach the transport's request and response (providers build errors without them)."""
        self.request = request
        self.response = response
        if response is not None:
            # The response's headers, plus what the provider derived from the body (Gemini's
            # RetryInfo becomes retry-after) where the response says nothing.
            derived = {k: v for k, v in self.headers.items() if k.lower() not in response.headers}
            merged: Any = response.headers.copy()
            merged.update(derived)
            self.headers = merged
            self.request_id = response.headers.get("x-request-id") or response.headers.get("request-id")


class BadRequestError(APIStatusError):
    default_status = 400


class AuthenticationError(APIStatusError):
    default_status = 401


class PermissionDeniedError(APIStatusError):
    default_status = 403


class NotFoundError(APIStatusError):
    default_status = 404


class ConflictError(APIStatusError):
    default_status = 409


class UnprocessableEntityError(APIStatusError):
    default_status = 422


class RateLimitError(APIStatusError):
    default_status = 429


class InternalServerError(APIStatusError):
    default_status = 500


class OverloadedError(InternalServerError):
    """Anthropic's 529 ``overloaded_error``: retryable, and still an ``InternalServerError``."""

    default_status = 529


class APIConnectionError(APIError):
    """The request never got an HTTP answer: DNS, refused, reset, or a broken stream."""

    def __init__(self, *, message: str = "Connection error.", request: Any | None = None) -> None:
        super().__init__(message, request, body=None)


class APITimeoutError(APIConnectionError):
    def __init__(self, request: Any | None = None, *, message: str = "Request timed out.") -> None:
        super().__init__(message=message, request=request)


class StreamInterruptedError(APIError):
    """A stream failed after content reached the caller; ``chunks_delivered`` says how far it got."""

    def __init__(
        self, message: str, *, provider: str, chunks_delivered: int, cause: BaseException | None = None
    ) -> None:
        super().__init__(message, None, body=None)
        self.provider = provider
        self.chunks_delivered = chunks_delivered
        self.cause = cause


class LengthFinishReasonError(OpenAIError):
    def __init__(self, *, completion: Any = None) -> None:
        super().__init__("Could not parse response content as the length limit was reached")
        self.completion = completion


class ContentFilterFinishReasonError(OpenAIError):
    def __init__(self) -> None:
        super().__init__("Could not parse response content as the request was rejected by the content filter")


# --- gateway errors ------------------------------------------------------------------------------


class GatewayError(OpenAIError):
    """Raised by the gateway itself. ``code`` is stable; ``str()`` ends with a link to its docs."""

    code: str = "gateway.error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        if code is not None:
            self.code = code
        self.message = message
        super().__init__(f"{message} (see {DOCS_URL}{self.code})")


class PolicyError(GatewayError, ValueError):
    """A policy file is invalid. Carries where: ``file``, ``line``, ``column`` (1-based), ``field_path``."""

    code = "policy.invalid"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        field_path: str | None = None,
        errors: list[PolicyError] | None = None,
    ) -> None:
        self.file, self.line, self.column, self.field_path = file, line, column, field_path
        self.errors = errors if errors is not None else [self]
        where = file or "<policy>"
        if line is not None:
            where += f":{line}" + (f":{column}" if column is not None else "")
        path = f" at {field_path}" if field_path else ""
        super().__init__(f"{where}{path}: {message}", code=code)


class MissingDependencyError(GatewayError, ImportError):
    code = "dependency.missing"


class StateBackendError(GatewayError):
    code = "state.unavailable"


class UnsupportedParameterError(BadRequestError):
    """A request parameter the chosen provider cannot express; raised before any network call."""

    def __init__(self, message: str, *, param: str, provider: str) -> None:
        body = {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": "unsupported_parameter",
        }
        super().__init__(message, body=body, status_code=400)
        self.provider = provider
        self.code = "unsupported_parameter"


class ContextLengthExceededError(BadRequestError):
    """The prompt does not fit the model's context window."""


class NoRouteError(BadRequestError):
    """No candidate of the plan survived its filters; ``plan`` says why each was excluded."""

    def __init__(self, message: str, *, plan: Any = None) -> None:
        body = {"message": message, "type": "invalid_request_error", "code": "no_route"}
        super().__init__(message, body=body, status_code=400)
        self.plan = plan


class BudgetExceededError(RateLimitError):
    """A budget or rate limit of the policy refused the request before any upstream call."""

    def __init__(
        self, message: str, *, budget: str, reset_at: float | None, retry_after_s: float | None = None
    ) -> None:
        headers = {"retry-after": str(max(0, round(retry_after_s)))} if retry_after_s is not None else {}
        body = {"message": message, "type": "budget_exceeded", "code": "budget_exceeded"}
        super().__init__(message, body=body, status_code=429, headers=headers)
        self.budget = budget
        self.reset_at = reset_at
        self.retry_after_s = retry_after_s


class AllAttemptsFailedError(APIStatusError):
    """Every candidate failed. ``attempts`` keeps each one; ``status_code`` is the most telling one's.

    ``reraise()`` raises the attempt error that matters most (what a caller without fallback saw).
    """

    def __init__(self, message: str, *, attempts: list[Any], cause: APIError) -> None:
        status = cause.status_code if isinstance(cause, APIStatusError) else 502
        body = (
            cause.body
            if isinstance(cause, APIStatusError)
            else {"message": str(cause), "type": "all_attempts_failed"}
        )
        response = cause.response if isinstance(cause, APIStatusError) else None
        super().__init__(message, response=response, body=body, status_code=status)
        self.attempts = attempts
        self.cause = cause

    def reraise(self) -> None:
        raise self.cause


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    529: OverloadedError,
}


def status_error_class(status: int) -> type[APIStatusError]:
    """The error class the openai SDK uses for ``status`` (Anthropic's 529 becomes ``OverloadedError``)."""
    if status in _STATUS_CLASSES:
        return _STATUS_CLASSES[status]
    return InternalServerError if status >= 500 else APIStatusError


def make_status_error(
    status: int, message: str, *, body: object | None, headers: Mapping[str, str] | None = None
) -> APIStatusError:
    """Build the right ``APIStatusError`` subclass for ``status``; the transport attaches the response."""
    return status_error_class(status)(message, body=body, status_code=status, headers=headers or {})


def _redacted(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _has_request(response: Any) -> bool:
    try:
        response.request  # noqa: B018 - httpx raises RuntimeError when a response has no request
    except RuntimeError:
        return False
    return True
