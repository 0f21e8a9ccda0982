"""Our numpy dequantizers agree bit for bit with the `gguf` package's reference ones."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from local_engine.loader.quants import dequantize

TYPES = ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q6_K", "Q4_K", "Q5_K"]


@pytest.mark.parametrize("name", TYPES)
def test_dequantize_matches_gguf(name: str) -> None:
    qtype = GGMLQuantizationType[name]
    block, size = GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(0)
    rows, blocks_per_row = 3, 4
    raw = rng.integers(0, 256, rows * blocks_per_row * size, dtype=np.uint8)
    if name in ("F16", "BF16"):
        raw = raw.view(np.uint16)
        raw &= 0x3FFF if name == "F16" else 0x3F7F  # keep values finite
        raw = raw.view(np.uint8)
    else:
        # finite f16 scales: clear the exponent's top bit of every byte pair in the block headers
        raw.reshape(-1, size)[:, 1::2] &= 0x3F
    expected = quants.dequantize(raw.reshape(rows, -1), qtype)  # [rows, blocks * block]
    got = dequantize(raw, int(qtype), (rows, blocks_per_row * block))
    np.testing.assert_array_equal(got, expected)
