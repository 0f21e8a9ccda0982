"""The CPU decode step as one TorchScript function: the same ops as the modules, without Python.

A decode step (every sequence adds one generated token) runs about 40 small ops per layer around
four matmuls. In eager mode each op pays Python and dispatch overhead, which on a 2-core CPU was
40 % of a batch-1 step of the bundled model (13.3 ms for its 30 layers eager, 7.8 ms scripted,
int4). `decode_logits` is the packed forward of `models/llama.py` for that one case (one attention
group, one query per row, every row a decode row), written op for op as the modules compute it,
so the numbers are identical bit for bit (tested for every dtype and quantization); prefill
chunks and mixed steps keep the modules. The interpreter runs without holding the GIL, so a
caller's thread that streams the tokens no longer competes with the step for it.

`torch.jit.script` is deprecated in torch 2.x in favour of `torch.compile`, which compiled for
100-130 s here and then ran slower per step (BENCHMARKS.md); scripting takes under a second. If
scripting is unavailable or fails, `ScriptedDecode.build` returns None and the modules run
everything (also when `LOCAL_ENGINE_EAGER=1`).
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from local_engine.layers.kv_cache import BatchMeta
from local_engine.layers.quant import INT4_GROUP, Int4Linear, Int8Linear

__all__ = ["ScriptedDecode"]

# how each linear layer computes: an `nn.Linear`, or a quantized kernel (`layers/quant.py`)
DENSE, INT8, INT4 = 0, 1, 2


def _norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:  # `RMSNorm.forward`
    if x.dtype == torch.float32 and weight.dtype == torch.float32:
        return F.rms_norm(x, [weight.shape[0]], weight, eps)
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def _linear(x: Tensor, kind: int, weight: Tensor, aux: Tensor, bias: Tensor | None, group: int) -> Tensor:
    """`nn.Linear`, or `_QuantizedLinear.forward` on decode rows (`aux`: the scales, whose dtype
    is the kernel's activation dtype; `group`: the int4 kernel's `INT4_GROUP`)."""
    if kind == 0:  # DENSE (TorchScript reads no globals)
        return F.linear(x, weight, bias)
    flat = x.reshape(-1, x.shape[-1])  # [M, K]
    if flat.dtype != aux.dtype:
        flat = flat.to(aux.dtype)
    if kind == 1:  # INT8
        out = torch.ops.aten._weight_int8pack_mm(flat, weight, aux)
    else:
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, weight, group, aux)
    if bias is not None:
        out = out + bias
    if out.dtype != x.dtype:
        out = out.to(x.dtype)
    return out.view(x.shape[:-1] + [out.shape[-1]])


def decode_logits(
    tokens: Tensor, positions: Tensor, slot_mapping: Tensor, gather: Tensor, mask: Tensor | None,
    last: Tensor, embedding: Tensor, inv_freq: Tensor, norms: list[Tensor], kinds: list[int],
    weights: list[Tensor], auxs: list[Tensor], biases: list[Tensor | None], caches: list[Tensor],
    heads: int, kv_heads: int, dim: int, eps: float, group: int,
) -> Tensor:  # fmt: skip
    """Logits [N, V] of a decode step: `LlamaForCausalLM.forward(tokens, meta, last_only=True)[0]`.

    Layer i's norms are `norms[2i]`, `norms[2i + 1]` (the model's final norm is last); its
    linears are entries 4i..4i+3 of `kinds`/`weights`/`auxs`/`biases` (qkv, o, gate-up, down),
    and the output head is the last entry.
    """
    freqs = positions[0, :, None].to(inv_freq.dtype) * inv_freq  # [T, D / 2]
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]  # [T, 1, D]
    x = F.embedding(tokens, embedding)  # [1, T, hidden]
    half = emb.shape[-1] // 2
    sin = emb.sin()
    sin[..., :half].neg_()
    cos, sin = emb.cos().to(x.dtype), sin.to(x.dtype)
    count = tokens.shape[1]
    rows, length = gather.shape
    scale = 1.0 / math.sqrt(dim)
    for i in range(len(caches)):
        cache = caches[i]
        j = 4 * i
        qkv = _linear(
            _norm(x, norms[2 * i], eps)[0], kinds[j], weights[j], auxs[j], biases[j], group
        )  # [T, .]
        qk = qkv[:, : (heads + kv_heads) * dim].view(count, heads + kv_heads, dim)
        qk.copy_(qk * cos + qk.roll(dim // 2, -1) * sin)
        cache.index_copy_(
            0, slot_mapping, qkv[:, heads * dim :].view(count, 2, kv_heads, dim).to(cache.dtype)
        )
        q = qk[:, :heads][0:rows].view(rows, 1, heads, dim)
        kv = cache.index_select(0, gather.view(-1))  # [rows * L, 2, H_kv, D]
        kv = kv.view(rows, length, 2, kv_heads, dim).permute(2, 0, 3, 1, 4)  # [2, rows, H_kv, L, D]
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2).float(), kv[0].float(), kv[1].float(), attn_mask=mask, is_causal=False,
            scale=scale, enable_gqa=heads != kv_heads,
        )  # fmt: skip
        out = out.transpose(1, 2).reshape(rows, heads * dim).to(x.dtype)
        h = x + _linear(out, kinds[j + 1], weights[j + 1], auxs[j + 1], biases[j + 1], group)[None]
        gate_up = _linear(
            _norm(h, norms[2 * i + 1], eps), kinds[j + 2], weights[j + 2], auxs[j + 2], biases[j + 2], group
        )
        gate, up = gate_up.split(gate_up.shape[-1] // 2, dim=-1)
        x = h + _linear(F.silu(gate) * up, kinds[j + 3], weights[j + 3], auxs[j + 3], biases[j + 3], group)
    x = _norm(x[:, last], norms[-1], eps)  # [1, N, hidden]
    return _linear(x, kinds[-1], weights[-1], auxs[-1], biases[-1], group)[0]  # [N, V]


_script: Any = None


def _scripted() -> Any:
    global _script
    if _script is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # see the module's docstring
            _script = torch.jit.script(decode_logits)
    return _script


class ScriptedDecode:
    """A model's decode step through `decode_logits`, its parameters gathered once."""

    def __init__(self, model: nn.Module, script: Any) -> None:
        self.script = script
        self.embedding: Tensor = model.tok_embeddings.weight  # type: ignore[assignment]
        self.inv_freq: Tensor = model.inv_freq  # type: ignore[assignment]
        self.norms: list[Tensor] = []
        linears: list[tuple[int, Tensor, Tensor, Tensor | None]] = []
        self.caches: list[Tensor] = []
        for layer in model.layers:  # type: ignore[attr-defined]
            attention, ffn = layer.attention, layer.feed_forward
            self.norms += [layer.attention_norm.weight, layer.ffn_norm.weight]
            for linear in (attention.wqkv, attention.wo, ffn.w13, ffn.w2):
                linears.append(_parts(linear))
            self.caches.append(attention.kv_cache.kv)
        self.norms.append(model.norm.weight)  # type: ignore[arg-type]
        head = model.lm_head or model.output  # type: ignore[attr-defined]
        linears.append(_parts(head) if head is not None else (DENSE, self.embedding, self.embedding, None))
        first = model.layers[0].attention  # type: ignore[index]
        self.shape = (first.n_heads, first.n_kv, first.head_dim, float(model.norm.eps))  # type: ignore[union-attr]
        columns = list(zip(*linears, strict=True))  # the script takes one list per part
        self.kinds, self.weights, self.auxs, self.biases = (list(c) for c in columns)

    @classmethod
    def build(cls, model: nn.Module) -> ScriptedDecode | None:
        """For a CPU model whose layers it knows; None otherwise (the modules then run every step)."""
        if os.environ.get("LOCAL_ENGINE_EAGER") == "1":
            return None
        if model.tok_embeddings.weight.device.type != "cpu":  # type: ignore[union-attr]
            return None
        try:
            return cls(model, _scripted())
        except (TypeError, RuntimeError, AttributeError) as exc:  # an unknown layer, or no TorchScript
            warnings.warn(
                f"the scripted decode step is off ({exc}); decoding runs eager", RuntimeWarning, stacklevel=2
            )
            return None

    def __call__(self, tokens: Tensor, meta: BatchMeta) -> Tensor:
        """Logits [N, V] of a step whose rows are all decode rows (one attention group)."""
        (group,) = meta.groups
        heads, kv_heads, dim, eps = self.shape
        return self.script(  # type: ignore[no-any-return]
            tokens, meta.positions, meta.slot_mapping, group.gather, group.mask, meta.last, self.embedding,
            self.inv_freq, self.norms, self.kinds, self.weights, self.auxs, self.biases, self.caches,
            heads, kv_heads, dim, eps, INT4_GROUP,
        )  # fmt: skip


def _parts(linear: nn.Module) -> tuple[int, Tensor, Tensor, Tensor | None]:
    if isinstance(linear, Int4Linear):
        return INT4, linear.weight, linear.scales_and_zeros, linear.bias
    if isinstance(linear, Int8Linear):
        return INT8, linear.weight, linear.scales, linear.bias
    if type(linear) is nn.Linear:
        return DENSE, linear.weight, linear.weight, linear.bias
    raise TypeError(f"no scripted form for {type(linear).__name__}")
