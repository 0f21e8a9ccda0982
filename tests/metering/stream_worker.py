"""A worker process for the shared-budget test: ``python stream_worker.py '<json config>'``.

Sends streams without ``include_usage`` through ``gateway.OpenAI(policy=...)`` until the shared
budget refuses ``stop_after`` times in a row: complete ones, ones closed after the first content,
ones cut upstream. Prints ``{"granted": n, "refused": n}``.
"""

from __future__ import annotations

import json
import sys

import gateway

MODELS = ("mini", "mini", "cutmini")


def main(config: dict[str, object]) -> dict[str, int]:
    counts = {"granted": 0, "refused": 0}
    refused_in_a_row = 0
    with gateway.OpenAI(policy=str(config["policy"]), max_retries=0) as client:
        i = 0
        while refused_in_a_row < int(str(config["stop_after"])):
            i += 1
            model = MODELS[i % len(MODELS)]
            messages = [{"role": "user", "content": f"worker {config['seed']} request {i} says hello"}]
            try:
                stream = client.chat.completions.create(
                    model=model, messages=messages, max_tokens=50, stream=True
                )
            except gateway.BudgetExceededError:
                counts["refused"] += 1
                refused_in_a_row += 1
                continue
            refused_in_a_row = 0
            counts["granted"] += 1
            try:
                for n, _ in enumerate(stream):
                    if i % 4 == 0 and n == 2:
                        break  # the caller closes early
            except gateway.APIError:
                pass  # a cut stream
            stream.close()
    return counts


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
