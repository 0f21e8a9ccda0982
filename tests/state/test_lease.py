"""Budget holds are leases kept alive by a heartbeat: a live request keeps its hold, a dead process's
hold is reclaimed a lease after its last renewal; the lease comes from the policy."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from gateway.budgets import DEFAULT_LEASE_S, Budget, Budgets, Cost, Subject
from gateway.guard import Guard
from gateway.policy import parse_policy
from gateway.state.memory import MemoryBackend
from gateway.state.sqlite import SQLiteBackend

ROOT = Path(__file__).resolve().parents[2]
SUBJECT = Subject(team="a")


def test_renew_extends_only_a_live_unexpired_hold(backend, clock) -> None:
    end = clock.now + 3600
    assert backend.reserve("w", 100, 10, "r1", 10.0, end, clock.now).granted
    clock.advance(8)
    assert backend.renew("w", "r1", 10.0, clock.now)  # now expires at +18
    clock.advance(8)
    assert backend.budget_usage("w", clock.now) == (0, 10)  # past the first lease, still held
    clock.advance(11)
    assert not backend.renew("w", "r1", 10.0, clock.now)  # expired: never revived
    assert backend.budget_usage("w", clock.now) == (0, 0)
    assert backend.reserve("w", 100, 10, "r2", 10.0, end, clock.now).granted
    assert backend.settle("w", "r2", 7, end, clock.now)
    assert not backend.renew("w", "r2", 10.0, clock.now)  # settled
    assert not backend.renew("w", "unknown", 10.0, clock.now)


def test_the_heartbeat_keeps_a_live_hold_past_its_lease() -> None:
    budgets = Budgets(MemoryBackend(), [Budget("b", 1000, "tokens")], lease_s=0.3)
    hold = budgets.reserve(SUBJECT, Cost(tokens=100))
    time.sleep(1.2)  # four leases
    assert budgets.status(SUBJECT)[0].reserved == 100
    budgets.settle(hold, Cost(tokens=60))
    [status] = budgets.status(SUBJECT)
    assert (status.used, status.reserved) == (60, 0)


def test_without_a_heartbeat_a_hold_lapses_with_its_lease() -> None:
    budgets = Budgets(MemoryBackend(), [Budget("b", 1000, "tokens")], lease_s=0.2, heartbeat=False)
    budgets.reserve(SUBJECT, Cost(tokens=100))
    time.sleep(0.4)
    assert budgets.status(SUBJECT)[0].reserved == 0


def test_a_killed_process_hold_is_reclaimed_a_lease_after_its_last_renewal(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    program = f"""
import sys, time
from gateway.budgets import Budget, Budgets, Cost, Subject
from gateway.state.sqlite import SQLiteBackend
budgets = Budgets(SQLiteBackend({str(path)!r}), [Budget("b", 1000, "tokens")], lease_s=1.0)
budgets.reserve(Subject(team="a"), Cost(tokens=100))
print("held", flush=True)
time.sleep(60)
"""
    child = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        budgets = Budgets(SQLiteBackend(str(path)), [Budget("b", 1000, "tokens")], heartbeat=False)
        time.sleep(2.0)  # two leases: the child's heartbeat kept it
        assert budgets.status(SUBJECT)[0].reserved == 100
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        killed = time.monotonic()
        while budgets.status(SUBJECT)[0].reserved:
            assert time.monotonic() - killed < 5.0, "the dead process's hold was never reclaimed"
            time.sleep(0.05)
        reclaimed_after = time.monotonic() - killed
        print(f"\nhold reclaimed {reclaimed_after:.2f} s after the kill (lease 1.0 s, renewed every 0.33 s)")
        assert reclaimed_after <= 1.0 + 0.5
        budgets.backend.close()
    finally:
        child.kill()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()


def test_the_lease_comes_from_the_policy() -> None:
    default = parse_policy("version: 1\nbudgets: {b: {window: day, limit_tokens: 10}}")
    assert Guard(default, MemoryBackend()).budgets.lease_s == DEFAULT_LEASE_S == 30.0
    short = parse_policy("version: 1\nstate: {lease_s: 5}\nbudgets: {b: {window: day, limit_tokens: 10}}")
    assert Guard(short, MemoryBackend()).budgets.lease_s == 5.0
