"""OpenTelemetry for the gateway: a span per request and per attempt, and the GenAI client metrics.

``Telemetry`` is an observer (pass it to a client's ``observer=``, beside a meter in an
``ObserverGroup``). It follows the OpenTelemetry GenAI semantic conventions, pinned to
``SEMCONV_VERSION`` (the names of semantic-conventions v1.41.0; the GenAI conventions now live in
the ``open-telemetry/semantic-conventions-genai`` repository, development status).

``OTEL_SEMCONV_STABILITY_OPT_IN``, as the conventions' transition plan asks: without
``gen_ai_latest_experimental`` in it, spans also carry ``gen_ai.system`` (the v1.36.0 name of
``gen_ai.provider.name``, which backends on v1.36.0 read); with it, only the latest names are
emitted. Everything else is the same in both modes.

Spans (kind ``CLIENT``), named ``"{operation} {model}"``: one per request (the parent) and one per
attempt (its children), with ``gen_ai.operation.name``, ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.response.model`` (the model the upstream says answered, not the
one asked for; absent when it did not answer), ``gen_ai.response.id``,
``gen_ai.response.finish_reasons``, the request's parameters that were set
(``gen_ai.request.max_tokens``, ``temperature``, ``top_p``, ``frequency_penalty``,
``presence_penalty``, ``seed``, ``stop_sequences``, ``choice.count``), ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``, ``gen_ai.usage.cache_read.input_tokens``,
``gen_ai.usage.reasoning.output_tokens``, ``gen_ai.usage.cache_creation.input_tokens`` (cache
writes, when reported), ``gen_ai.response.finish_reasons`` when known,
``error.type`` on failure, ``server.address``/``server.port``, and the gateway's own
``switchyard.*`` attributes (request id, attempt, route, outcome, cost, estimated usage).

Metrics: ``gen_ai.client.token.usage`` (``{token}``, by ``gen_ai.token.type`` input/output),
``gen_ai.client.operation.duration`` (s), ``gen_ai.client.operation.time_to_first_chunk`` (s) and
``switchyard.client.cost`` (USD), with the conventions' advised bucket boundaries. A token count
nobody reported is absent, never 0.

Content (``gen_ai.input.messages`` and ``gen_ai.output.messages``, streamed or not) is recorded
only when ``capture_content=True`` (the policy's ``telemetry.capture_content``), and always through
the redaction function. API keys never appear. It is emitted as the conventions' event,
``gen_ai.client.inference.operation.details`` (one log record per attempt through the OpenTelemetry
logs API, in the attempt span's context, with the messages in structured form and the operation's
request, response and usage attributes), so content can be stored apart from traces; and, as
before, as JSON-string attributes of the attempt span. The pinned conventions allow either place
for the same attributes, and ``OTEL_SEMCONV_STABILITY_OPT_IN`` does not choose between them (its
``gen_ai_latest_experimental`` only drops the v1.36.0 names), so both are kept in both modes.

Without an SDK configured, OpenTelemetry's API is a no-op and so is this class. Spans are written
after the fact with their real start and end times, because the observer hears of an attempt when it
ends. A request span ends with its serving attempt; after failed attempts it ends when
:meth:`Telemetry.request_finished` is called, or ``request_timeout_s`` after its last attempt, or on
:meth:`Telemetry.close`.

Example:
    >>> telemetry = Telemetry()  # uses the global providers: no-op until an SDK is installed
    >>> telemetry.close()
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gateway._redact import redact
from gateway.core.attempts import AttemptRecord
from gateway.metering.meter import AttemptTokens, attempt_tokens
from gateway.metering.pricing import PriceTable

if TYPE_CHECKING:
    from opentelemetry._logs import LoggerProvider
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["Telemetry"]

SCOPE = "switchyard"
CONTENT_EVENT = "gen_ai.client.inference.operation.details"
# The attributes the conventions list for the content event, beside its messages.
_EVENT_KEYS = ("gen_ai.operation.name", "gen_ai.request.model", "server.address", "server.port")
SEMCONV_VERSION = "1.41.0"  # the GenAI conventions' names followed (baseline for the old names: 1.36.0)
SEMCONV_OPT_IN_ENV = "OTEL_SEMCONV_STABILITY_OPT_IN"
LATEST_EXPERIMENTAL = "gen_ai_latest_experimental"
DEFAULT_REQUEST_TIMEOUT_S = 600.0
SWEEP_EVERY_S = 1.0
MAX_CACHED_DEPLOYMENTS = 1024
MAX_OPEN_REQUESTS = 10_000  # request spans waiting for their end; the oldest is ended beyond this
_TERMINAL = frozenset({"ok", "partial", "closed"})
# The GenAI conventions' advised histogram boundaries (the SDK's defaults put every call under 5 s
# in one bucket): seconds for durations, doubling from 10 ms; tokens, in powers of 4.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))  # 1, 4, 16, ..., 67108864
# gen_ai.provider.name's well-known values, by the gateway's provider or protocol name.
_PROVIDER_NAMES = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "groq": "groq",
    "mistral": "mistral_ai",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "cohere": "cohere",
    "bedrock": "aws.bedrock",
}


@dataclass(slots=True)
class _Request:
    span: Span
    last_seen: float
    attempts: int = 0
    input_tokens: int | None = None  # None until an attempt's usage is known: absent, never 0
    output_tokens: int | None = None
    cost_usd: float | None = None


def latest_semconv(value: str | None = None) -> bool:
    """Whether ``OTEL_SEMCONV_STABILITY_OPT_IN`` (or ``value``) opts in to the latest GenAI names.

    Example:
        >>> latest_semconv("http,gen_ai_latest_experimental"), latest_semconv("")
        (True, False)
    """
    import os

    text = os.environ.get(SEMCONV_OPT_IN_ENV, "") if value is None else value
    return LATEST_EXPERIMENTAL in (part.strip() for part in text.split(","))


def provider_name(provider: str, kind: str) -> str:
    """``gen_ai.provider.name`` for a deployment: a well-known value, or the deployment's own name."""
    return _PROVIDER_NAMES.get(provider) or _PROVIDER_NAMES.get(kind) or provider


