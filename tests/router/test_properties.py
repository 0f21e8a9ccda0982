"""Properties of the utility: per-candidate, so other candidates and price units cannot sway it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy import parse_policy
from gateway.router import StatsSnapshot, plan
from tests.router.conftest import request

_MODEL = st.tuples(
    st.integers(0, 100),  # quality, points
    st.integers(1, 40),  # ttft, tenths of a second
    st.integers(5, 300),  # tokens/s
    st.integers(0, 2000),  # input price, cents per 1M
    st.integers(0, 4000),  # output price, cents per 1M
)
_RATES = st.tuples(st.integers(0, 20), st.integers(0, 5), st.integers(0, 5))
_TIE = st.sampled_from(["cost", "quality", "latency"])


def _policy(models: list[tuple[int, int, int, int, int]], rates: tuple[float, float, float], tie: str):
    lines = ["version: 1", "models:"]
    for i, (q, ttft, tps, p_in, p_out) in enumerate(models):
        lines.append(
            f"  m{i}: {{provider: openai, quality: {q / 100}, ttft_s: {ttft / 10}, tokens_per_s: {tps}, "
            f"price: {{input: {p_in / 100}, output: {p_out / 100}}}}}"
        )
    names = ", ".join(f"m{i}" for i in range(len(models)))
    quality, ttft, latency = rates
    lines += [
        "routes:",
        f"  r: {{candidates: [{names}], utility: {{quality_usd_per_1k: {quality}, ttft_usd_per_1k: {ttft}, "
        f"latency_usd_per_1k: {latency}, tie_break: {tie}}}}}",
    ]
    return parse_policy("\n".join(lines) + "\n", filename="prop.yaml", env={})


def _winner(models, rates, tie) -> str:
    result = plan(request(), "r", _policy(models, rates, tie), StatsSnapshot(), prompt_tokens=1000)
    return result.candidates[0].model


def _dominated(model, worse: tuple[int, int, int, int, int]):
    """A candidate no better than ``model`` on any axis: lower quality, slower, dearer."""
    q, ttft, tps, p_in, p_out = model
    dq, dt, ds, di, do = worse
    return (max(0, q - dq), ttft + dt, max(5, tps - ds), p_in + di, p_out + do)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(_MODEL, min_size=1, max_size=5),
    _RATES,
    _TIE,
    st.data(),
    # ttft at least 0.1 s longer: strictly dominated (a copy would tie, and declared order decide)
    st.tuples(
        st.integers(0, 50), st.integers(1, 10), st.integers(0, 100), st.integers(0, 500), st.integers(0, 500)
    ),
)
def test_a_dominated_candidate_never_changes_the_winner(models, rates, tie, data, worse) -> None:
    winner = _winner(models, rates, tie)
    of = data.draw(st.integers(0, len(models) - 1))
    at = data.draw(st.integers(0, len(models)))
    extra = [*models[:at], _dominated(models[of], worse), *models[at:]]
    renamed = {f"m{i}": f"m{i + (i >= at)}" for i in range(len(models))}  # names shift past the insert
    assert _winner(extra, rates, tie) == renamed[winner]


@settings(max_examples=150, deadline=None)
@given(st.lists(_MODEL, min_size=2, max_size=5), _RATES, _TIE, st.sampled_from([0.25, 0.5, 2, 4, 8]))
def test_scaling_prices_by_k_is_dividing_the_dollar_rates_by_k(models, rates, tie, k) -> None:
    """Prices x k choose exactly what the original prices choose with every dollar rate / k.

    k is a power of two, so both sides are computed without rounding differences.
    """
    scaled = [(q, t, s, p_in * k, p_out * k) for q, t, s, p_in, p_out in models]
    rates_over_k = (rates[0] / k, rates[1] / k, rates[2] / k)
    assert _winner(scaled, rates, tie) == _winner(models, rates_over_k, tie)


@settings(max_examples=100, deadline=None)
@given(st.lists(_MODEL, min_size=2, max_size=5), _TIE, st.sampled_from([0.25, 0.5, 2, 4, 8]))
def test_with_only_dollars_in_the_utility_price_scale_changes_nothing(models, tie, k) -> None:
    scaled = [(q, t, s, p_in * k, p_out * k) for q, t, s, p_in, p_out in models]
    assert _winner(scaled, (0, 0, 0), tie) == _winner(models, (0, 0, 0), tie)
