"""LoRA adapters in PEFT's layout: read, write, and merge into a checkpoint at load time.

An adapter is a folder with ``adapter_config.json`` (``r``, ``lora_alpha``, ``target_modules``,
``layers_to_transform``) and ``adapter_model.safetensors``, whose tensors are named as PEFT names
them for a Llama model::

    base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight   # A: [r, in]
    base_model.model.model.layers.{i}.self_attn.q_proj.lora_B.weight   # B: [out, r]

Merging adds ``(alpha / r) * B @ A`` to the base weight before the model is built (and quantized),
so a merged model runs at the base model's speed. Several adapters on one base are several merged
engines (``local/<base>+<adapter>``), each loaded once.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from local_engine.errors import ModelFileError

if TYPE_CHECKING:
    from local_engine.loader.checkpoint import Checkpoint

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "PEFT_MODULES",
    "LoraAdapter",
    "merge_adapter",
    "read_adapter",
    "write_adapter",
]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# PEFT's module names -> the engine's checkpoint names (as `loader/safetensors.py` maps them)
PEFT_MODULES = {
    "q_proj": ("self_attn", "attention.wq"),
    "k_proj": ("self_attn", "attention.wk"),
    "v_proj": ("self_attn", "attention.wv"),
    "o_proj": ("self_attn", "attention.wo"),
    "gate_proj": ("mlp", "feed_forward.w1"),
    "up_proj": ("mlp", "feed_forward.w3"),
    "down_proj": ("mlp", "feed_forward.w2"),
}
_PREFIX = "base_model.model.model.layers."


@dataclass(slots=True)
class LoraAdapter:
    """A LoRA adapter: ``weights[(layer, module)] = (A [r, in], B [out, r])`` as float32 arrays."""

    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    layers: tuple[int, ...]
    weights: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    base_model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in adapter_config.json as is

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def config_json(self) -> dict[str, Any]:
        return {
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": self.rank, "lora_alpha": self.alpha,
            "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
            "target_modules": sorted(self.target_modules), "layers_to_transform": sorted(self.layers),
            "base_model_name_or_path": self.base_model, **self.extra,
        }  # fmt: skip


def write_adapter(adapter: LoraAdapter, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (F32) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    for (layer, module), (a, b) in sorted(adapter.weights.items()):
        group = PEFT_MODULES[module][0]
        stem = f"{_PREFIX}{layer}.{group}.{module}"
        tensors[f"{stem}.lora_A.weight"], tensors[f"{stem}.lora_B.weight"] = a, b
    _write_safetensors(tensors, out / ADAPTER_WEIGHTS)
    (out / ADAPTER_CONFIG).write_text(json.dumps(adapter.config_json(), indent=2) + "\n")
    return out


def read_adapter(path: str | os.PathLike[str]) -> LoraAdapter:
    """Read a PEFT LoRA adapter folder.

    Raises:
        ModelFileError: a file is missing or malformed, or a tensor is not a LoRA A/B of a known module.
    """
    from local_engine.loader.safetensors import read_safetensors

    folder = Path(path)
    config_path, weights_path = folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS
    if not config_path.is_file() or not weights_path.is_file():
        raise ModelFileError(
            f"an adapter folder holds {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}",
            path=str(folder),
            code="adapter.missing-file",
        )
    try:
        config = json.loads(config_path.read_text())
        rank, alpha = int(config["r"]), float(config.get("lora_alpha", config["r"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(
            f"bad adapter config: {exc}", path=str(config_path), code="adapter.bad-config"
        ) from exc
    if config.get("peft_type", "LORA") != "LORA" or rank <= 0:
        raise ModelFileError(
            "only LoRA adapters with r > 0", path=str(config_path), code="adapter.bad-config"
        )
    pairs: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for name, value in read_safetensors(str(weights_path)).items():
        key, part = _parse_name(name, str(weights_path))
        pairs.setdefault(key, {})[part] = value
    weights = {}
    for key, found in pairs.items():
        if set(found) != {"A", "B"} or found["A"].shape[0] != rank or found["B"].shape[1] != rank:
            raise ModelFileError(
                f"layer {key[0]} {key[1]}: lora_A [r, in] and lora_B [out, r] with r={rank}",
                path=str(weights_path),
                code="adapter.bad-weights",
            )
        weights[key] = (found["A"], found["B"])
    modules = tuple(sorted({m for _, m in weights}))
    layers = tuple(sorted({i for i, _ in weights}))
    return LoraAdapter(rank, alpha, modules, layers, weights, str(config.get("base_model_name_or_path", "")))


def merge_adapter(checkpoint: Checkpoint, adapter: LoraAdapter) -> None:
    """Add the adapter's ``scale * B @ A`` to the checkpoint's float32 weights, in place.

    Raises:
        ModelFileError: the adapter names a layer the model lacks, or its shapes do not fit.
    """
    for (layer, module), (a, b) in adapter.weights.items():
        name = f"layers.{layer}.{PEFT_MODULES[module][1]}.weight"
        base = checkpoint.weights.get(name)
        if base is None or base.shape != (b.shape[0], a.shape[1]):
            raise ModelFileError(
                f"adapter tensor for {name} ({b.shape[0]}x{a.shape[1]}) does not fit the model "
                f"({None if base is None else base.shape})",
                path=checkpoint.path,
                code="adapter.mismatch",
            )
        checkpoint.weights[name] = (base + adapter.scale * (b @ a)).astype(np.float32)  # [out, in]


def merge_adapters(checkpoint: Checkpoint, paths: Iterable[str | os.PathLike[str]]) -> None:
    """Read and merge each adapter folder of ``paths`` in order."""
    for path in paths:
        merge_adapter(checkpoint, read_adapter(path))


def _parse_name(name: str, path: str) -> tuple[tuple[int, str], str]:
    # base_model.model.model.layers.{i}.{group}.{module}.lora_{A|B}.weight
    parts = name.removeprefix(_PREFIX).split(".")
    ok = name.startswith(_PREFIX) and len(parts) == 5 and parts[0].isdigit() and parts[4] == "weight"
    if (
        ok
        and parts[2] in PEFT_MODULES
        and parts[1] == PEFT_MODULES[parts[2]][0]
        and parts[3] in ("lora_A", "lora_B")
    ):
        return (int(parts[0]), parts[2]), parts[3][-1]
    raise ModelFileError(
        f"not a LoRA tensor of a Llama layer: {name!r}", path=path, code="adapter.bad-weights"
    )


def _write_safetensors(tensors: Mapping[str, np.ndarray], path: Path) -> None:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset, blobs = 0, []
    for name, value in tensors.items():
        data = np.ascontiguousarray(value, dtype="<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(value.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded)
        for blob in blobs:
            handle.write(blob)
