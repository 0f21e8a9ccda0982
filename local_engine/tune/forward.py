"""A training forward over the engine's own decoder modules, with LoRA deltas and no KV cache.

The engine's `LlamaForCausalLM.forward` reads and writes the paged KV cache; training needs plain
causal attention over padded batches and gradients into the LoRA matrices only. This forward uses
the same parameters (fused `wqkv`, `w13`) and the same RoPE convention, so that what is trained
is what the engine serves once the adapter is merged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from local_engine.models.llama import LlamaForCausalLM, TransformerBlock, rotate_half

__all__ = ["LoraLayers", "causal_loss", "frozen_hidden"]


class LoraPair(nn.Module):
    """``scale * B(A(x))``: A [r, in] starts random, B [out, r] at zero (the base model at step 0)."""

    def __init__(self, d_in: int, d_out: int, rank: int, scale: float, generator: torch.Generator) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(rank, d_in, generator=generator) / math.sqrt(d_in))  # [r, in]
        self.b = nn.Parameter(torch.zeros(d_out, rank))  # [out, r]
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(F.linear(x, self.a), self.b) * self.scale  # [..., out]


class LoraLayers(nn.Module):
    """The trainable LoRA pairs, keyed ``"{layer}-{module}"`` (PEFT's module names)."""

    def __init__(self, model: LlamaForCausalLM, rank: int, alpha: float, modules: tuple[str, ...],
                 layers: tuple[int, ...], seed: int) -> None:  # fmt: skip
        super().__init__()
        c = model.config
        q, kv, ff = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size
        shapes = {
            "q_proj": (c.hidden_size, q), "k_proj": (c.hidden_size, kv), "v_proj": (c.hidden_size, kv),
            "o_proj": (q, c.hidden_size), "gate_proj": (c.hidden_size, ff), "up_proj": (c.hidden_size, ff),
            "down_proj": (ff, c.hidden_size),
        }  # fmt: skip
        generator = torch.Generator().manual_seed(seed)
        self.pairs = nn.ModuleDict(
            {f"{i}-{m}": LoraPair(*shapes[m], rank, alpha / rank, generator) for i in layers for m in modules}
        )
        self.rank, self.alpha, self.modules_, self.layers_ = rank, alpha, modules, layers

    def get(self, layer: int, module: str) -> LoraPair | None:
        key = f"{layer}-{module}"
        return self.pairs[key] if key in self.pairs else None  # type: ignore[return-value]


def _delta(lora: LoraLayers, layer: int, module: str, x: Tensor, base: Tensor) -> Tensor:
    pair = lora.get(layer, module)
    return base if pair is None else base + pair(x)


def _block(block: TransformerBlock, i: int, x: Tensor, cos: Tensor, sin: Tensor, lora: LoraLayers) -> Tensor:
    att, ff = block.attention, block.feed_forward
    batch, seq, _ = x.shape  # x: [B, S, hidden]
    heads, kv_heads, dim = att.n_heads, att.n_kv, att.head_dim
    h = block.attention_norm(x)
    q, k, v = att.wqkv(h).split([heads * dim, kv_heads * dim, kv_heads * dim], dim=-1)  # [B, S, H * D] ...
    q = _delta(lora, i, "q_proj", h, q).view(batch, seq, heads, dim)  # [B, S, H, D]
    k = _delta(lora, i, "k_proj", h, k).view(batch, seq, kv_heads, dim)  # [B, S, H_kv, D]
    v = _delta(lora, i, "v_proj", h, v).view(batch, seq, kv_heads, dim)
    q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin  # cos, sin: [1, S, 1, D]
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True,
        scale=1.0 / math.sqrt(dim), enable_gqa=heads != kv_heads,
    )  # out: [B, H, S, D]  # fmt: skip
    out = out.transpose(1, 2).reshape(batch, seq, heads * dim)  # [B, S, H * D]
    x = x + _delta(lora, i, "o_proj", out, att.wo(out))
    h = block.ffn_norm(x)
    gate, up = ff.w13(h).split(ff.hidden, dim=-1)  # each: [B, S, intermediate]
    gate, up = _delta(lora, i, "gate_proj", h, gate), _delta(lora, i, "up_proj", h, up)
    inner = F.silu(gate) * up
    return x + _delta(lora, i, "down_proj", inner, ff.w2(inner))


def rope(model: LlamaForCausalLM, seq: int) -> tuple[Tensor, Tensor]:
    freqs = torch.arange(seq, dtype=torch.float32)[:, None] * model.inv_freq  # [S, D / 2]
    emb = torch.cat((freqs, freqs), dim=-1)[None, :, None]  # [1, S, 1, D]
    return emb.cos(), emb.sin()


@torch.no_grad()
def frozen_hidden(model: LlamaForCausalLM, lora: LoraLayers, ids: Tensor) -> Tensor:
    """The residual stream entering the first adapted layer: ids [B, S] -> [B, S, hidden].

    The layers below it are frozen and carry no adapter, so this is computed once per example
    and reused every epoch: training then costs only the adapted top layers.
    """
    cos, sin = rope(model, ids.shape[1])
    x = model.tok_embeddings(ids)  # [B, S, hidden]
    for i in range(min(lora.layers_)):
        x = _block(model.layers[i], i, x, cos, sin, lora)
    return x


def causal_loss(model: LlamaForCausalLM, lora: LoraLayers, hidden: Tensor, labels: Tensor) -> Tensor:
    """Mean next-token cross-entropy on the labelled positions.

    ``hidden`` [B, S, hidden] is `frozen_hidden`'s output (right-padded), ``labels`` [B, S].
    """
    cos, sin = rope(model, hidden.shape[1])
    x = hidden
    for i in range(min(lora.layers_), len(model.layers)):
        x = _block(model.layers[i], i, x, cos, sin, lora)
    targets = labels[:, 1:]  # the token after each position: [B, S - 1]
    picked = targets != -100
    normed = model.norm(x[:, :-1][picked])  # only where there is a target: [N, hidden]
    head = model.output.weight if model.output is not None else model.tok_embeddings.weight
    logits = F.linear(normed, head)  # [N, V]
    return F.cross_entropy(logits.float(), targets[picked])
