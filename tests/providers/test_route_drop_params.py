"""A route's ``drop_unsupported_params``: refused by default, dropped and reported when the route says so."""

from __future__ import annotations

from pathlib import Path

import pytest

import gateway
from tests.servers.http import LoopbackServer

MESSAGES = [{"role": "user", "content": "hello there"}]


def _policy(tmp_path: Path, url: str, drop: bool) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(
        f"""
version: 1
providers:
  anthropic: {{base_url: "{url}", api_key: "${{ANTHROPIC_API_KEY}}"}}
routes:
  chat:
    candidates: [anthropic/claude-haiku-4-5]
    drop_unsupported_params: {"true" if drop else "false"}
"""
    )
    return path


def test_unsupported_parameter_is_refused_before_any_call(
    anthropic_env: LoopbackServer, tmp_path: Path
) -> None:
    before = len(anthropic_env.log)
    with gateway.OpenAI(policy=_policy(tmp_path, anthropic_env.base_url, drop=False)) as client:
        with pytest.raises(gateway.BadRequestError, match="logit_bias"):
            client.chat.completions.create(model="route:chat", messages=MESSAGES, logit_bias={"1": 5})
    assert len(anthropic_env.log) == before


def test_dropped_parameters_are_reported(anthropic_env: LoopbackServer, tmp_path: Path) -> None:
    with gateway.OpenAI(policy=_policy(tmp_path, anthropic_env.base_url, drop=True)) as client:
        reply = client.chat.completions.create(model="route:chat", messages=MESSAGES, logit_bias={"1": 5})
    assert reply.choices[0].message.content == "Echo: hello there"
    assert gateway.info(reply) is not None and gateway.info(reply).dropped_params == ["logit_bias"]
    assert "logit_bias" not in anthropic_env.log[-1].json()
