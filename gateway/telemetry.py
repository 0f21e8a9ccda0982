"""OpenTelemetry for the gateway: a span per request and per attempt, and the GenAI client metrics.

``Telemetry`` is an observer (pass it to a client's ``observer=``, beside a meter in an
``ObserverGroup``). It follows the OpenTelemetry GenAI semantic conventions:

Spans (kind ``CLIENT``), named ``"{operation} {model}"``: one per request (the parent) and one per
attempt (its children), with ``gen_ai.operation.name``, ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``, ``gen_ai.usage.cache_read.input_tokens``,
``gen_ai.usage.reasoning.output_tokens``, ``gen_ai.response.finish_reasons`` when known,
``error.type`` on failure, ``server.address``/``server.port``, and the gateway's own
``switchyard.*`` attributes (request id, attempt, route, outcome, cost, estimated usage).

Metrics: ``gen_ai.client.token.usage`` (``{token}``, by ``gen_ai.token.type`` input/output),
``gen_ai.client.operation.duration`` (s), ``gen_ai.client.operation.time_to_first_chunk`` (s) and
``switchyard.client.cost`` (USD).

Content (``gen_ai.output.messages``) is recorded only when ``capture_content=True`` (the policy's
``telemetry.capture_content``), and always through the redaction function. API keys never appear.

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gateway._redact import redact
from gateway.attempts import AttemptRecord
from gateway.metering.meter import usage_record
from gateway.metering.pricing import PriceTable
from gateway.metering.records import UsageRecord

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["Telemetry"]

SCOPE = "switchyard"
DEFAULT_REQUEST_TIMEOUT_S = 600.0
SWEEP_EVERY_S = 1.0
MAX_OPEN_REQUESTS = 10_000  # request spans waiting for their end; the oldest is ended beyond this
_TERMINAL = frozenset({"ok", "partial", "closed"})
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
    usage: list[UsageRecord | None] = field(default_factory=list)


def provider_name(provider: str, kind: str) -> str:
    """``gen_ai.provider.name`` for a deployment: a well-known value, or the deployment's own name."""
    return _PROVIDER_NAMES.get(provider) or _PROVIDER_NAMES.get(kind) or provider


