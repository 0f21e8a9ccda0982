"""A process that owns a ``Breakers`` over a shared Redis: ``python breaker_worker.py URL PREFIX``.

Reads one JSON command per line on stdin (``{"op": "allow"|"record"|"open", "name": ..., "now": ...,
"ok": ..., "probe": ...}``) and answers one JSON line each, so a test can drive two processes in
lockstep against one breaker.
"""

from __future__ import annotations

import json
import sys

from gateway.resilience.breaker import Breakers, BreakerSettings
from gateway.state.redis import RedisBackend


def main() -> None:
    url, prefix = sys.argv[1], sys.argv[2]
    now = [0.0]
    settings = BreakerSettings(window_s=60, min_calls=3, error_rate=0.5, cooldown_s=10, cooldown_factor=2)
    breakers = Breakers(RedisBackend(url, key_prefix=prefix), settings, clock=lambda: now[0])
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        now[0] = float(command.get("now", now[0]))
        op = command["op"]
        if op == "allow":
            decision = breakers.allow(command["name"])
            answer = {"allowed": decision.allowed, "probe": decision.probe, "reason": decision.reason}
        elif op == "record":
            state = breakers.record(command["name"], bool(command["ok"]), probe=bool(command.get("probe")))
            answer = {"status": state.status, "retry_at": state.retry_at}
        else:
            answer = {"open": sorted(breakers.open_breakers())}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
