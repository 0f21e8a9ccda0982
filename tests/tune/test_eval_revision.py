"""A retuned adapter keeps its model name, so the eval cache keys its cases by the adapter's files too."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.evals import ModelCaller
from gateway.policy import parse_policy


def _caller(adapter: Path) -> ModelCaller:
    policy = parse_policy(
        f"""version: 1
providers:
  local: {{kind: local, options: {{model_roots: "{adapter.parent}"}}}}
models:
  tuned: {{provider: local, model: "smollm2-135m-instruct+{adapter}", price: {{input: 0, output: 0}}}}
routes:
  city: {{candidates: [tuned, local/smollm2-135m-instruct]}}
"""
    )
    return ModelCaller(policy)


def test_revision_follows_the_adapter_files(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"first")
    with _caller(adapter) as caller:
        assert caller.revision("local/smollm2-135m-instruct") == ""  # no adapter: the name is enough
        first = caller.revision("tuned")
        assert first.startswith("+") and first == caller.revision("tuned")
        (adapter / "adapter_model.safetensors").write_bytes(b"second, retuned")
        os.utime(adapter / "adapter_model.safetensors", ns=(1, 1))
        assert caller.revision("tuned") not in ("", first)
