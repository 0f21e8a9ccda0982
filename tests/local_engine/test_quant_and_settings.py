"""Quantized linears against their dequantized reference, the quantized engine end to end, and
`load_engine` settings validation."""

from __future__ import annotations

import pytest
import torch

from local_engine import EngineSettings, SamplingParams, SettingsError, load_engine
from local_engine.layers.quant import (
    Int4Linear,
    Int8Linear,
    dequantize_int4,
    quantize_int4,
    quantize_int8,
)
from local_engine.settings import MAX_DEFAULT_BATCH, default_max_batch


def _close(out: torch.Tensor, expected: torch.Tensor) -> None:
    # bfloat16 activations and outputs: about 3 significant digits
    scale = expected.abs().max().item()
    assert (out.float() - expected).abs().max().item() <= 0.02 * scale


def test_int8_linear_equals_its_dequantized_weight() -> None:
    torch.manual_seed(0)
    weight, bias, x = torch.randn(48, 64), torch.randn(48), torch.randn(2, 3, 64)
    q, scales = quantize_int8(weight)
    assert (
        q.dtype == torch.int8
        and (weight - q.float() * scales[:, None]).abs().max() <= scales.max() / 2 + 1e-6
    )
    layer = Int8Linear(weight, bias, torch.bfloat16)
    out = layer(x)  # [2, 3, 48], float32 in and out
    assert out.shape == (2, 3, 48) and out.dtype == torch.float32
    _close(out, x @ (q.float() * scales[:, None]).t() + bias)


def test_int4_linear_equals_its_dequantized_weight() -> None:
    torch.manual_seed(0)
    weight, x = torch.randn(32, 128), torch.randn(5, 128)
    q, scales, mins = quantize_int4(weight)
    assert int(q.min()) >= 0 and int(q.max()) <= 15 and scales.shape == (32, 4)
    dense = dequantize_int4(q, scales, mins)
    assert (weight - dense).abs().max() <= scales.max() / 2 + 1e-6
    _close(Int4Linear(weight, None, torch.bfloat16)(x), x @ dense.t())


def test_int4_keeps_a_q4_1_grid_exactly() -> None:
    """Weights already on GGUF's Q4_1 grid (d * q + m, blocks of 32) come back unchanged."""
    torch.manual_seed(0)
    d, m = torch.rand(16, 2, 1) + 0.1, torch.randn(16, 2, 1)  # per block of 32
    q = torch.randint(0, 16, (16, 2, 32))
    q[..., 0], q[..., 1] = 0, 15  # the quantizer spans the block's range, as llama.cpp's does
    weight = (d * q + m).reshape(16, 64)
    q2, scales, mins = quantize_int4(weight)
    assert torch.equal(q2, q.reshape(16, 64).to(torch.int32))
    torch.testing.assert_close(dequantize_int4(q2, scales, mins), weight)


def test_int4_rows_do_not_depend_on_the_batch() -> None:
    """Row i of a batched matmul equals the same row alone: batched greedy equals solo greedy."""
    torch.manual_seed(0)
    layer, x = Int4Linear(torch.randn(64, 96), None, torch.bfloat16), torch.randn(7, 96)
    batched = layer(x)
    assert all(torch.equal(batched[i], layer(x[i : i + 1])[0]) for i in range(7))


def test_shapes_the_int4_kernel_refuses_fall_back_to_int8() -> None:
    from torch import nn

    from local_engine.layers.quant import quantize_model

    model = nn.Module()
    model.proj = nn.Linear(64, 24, bias=False)  # 24 outputs: not a multiple of 16
    model.tok_embeddings = nn.Embedding(10, 64)
    model.output = None
    quantize_model(model, "int4", torch.bfloat16)
    assert isinstance(model.proj, Int8Linear) and isinstance(model.lm_head, Int8Linear)


@pytest.mark.engine
@pytest.mark.parametrize("quantization", ["int8", "int4"])
def test_quantized_engine_answers(quantization: str) -> None:
    with load_engine(quantization=quantization, max_batch=2, max_model_len=256, threads=1) as engine:
        assert engine.settings.dtype == "bfloat16" and engine.settings.quantization == quantization
        prompt = engine.tokenizer.encode_chat([{"role": "user", "content": "What is the capital of France?"}])
        text = "".join(
            e.text_delta for e in engine.generate_sync(prompt, SamplingParams(max_tokens=12, temperature=0))
        )
    assert "Paris" in text


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"dtype": "int9"}, "dtype"),
        ({"quantization": "int3"}, "quantization"),
        ({"quantization": "int4", "device": "cuda"}, "quantization"),
        ({"quantization": "int8", "dtype": "float32"}, "dtype"),
        ({"device": "tpu"}, "device"),
        ({"max_batch": 0}, "max_batch"),
        ({"max_model_len": -1}, "max_model_len"),
        ({"kv_blocks": 1.5}, "kv_blocks"),
        ({"threads": True}, "threads"),
        ({"prefill_chunk": "256"}, "prefill_chunk"),
        ({"block_size": 0}, "block_size"),
    ],
)
def test_bad_settings_name_the_setting_before_loading(kwargs: dict[str, object], setting: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_engine("/nonexistent/model.gguf", **kwargs)  # type: ignore[arg-type]
    assert caught.value.setting == setting and caught.value.code == "settings.invalid"
    assert isinstance(caught.value, ValueError) and setting in str(caught.value)


def test_defaults_follow_the_device() -> None:
    cpu = EngineSettings().resolved()
    assert (cpu.dtype, cpu.quantization) == ("bfloat16", "int4")
    assert EngineSettings(dtype=torch.float32).resolved().quantization == "none"
    assert EngineSettings(dtype="bfloat16").resolved().quantization == "none"
    cuda = EngineSettings(device="cuda:0").resolved()
    assert (cuda.dtype, cuda.quantization) == ("bfloat16", "none")


def test_default_batch_is_sized_from_memory() -> None:
    assert default_max_batch(100 << 20, 10 << 30) == 10  # a tenth of 10 GiB / 100 MiB each
    assert default_max_batch(100 << 20, 1 << 20) == 1  # never below one
    assert default_max_batch(1 << 20, 1 << 40) == MAX_DEFAULT_BATCH


def test_prompt_rows_take_the_dense_weight_and_decode_rows_the_kernel() -> None:
    from local_engine.layers.quant import RowSplit, prompt_dtype

    torch.manual_seed(0)
    split = RowSplit()
    weight, x = torch.randn(64, 96), torch.randn(6, 96)
    layer = Int4Linear(weight, None, torch.bfloat16, split)
    alone = layer(x[:2])  # decode rows only: the int4 kernel
    split.dense_from = 2  # rows 2.. are a prompt chunk
    mixed = layer(x)
    assert torch.equal(mixed[:2], alone)  # decode rows do not see the prompt rows
    dense = prompt_dtype(torch.bfloat16)  # float32 where the CPU has no native bfloat16 matmul
    expected = (x[2:].bfloat16().to(dense) @ weight.to(dense).t()).bfloat16().float()
    torch.testing.assert_close(mixed[2:], expected)
    _close(mixed[2:], x[2:] @ weight.t())
