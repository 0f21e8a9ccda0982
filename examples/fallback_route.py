"""A policy route with two candidates: the cheap one is down, so the request falls back.

python examples/fallback_route.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from loopback_upstream import serve

import gateway
from gateway import OpenAI

os.environ.setdefault("EXAMPLE_KEY", "sk-example")

with serve("cheap", fail_with=503) as cheap_url, serve("solid") as solid_url:
    policy = Path(tempfile.mkdtemp()) / "policy.yaml"
    policy.write_text(
        f"""
version: 1
providers:
  cheap-host: {{kind: openai, base_url: "{cheap_url}", api_key: "${{EXAMPLE_KEY}}"}}
  solid-host: {{kind: openai, base_url: "{solid_url}", api_key: "${{EXAMPLE_KEY}}"}}
models:
  cheap: {{provider: cheap-host, model: small, price: {{input: 0.1, output: 0.4}}, context_window: 16000}}
  solid: {{provider: solid-host, model: large, price: {{input: 2.5, output: 10}}, context_window: 128000}}
routes:
  support:
    candidates: [cheap, solid]
    minimize: cost
    retry: {{max_retries: 1, initial_delay_s: 0.01}}
"""
    )
    client = OpenAI(policy=policy)
    reply = client.chat.completions.create(
        model="route:support", messages=[{"role": "user", "content": "My order is late"}]
    )
    print(reply.choices[0].message.content)
    for attempt in gateway.info(reply).attempts:
        print(f"  attempt: {attempt.model:6} -> {attempt.outcome} ({attempt.status_code})")
    print("chosen because:", gateway.info(reply).reason)
