"""Chat templates (Jinja, as HF writes them) rendered in a sandbox with a time and size limit.

Jinja cannot be interrupted, so the limits are checked where the template must come back to us:
at each output chunk, each attribute lookup and call the sandbox sees, and each step of `range()`.
A template that loops without any of those is still bounded by the sandbox's `MAX_RANGE`.

Memory is bounded by refusing, before it is built, any value longer than the output cap
(`max_output_chars`, in items): `*`, `+`, `~` and `%` on strings and lists, `{% set %}` blocks and
macro bodies, the string methods and filters that pad, replace or join, and integers past
`MAX_INT_BITS` (`**`). So `{{ 'x' * 10**9 }}` fails at once with `template.too-large`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, NoReturn

import jinja2
from jinja2.compiler import CodeGenerator, Frame
from jinja2.nodes import Concat, EvalContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from local_engine.errors import ChatTemplateError

__all__ = ["ChatTemplate"]

DEFAULT_TIME_LIMIT_S = 1.0
DEFAULT_MAX_OUTPUT_CHARS = 1 << 20
MAX_INT_BITS = 1 << 16  # no template needs an integer this big; `10 ** 10 ** 10` would need 4 GB
MAX_JSON_INDENT = 64  # `tojson(indent=10**9)` would pad every line with a GB
_SIZED = (str, list, tuple)
_GROWING = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "replace", "indent", "format"})


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


def _too_large(what: str, limit: int, unit: str = "items") -> NoReturn:
    raise ChatTemplateError(f"chat template builds {what} over {limit} {unit}", code="template.too-large")


def _width(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _grown_size(name: str, text: str, args: Sequence[Any]) -> int:
    """The length ``text.<name>(*args)`` (or the filter of that name) would have, before it is built."""
    first = args[0] if args else None
    if name in ("center", "ljust", "rjust", "zfill"):
        return max(len(text), _width(first))
    if name == "expandtabs":
        return len(text) + text.count("\t") * (_width(first) if args else 8)
    if name == "indent":
        pad = len(first) if isinstance(first, str) else (_width(first) if args else 4)
        return len(text) + pad * (text.count("\n") + 1)
    if name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        return len(text) + (text.count(old) if old else len(text) + 1) * len(new)
    if name in ("format", "format_map", "%"):  # the widest field a width or precision asks for
        return len(text) + max((int(digits) for digits in re.findall(r"\d{1,12}", text)), default=0)
    return len(text)


def _joined_size(separator: str, items: Sequence[Any]) -> int:
    return sum(len(item) for item in items if isinstance(item, str)) + len(separator) * len(items)


class _LimitedCodeGenerator(CodeGenerator):
    def visit_Concat(self, node: Concat, frame: Frame) -> None:
        # `a ~ b` goes through `environment.concat`, which checks the size, instead of `str_join`
        self.write("environment.concat([str(x) for x in (")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write(")])")


class _LimitedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})  # also keeps them out of constant folding
    code_generator_class = _LimitedCodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.concat = self._concat  # `{% set %}` blocks, macro bodies and `~`
        for name in ("center", "indent", "format", "replace", "join"):
            self.filters[name] = self._limited_filter(name, self.filters[name])

    @property
    def budget(self) -> _Budget | None:
        return getattr(_current, "budget", None)

    @property
    def limit(self) -> int:
        budget = self.budget
        return budget.max_chars if budget is not None else DEFAULT_MAX_OUTPUT_CHARS

    def _checked(self, value: Any) -> Any:
        if isinstance(value, _SIZED) and len(value) > self.limit:
            _too_large(f"a {type(value).__name__}", self.limit)
        return value

    def _concat(self, pieces: Any) -> str:
        pieces = list(pieces)
        if _joined_size("", pieces) > self.limit:
            _too_large("a string", self.limit)
        return "".join(pieces)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limit = self.limit
        if operator == "**" and _width(left) and _width(right) > 0:
            if right * abs(left).bit_length() > MAX_INT_BITS and abs(left) > 1:
                _too_large("an integer", MAX_INT_BITS, "bits")
        elif operator == "*" and isinstance(left, (*_SIZED, int)) and isinstance(right, (*_SIZED, int)):
            if _width(left) and _width(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                _too_large("an integer", MAX_INT_BITS, "bits")
            sized, times = (left, _width(right)) if isinstance(left, _SIZED) else (right, _width(left))
            if isinstance(sized, _SIZED) and len(sized) * times > limit:
                _too_large(f"a {type(sized).__name__}", limit)
        elif operator == "+" and isinstance(left, _SIZED) and isinstance(right, _SIZED):
            if len(left) + len(right) > limit:
                _too_large(f"a {type(left).__name__}", limit)
        elif operator == "%" and isinstance(left, str) and _grown_size("%", left, ()) > limit:
            _too_large("a formatted string", limit)
        return self._checked(super().call_binop(context, operator, left, right))

    def _precheck(self, name: str, receiver: Any, args: Sequence[Any]) -> Sequence[Any]:
        """Refuse a pad, replace, format or join that would outgrow the cap; a join's items as a list."""
        if not isinstance(receiver, str):
            return args
        if name == "join" and args:
            items = list(args[0])
            if _joined_size(receiver, items) > self.limit:
                _too_large("a string", self.limit)
            return (items, *args[1:])
        if name in _GROWING and _grown_size(name, receiver, args) > self.limit:
            _too_large("a string", self.limit)
        return args

    def _limited_filter(self, name: str, function: Any) -> Any:
        def limited(*args: Any, **kwargs: Any) -> Any:
            head, rest = (args[:1], args[1:]) if args and isinstance(args[0], EvalContext) else ((), args)
            if rest and name == "join":
                items = list(rest[0])
                separator = str(rest[1] if len(rest) > 1 else kwargs.get("d", ""))
                if _joined_size(separator, items) > self.limit:
                    _too_large("a string", self.limit)
                rest = (items, *rest[1:])
            elif rest:
                self._precheck(name, str(rest[0]), (*rest[1:], *kwargs.values()))
            return self._checked(function(*head, *rest, **kwargs))

        limited.__dict__.update(function.__dict__)  # keeps Jinja's pass_eval_context marker
        return limited

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
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps `str.format`
        name, receiver = getattr(method, "__name__", ""), getattr(method, "__self__", None)
        args = tuple(self._precheck(name, receiver, (*args, *kwargs.values())))
        args = args[: len(args) - len(kwargs)] if kwargs else args
        return self._checked(super().call(__context, __obj, *args, **kwargs))


def _raise_exception(message: str) -> NoReturn:
    raise ChatTemplateError(f"chat template raised: {message}", code="template.raised")


def _tojson(
    value: Any, indent: int | None = None, ensure_ascii: bool = False, sort_keys: bool = False
) -> str:
    # HF's filter: no HTML escaping, unlike Jinja's built-in tojson
    if indent is not None and _width(indent) > MAX_JSON_INDENT:
        _too_large("a JSON indent", MAX_JSON_INDENT, "spaces")
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
