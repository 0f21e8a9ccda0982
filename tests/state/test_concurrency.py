"""Budgets and rate limits shared by several processes, on SQLite and on Redis.

Each test starts worker processes (``worker.py``) in fresh interpreters, waits until all have
imported and connected, gives them one start time, then checks the totals in the shared backend.
"""

from __future__ import annotations

import time
import uuid

import pytest

from gateway.budgets import Budget, Budgets, Cost, Subject
from gateway.core.errors import BudgetExceededError
from gateway.state import BackendConfig, open_backend

PROCESSES = 4
THREADS = 32
ESTIMATE = 100
LIMIT = 20_000  # 200 worst-case requests per round
ROUNDS = 3
ROUND_S = 1.5
STALE_LEASE_S = 0.5
SUBJECT = Subject(team="team-a", key="key-1", route="support")
SHARED = ["sqlite", "redis"]

pytestmark = pytest.mark.slow


def _budgets(url: str, prefix: str, name: str, lease_s: float = 30) -> Budgets:
    backend = open_backend(BackendConfig(url, key_prefix=prefix, timeout_s=5.0))
    return Budgets(backend, [Budget(name, LIMIT, "tokens", "month", "team")], lease_s=lease_s)


def _run_rounds(workers, url: str, prefix: str, actual: tuple[int, int], stale: int) -> list[dict]:
    """Seed ``stale`` tokens of holds nobody will settle, then run the rounds; return per-round totals."""
    names = [f"shared-{uuid.uuid4().hex[:8]}" for _ in range(ROUNDS)]
    for name in names:
        dead = _budgets(url, prefix, name, lease_s=STALE_LEASE_S)
        for _ in range(stale // ESTIMATE):
            dead.reserve(SUBJECT, Cost(tokens=ESTIMATE))  # a process that died with holds in flight
    config = {
        "mode": "budget",
        "url": url,
        "prefix": prefix,
        "budgets": names,
        "limit": LIMIT,
        "threads": THREADS,
        "round_s": ROUND_S,
        "estimate": ESTIMATE,
        "actual_min": actual[0],
        "actual_max": actual[1],
        "call_s": 0.004,
    }
    results = workers.run_all([{**config, "seed": seed} for seed in range(PROCESSES)], timeout=60)
    totals = []
    for number, name in enumerate(names):
        status = _budgets(url, prefix, name).status(SUBJECT)[0]
        rounds = [result["rounds"][number] for result in results]
        totals.append(
            {
                "used": status.used,
                "reserved": status.reserved,
                "granted": sum(r["granted"] for r in rounds),
                "refused": sum(r["refused"] for r in rounds),
                "charged": sum(r["charged"] for r in rounds),
                "max_overrun": max(r["overrun"] for r in rounds),
            }
        )
    return totals


@pytest.mark.parametrize("kind", SHARED)
def test_no_overspend_and_no_starvation_when_estimates_are_upper_bounds(kind, workers, shared_url, request):
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    rounds = _run_rounds(workers, shared_url(kind), prefix, actual=(50, ESTIMATE), stale=LIMIT // 2)
    print(f"\n{kind} upper-bound rounds: {rounds}")
    for totals in rounds:
        assert totals["used"] == totals["charged"]  # every settlement landed exactly once
        assert totals["used"] <= LIMIT  # zero overspend
        assert totals["reserved"] == 0
        assert totals["refused"] > 0  # the budget really was the constraint
        # No starvation: the stale half of the budget was reclaimed (without that, used <= LIMIT / 2)
        # and the budget was used up but for the room freed by the last settlements (actuals are
        # below the estimates) after the round ended.
        assert totals["used"] >= 0.95 * LIMIT


@pytest.mark.parametrize("kind", SHARED)
def test_overspend_is_bounded_by_the_overruns_in_flight_when_actuals_exceed_estimates(
    kind, workers, shared_url
):
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    rounds = _run_rounds(workers, shared_url(kind), prefix, actual=(ESTIMATE, ESTIMATE + 30), stale=0)
    print(f"\n{kind} overrun rounds: {rounds}")
    for totals in rounds:
        assert totals["used"] == totals["charged"]
        overspend = totals["used"] - LIMIT
        # Holds are only granted while they fit, so the excess is the overruns of the holds in
        # flight when the budget filled: at most one per thread of every process.
        assert overspend <= PROCESSES * THREADS * totals["max_overrun"]
        assert totals["reserved"] == 0


@pytest.mark.parametrize("kind", SHARED)
def test_a_killed_process_holds_expire_within_their_lease(kind, workers, shared_url):
    url, prefix, name, lease_s = shared_url(kind), f"test:{uuid.uuid4().hex[:12]}:", "killed", 1.0
    config = {"mode": "hold", "url": url, "prefix": prefix, "budget": name, "limit": LIMIT}
    process = workers.start({**config, "holds": 4, "amount": LIMIT // 4, "lease_s": lease_s})
    line = process.stdout.readline()
    assert line, process.stderr.read()
    held_at = float(__import__("json").loads(line)["ready"])
    process.kill()
    process.communicate()
    budgets = _budgets(url, prefix, name)
    with pytest.raises(BudgetExceededError):
        budgets.reserve(SUBJECT, Cost(tokens=1))
    while True:
        try:
            budgets.reserve(SUBJECT, Cost(tokens=LIMIT))
            break
        except BudgetExceededError:
            assert time.time() < held_at + lease_s + 0.5, "holds outlived their lease"
            time.sleep(0.02)
    freed_after = time.time() - held_at
    print(f"\n{kind}: holds of a killed process freed {freed_after:.3f} s after they were taken (lease 1 s)")
    assert freed_after <= lease_s + 0.5


@pytest.mark.parametrize("kind", SHARED)
def test_rate_limit_across_processes_admits_at_most_rate_times_time_plus_burst(kind, workers, shared_url):
    rate, burst = 100.0, 10
    config = {
        "mode": "ratelimit",
        "url": shared_url(kind),
        "prefix": f"test:{uuid.uuid4().hex[:12]}:",
        "rate": rate,
        "burst": burst,
        "threads": 5,
        "requests": 250,
        "duration_s": 1.0,
    }
    results = workers.run_all([config] * PROCESSES, timeout=60)
    admitted = sorted(t for result in results for t in result["admitted"])
    refused = [(t, r) for result in results for t, r in result["refused"]]
    stamps = admitted + [t for t, _ in refused]
    span = max(stamps) - min(stamps)
    print(
        f"\n{kind}: {len(stamps)} requests over {span:.3f} s, {len(admitted)} admitted, {len(refused)} refused"
    )
    assert len(stamps) == PROCESSES * 250
    assert len(admitted) <= rate * span + burst
    assert len(admitted) >= rate * span * 0.8  # the limiter is not stricter than it should be
    # Every window of admissions respects the bound, not only the whole run (GCRA tolerates 1 us
    # of float rounding, hence the 2 us).
    for i, start in enumerate(admitted):
        for j in range(i + burst, len(admitted)):
            assert j - i + 1 <= rate * (admitted[j] - start + 2e-6) + burst
    # Each retry-after is positive and at most one emission interval (plus clock skew between
    # threads that took their time before another's call ran).
    assert all(0 < retry <= 1 / rate + 0.05 for _, retry in refused)
