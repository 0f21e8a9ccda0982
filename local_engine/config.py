"""Hyperparameters of a model, read from GGUF metadata or an HF `config.json`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RopeScaling:
    """RoPE scaling: `kind` is "linear" or "llama3"; the other fields are used by "llama3"."""

    kind: str
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_context_length: int = 8192


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """What the decoder needs to know; names follow HF's `LlamaConfig` in plain English."""

    architecture: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    head_dim: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    tie_word_embeddings: bool = False
    context_length: int = 2048
    attention_bias: bool = False
    name: str = ""

    def validate(self) -> list[str]:
        """Return the problems of this config, empty when it is usable."""
        problems = []
        for name in ("hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads"):
            value = getattr(self, name)
            if not 0 < value <= 1 << 20:
                problems.append(f"{name}={value} is out of range")
        if not 0 < self.vocab_size <= 1 << 22:
            problems.append(f"vocab_size={self.vocab_size} is out of range")
        if self.num_heads and self.num_kv_heads and self.num_heads % self.num_kv_heads:
            problems.append(
                f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}"
            )
        if not 0 < self.head_dim <= 1024 or self.head_dim % 2:
            problems.append(f"head_dim={self.head_dim} must be even and in (0, 1024]")
        if not 0 < self.context_length <= 1 << 24:
            problems.append(f"context_length={self.context_length} is out of range")
        return problems
