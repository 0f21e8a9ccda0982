"""A checkpoint on disk (GGUF file or safetensors folder) -> config, float32 weights, tokenizer data.

Weights are named as the model's own modules (gpt-fast names: `layers.0.attention.wq.weight`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from local_engine.config import ModelConfig, RopeScaling
from local_engine.errors import ModelFileError, UnsupportedModelError
from local_engine.loader.gguf import GGUFFile, read_gguf
from local_engine.loader.paths import resolve_model_path

__all__ = ["Checkpoint", "config_from_gguf", "load_checkpoint"]

# GGUF tensor name (after "blk.N.") -> module name (after "layers.N.")
_GGUF_LAYER_NAMES = {
    "attn_q": "attention.wq", "attn_k": "attention.wk", "attn_v": "attention.wv", "attn_output": "attention.wo",
    "ffn_gate": "feed_forward.w1", "ffn_down": "feed_forward.w2", "ffn_up": "feed_forward.w3",
    "attn_norm": "attention_norm", "ffn_norm": "ffn_norm",
}  # fmt: skip
_GGUF_TOP_NAMES = {"token_embd": "tok_embeddings", "output_norm": "norm", "output": "output"}
# architectures whose q/k rows llama.cpp's converter permuted (interleaved rope -> halves)
_PERMUTED_ARCHITECTURES = frozenset({"llama", "mistral"})


@dataclass(slots=True)
class Checkpoint:
    """What a loader hands to the engine."""

    path: str
    config: ModelConfig
    weights: dict[str, np.ndarray]
    tokenizer_metadata: dict[str, Any] = field(default_factory=dict)


def load_checkpoint(
    path: str | os.PathLike[str], roots: Iterable[str | os.PathLike[str]] | None = None
) -> Checkpoint:
    """Load a GGUF file or a safetensors folder (with `config.json`) inside `roots`."""
    resolved = resolve_model_path(path, roots)
    if resolved.is_dir():
        from local_engine.loader.safetensors import load_safetensors_folder

        return load_safetensors_folder(str(resolved))
    if resolved.suffix.lower() == ".safetensors":
        from local_engine.loader.safetensors import load_safetensors_folder

        return load_safetensors_folder(str(resolved.parent))
    gguf = read_gguf(resolved)
    try:
        config = config_from_gguf(gguf.metadata, gguf.path)
        weights = _gguf_weights(gguf, config)
        config = replace(config, tie_word_embeddings="output.weight" not in weights)
        metadata = {k: v for k, v in gguf.metadata.items() if k.startswith("tokenizer.")}
    finally:
        gguf.close()
    return Checkpoint(str(resolved), config, weights, metadata)


def _meta(metadata: dict[str, Any], key: str, kind: type, path: str, default: Any = None) -> Any:
    value = metadata.get(key, default)
    if value is None:
        raise ModelFileError(f"metadata key {key!r} is missing", path=path, code="gguf.missing-key")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ModelFileError(
            f"metadata key {key!r} is {value!r}, not {kind.__name__}", path=path, code="gguf.bad-key-type"
        )
    return value


def config_from_gguf(metadata: dict[str, Any], path: str) -> ModelConfig:
    """Build a `ModelConfig` from GGUF metadata, checking each value's type and range."""
    from local_engine.models import ARCHITECTURES

    arch = _meta(metadata, "general.architecture", str, path)
    if arch not in ARCHITECTURES:
        raise UnsupportedModelError(
            f"{path}: architecture {arch!r} is not supported (supported: {sorted(ARCHITECTURES)})",
            code="model.unsupported-architecture",
        )
    heads = _meta(metadata, f"{arch}.attention.head_count", int, path)
    hidden = _meta(metadata, f"{arch}.embedding_length", int, path)
    tokens = metadata.get("tokenizer.ggml.tokens")
    vocab = _meta(
        metadata, f"{arch}.vocab_size", int, path, len(tokens) if isinstance(tokens, list) else None
    )
    head_dim = _meta(metadata, f"{arch}.attention.key_length", int, path, hidden // heads if heads else 0)
    config = ModelConfig(
        architecture=arch,
        hidden_size=hidden,
        intermediate_size=_meta(metadata, f"{arch}.feed_forward_length", int, path),
        num_layers=_meta(metadata, f"{arch}.block_count", int, path),
        num_heads=heads,
        num_kv_heads=_meta(metadata, f"{arch}.attention.head_count_kv", int, path, heads),
        vocab_size=vocab,
        head_dim=head_dim,
        rms_norm_eps=_meta(metadata, f"{arch}.attention.layer_norm_rms_epsilon", float, path, 1e-5),
        rope_theta=_meta(metadata, f"{arch}.rope.freq_base", float, path, 10000.0),
        rope_scaling=_rope_scaling(metadata, arch, path),
        context_length=_meta(metadata, f"{arch}.context_length", int, path, 2048),
        attention_bias=arch == "qwen2",
        name=str(metadata.get("general.name", "")),
    )
    problems = config.validate()
    if problems:
        raise ModelFileError("bad hyperparameters: " + "; ".join(problems), path=path, code="gguf.bad-config")
    return config


def _rope_scaling(metadata: dict[str, Any], arch: str, path: str) -> RopeScaling | None:
    kind = metadata.get(f"{arch}.rope.scaling.type", "none")
    if kind in ("none", None):
        return None
    factor = _meta(metadata, f"{arch}.rope.scaling.factor", float, path, 1.0)
    if kind == "linear" and 0 < factor <= 1024:
        return RopeScaling("linear", factor=factor)
    raise UnsupportedModelError(
        f"{path}: rope scaling {kind!r} (factor {factor}) is not supported", code="model.unsupported-rope"
    )


def _gguf_weights(gguf: GGUFFile, config: ModelConfig) -> dict[str, np.ndarray]:
    weights: dict[str, np.ndarray] = {}
    for name in gguf.tensors:
        parts = name.split(".")
        if parts[0] == "blk" and len(parts) == 4 and parts[1].isdigit() and parts[2] in _GGUF_LAYER_NAMES:
            target = f"layers.{int(parts[1])}.{_GGUF_LAYER_NAMES[parts[2]]}.{parts[3]}"
        elif len(parts) == 2 and parts[0] in _GGUF_TOP_NAMES:
            target = f"{_GGUF_TOP_NAMES[parts[0]]}.{parts[1]}"
        elif name == "rope_freqs.weight":
            target = "rope_freqs"
        else:
            continue  # tensors this decoder does not use
        value = gguf.tensor(name)
        if config.architecture in _PERMUTED_ARCHITECTURES and parts[-2:-1] in (["attn_q"], ["attn_k"]):
            value = _unpermute(value, config.num_heads if parts[2] == "attn_q" else config.num_kv_heads)
        weights[target] = value
    return weights


def _unpermute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation, back to HF's rotate-half layout."""
    rows = weight.shape[0]
    # w: [n_heads, head_dim/2, 2, ...] -> [n_heads, 2, head_dim/2, ...]
    w = weight.reshape(n_heads, rows // n_heads // 2, 2, *weight.shape[1:])
    return np.ascontiguousarray(w.swapaxes(2, 1).reshape(weight.shape))
