"""A worker process for the every-kind shared-budget test: ``python budget_worker.py '<json config>'``.

Sends, through ``gateway.AsyncOpenAI(policy=...)``, every kind of request in turn until the shared
budget refuses ``stop_after`` times in a row: a hedged request (its loser finishes unread), a
streamed hedge (its loser is cancelled), a request to an unpriced model, a stream with usage, a
stream without it, a stream closed early and a stream cut upstream. Prints ``{"granted": n,
"refused": n}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import gateway

KINDS = ("hedged", "hedged_stream", "unpriced", "usage", "plain", "closed", "cut")


async def one(client: gateway.AsyncOpenAI, kind: str, messages: list[dict[str, str]]) -> None:
    model = {
        "hedged": "route:hedged",
        "hedged_stream": "route:hedged_stream",
        "unpriced": "free",
        "cut": "cutc",
    }
    name = model.get(kind, "mini")
    if kind in ("hedged", "unpriced"):
        await client.chat.completions.create(model=name, messages=messages, max_tokens=50)
        return
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if kind == "usage" else {}
    stream = await client.chat.completions.create(
        model=name, messages=messages, max_tokens=50, stream=True, **extra
    )
    try:
        n = 0
        async for _ in stream:
            n += 1
            if kind == "closed" and n == 2:
                break
    except gateway.APIError:
        pass  # the cut stream
    await stream.close()


async def main(config: dict[str, Any]) -> dict[str, int]:
    counts = {"granted": 0, "refused": 0}
    in_a_row = 0
    async with gateway.AsyncOpenAI(policy=str(config["policy"]), max_retries=0) as client:
        i = 0
        while in_a_row < int(config["stop_after"]):
            kind = KINDS[i % len(KINDS)]
            i += 1
            messages = [{"role": "user", "content": f"worker {config['seed']} request {i} says hello"}]
            try:
                await one(client, kind, messages)
            except gateway.BudgetExceededError:
                counts["refused"] += 1
                in_a_row += 1
                continue
            in_a_row = 0
            counts["granted"] += 1
        await asyncio.sleep(1.0)  # let the last hedge losers finish and be charged
    return counts


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
