"""Translation pieces the non-OpenAI protocols share: parameter checks, data URLs, safe JSON access.

Every upstream body is read through ``obj``/``arr``/``text``/``count`` so that a malformed body
raises ``APIResponseValidationError`` naming the provider and the field, never a ``KeyError``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from gateway.core.errors import APIResponseValidationError, BadRequestError, UnsupportedParameterError
from gateway.core.types import ChatRequest, CompletionTokensDetails, CompletionUsage, PromptTokensDetails

__all__ = [
    "Malformed",
    "arguments_json",
    "arr",
    "check_supported",
    "count",
    "data_url",
    "guarded",
    "image_url_of",
    "invalid_request",
    "json_arguments",
    "merge_same_role",
    "message_text",
    "obj",
    "opt_str",
    "text",
    "total_usage",
    "validation_error",
]


class Malformed(Exception):
    """An upstream value has the wrong shape; converted to ``APIResponseValidationError`` by callers."""

    def __init__(self, where: str, expected: str, got: object) -> None:
        super().__init__(f"{where}: expected {expected}, got {type(got).__name__}")
        self.where = where


def obj(value: object, where: str) -> dict[str, Any]:
    """``value`` if it is a JSON object, else ``Malformed`` naming ``where``."""
    if not isinstance(value, dict):
        raise Malformed(where, "an object", value)
    return value


def arr(value: object, where: str) -> list[Any]:
    """``value`` if it is a JSON array, else ``Malformed`` naming ``where``."""
    if not isinstance(value, list):
        raise Malformed(where, "an array", value)
    return value


def text(value: object, where: str) -> str:
    """``value`` if it is a string, else ``Malformed`` naming ``where``."""
    if not isinstance(value, str):
        raise Malformed(where, "a string", value)
    return value


def opt_str(value: object, where: str) -> str | None:
    """``value`` if it is a string or absent (``None``), else ``Malformed``."""
    return None if value is None else text(value, where)


def count(value: object, where: str) -> int:
    """A token count: a non-negative integer, absent meaning 0."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Malformed(where, "a non-negative integer", value)
    return value


def validation_error(provider: str, exc: Malformed, body: object) -> APIResponseValidationError:
    """The typed error for a malformed upstream body, naming the provider and the field."""
    return APIResponseValidationError(f"{provider}: malformed response from the upstream: {exc}", body=body)


def guarded(provider: str, body: object, parse: Callable[[], Any]) -> Any:
    """Run ``parse``; a shape error in the upstream body becomes ``APIResponseValidationError``."""
    try:
        return parse()
    except Malformed as exc:
        raise validation_error(provider, exc, body) from exc
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # A backstop: the accessors above should catch every shape problem first.
        raise APIResponseValidationError(
            f"{provider}: malformed response from the upstream ({type(exc).__name__}: {exc})", body=body
        ) from exc


# --- requests ------------------------------------------------------------------------------------


def invalid_request(message: str, *, param: str) -> BadRequestError:
    """A request the provider cannot take, refused before any network call."""
    body = {"message": message, "type": "invalid_request_error", "param": param, "code": "invalid_request"}
    return BadRequestError(message, body=body, status_code=400)


def check_supported(req: ChatRequest, provider: str, unsupported: list[str], *, drop: bool) -> None:
    """Raise ``UnsupportedParameterError`` for the first of ``unsupported`` unless ``drop`` is set."""
    if unsupported and not drop:
        name = unsupported[0]
        raise UnsupportedParameterError(
            f"{provider} cannot express the parameter {name!r}; remove it, or set "
            f"drop_unsupported_params in the policy to drop it",
            param=name,
            provider=provider,
        )


def message_text(content: Any, where: str) -> str:
    """The text of a message whose content must be text only (system, tool)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for j, part in enumerate(content):
        if part.get("type") != "text":
            raise invalid_request(
                f"{where}.content[{j}]: only text parts are accepted here", param=f"{where}.content"
            )
        parts.append(str(part.get("text", "")))
    return "\n".join(parts) if where.endswith("system") else "".join(parts)


def image_url_of(part: Mapping[str, Any], where: str) -> str:
    """The URL of an ``image_url`` content part (either spelling: object or bare string)."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise invalid_request(f"{where}.image_url.url: expected a URL string", param=f"{where}.image_url")
    return url


def data_url(url: str, where: str) -> tuple[str, str] | None:
    """``data:<mime>;base64,<data>`` -> ``(mime, data)``; ``None`` for any other URL."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url.partition(",")
    mime, _, encoding = head.removeprefix("data:").partition(";")
    if not sep or encoding != "base64" or not mime:
        raise invalid_request(
            f"{where}: a data URL must look like data:<mime type>;base64,<data>", param=where
        )
    return mime, data


def merge_same_role(turns: list[dict[str, Any]], parts_key: str) -> list[dict[str, Any]]:
    """Join consecutive turns of one role into one (both protocols want alternating roles).

    A turn with nothing to send (an assistant message with empty content) is left out: both
    protocols refuse empty turns.
    """
    merged: list[dict[str, Any]] = []
    for turn in turns:
        if not turn[parts_key]:
            continue
        if merged and merged[-1]["role"] == turn["role"]:
            merged[-1][parts_key].extend(turn[parts_key])
        else:
            merged.append({"role": turn["role"], parts_key: list(turn[parts_key])})
    return merged


def json_arguments(arguments: Any, where: str) -> Any:
    """An OpenAI tool call's ``arguments`` string as a JSON value (``""`` means ``{}``)."""
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        return json.loads(arguments)
    except (TypeError, ValueError, RecursionError):
        raise invalid_request(
            f"{where}.function.arguments: not valid JSON; tool call arguments must be a JSON object",
            param=f"{where}.function.arguments",
        ) from None


def arguments_json(value: Any) -> str:
    """Tool input as the OpenAI ``arguments`` string (compact JSON, as OpenAI writes it)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def total_usage(prompt: int, completion: int, *, cached: int, reasoning: int | None) -> CompletionUsage:
    """OpenAI usage from counts; ``total_tokens`` is always prompt + completion."""
    return CompletionUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
        completion_tokens_details=(
            None if reasoning is None else CompletionTokensDetails(reasoning_tokens=reasoning)
        ),
    )
