"""HF checkpoints: `config.json`, `*.safetensors` (header parsed here, bounds-checked) and
`tokenizer.json`, for Llama, Mistral and Qwen2-shaped models. Pickle files are never opened."""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from local_engine.config import ModelConfig, RopeScaling
from local_engine.errors import ModelFileError, UnsupportedModelError
from local_engine.loader.checkpoint import Checkpoint
from local_engine.loader.paths import PICKLE_SUFFIXES, refuse_pickle

__all__ = ["load_safetensors_folder", "read_safetensors"]

MAX_HEADER_BYTES = 100 << 20
_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}
_LAYER_NAMES = {
    "self_attn.q_proj": "attention.wq", "self_attn.k_proj": "attention.wk", "self_attn.v_proj": "attention.wv",
    "self_attn.o_proj": "attention.wo", "mlp.gate_proj": "feed_forward.w1", "mlp.down_proj": "feed_forward.w2",
    "mlp.up_proj": "feed_forward.w3", "input_layernorm": "attention_norm", "post_attention_layernorm": "ffn_norm",
}  # fmt: skip
_TOP_NAMES = {"model.embed_tokens": "tok_embeddings", "model.norm": "norm", "lm_head": "output"}


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """Tensors of one safetensors file as float32 arrays; every header field checked first."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise ModelFileError(
                "too short for a safetensors header", path=path, code="safetensors.truncated"
            )
        (header_len,) = struct.unpack("<Q", head)
        if header_len > min(MAX_HEADER_BYTES, size - 8):
            raise ModelFileError(
                f"header length {header_len} is past the file", path=path, code="safetensors.truncated"
            )
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFileError("header is not JSON", path=path, code="safetensors.bad-header") from exc
    if not isinstance(header, dict):
        raise ModelFileError("header is not a JSON object", path=path, code="safetensors.bad-header")
    data_start, data_size = 8 + header_len, size - 8 - header_len
    header.pop("__metadata__", None)
    spans = []
    for name, entry in header.items():
        dtype, shape, begin, end = _check_entry(path, name, entry, data_size)
        spans.append((begin, end, name, dtype, shape))
    spans.sort()
    for first, second in zip(spans, spans[1:], strict=False):
        if second[0] < first[1]:
            raise ModelFileError(
                f"tensors {first[2]!r} and {second[2]!r} overlap", path=path, code="safetensors.overlap"
            )
    mapped = np.memmap(path, dtype=np.uint8, mode="r") if spans else None
    out: dict[str, np.ndarray] = {}
    for begin, end, name, dtype, shape in spans:
        raw = mapped[data_start + begin : data_start + end].view(_DTYPES[dtype])  # type: ignore[index]
        if dtype == "BF16":
            out[name] = (raw.astype(np.uint32) << 16).view(np.float32).reshape(shape)
        else:
            out[name] = raw.astype(np.float32).reshape(shape)  # a copy: nothing keeps the map alive
    return out


def _check_entry(path: str, name: str, entry: Any, data_size: int) -> tuple[str, tuple[int, ...], int, int]:
    def bad(message: str, code: str = "safetensors.bad-header") -> ModelFileError:
        return ModelFileError(f"tensor {name!r}: {message}", path=path, code=code)

    if not isinstance(entry, dict):
        raise bad("entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in _DTYPES:
        raise UnsupportedModelError(
            f"{path}: tensor {name!r} has dtype {dtype!r}; F32, F16 and BF16 are supported"
        )
    if (
        not isinstance(shape, list)
        or len(shape) > 8
        or not all(isinstance(d, int) and 0 <= d < 1 << 40 for d in shape)
    ):
        raise bad(f"bad shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
        raise bad(f"bad data_offsets {offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise bad(f"data_offsets {offsets} lie outside the {data_size} data bytes", "safetensors.truncated")
    if math.prod(shape) * _DTYPES[dtype].itemsize != end - begin:
        raise bad(f"shape {shape} does not match {end - begin} bytes")
    return dtype, tuple(shape), begin, end


def load_safetensors_folder(folder: str) -> Checkpoint:
    """Load `config.json`, every `*.safetensors` and `tokenizer.json` of an HF model folder."""
    root = Path(folder)
    files = sorted(root.glob("*.safetensors"))
    if not files:
        for suffix in sorted(PICKLE_SUFFIXES):
            for candidate in root.glob(f"*{suffix}"):
                refuse_pickle(candidate)
        raise ModelFileError("no .safetensors files in the folder", path=folder, code="safetensors.missing")
    config = config_from_hf(_read_json(root / "config.json"), folder)
    weights: dict[str, np.ndarray] = {}
    for file in files:
        for name, value in read_safetensors(str(file)).items():
            target = _module_name(name)
            if target is not None:
                weights[target] = value
    if config.tie_word_embeddings:
        weights.pop("output.weight", None)
    tokenizer = tokenizer_metadata_from_hf(root) if (root / "tokenizer.json").is_file() else {}
    return Checkpoint(folder, config, weights, tokenizer)


def _module_name(name: str) -> str | None:
    stem, _, kind = name.rpartition(".")
    if stem in _TOP_NAMES:
        return f"{_TOP_NAMES[stem]}.{kind}"
    parts = stem.split(".", 3)
    if (
        len(parts) == 4
        and parts[:2] == ["model", "layers"]
        and parts[2].isdigit()
        and parts[3] in _LAYER_NAMES
    ):
        return f"layers.{int(parts[2])}.{_LAYER_NAMES[parts[3]]}.{kind}"
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_HEADER_BYTES:
            raise ModelFileError("file is too large", path=path, code="hf.too-large")
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"cannot read JSON: {exc}", path=path, code="hf.bad-json") from exc
    if not isinstance(value, dict):
        raise ModelFileError("not a JSON object", path=path, code="hf.bad-json")
    return value


def config_from_hf(raw: dict[str, Any], path: str) -> ModelConfig:
    from local_engine.models import ARCHITECTURES

    arch = raw.get("model_type")
    if arch not in ARCHITECTURES:
        raise UnsupportedModelError(
            f"{path}: model_type {arch!r} is not supported", code="model.unsupported-architecture"
        )
    # transformers 5 writes `rope_parameters`; older files have `rope_theta` and `rope_scaling`
    rope = raw.get("rope_parameters") or {
        **(raw.get("rope_scaling") or {}),
        "rope_theta": raw.get("rope_theta", 10000.0),
    }
    try:
        heads = int(raw["num_attention_heads"])
        config = ModelConfig(
            architecture=arch, hidden_size=int(raw["hidden_size"]), intermediate_size=int(raw["intermediate_size"]),
            num_layers=int(raw["num_hidden_layers"]), num_heads=heads,
            num_kv_heads=int(raw.get("num_key_value_heads") or heads), vocab_size=int(raw["vocab_size"]),
            head_dim=int(raw.get("head_dim") or int(raw["hidden_size"]) // heads),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)), rope_theta=float(rope.get("rope_theta", 10000.0)),
            rope_scaling=_hf_rope_scaling(rope, path),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            context_length=int(raw.get("max_position_embeddings", 2048)),
            attention_bias=bool(raw.get("attention_bias", arch == "qwen2")), name=str(raw.get("_name_or_path", "")),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise ModelFileError(
            f"config.json is missing or has a bad field: {exc}", path=path, code="hf.bad-config"
        ) from exc
    problems = config.validate()
    if problems:
        raise ModelFileError("bad hyperparameters: " + "; ".join(problems), path=path, code="hf.bad-config")
    return config


def _hf_rope_scaling(raw: Any, path: str) -> RopeScaling | None:
    kind = raw.get("rope_type") or raw.get("type")
    if kind in (None, "default"):
        return None
    if kind == "linear":
        return RopeScaling("linear", factor=float(raw["factor"]))
    if kind == "llama3":
        return RopeScaling(
            "llama3", factor=float(raw["factor"]), low_freq_factor=float(raw["low_freq_factor"]),
            high_freq_factor=float(raw["high_freq_factor"]),
            original_context_length=int(raw["original_max_position_embeddings"]),
        )  # fmt: skip
    raise UnsupportedModelError(
        f"{path}: rope scaling {kind!r} is not supported", code="model.unsupported-rope"
    )


def _read_template(root: Path) -> str | None:
    """transformers 5 writes the chat template to its own file."""
    path = root / "chat_template.jinja"
    if not path.is_file() or path.stat().st_size > MAX_HEADER_BYTES:
        return None
    return path.read_text(encoding="utf-8")


def tokenizer_metadata_from_hf(root: Path) -> dict[str, Any]:
    """Translate `tokenizer.json` (byte-level BPE) into GGUF-style `tokenizer.ggml.*` metadata."""
    data = _read_json(root / "tokenizer.json")
    model = data.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise UnsupportedModelError(
            f"{root}: only byte-level BPE tokenizers are supported", code="tokenizer.unsupported"
        )
    vocab: dict[str, int] = dict(model["vocab"])
    added = {t["content"]: t for t in data.get("added_tokens", [])}
    for content, token in added.items():
        vocab[content] = int(token["id"])
    tokens = [""] * (max(vocab.values()) + 1)
    types = [1] * len(tokens)
    for content, index in vocab.items():
        tokens[index] = content
        if content in added:
            types[index] = 3 if added[content].get("special") else 4
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    settings = (
        _read_json(root / "tokenizer_config.json") if (root / "tokenizer_config.json").is_file() else {}
    )
    pre = "smollm" if '"individual_digits": true' in json.dumps(data.get("pre_tokenizer")) else "default"

    def token_id(key: str) -> int | None:
        value = settings.get(key)
        value = value.get("content") if isinstance(value, dict) else value
        return vocab.get(value) if isinstance(value, str) else None

    return {
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": merges, "tokenizer.ggml.pre": pre, "tokenizer.ggml.bos_token_id": token_id("bos_token"),
        "tokenizer.ggml.eos_token_id": token_id("eos_token"),
        "tokenizer.ggml.add_bos_token": bool(settings.get("add_bos_token", False)),
        "tokenizer.chat_template": settings.get("chat_template") or _read_template(root),
    }  # fmt: skip
