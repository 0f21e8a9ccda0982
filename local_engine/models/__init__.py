"""Decoder architectures by the name a checkpoint gives them (GGUF `general.architecture`)."""

from __future__ import annotations

from local_engine.models.llama import LlamaForCausalLM

__all__ = ["ARCHITECTURES", "LlamaForCausalLM"]

# HF `model_type` and GGUF architecture names share this table; all are Llama-shaped decoders.
ARCHITECTURES: dict[str, type[LlamaForCausalLM]] = {
    "llama": LlamaForCausalLM,
    "mistral": LlamaForCausalLM,
    "qwen2": LlamaForCausalLM,
}