class Telemetry:
    """Emits spans and metrics for every attempt the request loop reports.

    Args:
        tracer_provider: Where spans go; the global provider when ``None``.
        meter_provider: Where metrics go; the global provider when ``None``.
        capture_content: Record the streamed completion text on spans (redacted). Off by default.
        prices: For the cost attribute and metric; the catalog's when ``None``.
        operation: ``gen_ai.operation.name`` (``chat``).
        request_timeout_s: End a request span this long after its last failed attempt.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        capture_content: bool = False,
        prices: PriceTable | None = None,
        operation: str = "chat",
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    ) -> None:
        from opentelemetry import metrics, trace  # only clients that use telemetry pay for the import

        self._trace = trace
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(SCOPE)
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(SCOPE)
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens used per attempt"
        )
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="Duration of each attempt"
        )
        self._ttft = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk", unit="s", description="Time to first chunk"
        )
        self._cost = meter.create_counter("switchyard.client.cost", unit="USD", description="Cost in USD")
        self.capture_content = capture_content
        self._prices = prices
        self.operation = operation
        self.request_timeout_s = request_timeout_s
        self._requests: dict[str, _Request] = {}
        self._overflow: list[_Request] = []
        self._last_sweep = time.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def from_policy(cls, policy: Any, **kwargs: Any) -> Telemetry:
        """A ``Telemetry`` configured by a policy's ``telemetry`` section (``capture_content``)."""
        section = getattr(policy, "telemetry", None)
        return cls(capture_content=bool(getattr(section, "capture_content", False)), **kwargs)

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
        usage = usage_record(record, self.prices, now=now_ns / 1e9)
        base = self._base_attributes(record)
        request = self._request_for(record, base, start_ns)
        context = self._trace.set_span_in_context(request.span)
        span = self._tracer.start_span(
            f"{self.operation} {record.candidate.target.model}",
            context=context,
            kind=self._trace.SpanKind.CLIENT,
            start_time=start_ns,
        )
        span.set_attributes({**base, **self._attempt_attributes(record, usage)})
        self._set_status(span, record)
        span.end(end_time=end_ns)
        self._record_metrics(record, usage, base)
        with self._lock:
            request.attempts += 1
            request.usage.append(usage)
            request.last_seen = time.monotonic()
        if record.outcome in _TERMINAL:
            self._end_request(record.request_id, record, end_ns)
        self._sweep()

    def request_finished(self, request_id: str, error: BaseException | None = None) -> None:
        """End a request's span now (the request loop calls this after its last failed attempt)."""
        with self._lock:
            request = self._requests.pop(request_id, None)
        if request is not None:
            self._close_request(request, None, error, time.time_ns())

    def close(self) -> None:
        """End every request span still open (their requests are over or abandoned)."""
        with self._lock:
            pending, self._requests = list(self._requests.values()), {}
        for request in pending:
            self._close_request(request, None, None, time.time_ns())

    # --- spans -----------------------------------------------------------------------------------

    def _request_for(self, record: AttemptRecord, base: dict[str, Any], start_ns: int) -> _Request:
        with self._lock:
            request = self._requests.get(record.request_id)
            if request is None:
                name = record.route or record.candidate.name
                span = self._tracer.start_span(
                    f"{self.operation} {name}", kind=self._trace.SpanKind.CLIENT, start_time=start_ns
                )
                span.set_attribute("switchyard.request_id", record.request_id)
                if record.route:
                    span.set_attribute("switchyard.route", record.route)
                span.set_attribute("gen_ai.operation.name", self.operation)
                request = _Request(span, time.monotonic())
                self._requests[record.request_id] = request
                if len(self._requests) > MAX_OPEN_REQUESTS:
                    oldest = next(iter(self._requests))
                    self._overflow.append(self._requests.pop(oldest))
            return request

    def _end_request(self, request_id: str, served: AttemptRecord, end_ns: int) -> None:
        with self._lock:
            request = self._requests.pop(request_id, None)
        if request is not None:
            self._close_request(request, served, served.error, end_ns)

    def _close_request(
        self, request: _Request, served: AttemptRecord | None, error: BaseException | None, end_ns: int
    ) -> None:
        span = request.span
        attributes: dict[str, Any] = {"switchyard.attempts": request.attempts}
        if served is not None:
            attributes.update(self._base_attributes(served))
        metered = [u for u in request.usage if u is not None]
        attributes["gen_ai.usage.input_tokens"] = sum(u.prompt_tokens for u in metered)
        attributes["gen_ai.usage.output_tokens"] = sum(u.completion_tokens for u in metered)
        costs = [u.cost_usd for u in metered if u.cost_usd is not None]
        if costs:
            attributes["switchyard.cost_usd"] = float(sum(costs))
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
            self._close_request(request, None, None, time.time_ns())

    # --- attributes and metrics ------------------------------------------------------------------

    def _base_attributes(self, record: AttemptRecord) -> dict[str, Any]:
        target = record.candidate.target
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": self.operation,
            "gen_ai.provider.name": provider_name(target.provider, target.kind),
            "gen_ai.request.model": target.model,
            "gen_ai.response.model": target.model,
        }
        try:
            url = urlsplit(target.base_url)
            if url.hostname:
                attributes["server.address"] = url.hostname
            if url.port:
                attributes["server.port"] = url.port
        except ValueError:
            pass  # an unparsable base URL: the server attributes are optional
        return attributes

    def _attempt_attributes(self, record: AttemptRecord, usage: UsageRecord | None) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "switchyard.request_id": record.request_id,
            "switchyard.attempt": record.attempt,
            "switchyard.model": record.candidate.name,
            "switchyard.outcome": record.outcome,
        }
        if record.route:
            attributes["switchyard.route"] = record.route
        if record.status_code is not None:
            attributes["http.response.status_code"] = record.status_code
        if record.ttft_s is not None:
            attributes["switchyard.ttft_s"] = record.ttft_s
        if usage is not None:
            attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
            attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
            attributes["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
            attributes["switchyard.usage.estimated"] = usage.estimated
            if usage.cost_usd is not None:
                attributes["switchyard.cost_usd"] = float(usage.cost_usd)
        if self.capture_content and record.streamed_text:
            message = {
                "role": "assistant",
                "parts": [{"type": "text", "content": redact(record.streamed_text)}],
            }
            attributes["gen_ai.output.messages"] = json.dumps([message])
        return attributes

    def _set_status(self, span: Span, record: AttemptRecord) -> None:
        if record.error is None:
            return
        # Only the class: an upstream's message may echo a prompt or a (masked) key.
        span.set_attribute("error.type", type(record.error).__name__)
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))

    def _record_metrics(self, record: AttemptRecord, usage: UsageRecord | None, base: dict[str, Any]) -> None:
        attributes = dict(base)
        if record.error is not None:
            attributes["error.type"] = type(record.error).__name__
        self._duration.record(record.duration_s, attributes)
        if record.ttft_s is not None:
            self._ttft.record(record.ttft_s, base)
        if usage is None:
            return
        self._tokens.record(usage.prompt_tokens, {**base, "gen_ai.token.type": "input"})
        self._tokens.record(usage.completion_tokens, {**base, "gen_ai.token.type": "output"})
        if usage.cost_usd is not None:
            self._cost.add(float(usage.cost_usd), base)