class Telemetry:
    """Emits spans and metrics for every attempt the request loop reports.

    Args:
        tracer_provider: Where spans go; the global provider when ``None``.
        meter_provider: Where metrics go; the global provider when ``None``.
        logger_provider: Where the content event goes (``capture_content``); the global logs
            provider when ``None``.
        capture_content: Record the request's messages and the answer (redacted), as the
            ``gen_ai.client.inference.operation.details`` event and on the attempt span. Off by
            default.
        prices: For the cost attribute and metric; the catalog's when ``None``.
        operation: ``gen_ai.operation.name`` (``chat``).
        request_timeout_s: End a request span this long after its last failed attempt.
        semconv_opt_in: The ``OTEL_SEMCONV_STABILITY_OPT_IN`` value; read from the environment
            when ``None``.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        logger_provider: LoggerProvider | None = None,
        capture_content: bool = False,
        prices: PriceTable | None = None,
        operation: str = "chat",
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        semconv_opt_in: str | None = None,
    ) -> None:
        from opentelemetry import metrics, trace  # only clients that use telemetry pay for the import

        self._trace = trace
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(SCOPE)
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(SCOPE)
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens used per attempt",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="Duration of each attempt",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._ttft = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to first chunk",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._cost_usd = meter.create_counter("switchyard.client.cost", unit="USD", description="Cost in USD")
        self.capture_content = capture_content
        self._events: Any = None
        if capture_content:
            from opentelemetry import _logs

            self._events = (logger_provider or _logs.get_logger_provider()).get_logger(SCOPE)
        self.latest = latest_semconv(semconv_opt_in)
        self._prices = prices
        self.operation = operation
        self.request_timeout_s = request_timeout_s
        self._requests: dict[str, _Request] = {}
        self._overflow: list[_Request] = []
        self._bases: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self._last_sweep = time.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def from_policy(cls, policy: Any, **kwargs: Any) -> Telemetry:
        """A ``Telemetry`` configured by a policy: ``telemetry.capture_content`` and its prices."""
        kwargs.setdefault("prices", PriceTable.from_policy(policy))
        return cls(capture_content=bool(policy.telemetry.capture_content), **kwargs)

    @property
    def prices(self) -> PriceTable:
        if self._prices is None:
            self._prices = PriceTable.from_catalog()
        return self._prices

    # --- the observer ----------------------------------------------------------------------------

    def attempt_finished(self, record: AttemptRecord) -> None:
        """Write the attempt's span (and its request's, when the request is over) and metrics."""
        now_ns, now_perf = time.time_ns(), time.perf_counter()
        start_ns = now_ns - int((now_perf - record.started) * 1e9)
        end_ns = start_ns + int(record.duration_s * 1e9)
        tokens = attempt_tokens(record)
        cost = self._cost(record, tokens)
        base = self._base_attributes(record)
        request = self._request_for(record, start_ns)
        span: Span = request.span
        recording = request.span.is_recording()
        # redacted once, for both places, and only when one of them takes it
        wanted = self.capture_content and (recording or self._events is not None)
        content = _content(record) if wanted else None
        if recording:  # without an SDK, spans are no-ops: skip their attributes
            span = self._tracer.start_span(
                f"{self.operation} {record.candidate.target.model}",
                context=self._trace.set_span_in_context(request.span),
                kind=self._trace.SpanKind.CLIENT,
                start_time=start_ns,
            )
            span.set_attributes({**base, **self._attempt_attributes(record, tokens, cost, content)})
            self._set_status(span, record)
            span.end(end_time=end_ns)
        if self._events is not None and content is not None:
            self._emit_content(record, tokens, base, span, end_ns, content)
        self._record_metrics(record, tokens, cost, base)
        with self._lock:
            request.attempts += 1
            request.last_seen = time.monotonic()
            if tokens is not None:
                request.input_tokens = (request.input_tokens or 0) + tokens.prompt
                request.output_tokens = (request.output_tokens or 0) + tokens.completion
            if cost is not None:
                request.cost_usd = (request.cost_usd or 0.0) + cost
        if record.outcome in _TERMINAL:
            self._end_request(record.request_id, record, {**base, **_response_attributes(record)}, end_ns)
        self._sweep()

    def request_finished(self, request_id: str, error: BaseException | None = None) -> None:
        """End a request's span now (the request loop calls this after its last failed attempt)."""
        with self._lock:
            request = self._requests.pop(request_id, None)
        if request is not None:
            self._close_request(request, None, None, error, time.time_ns())

    def close(self) -> None:
        """End every request span still open (their requests are over or abandoned)."""
        with self._lock:
            pending, self._requests = list(self._requests.values()), {}
        for request in pending:
            self._close_request(request, None, None, None, time.time_ns())

    # --- spans -----------------------------------------------------------------------------------

    def _request_for(self, record: AttemptRecord, start_ns: int) -> _Request:
        with self._lock:
            request = self._requests.get(record.request_id)
            if request is None:
                name = record.route or record.candidate.name
                span = self._tracer.start_span(
                    f"{self.operation} {name}", kind=self._trace.SpanKind.CLIENT, start_time=start_ns
                )
                if span.is_recording():
                    span.set_attribute("switchyard.request_id", record.request_id)
                    if record.route:
                        span.set_attribute("switchyard.route", record.route)
                    span.set_attribute("gen_ai.operation.name", self.operation)
                    span.set_attributes(_request_attributes(record))
                request = _Request(span, time.monotonic())
                self._requests[record.request_id] = request
                if len(self._requests) > MAX_OPEN_REQUESTS:
                    oldest = next(iter(self._requests))
                    self._overflow.append(self._requests.pop(oldest))
            return request

    def _end_request(self, request_id: str, served: AttemptRecord, base: dict[str, Any], end_ns: int) -> None:
        with self._lock:
            request = self._requests.pop(request_id, None)
        if request is not None:
            self._close_request(request, served, base, served.error, end_ns)

    def _close_request(
        self,
        request: _Request,
        served: AttemptRecord | None,
        base: dict[str, Any] | None,
        error: BaseException | None,
        end_ns: int,
    ) -> None:
        span = request.span
        if not span.is_recording():
            span.end(end_time=end_ns)
            return
        attributes: dict[str, Any] = {**(base or {}), "switchyard.attempts": request.attempts}
        if request.input_tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = request.input_tokens
        if request.output_tokens is not None:
            attributes["gen_ai.usage.output_tokens"] = request.output_tokens
        if request.cost_usd is not None:
            attributes["switchyard.cost_usd"] = request.cost_usd
        span.set_attributes(attributes)
        if served is None or served.outcome not in ("ok", "closed"):
            failure = error if error is not None else (served.error if served is not None else None)
            span.set_attribute("error.type", type(failure).__name__ if failure is not None else "_OTHER")
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        span.end(end_time=end_ns)

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < SWEEP_EVERY_S and not self._overflow:
            return  # a full scan per attempt would cost O(open requests)
        self._last_sweep = now
        limit = now - self.request_timeout_s
        with self._lock:
            stale = [rid for rid, r in self._requests.items() if r.last_seen < limit]
            expired = [self._requests.pop(rid) for rid in stale] + self._overflow
            self._overflow = []
        for request in expired:
            self._close_request(request, None, None, None, time.time_ns())

    # --- attributes and metrics ------------------------------------------------------------------

    def _cost(self, record: AttemptRecord, tokens: AttemptTokens | None) -> float | None:
        if tokens is None:
            return None
        candidate = record.candidate
        # lookup, not cost(): an unpriced model is the meter's to warn about, once
        price = self.prices.lookup(candidate.name, candidate.target.provider)
        if price is None:
            return None
        cost = price.cost(
            tokens.prompt,
            tokens.completion,
            tokens.cached,
            tokens.reasoning,
            tokens.cache_write,
            tokens.cache_write_1h,
        )
        return float(cost)

    def _base_attributes(self, record: AttemptRecord) -> dict[str, Any]:
        """The attributes of a deployment, cached: they are the same for every attempt on it."""
        target = record.candidate.target
        key = (target.provider, target.kind, target.model, target.base_url)
        cached = self._bases.get(key)
        if cached is None:
            if len(self._bases) >= MAX_CACHED_DEPLOYMENTS:
                self._bases.clear()
            cached = self._bases[key] = self._deployment_attributes(record)
        return cached

    def _deployment_attributes(self, record: AttemptRecord) -> dict[str, Any]:
        target = record.candidate.target
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": self.operation,
            "gen_ai.provider.name": provider_name(target.provider, target.kind),
            "gen_ai.request.model": target.model,
        }
        if not self.latest:  # the v1.36.0 name, until OTEL_SEMCONV_STABILITY_OPT_IN opts out of it
            attributes["gen_ai.system"] = attributes["gen_ai.provider.name"]
        try:
            url = urlsplit(target.base_url)
            if url.hostname:
                attributes["server.address"] = url.hostname
            if url.port:
                attributes["server.port"] = url.port
        except ValueError:
            pass  # an unparsable base URL: the server attributes are optional
        return attributes

    def _attempt_attributes(
        self,
        record: AttemptRecord,
        tokens: AttemptTokens | None,
        cost: float | None,
        content: dict[str, Any] | None,
    ) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "switchyard.request_id": record.request_id,
            "switchyard.attempt": record.attempt,
            "switchyard.model": record.candidate.name,
            "switchyard.outcome": record.outcome,
            **_request_attributes(record),
            **_response_attributes(record),
        }
        if record.route:
            attributes["switchyard.route"] = record.route
        if record.status_code is not None:
            attributes["http.response.status_code"] = record.status_code
        if record.ttft_s is not None:
            attributes["switchyard.ttft_s"] = record.ttft_s
        if tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = tokens.prompt
            attributes["gen_ai.usage.output_tokens"] = tokens.completion
            attributes["gen_ai.usage.cache_read.input_tokens"] = tokens.cached
            attributes["gen_ai.usage.reasoning.output_tokens"] = tokens.reasoning
            if tokens.cache_write:  # reported only by upstreams that write caches (Anthropic)
                attributes["gen_ai.usage.cache_creation.input_tokens"] = tokens.cache_write
            attributes["switchyard.usage.estimated"] = tokens.estimated
        if cost is not None:
            attributes["switchyard.cost_usd"] = cost
        if content is not None:
            attributes.update(_content_attributes(content))
        return attributes

    def _emit_content(
        self,
        record: AttemptRecord,
        tokens: AttemptTokens | None,
        base: dict[str, Any],
        span: Span,
        end_ns: int,
        content: dict[str, Any],
    ) -> None:
        """The attempt's ``gen_ai.client.inference.operation.details`` event: structured messages."""
        from opentelemetry._logs import LogRecord

        attributes: dict[str, Any] = {key: base[key] for key in _EVENT_KEYS if key in base}
        attributes.update(_request_attributes(record))
        attributes.update(_response_attributes(record))
        attributes["switchyard.request_id"] = record.request_id
        attributes["switchyard.attempt"] = record.attempt
        if tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = tokens.prompt
            attributes["gen_ai.usage.output_tokens"] = tokens.completion
        if record.error is not None:
            attributes["error.type"] = type(record.error).__name__
        attributes.update(content)
        context = self._trace.set_span_in_context(span)
        try:
            event = LogRecord(
                timestamp=end_ns, context=context, event_name=CONTENT_EVENT, attributes=attributes
            )
        except TypeError:  # an opentelemetry-api before event_name (1.35): the older event.name attribute
            event = LogRecord(timestamp=end_ns, attributes={**attributes, "event.name": CONTENT_EVENT})
        self._events.emit(event)

    def _set_status(self, span: Span, record: AttemptRecord) -> None:
        if record.error is None:
            return
        # Only the class: an upstream's message may echo a prompt or a (masked) key.
        span.set_attribute("error.type", type(record.error).__name__)
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))

    def _record_metrics(
        self, record: AttemptRecord, tokens: AttemptTokens | None, cost: float | None, base: dict[str, Any]
    ) -> None:
        if record.response_model:  # recommended on the metrics too
            base = {**base, "gen_ai.response.model": record.response_model}
        if record.error is not None:
            self._duration.record(record.duration_s, {**base, "error.type": type(record.error).__name__})
        else:
            self._duration.record(record.duration_s, base)
        if record.ttft_s is not None:
            self._ttft.record(record.ttft_s, base)
        if tokens is not None:
            self._tokens.record(tokens.prompt, {**base, "gen_ai.token.type": "input"})
            self._tokens.record(tokens.completion, {**base, "gen_ai.token.type": "output"})
        if cost is not None:
            self._cost_usd.add(cost, base)


