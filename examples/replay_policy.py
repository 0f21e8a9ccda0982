"""Would a stricter policy have cost more last week? Replay the logged traffic and see.

python examples/replay_policy.py

A client routes forty requests through ``route:support`` (short questions go to the strong model,
long ones to the light one) and logs usage to a SQLite state file. ``switchyard replay`` then
re-plans those requests with a policy that asks for ``min_quality: 0.8`` and prints, per route,
the share per model, cost, quality and latency beside what actually happened.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from loopback_upstream import serve

from gateway import OpenAI
from gateway.cli import main

os.environ.setdefault("EXAMPLE_KEY", "sk-example")
STATE = Path(tempfile.mkdtemp()) / "state.sqlite"


def policy(name: str, strong_url: str, light_url: str, objective: str) -> Path:
    path = STATE.with_name(name)
    path.write_text(
        f"""
version: 1
providers:
  strong-host: {{kind: openai, base_url: "{strong_url}", api_key: "${{EXAMPLE_KEY}}"}}
  light-host: {{kind: openai, base_url: "{light_url}", api_key: "${{EXAMPLE_KEY}}"}}
models:
  strong: {{provider: strong-host, model: large, price: {{input: 30, output: 60}}, quality: 0.9}}
  light: {{provider: light-host, model: small, price: {{input: 0.5, output: 1}}, quality: 0.7}}
routes:
  support: {{candidates: [strong, light], {objective}}}
state: {{backend: sqlite, path: "{STATE}"}}
"""
    )
    return path


with serve("strong") as strong_url, serve("light") as light_url:
    today = policy(
        "today.yaml", strong_url, light_url, "utility: {quality_usd_per_1k: 1, latency_usd_per_1k: 0}"
    )
    stricter = policy("stricter.yaml", strong_url, light_url, "minimize: cost, min_quality: 0.8")
    with OpenAI(policy=today) as client:
        for i in range(40):
            question = "Where is my parcel?" if i % 4 else "Here is my whole order history: " + "item " * 400
            client.chat.completions.create(
                model="route:support", messages=[{"role": "user", "content": question}]
            )
    main(["replay", "--policy", str(stricter), "--baseline", str(today), "--since", "1h"])
