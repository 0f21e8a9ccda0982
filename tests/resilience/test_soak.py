"""The fast soak: 400 requests (64 concurrent async, some sync in threads), 30 % faults, all succeed;
half the streams' callers ask for no usage (metered as the core meters them: the upstream is asked).

Both sides must agree exactly: attempts = requests the servers logged, metered tokens = served
tokens, each attempt reported once; and no fd, socket or asyncio task is left behind. The long
variant (2,000 and 20,000 requests, real delays, RSS and tracemalloc) is ``bench/resilience.py``.
"""

from __future__ import annotations

from tests.resilience.soak import run_soak


def test_fast_soak() -> None:
    report = run_soak(400, concurrency=64, fault_rate=0.3)
    assert report.failures == []
    assert report.duplicates == 0
    assert report.attempts == report.logged, report.outcomes
    assert report.metered_ok == report.served_ok == 400
    assert report.metered_tokens == report.served_tokens
    assert report.estimated_ok == 0  # every served attempt was metered with the upstream's own usage
    assert report.fds[1] == report.fds[0]
    assert report.sockets[1] == report.sockets[0]
    assert report.tasks[1] == report.tasks[0]
