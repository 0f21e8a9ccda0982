"""The soak: many requests, async and sync at once, 30 % faults on the primary, a healthy secondary.

``run_soak`` drives both loops against a faulty primary and a healthy secondary and returns what
both sides saw, so a test (fast) and ``bench/resilience.py`` (long, real delays) can check the same
equalities: every request succeeds, the attempts equal the requests the servers logged, the metered
tokens equal the tokens the servers served, and no socket, file descriptor or task is left behind.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import os
import random
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.core.attempts import DEFAULT_FALLBACK_ON, STREAM_METERING, AttemptRecord, Plan, StreamInfo
from gateway.core.execute import Executor
from gateway.core.execute_async import AsyncExecutor
from gateway.core.types import ChatRequest
from gateway.metering.streams import ask_for_usage, stream_metering
from gateway.resilience.deadline import Timeouts
from gateway.resilience.retry import RetrySettings
from tests.resilience.conftest import FAST, Records, candidate, chat_log
from tests.servers import openai_server
from tests.servers.faults import FastServer, FaultHandler
from tests.servers.http import LoopbackServer, Recorded

FAULTS = [
    "429-retry-after",
    "429",
    "500",
    "503",
    "529",
    "once-500",
    "reset",
    "hang",
    "slow-first-token-60000",
    "cut-after-3",
    "stall-mid",
    "stall-first",
    "invalid-sse",
    "invalid-sse-mid",
    "no-done",
    "split-event",
    "context-length",
    "auth",
]


@dataclass
class SoakReport:
    requests: int
    failures: list[str] = field(default_factory=list)
    attempts: int = 0
    duplicates: int = 0
    logged: int = 0
    served_tokens: tuple[int, int] = (0, 0)
    metered_tokens: tuple[int, int] = (0, 0)
    served_ok: int = 0
    metered_ok: int = 0
    estimated_ok: int = 0  # served attempts whose usage was counted, not reported (should be none)
    estimated: int = 0  # attempts cut or failed mid-stream, metered by the gateway's own count
    fds: tuple[int, int] = (0, 0)
    sockets: tuple[int, int] = (0, 0)
    tasks: tuple[int, int] = (0, 0)
    elapsed_s: float = 0.0
    memory: tuple[int, int] = (0, 0)  # tracemalloc current bytes, before and after
    # How the attempts ended, as the gateway recorded them and as the servers logged them (so that a
    # mismatch in the counts says which kind of attempt one side missed).
    outcomes: tuple[dict[str, int], dict[str, int]] = ({}, {})


def open_fds() -> tuple[int, int]:
    """(file descriptors, sockets) of this process."""
    names = os.listdir("/proc/self/fd")
    sockets = 0
    for name in names:
        try:
            sockets += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
        except OSError:
            continue
    return len(names), sockets


def soak_plan(
    primary: LoopbackServer,
    secondary: LoopbackServer,
    *,
    timeout_s: float,
    primary_retries: int | None = None,
) -> Plan:
    return Plan(
        [
            candidate(primary, "gpt-4o-mini", context_window=8192, max_retries=primary_retries),
            candidate(secondary, "gpt-4o-mini", "secondary", context_window=128_000),
        ],
        fallback_on=DEFAULT_FALLBACK_ON | {"context_length"},
        timeouts=Timeouts(read_s=timeout_s, first_token_s=timeout_s, stream_idle_s=timeout_s),
        buffer_tokens=16,
    )


@dataclass(frozen=True)
class Job:
    index: int
    stream: bool
    fault: str | None
    usage: bool = True  # a stream whose caller asked for usage; the others are metered as the core does

    @property
    def prompt(self) -> str:
        return f"soak request {self.index} about breakers"

    def request(self) -> ChatRequest:
        body: dict[str, Any] = {"model": "route", "messages": [{"role": "user", "content": self.prompt}]}
        if self.stream:
            body.update(stream=True)
            if self.usage:
                body.update(stream_options={"include_usage": True})
        return ChatRequest.model_validate(body)

    def headers(self) -> dict[str, str]:
        if self.fault is None:
            return {}
        return {"x-fault": self.fault, "x-fault-key": f"soak-{self.index}"}


def jobs(requests: int, fault_rate: float, seed: int) -> list[Job]:
    rng = random.Random(seed)
    return [
        Job(
            i,
            rng.random() < 0.5,
            rng.choice(FAULTS) if rng.random() < fault_rate else None,
            rng.random() < 0.5,
        )
        for i in range(requests)
    ]


class _Metered:
    """Meter a stream as the core does for a client with a policy (``CoreBase.meter_stream``): ask
    the upstream for usage, and hide it from a caller who did not ask."""

    def __init__(self, req: ChatRequest) -> None:
        self.metering = stream_metering(req)
        ask_for_usage(req)
        self.token: Any = None

    def __enter__(self) -> None:
        self.token = STREAM_METERING.set(self.metering)

    def __exit__(self, *exc: object) -> None:
        STREAM_METERING.reset(self.token)


def _usage_leak(job: Job, chunks: list[Any], failures: list[str]) -> None:
    if not job.usage and any(c.usage is not None for c in chunks):
        failures.append(f"request {job.index} ({job.fault}): a usage chunk reached a caller who did not ask")


def _text_of_sync(ex: Executor, plan: Plan, job: Job) -> str:
    req = job.request()
    if not job.stream:
        reply = ex.complete(req, plan, headers=job.headers(), timeout=5.0)
        return str(reply.choices[0].message.content)
    with _Metered(req):
        chunks = list(ex.stream(req, plan, headers=job.headers(), timeout=5.0, holder=StreamInfo()))
    _usage_leak(job, chunks, _FAILURES.get())
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def _text_of_async(ex: AsyncExecutor, plan: Plan, job: Job) -> str:
    req = job.request()
    if not job.stream:
        reply = await ex.complete(req, plan, headers=job.headers(), timeout=5.0)
        return str(reply.choices[0].message.content)
    with _Metered(req):
        chunks = [
            c async for c in ex.stream(req, plan, headers=job.headers(), timeout=5.0, holder=StreamInfo())
        ]
    _usage_leak(job, chunks, _FAILURES.get())
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


_FAILURES: contextvars.ContextVar[list[str]] = contextvars.ContextVar("soak_failures")


def _check(job: Job, text: str, failures: list[str]) -> None:
    if text != "Echo: " + job.prompt:
        failures.append(f"request {job.index} ({job.fault}): got {text!r}")


async def _async_part(
    ex_factory: Callable[[httpx.AsyncClient], AsyncExecutor],
    plan: Plan,
    work: list[Job],
    concurrency: int,
    failures: list[str],
) -> tuple[int, int]:
    tasks_before = len(asyncio.all_tasks())
    queue = iter(work)
    async with httpx.AsyncClient() as http:
        ex = ex_factory(http)

        async def worker() -> None:  # ``concurrency`` workers, so only that many requests exist at once
            _FAILURES.set(failures)
            for job in queue:
                try:
                    _check(job, await _text_of_async(ex, plan, job), failures)
                except Exception as exc:  # noqa: BLE001 - a soak failure is recorded, counted and reported
                    failures.append(f"request {job.index} ({job.fault}): {type(exc).__name__}: {exc}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tasks_before, len(asyncio.all_tasks())


def _sync_part(ex: Executor, plan: Plan, work: list[Job], threads: int, failures: list[str]) -> None:
    def one(job: Job) -> None:
        _FAILURES.set(failures)
        try:
            _check(job, _text_of_sync(ex, plan, job), failures)
        except Exception as exc:  # noqa: BLE001 - a soak failure is recorded, counted and reported
            failures.append(f"request {job.index} ({job.fault}): {type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, work))


def run_soak(
    requests: int,
    *,
    concurrency: int = 64,
    sync_share: float = 0.15,
    sync_threads: int = 4,
    fault_rate: float = 0.3,
    seed: int = 5,
    timeout_s: float = 2.0,
    retry: RetrySettings = FAST,
    retry_after_ms: int = 2,
    trace_memory: bool = False,
    primary_retries: int | None = None,
) -> SoakReport:
    """Run the soak and return what both sides saw (the caller asserts)."""
    if trace_memory:
        tracemalloc.start()
    # Earlier tests' garbage (sockets awaiting collection) must not be in the baseline: it would be
    # collected before the count after, and the soak would look as if it closed fds it never opened.
    gc.collect()
    before = open_fds()
    memory_before = tracemalloc.get_traced_memory()[0] if trace_memory else 0
    report = SoakReport(requests)
    records = Records()
    work = jobs(requests, fault_rate, seed)
    split = int(len(work) * sync_share)
    started = time.perf_counter()
    with (
        FastServer(FaultHandler(retry_after_ms=retry_after_ms)) as primary,
        FastServer(openai_server.handle) as secondary,
    ):
        plan = soak_plan(primary, secondary, timeout_s=timeout_s, primary_retries=primary_retries)
        with httpx.Client() as http:
            sync_ex = Executor(http, observer=records, retry=retry)
            sync_thread = threading.Thread(
                target=_sync_part, args=(sync_ex, plan, work[:split], sync_threads, report.failures)
            )
            sync_thread.start()
            report.tasks = asyncio.run(
                _async_part(
                    lambda h: AsyncExecutor(h, observer=records, retry=retry),
                    plan,
                    work[split:],
                    concurrency,
                    report.failures,
                )
            )
            sync_thread.join()
        report.elapsed_s = time.perf_counter() - started
    # The servers are closed (a hanging handler gives up), and the log is read once every handler has
    # finished: a request whose caller timed out before the server's thread got to read it (2 cores,
    # 64 connections) is logged when that thread reads it, which can be after the last caller returned.
    _settle_handlers()
    logs = chat_log(primary) + chat_log(secondary)
    primary.reset_log()
    secondary.reset_log()
    _summarise(report, list(records), logs)
    records.clear()
    del logs
    gc.collect()
    report.fds = (before[0], _settled_fds(before)[0])
    report.sockets = (before[1], _settled_fds(before)[1])
    if trace_memory:
        report.memory = (memory_before, tracemalloc.get_traced_memory()[0])
        tracemalloc.stop()
    return report


def _settle_handlers(wait_s: float = 10.0) -> None:
    """Wait for the loopback servers' handler threads (``socketserver`` names them) to finish."""
    end = time.monotonic() + wait_s
    while time.monotonic() < end and any("process_request_thread" in t.name for t in threading.enumerate()):
        time.sleep(0.02)