def _request_attributes(record: AttemptRecord) -> dict[str, Any]:
    return {f"gen_ai.request.{name}": value for name, value in record.request_params.items()}


def _response_attributes(record: AttemptRecord) -> dict[str, Any]:
    """What the upstream said it answered with; nothing for an attempt it never answered."""
    attributes: dict[str, Any] = {}
    if record.response_model:
        attributes["gen_ai.response.model"] = record.response_model
    if record.response_id:
        attributes["gen_ai.response.id"] = record.response_id
    if record.finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = list(record.finish_reasons)
    return attributes


def _content_attributes(content: dict[str, Any]) -> dict[str, Any]:
    """The opted-in content (`_content`) on a span: the event's structured messages, as JSON
    strings (span attributes cannot hold maps)."""
    return {key: json.dumps(value) for key, value in content.items()}


def _content(record: AttemptRecord) -> dict[str, Any]:
    """The opted-in content, redacted and structured: the request's messages and the answer's text
    (the conventions' input and output messages schemas; an output message names its finish reason)."""
    content: dict[str, Any] = {}
    if record.request_messages:
        content["gen_ai.input.messages"] = [_message(m) for m in record.request_messages]
    text = record.streamed_text or record.reply_text
    if text:
        finish = record.finish_reasons[0] if record.finish_reasons else _unfinished(record)
        answer = {
            "role": "assistant",
            "parts": [{"type": "text", "content": redact(text)}],
            "finish_reason": finish,
        }
        content["gen_ai.output.messages"] = [answer]
    return content


def _unfinished(record: AttemptRecord) -> str:
    """The finish reason of an answer the upstream never finished: ``error`` when it failed."""
    return "error" if record.error is not None else "stop"


def _message(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, str):
        parts: list[dict[str, Any]] = [{"type": "text", "content": redact(content)}]
    elif isinstance(content, list):
        parts = [
            {"type": "text", "content": redact(str(part.get("text", "")))}
            if part.get("type") == "text"
            else {"type": str(part.get("type", "unknown"))}  # images, audio, files: their kind only
            for part in content
            if isinstance(part, dict)
        ]
    else:
        parts = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        parts.append({"type": "tool_call", "id": call.get("id"), "name": function.get("name")})
    return {"role": str(message.get("role", "")), "parts": parts}
