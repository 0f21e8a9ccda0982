"""A worker process for the cross-process state tests: ``python worker.py '<json config>'``.

Modes (``config["mode"]``):

- ``budget``: ``threads`` threads reserve, "call" and settle against one token budget per round
  until each round's deadline; prints the counts of each round.
- ``hold``: takes ``holds`` reservations, prints ``{"ready": ...}`` and sleeps, to be killed.
- ``ratelimit``: ``threads`` threads send ``requests`` requests in all, evenly spread over
  ``duration_s``; prints every admission time and every retry-after.

``budget`` and ``ratelimit`` workers print ``{"ready": true}`` once imported and connected, then read
``{"start_at": <unix time>}`` from stdin, so that all processes of a test start together however
long their imports took.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from typing import Any

from gateway.budgets import Budget, Budgets, Cost, Subject
from gateway.core.errors import BudgetExceededError
from gateway.ratelimit import RateLimit, RateLimiter
from gateway.state import BackendConfig, open_backend
from gateway.state.errors import RateLimitExceededError

SUBJECT = Subject(team="team-a", key="key-1", route="support")


def sleep_until(when: float) -> None:
    time.sleep(max(0.0, when - time.time()))


def budget_round(config: dict[str, Any], budgets: Budgets, deadline: float, seed: int) -> dict[str, int]:
    counts = {"granted": 0, "refused": 0, "charged": 0, "overrun": 0}
    lock = threading.Lock()

    def run(thread: int) -> None:
        rng = random.Random(seed * 1000 + thread)
        mine = dict.fromkeys(counts, 0)
        while time.time() < deadline:
            try:
                hold = budgets.reserve(SUBJECT, Cost(tokens=config["estimate"]))
            except BudgetExceededError:
                mine["refused"] += 1
                time.sleep(0.002)
                continue
            time.sleep(rng.uniform(0, config["call_s"]))  # the upstream call
            actual = rng.randint(config["actual_min"], config["actual_max"])
            budgets.settle(hold, Cost(tokens=actual))
            mine["granted"] += 1
            mine["charged"] += actual
            mine["overrun"] = max(mine["overrun"], actual - config["estimate"])
        with lock:
            for name, value in mine.items():
                counts[name] = max(counts[name], value) if name == "overrun" else counts[name] + value

    threads = [threading.Thread(target=run, args=(i,)) for i in range(config["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts


def wait_for_start(config: dict[str, Any]) -> None:
    print(json.dumps({"ready": True}), flush=True)
    config["start_at"] = json.loads(sys.stdin.readline())["start_at"]


def run_budget(config: dict[str, Any]) -> dict[str, Any]:
    backend = open_backend(BackendConfig(config["url"], key_prefix=config["prefix"], timeout_s=5.0))
    wait_for_start(config)
    rounds = []
    sleep_until(config["start_at"])
    for number, name in enumerate(config["budgets"]):
        budgets = Budgets(backend, [Budget(name, config["limit"], "tokens", "month", "team")], lease_s=30)
        deadline = config["start_at"] + (number + 1) * config["round_s"]
        rounds.append(budget_round(config, budgets, deadline, config["seed"] * 100 + number))
    return {"rounds": rounds}


def run_hold(config: dict[str, Any]) -> None:
    backend = open_backend(BackendConfig(config["url"], key_prefix=config["prefix"], timeout_s=5.0))
    budget = Budget(config["budget"], config["limit"], "tokens", "month", "team")
    budgets = Budgets(backend, [budget], lease_s=config["lease_s"])
    for _ in range(config["holds"]):
        budgets.reserve(SUBJECT, Cost(tokens=config["amount"]))
    print(json.dumps({"ready": time.time()}), flush=True)
    time.sleep(600)


def run_ratelimit(config: dict[str, Any]) -> dict[str, Any]:
    backend = open_backend(BackendConfig(config["url"], key_prefix=config["prefix"], timeout_s=5.0))
    limit = RateLimit("shared", config["rate"], config["burst"], scope="global")
    wait_for_start(config)
    admitted: list[float] = []
    refused: list[tuple[float, float]] = []
    lock = threading.Lock()
    per_thread = config["requests"] // config["threads"]
    spacing = config["duration_s"] / per_thread

    def run(thread: int) -> None:
        now_of_call = 0.0

        def clock() -> float:
            return now_of_call

        limiter = RateLimiter(backend, [limit], fail_open=False, clock=clock)
        offset = thread * spacing / config["threads"]
        for i in range(per_thread):
            sleep_until(config["start_at"] + offset + i * spacing)
            now_of_call = time.time()
            try:
                limiter.acquire(SUBJECT)
            except RateLimitExceededError as error:
                with lock:
                    refused.append((now_of_call, error.retry_after_s))
            else:
                with lock:
                    admitted.append(now_of_call)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(config["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"admitted": admitted, "refused": refused}


def main() -> None:
    config = json.loads(sys.argv[1])
    mode = config["mode"]
    if mode == "hold":
        run_hold(config)
        return
    result = run_budget(config) if mode == "budget" else run_ratelimit(config)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
