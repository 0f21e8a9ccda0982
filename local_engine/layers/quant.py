"""Weight-only quantized linear layers on torch's CPU kernels, and `quantize_model`.

- `Int8Linear`: one int8 per weight and one scale per output channel (symmetric), run by
  `aten._weight_int8pack_mm` (AVX-512 VNNI on this machine's CPUs).
- `Int4Linear`: 4 bits per weight in groups of 32 along the input, a scale and a zero per group
  (asymmetric), run by `aten._weight_int4pack_mm_for_cpu`. GGUF's Q4_1 is exactly this format
  (`d * q + m`, q in 0..15, blocks of 32): min/max quantization of its dequantized weights gives
  back the file's own grid, so the bundled model loses nothing more than bf16 rounding of d and m.

Both kernels are fast with bfloat16 activations only (float32 falls to slow reference code), so
the quantized paths run in bfloat16. A matrix whose shape the int4 kernel refuses gets int8.

The kernels read few bytes, which is what one token per sequence needs, but compute slowly: past
about 16 rows a dense bfloat16 matmul (oneDNN) is faster, 3.5x at 128 rows. So each layer also
keeps its weight in bfloat16 (float32 on a CPU without native bfloat16: `prompt_dtype`), and a step's prompt rows (from `RowSplit.dense_from` on) take it,
while decode rows always take the quantized kernel: a decoding sequence's numbers then do not
depend on what else is in the batch (the kernels' rows are independent), and batched greedy
output equals solo greedy output.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "QUANTIZATIONS",
    "RowSplit",
    "Int4Linear",
    "Int8Linear",
    "dequantize_int4",
    "prompt_dtype",
    "quantize_int4",
    "quantize_int8",
    "quantize_model",
]

QUANTIZATIONS = ("none", "int8", "int4")
INT4_GROUP = 32  # GGUF's Q4_0 / Q4_1 block length


def quantize_int8(weight: Tensor) -> tuple[Tensor, Tensor]:
    """weight [N, K] float -> (int8 values [N, K], scales [N] float32); w ~= q * scale."""
    w = weight.float()
    scales = (w.abs().amax(dim=1) / 127).clamp(min=1e-12)  # [N]
    q = (w / scales[:, None]).round().clamp(-127, 127).to(torch.int8)  # [N, K]
    return q, scales


def quantize_int4(weight: Tensor, group: int = INT4_GROUP) -> tuple[Tensor, Tensor, Tensor]:
    """weight [N, K] float -> (values [N, K] int32 in 0..15, scales and mins [N, K / group]).

    w ~= q * scale + min, with scale = (max - min) / 15 per group of `group` inputs."""
    n, k = weight.shape
    w = weight.float().reshape(n, k // group, group)  # [N, G, group]
    low, high = w.amin(dim=-1), w.amax(dim=-1)  # [N, G] each
    scales = ((high - low) / 15).clamp(min=1e-12)  # [N, G]
    q = ((w - low[..., None]) / scales[..., None]).round().clamp(0, 15).to(torch.int32)  # [N, G, group]
    return q.reshape(n, k), scales, low


def dequantize_int4(q: Tensor, scales: Tensor, mins: Tensor) -> Tensor:
    """The float32 weight [N, K] that `quantize_int4`'s output stands for."""
    n, k = q.shape
    groups = scales.shape[1]
    w = q.float().reshape(n, groups, k // groups) * scales[..., None] + mins[..., None]  # [N, G, group]
    return w.reshape(n, k)


class RowSplit:
    """Shared by a model's quantized layers: rows `[dense_from, M)` of a step are prompt tokens."""

    __slots__ = ("dense_from",)

    def __init__(self) -> None:
        self.dense_from = 1 << 62  # no prompt rows


class _QuantizedLinear(nn.Module):
    """A weight-only quantized kernel for decode rows, a dense weight (`prompt_dtype`) for prompt rows."""

    in_features: int
    out_features: int
    bias: Tensor | None

    def __init__(self, weight: Tensor, bias: Tensor | None, dtype: torch.dtype,
                 split: RowSplit | None) -> None:  # fmt: skip
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.split, self.dtype = split, dtype
        # no split: quantized rows only, and no dense copy
        self.register_buffer("dense", None if split is None else weight.to(prompt_dtype(dtype)))  # [N, K]
        self.register_buffer("bias", None if bias is None else bias.to(dtype))

    def quantized(self, flat: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, self.in_features)  # [M, K]
        if flat.dtype != self.dtype:  # a cast to the same dtype still costs a dispatch
            flat = flat.to(self.dtype)
        rows = flat.shape[0]
        split = rows if self.split is None else min(self.split.dense_from, rows)
        if split == rows:
            out = self.quantized(flat)  # [M, N]
        elif split == 0:
            out = self._dense(flat)
        else:
            out = torch.cat([self.quantized(flat[:split]), self._dense(flat[split:])])
        if self.bias is not None:
            out = out + self.bias
        if out.dtype != x.dtype:
            out = out.to(x.dtype)
        return out.view(*x.shape[:-1], self.out_features)

    def _dense(self, rows: Tensor) -> Tensor:
        dense: Tensor = self.dense  # type: ignore[assignment]  # set whenever there are prompt rows
        if dense.dtype == self.dtype:
            return F.linear(rows, dense)
        return F.linear(rows.to(dense.dtype), dense).to(self.dtype)


@functools.cache
def prompt_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the dense copy that prompt rows take: `dtype`, except float32 for bfloat16 on a
    CPU without native bfloat16 matmuls (oneDNN emulates them there: on an AVX2 machine a 128-row
    bfloat16 matmul took 5x the float32 one, and the first token of a 100-token prompt 1.3 s)."""
    if dtype == torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.float32
    return dtype


class Int8Linear(_QuantizedLinear):
    """int8 weights [N, K] with per-channel scales [N]."""

    def __init__(self, weight: Tensor, bias: Tensor | None, dtype: torch.dtype,
                 split: RowSplit | None = None) -> None:  # fmt: skip
        super().__init__(weight, bias, dtype, split)
        q, scales = quantize_int8(weight)
        self.register_buffer("weight", q)  # [N, K] int8
        self.register_buffer("scales", scales.to(dtype))  # [N]

    def quantized(self, flat: Tensor) -> Tensor:
        return torch.ops.aten._weight_int8pack_mm(flat, self.weight, self.scales)  # [M, N]


class Int4Linear(_QuantizedLinear):
    """4-bit weights in groups of `INT4_GROUP` inputs (torch's packed CPU layout)."""

    def __init__(self, weight: Tensor, bias: Tensor | None, dtype: torch.dtype,
                 split: RowSplit | None = None) -> None:  # fmt: skip
        super().__init__(weight, bias, dtype, split)
        q, scales, mins = quantize_int4(weight)
        # the kernel computes (q - 8) * scale + zero, so zero = min + 8 * scale
        scales_and_zeros = torch.stack([scales.t(), (mins + 8 * scales).t()], dim=-1)  # [G, N, 2]
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)  # [N, K / 2] uint8
        self.register_buffer("weight", packed)
        self.register_buffer("scales_and_zeros", scales_and_zeros.to(dtype).contiguous())

    @staticmethod
    def fits(weight: Tensor) -> bool:
        n, k = weight.shape
        return n % 16 == 0 and k % INT4_GROUP == 0

    def quantized(self, flat: Tensor) -> Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(
            flat, self.weight, INT4_GROUP, self.scales_and_zeros
        )  # [M, N]


def _quantized(linear: nn.Linear, quantization: str, dtype: torch.dtype, split: RowSplit) -> _QuantizedLinear:
    weight = linear.weight.detach()
    if quantization == "int4" and Int4Linear.fits(weight):
        return Int4Linear(weight, linear.bias, dtype, split)
    return Int8Linear(weight, linear.bias, dtype, split)


def quantize_model(model: nn.Module, quantization: str, dtype: torch.dtype) -> None:
    """Replace the decoder layers' projections (and the output head) with quantized ones, in place.

    The output head is always int8: it is the largest matrix (vocabulary x hidden) and the one
    whose errors reach the logits directly; int8 per channel keeps them near GGUF's Q8_0.
    """
    if quantization == "none":
        return
    split = RowSplit()
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and name != "output":
                setattr(module, name, _quantized(child, quantization, dtype, split))
    head = getattr(model, "output", None)
    weight = head.weight if isinstance(head, nn.Linear) else model.tok_embeddings.weight  # type: ignore[union-attr]
    # the head sees each sequence's last token only: no prompt rows, so no dense copy either
    model.lm_head = Int8Linear(weight.detach(), None, dtype)  # type: ignore[assignment]
    model.row_split = split  # type: ignore[assignment]
    if isinstance(head, nn.Linear):
        model.output = None  # type: ignore[assignment]
