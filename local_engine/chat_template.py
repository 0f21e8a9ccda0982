"""Chat templates (Jinja, as HF writes them) rendered in a sandbox with a time and size limit.

Jinja cannot be interrupted, so the limits are checked where the template must come back to us:
at each output chunk, each attribute lookup and call the sandbox sees, and each step of `range()`.
A template that loops without any of those is still bounded by the sandbox's `MAX_RANGE`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, NoReturn

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from local_engine.errors import ChatTemplateError

__all__ = ["ChatTemplate"]

DEFAULT_TIME_LIMIT_S = 1.0
DEFAULT_MAX_OUTPUT_CHARS = 1 << 20


class _Budget:
    def __init__(self, seconds: float, max_chars: int) -> None:
        self.seconds, self.max_chars = seconds, max_chars
        self.deadline = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise ChatTemplateError(
                f"chat template ran longer than {self.seconds:g}s", code="template.timeout"
            )


_current = threading.local()  # the budget of the render running on this thread


class _LimitedEnvironment(ImmutableSandboxedEnvironment):
    @property
    def budget(self) -> _Budget | None:
        return getattr(_current, "budget", None)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if self.budget is not None:
            self.budget.check()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if self.budget is not None:
            self.budget.check()
        return super().getitem(obj, argument)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if self.budget is not None:
            self.budget.check()
        return super().call(__context, __obj, *args, **kwargs)


def _raise_exception(message: str) -> NoReturn:
    raise ChatTemplateError(f"chat template raised: {message}", code="template.raised")


def _tojson(
    value: Any, indent: int | None = None, ensure_ascii: bool = False, sort_keys: bool = False
) -> str:
    # HF's filter: no HTML escaping, unlike Jinja's built-in tojson
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)


class ChatTemplate:
    """A compiled chat template; `render` is safe to call from any thread."""

    def __init__(self, source: str, special_tokens: dict[str, str], *, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
                 max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS) -> None:  # fmt: skip
        self.source, self.special_tokens = source, special_tokens
        self.time_limit_s, self.max_output_chars = time_limit_s, max_output_chars
        self.supports_tools = "tools" in source
        try:
            self._env = _LimitedEnvironment(
                trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
            )
            self._env.filters["tojson"] = _tojson
            self._env.globals["raise_exception"] = _raise_exception
            self._env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
            self._template = self._env.from_string(source)
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"chat template does not compile: {exc}", code="template.syntax") from exc

    def render(self, messages: Sequence[dict[str, Any]], *, tools: Sequence[dict[str, Any]] | None = None,
               add_generation_prompt: bool = True, **extra: Any) -> str:  # fmt: skip
        """Render to text; `tools` are passed only to templates that use them."""
        if tools and not self.supports_tools:
            raise ChatTemplateError(
                "this model's chat template does not take tools; call without tools, or pick a model whose template does",
                code="template.tools-unsupported",
            )
        budget = _Budget(self.time_limit_s, self.max_output_chars)
        context = {
            **self.special_tokens,
            **extra,
            "messages": list(messages),
            "add_generation_prompt": add_generation_prompt,
        }
        context["range"] = lambda *args: _limited_range(budget, *args)
        if tools:
            context["tools"] = list(tools)
        _current.budget = budget
        try:
            return self._collect(self._template.generate(context), budget)
        finally:
            _current.budget = None

    def _collect(self, chunks: Iterator[str], budget: _Budget) -> str:
        out: list[str] = []
        size = 0
        try:
            for chunk in chunks:
                size += len(chunk)
                if size > budget.max_chars:
                    raise ChatTemplateError(
                        f"chat template output exceeds {budget.max_chars} characters",
                        code="template.too-large",
                    )
                budget.check()
                out.append(chunk)
        except ChatTemplateError:
            raise
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            raise ChatTemplateError(f"chat template failed: {exc}", code="template.failed") from exc
        return "".join(out)


def _limited_range(budget: _Budget, *args: int) -> Iterator[int]:
    values = range(*args)
    if len(values) > 100_000:
        raise ChatTemplateError(
            "chat template asked for a range over 100000 items", code="template.too-large"
        )
    for value in values:
        budget.check()
        yield value