def _summarise(report: SoakReport, records: list[AttemptRecord], logs: list[Recorded]) -> None:
    """Both sides' counts; the records themselves are not kept (the leak run measures memory after)."""
    report.attempts = len(records)
    report.outcomes = (
        dict(Counter(r.outcome for r in records)),
        dict(Counter(str(r.outcome) for r in logs)),
    )
    report.duplicates = len(records) - len({(r.request_id, r.attempt) for r in records})
    report.logged = len(logs)
    served = [r.served_tokens for r in logs if r.served_tokens]
    report.served_ok = len(served)
    report.served_tokens = (
        sum(s.get("prompt", 0) for s in served),
        sum(s.get("completion", 0) for s in served),
    )
    ok = [r.usage for r in records if r.outcome == "ok" and r.usage is not None]
    report.metered_ok = len([r for r in records if r.outcome == "ok"])
    report.estimated_ok = len([r for r in records if r.outcome == "ok" and r.usage_estimated])
    report.estimated = len([r for r in records if r.usage_estimated])
    report.metered_tokens = (sum(u.prompt_tokens for u in ok), sum(u.completion_tokens for u in ok))


def _settled_fds(before: tuple[int, int], wait_s: float = 10.0) -> tuple[int, int]:
    """Open fds once the servers' handler threads have closed their sockets (they stop on close)."""
    end = time.monotonic() + wait_s
    now = open_fds()
    while now[0] > before[0] and time.monotonic() < end:
        time.sleep(0.05)
        now = open_fds()
    return now
