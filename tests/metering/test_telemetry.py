"""Telemetry: GenAI spans per request and attempt, the client metrics, content only when opted in."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import gateway
from gateway.metering import ModelPrice, PriceTable
from gateway.telemetry import Telemetry

PRICES = PriceTable({"openai/gpt-4o-mini": ModelPrice(Decimal("0.15"), Decimal("0.60"))})


@dataclass
class OTel:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logs: InMemoryLogRecordExporter
    logger_provider: LoggerProvider

    def telemetry(self, **kwargs: Any) -> Telemetry:
        return Telemetry(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            logger_provider=self.logger_provider,
            prices=PRICES,
            **kwargs,
        )

    def events(self) -> list[Any]:
        return [finished.log_record for finished in self.logs.get_finished_logs()]

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def metric_points(self) -> dict[str, list[Any]]:
        data = self.metrics.get_metrics_data()
        points: dict[str, list[Any]] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points.setdefault(metric.name, []).extend(metric.data.data_points)
        return points


@pytest.fixture
def otel() -> Iterator[OTel]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    yield OTel(exporter, reader, tracer_provider, meter_provider, logs, logger_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()
    logger_provider.shutdown()


def test_request_and_attempt_spans_follow_genai_conventions(
    otel: OTel, scripted_url: str, make_client: Callable[..., gateway.OpenAI]
) -> None:
    telemetry = otel.telemetry()
    client = make_client(api_key="sk-test", base_url=scripted_url, observer=telemetry)
    client.chat.completions.create(
        model="flaky1:gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}]
    )
    spans = otel.finished()
    [request] = [s for s in spans if s.parent is None]
    attempts = sorted(
        (s for s in spans if s.parent is not None), key=lambda s: s.attributes["switchyard.attempt"]
    )
    assert [s.parent.span_id for s in attempts] == [request.context.span_id] * 2  # type: ignore[union-attr]
    assert all(s.kind is SpanKind.CLIENT for s in spans)
    failed, served = attempts
    assert failed.attributes["error.type"] == "InternalServerError"
    assert failed.status.status_code is StatusCode.ERROR
    assert "gen_ai.usage.input_tokens" not in failed.attributes
    assert served.name == "chat flaky1:gpt-4o-mini"
    assert {k: v for k, v in served.attributes.items() if k.startswith("gen_ai.")} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",  # the v1.36.0 name, without OTEL_SEMCONV_STABILITY_OPT_IN
        "gen_ai.request.model": "flaky1:gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini",  # what the upstream says answered, not what was asked
        "gen_ai.response.id": served.attributes["gen_ai.response.id"],
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 2,
        "gen_ai.usage.output_tokens": 3,
        "gen_ai.usage.cache_read.input_tokens": 0,
        "gen_ai.usage.reasoning.output_tokens": 0,
    }
    assert str(served.attributes["gen_ai.response.id"]).startswith("chatcmpl-")
    assert "gen_ai.response.model" not in failed.attributes  # it never answered
    assert request.attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert served.attributes["server.address"] == "127.0.0.1"
    assert served.status.status_code is StatusCode.UNSET
    assert request.attributes["switchyard.attempts"] == 2
    assert request.attributes["gen_ai.usage.output_tokens"] == 3
    assert (
        request.start_time
        <= failed.start_time
        < failed.end_time
        <= served.start_time
        <= served.end_time
        == request.end_time
    )


def test_metrics_tokens_duration_ttft_and_cost(
    otel: OTel, scripted_url: str, make_client: Callable[..., gateway.OpenAI]
) -> None:
    telemetry = otel.telemetry()
    client = make_client(api_key="sk-test", base_url=scripted_url, observer=telemetry)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "one two"}])
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    list(stream)
    points = otel.metric_points()
    tokens = {(p.attributes["gen_ai.token.type"]): p.sum for p in points["gen_ai.client.token.usage"]}
    assert tokens == {"input": 2 + 1, "output": 3 + 2}
    [duration] = points["gen_ai.client.operation.duration"]
    assert duration.count == 2 and duration.attributes["gen_ai.provider.name"] == "openai"
    [ttft] = points["gen_ai.client.operation.time_to_first_chunk"]
    assert ttft.count == 1
    [cost] = points["switchyard.client.cost"]
    assert cost.value == pytest.approx(float((3 * Decimal("0.15") + 5 * Decimal("0.60")) / 1_000_000))


def test_failed_request_span_ends_on_request_finished_or_close(
    otel: OTel, scripted_url: str, make_client: Callable[..., gateway.OpenAI]
) -> None:
    telemetry = otel.telemetry()
    client = make_client(api_key="sk-test", base_url=scripted_url, observer=telemetry, max_retries=0)
    with pytest.raises(gateway.BadRequestError):
        client.chat.completions.create(model="error:400", messages=[{"role": "user", "content": "x"}])
    # the attempt's span, and the request's: it ends when the request does, not at close()
    assert sorted(s.parent is None for s in otel.finished()) == [False, True]
    request = [s for s in otel.finished() if s.parent is None][0]
    assert request.attributes["error.type"] and request.status.status_code is StatusCode.ERROR
    telemetry.close()
    assert len(otel.finished()) == 2


def test_content_is_captured_only_when_opted_in(
    otel: OTel, scripted_url: str, make_client: Callable[..., gateway.OpenAI]
) -> None:
    for capture in (False, True):
        otel.spans.clear()
        client = make_client(
            api_key="sk-test", base_url=scripted_url, observer=otel.telemetry(capture_content=capture)
        )
        list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "secret plan"}], stream=True
            )
        )
        text = repr([dict(s.attributes or {}) for s in otel.finished()])
        assert ("secret plan" in text) is capture
        assert len(otel.events()) == (1 if capture else 0)  # no content event unless opted in
        otel.logs.clear()


@pytest.mark.parametrize("opt_in", ["", "http,gen_ai_latest_experimental"])
def test_request_parameters_and_the_semconv_opt_in(
    otel: OTel, scripted_url: str, make_client: Callable[..., gateway.OpenAI], monkeypatch, opt_in: str
) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
    client = make_client(api_key="sk-test", base_url=scripted_url, observer=otel.telemetry())
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hello there"}],
        stream=True,
        temperature=0.2,
        top_p=0.9,
        max_tokens=50,
        stop=["END"],
        seed=7,
    )
    list(stream)
    [request] = [s for s in otel.finished() if s.parent is None]
    [attempt] = [s for s in otel.finished() if s.parent is not None]
    params = {
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.stop_sequences": ("END",),
        "gen_ai.request.seed": 7,
    }
    for span in (request, attempt):
        assert {k: v for k, v in span.attributes.items() if k in params} == params
    assert attempt.attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert attempt.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert str(attempt.attributes["gen_ai.response.id"]).startswith("chatcmpl-")
    assert ("gen_ai.system" in attempt.attributes) is (opt_in == "")
    assert attempt.attributes["gen_ai.provider.name"] == "openai"


def test_captured_content_covers_input_and_a_non_streamed_answer(
    otel: OTel, scripted_url: str, make_client: Callable[..., gateway.OpenAI]
) -> None:
    client = make_client(
        api_key="sk-test", base_url=scripted_url, observer=otel.telemetry(capture_content=True)
    )
    secret = "sk-proj-" + "a" * 40  # a bearer token pasted into a prompt: redacted everywhere
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": f"hello Bearer {secret}"},
        ],
    )
    [attempt] = [s for s in otel.finished() if s.parent is not None]
    inputs = json.loads(str(attempt.attributes["gen_ai.input.messages"]))
    assert [m["role"] for m in inputs] == ["system", "user"]
    assert inputs[0]["parts"] == [{"type": "text", "content": "be brief"}]
    [output] = json.loads(str(attempt.attributes["gen_ai.output.messages"]))
    assert output["role"] == "assistant" and output["parts"][0]["content"].startswith("Echo: hello")
    assert secret not in repr(dict(attempt.attributes))


def test_policy_section_maps_to_capture_content() -> None:
    from gateway.policy import parse_policy

    policy = parse_policy("version: 1\ntelemetry: {capture_content: true}")
    assert Telemetry.from_policy(policy).capture_content is True
    assert Telemetry.from_policy(parse_policy("version: 1")).capture_content is False


def test_without_an_sdk_it_is_a_no_op(scripted_url: str, make_client: Callable[..., gateway.OpenAI]) -> None:
    client = make_client(api_key="sk-test", base_url=scripted_url, observer=Telemetry(prices=PRICES))
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "Echo: hi"


def test_observer_group_forwards_the_end_of_a_failed_request(
    otel: OTel, scripted_url: str, make_client: Callable[..., gateway.OpenAI]
) -> None:
    from gateway.metering import ObserverGroup

    telemetry = otel.telemetry()
    group = ObserverGroup(telemetry)
    client = make_client(api_key="sk-test", base_url=scripted_url, observer=group, max_retries=0)
    with pytest.raises(gateway.BadRequestError) as raised:
        client.chat.completions.create(model="error:400", messages=[{"role": "user", "content": "x"}])
    # the request loop ends the request (through the group) when it raises its final error
    [request] = [s for s in otel.finished() if s.parent is None]
    assert request.attributes["error.type"] == "BadRequestError"
    [attempt] = [s for s in otel.finished() if s.parent is not None]
    group.request_finished(str(attempt.attributes["switchyard.request_id"]), raised.value)  # again: no-op
    assert len(otel.finished()) == 2


def test_failed_requests_end_their_spans_at_once(
    otel: OTel, scripted_url: str, make_client: Callable[..., gateway.OpenAI], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.telemetry as telemetry_module

    monkeypatch.setattr(telemetry_module, "MAX_OPEN_REQUESTS", 2)
    telemetry = otel.telemetry()
    client = make_client(api_key="sk-test", base_url=scripted_url, observer=telemetry, max_retries=0)
    for _ in range(4):
        with pytest.raises(gateway.BadRequestError):
            client.chat.completions.create(model="error:400", messages=[{"role": "user", "content": "x"}])
    assert len([s for s in otel.finished() if s.parent is None]) == 4  # none waits for a sweep or a cap


def test_histograms_use_the_conventions_bucket_boundaries(
    otel: OTel, scripted_url: str, make_client: Callable[..., gateway.OpenAI]
) -> None:
    telemetry = otel.telemetry()
    client = make_client(api_key="sk-test", base_url=scripted_url, observer=telemetry)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "one"}])
    points = otel.metric_points()
    [duration] = points["gen_ai.client.operation.duration"]
    assert list(duration.explicit_bounds) == [
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92
    ]  # fmt: skip
    assert {tuple(p.explicit_bounds) for p in points["gen_ai.client.token.usage"]} == {
        (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
    }


def test_cache_writes_are_an_attribute_and_unknown_counts_are_absent(otel: OTel) -> None:
    import time

    from gateway.core.attempts import AttemptRecord, Candidate
    from gateway.core.errors import InternalServerError
    from gateway.core.types import CompletionUsage, PromptTokensDetails
    from providers.base import Target

    target = Target(provider="anthropic", kind="anthropic", base_url="http://127.0.0.1:9", model="claude")
    usage = CompletionUsage(
        prompt_tokens=10_100,
        completion_tokens=5,
        total_tokens=10_105,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=0, cache_write_tokens=10_000),
    )

    def record(request_id: str, outcome: str, **kwargs: Any) -> AttemptRecord:
        return AttemptRecord(
            request_id, 0, Candidate(target, "claude"), None, time.perf_counter(), 0.1, None, outcome, None,
            **kwargs,
        )  # fmt: skip

    telemetry = otel.telemetry()
    telemetry.attempt_finished(record("r1", "ok", usage=usage))
    error = InternalServerError("boom", response=None, body=None)  # type: ignore[arg-type]
    telemetry.attempt_finished(record("r2", "InternalServerError", usage=None, error=error))
    telemetry.request_finished("r2", error)
    spans = {(s.attributes["switchyard.request_id"], s.parent is None): s for s in otel.finished()}
    served = spans[("r1", False)]
    assert served.attributes["gen_ai.usage.cache_creation.input_tokens"] == 10_000
    failed_request = spans[("r2", True)]
    assert failed_request.attributes["error.type"] == "InternalServerError"
    assert "gen_ai.usage.input_tokens" not in failed_request.attributes
    assert "gen_ai.usage.output_tokens" not in failed_request.attributes


def _messages(value: Any) -> list[dict[str, Any]]:
    """An event's structured messages as plain lists and dicts (the SDK hands back tuples)."""
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("stream", [False, True])
def test_content_is_the_conventions_operation_details_event(
    otel: OTel, scripted_url: str, make_client: Callable[..., gateway.OpenAI], stream: bool
) -> None:
    client = make_client(
        api_key="caller-credential", base_url=scripted_url, observer=otel.telemetry(capture_content=True)
    )
    secret = "sk-proj-" + "b" * 40  # a bearer token pasted into a prompt: redacted in the event too
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"hi Bearer {secret}"}]
    if stream:
        list(
            client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True, max_tokens=20)
        )
    else:
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=20)
    [attempt] = [s for s in otel.finished() if s.parent is not None]
    [event] = otel.events()
    assert event.event_name == "gen_ai.client.inference.operation.details"
    # in the attempt span's context: the event joins its trace
    assert (event.trace_id, event.span_id) == (attempt.context.trace_id, attempt.context.span_id)
    attributes = dict(event.attributes)
    inputs = _messages(attributes.pop("gen_ai.input.messages"))
    [output] = _messages(attributes.pop("gen_ai.output.messages"))
    assert inputs == [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {"role": "user", "parts": [{"type": "text", "content": inputs[1]["parts"][0]["content"]}]},
    ]
    assert secret not in repr(inputs) and "hi Bearer" in inputs[1]["parts"][0]["content"]
    assert output["role"] == "assistant" and output["finish_reason"] == "stop"
    assert output["parts"][0]["content"].startswith("Echo: hi")
    tokens = (
        attempt.attributes["gen_ai.usage.input_tokens"],
        attempt.attributes["gen_ai.usage.output_tokens"],
    )
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.max_tokens": 20,
        "gen_ai.response.model": "gpt-4o-mini",
        "gen_ai.response.id": attempt.attributes["gen_ai.response.id"],
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": tokens[0],
        "gen_ai.usage.output_tokens": tokens[1],
        "server.address": "127.0.0.1",
        "server.port": attempt.attributes["server.port"],
        "switchyard.request_id": attempt.attributes["switchyard.request_id"],
        "switchyard.attempt": 0,
    }
    # the span keeps the same content, as JSON strings
    assert json.loads(str(attempt.attributes["gen_ai.input.messages"])) == inputs
    assert json.loads(str(attempt.attributes["gen_ai.output.messages"])) == [output]


def test_a_cut_streams_content_event_names_the_error(
    otel: OTel, scripted_url: str, make_client: Callable[..., gateway.OpenAI]
) -> None:
    client = make_client(
        api_key="caller-credential",
        base_url=scripted_url,
        observer=otel.telemetry(capture_content=True),
        max_retries=0,
    )
    with pytest.raises(gateway.APIError):
        list(
            client.chat.completions.create(
                model="cut3:gpt-4o-mini", messages=[{"role": "user", "content": "tell me more"}], stream=True
            )
        )
    [event] = otel.events()
    [output] = _messages(event.attributes["gen_ai.output.messages"])
    assert output["finish_reason"] == "error" and output["parts"][0]["content"]  # what arrived
    assert event.attributes["error.type"]
