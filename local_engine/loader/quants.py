"""Dequantization of GGML tensor types to float32, vectorized numpy.

The common types (F32, F16, BF16, Q8_0, Q4_0, Q4_1) are written here; the rest (K-quants, IQ
types) go to `gguf.quants`, which is numpy too. The reader has already checked that `raw` holds
exactly the bytes the shape needs.
"""

from __future__ import annotations

import numpy as np
from gguf import quants as gguf_quants
from gguf.constants import GGMLQuantizationType

from local_engine.errors import UnsupportedModelError

__all__ = ["dequantize"]

F32, F16, Q4_0, Q4_1, Q8_0, BF16 = 0, 1, 2, 3, 8, 30


def dequantize(
    raw: np.ndarray, ggml_type: int, shape: tuple[int, ...], *, path: str = "", name: str = ""
) -> np.ndarray:
    """Return float32 values of `shape` from the bytes `raw` ([nbytes] uint8) of one tensor."""
    if ggml_type == F32:
        out = raw.view("<f4").copy()  # never hand out a view of the memory map
    elif ggml_type == F16:
        out = raw.view("<f2").astype(np.float32)
    elif ggml_type == BF16:
        out = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    elif ggml_type == Q8_0:
        out = _q8_0(raw)
    elif ggml_type == Q4_0:
        out = _q4(raw, with_min=False)
    elif ggml_type == Q4_1:
        out = _q4(raw, with_min=True)
    else:
        try:
            out = gguf_quants.dequantize(raw, GGMLQuantizationType(ggml_type)).astype(np.float32, copy=False)
        except (NotImplementedError, ValueError) as exc:
            raise UnsupportedModelError(
                f"{path}: tensor {name!r} has type {GGMLQuantizationType(ggml_type).name}, which cannot be "
                "dequantized here; convert the model to F16, Q8_0 or Q4_K",
                code="model.unsupported-tensor-type",
            ) from exc
    return out.reshape(shape)


def _q8_0(raw: np.ndarray) -> np.ndarray:
    blocks = raw.reshape(-1, 34)  # [n_blocks, 2 + 32]
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # d: [n_blocks, 1]
    values = blocks[:, 2:].copy().view(np.int8).astype(np.float32)  # q: [n_blocks, 32]
    return (scale * values).reshape(-1)


def _q4(raw: np.ndarray, *, with_min: bool) -> np.ndarray:
    head = 4 if with_min else 2
    blocks = raw.reshape(-1, head + 16)  # [n_blocks, head + 16]
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # d: [n_blocks, 1]
    packed = blocks[:, head:]  # [n_blocks, 16]: element j in the low nibble, element j + 16 in the high
    values = np.concatenate([packed & 0x0F, packed >> 4], axis=1).astype(np.float32)  # q: [n_blocks, 32]
    if with_min:
        minimum = blocks[:, 2:4].copy().view("<f2").astype(np.float32)  # m: [n_blocks, 1]
        return (scale * values + minimum).reshape(-1)
    return (scale * (values - 8.0)).reshape(-1)
