"""The router's view of the local engine's load uses the engine's real capacity (its max_batch)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.types import ChatRequest
from gateway.policy import parse_policy
from gateway.router import LocalEngineLoad, StatsSnapshot, plan
from local_engine import AsyncEngine, SamplingParams
from local_engine.engine.llm_engine import LLMEngine

POLICY = """\
version: 1
models:
  local:
    provider: local
    price: {input: 0, output: 0}
    ttft_s: 0.1
    tokens_per_s: 25
    tags: [local]
routes:
  r:
    candidates: [local]
    expected_output_tokens: 500
"""


def _local_latency(load: LocalEngineLoad) -> float:
    policy = parse_policy(POLICY, filename="p.yaml", env={})
    request = ChatRequest(model="route:r", messages=[{"role": "user", "content": "hi"}])
    result = plan(request, "r", policy, StatsSnapshot(local_engine=load), prompt_tokens=10)
    return result.candidates[0].latency_s


def test_a_request_joins_a_batch_with_room_without_waiting() -> None:
    # 4 running of 16: no wait, and the engine's 100 tok/s shared by 5
    assert _local_latency(LocalEngineLoad(running=4, tokens_per_s=100.0, max_batch=16)) == pytest.approx(
        0.1 + 500 / (100.0 / 5)
    )


def test_a_request_beyond_the_capacity_waits_and_then_shares_a_full_batch() -> None:
    # 16 running of 16 and 2 queued: it waits behind 3, then shares 100 tok/s among 16
    load = LocalEngineLoad(queue_depth=2, running=16, tokens_per_s=100.0, max_batch=16)
    assert _local_latency(load) == pytest.approx(0.1 * 4 + 500 / (100.0 / 16))


def test_without_a_capacity_every_queued_request_waits() -> None:
    load = LocalEngineLoad(queue_depth=3, running=4, tokens_per_s=100.0)
    assert _local_latency(load) == pytest.approx(0.1 * 4 + 500 / (100.0 / 5))


def test_stats_report_the_batch_the_engine_runs(engine: AsyncEngine) -> None:
    stats = engine.stats()
    assert stats.max_batch == engine.settings.max_batch == 4
    assert stats.running + stats.free_slots == stats.max_batch


def test_a_busy_engine_queues_beyond_max_batch(model_path: str) -> None:
    engine = LLMEngine.from_path(model_path, max_batch=2, max_model_len=128)
    params = SamplingParams(temperature=0, max_tokens=3, ignore_eos=True)
    for _ in range(3):
        engine.add_request("Hi", params)
    engine.step()
    stats = engine.stats()
    assert (stats.max_batch, stats.running, stats.queue_depth, stats.free_slots) == (2, 2, 1, 0)


def test_the_runtime_hands_the_capacity_to_the_router() -> None:
    from gateway.runtime import local_engine_load
    from providers import local

    served = local.engine_for(
        local.EMBEDDED_MODEL, {"dtype": "float32", "max_batch": 3, "max_model_len": 512}
    )
    reported = local.engine_load()  # the embedded engine first loaded in this process
    load = local_engine_load()
    assert reported is not None and load is not None
    assert load.max_batch == reported.max_batch == reported.running + reported.free_slots
    assert served.stats().max_batch == 3


def test_a_policys_engine_settings_are_checked_without_loading_a_model() -> None:
    from providers import local

    assert local.check_options({"dtype": "float32", "max_batch": 3, "model_roots": "/models"}) == []
    assert local.check_options({"dtype": "float7"}) == [
        ("dtype", "dtype='float7' is not one of float32, bfloat16, float16 [settings.invalid]")
    ]
    [(setting, message)] = local.check_options({"quantization": "int4", "device": "cuda"})
    assert setting == "quantization" and "CPU only" in message
    assert local.check_options({"max_batch": 0})[0][0] == "max_batch"


def test_the_default_batch_is_sized_from_memory_not_a_constant(model_path: str) -> None:
    from local_engine import EngineSettings
    from local_engine.loader.checkpoint import load_checkpoint
    from local_engine.settings import available_memory, default_max_batch

    def fits(config: Any) -> int:
        per_token = 2 * config.num_layers * config.num_kv_heads * config.head_dim * 4  # K and V, fp32
        return default_max_batch(per_token * 2048, available_memory("cpu"))

    config = load_checkpoint(model_path).config
    before = fits(config)
    engine = LLMEngine.from_settings(model_path, EngineSettings(dtype="float32", max_model_len=2048))
    # sized while the model loaded: between what the free memory allowed before and after
    assert fits(config) <= engine.settings.max_batch <= before
    assert engine.stats().max_batch == engine.runner.num_slots == engine.settings.max_batch
