"""A Llama-family decoder (Llama, Mistral, Qwen2, SmolLM) in gpt-fast style.

One forward serves prefill chunks and batched decode together: the new tokens of every sequence
are packed into one row, and attention reads each sequence's keys through its block table in the
paged KV cache (`layers/kv_cache.py`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from local_engine.config import ModelConfig
from local_engine.layers.kv_cache import BatchMeta, KVCache

__all__ = ["BatchMeta", "KVCache", "LlamaForCausalLM", "RMSNorm"]

Device = torch.device | str | None


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, device: Device = None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device))

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            # one fused call, the same float32 arithmetic as below (bit for bit): fewer dispatches
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        # computed in float32 whatever the model dtype, as HF does
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, device: Device = None) -> None:
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = config.num_heads, config.num_kv_heads, config.head_dim
        qkv_out = (self.n_heads + 2 * self.n_kv) * self.head_dim
        self.wqkv = nn.Linear(config.hidden_size, qkv_out, bias=config.attention_bias, device=device)
        self.wo = nn.Linear(self.n_heads * self.head_dim, config.hidden_size, bias=False, device=device)
        self.kv_cache: KVCache | None = None
        self._register_load_state_dict_pre_hook(self._fuse_qkv)

    def _fuse_qkv(self, state_dict: dict[str, Tensor], prefix: str, *args: Any) -> None:
        for kind in ("weight", "bias"):
            names = [f"{prefix}w{p}.{kind}" for p in "qkv"]
            if all(name in state_dict for name in names):
                state_dict[f"{prefix}wqkv.{kind}"] = torch.cat([state_dict.pop(name) for name in names])

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, meta: BatchMeta) -> Tensor:
        _, tokens, _ = x.shape  # x: [1, T, hidden], every sequence's new tokens packed
        heads, kv_heads, dim = self.n_heads, self.n_kv, self.head_dim
        qkv = self.wqkv(x[0])  # [T, (H + 2 H_kv) D]
        # RoPE on the query and key heads at once, written back so that keys and values stay side
        # by side in `qkv`, the layout the cache stores
        qk = qkv[:, : (heads + kv_heads) * dim].view(tokens, heads + kv_heads, dim)  # [T, H + H_kv, D]
        # rotate_half(qk) * sin as one roll: `sin` comes with the first half's sign flipped
        qk.copy_(qk * cos + qk.roll(dim // 2, -1) * sin)  # cos, sin: [T, 1, D]
        if self.kv_cache is None:
            raise RuntimeError("call setup_caches() before forward()")
        self.kv_cache.write(meta, qkv[:, heads * dim :].view(tokens, 2, kv_heads, dim))
        q = qk[:, :heads]  # [T, H, D]
        outs = []
        for group in meta.groups:
            end = group.start + group.rows * group.seqlen
            q_g = q[group.start : end].view(group.rows, group.seqlen, heads, dim)
            keys, values = self.kv_cache.read(group)  # [rows, H_kv, L, D]
            # float32 attention: torch's bfloat16 CPU attention is several times slower, and the
            # inputs are small; grouped-query attention in the kernel
            out = F.scaled_dot_product_attention(
                q_g.transpose(1, 2).float(), keys.float(), values.float(), attn_mask=group.mask,
                is_causal=group.causal, scale=1.0 / math.sqrt(dim), enable_gqa=heads != kv_heads,
            )  # out: [rows, H, S, D]  # fmt: skip
            out = out.transpose(1, 2).reshape(group.rows * group.seqlen, heads * dim)  # [rows * S, H * D]
            outs.append(out)
        out = outs[0] if len(outs) == 1 else torch.cat(outs)  # [T, H * D]
        return self.wo(out.to(x.dtype))[None]  # [1, T, hidden]


class FeedForward(nn.Module):
    def __init__(self, config: ModelConfig, device: Device = None) -> None:
        super().__init__()
        self.hidden = config.intermediate_size
        self.w13 = nn.Linear(config.hidden_size, 2 * self.hidden, bias=False, device=device)  # gate, up fused
        self.w2 = nn.Linear(self.hidden, config.hidden_size, bias=False, device=device)
        self._register_load_state_dict_pre_hook(self._fuse_gate_up)

    def _fuse_gate_up(self, state_dict: dict[str, Tensor], prefix: str, *args: Any) -> None:
        names = [f"{prefix}w1.weight", f"{prefix}w3.weight"]
        if all(name in state_dict for name in names):
            state_dict[f"{prefix}w13.weight"] = torch.cat([state_dict.pop(name) for name in names])

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.w13(x).split(self.hidden, dim=-1)  # each: [B, S, intermediate]
        return self.w2(F.silu(gate) * up)


class TransformerBlock(nn.Module):
    def __init__(self, config: ModelConfig, device: Device = None) -> None:
        super().__init__()
        self.attention = Attention(config, device)
        self.feed_forward = FeedForward(config, device)
        self.attention_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, device)
        self.ffn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, device)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, meta: BatchMeta) -> Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, meta)
        return h + self.feed_forward(self.ffn_norm(h))


class LlamaForCausalLM(nn.Module):
    """The decoder: `forward(tokens [B, S], meta) -> logits [B, S, V]`."""

    def __init__(self, config: ModelConfig, device: Device = None) -> None:
        super().__init__()
        self.config = config
        # an explicit weight skips normal_(), which on "meta" would import torch._dynamo (seconds)
        embedding = torch.empty(config.vocab_size, config.hidden_size, device=device)  # [V, hidden]
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, _weight=embedding)
        self.layers = nn.ModuleList(TransformerBlock(config, device) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, device)
        self.output = (
            None if config.tie_word_embeddings
            else nn.Linear(config.hidden_size, config.vocab_size, bias=False, device=device)
        )  # fmt: skip
        self.lm_head: nn.Module | None = None  # a quantized output head (`layers/quant.py`), if any
        self.kv_dtype: torch.dtype | None = None  # the KV cache's dtype when not the weights'
        self.row_split: Any = None  # quantized layers' `RowSplit`: where a step's prompt rows start
        self.register_buffer("inv_freq", rope_inv_freq(config), persistent=False)  # [D / 2], always real
        self.max_len, self.block_size, self.blocks_per_slot, self.num_blocks = 0, 16, 0, 0

    def setup_caches(self, num_slots: int, max_len: int, block_size: int = 16,
                     num_blocks: int | None = None) -> None:  # fmt: skip
        """Allocate the paged KV cache: `num_blocks` blocks of `block_size` tokens (by default
        enough for `num_slots` sequences of `max_len` tokens)."""
        self.block_size, self.blocks_per_slot = block_size, -(-max_len // block_size)
        self.num_blocks = num_blocks if num_blocks is not None else num_slots * self.blocks_per_slot
        param = self.tok_embeddings.weight
        for layer in self.layers:
            attention = layer.attention
            attention.kv_cache = KVCache(
                self.num_blocks, block_size, attention.n_kv, attention.head_dim, param.device,
                self.kv_dtype or param.dtype,
            )  # fmt: skip
        self.max_len = max_len

    def forward(self, tokens: Tensor, meta: BatchMeta | Tensor, positions: Tensor | None = None,
                last_only: bool = False) -> Tensor:  # fmt: skip
        """Logits of the packed tokens [1, T]: [1, T, V], or [1, N, V] at each sequence's last token.

        `meta` comes from `BatchMeta.build` (the engine's path, no device reads). For tests and
        tools, slots [B] and positions [B, S] also work (slot s owns a fixed run of blocks, rows
        hold S consecutive positions), with tokens [B, S] and logits [B, S, V].
        """
        shape, by_slot = tokens.shape, not isinstance(meta, BatchMeta)
        if not isinstance(meta, BatchMeta):
            if positions is None:
                raise TypeError("pass positions [B, S] along with slots [B]")
            per = self.blocks_per_slot
            tables = [list(range(s * per, (s + 1) * per)) for s in meta.tolist()]
            starts = positions[:, 0].tolist()
            meta = BatchMeta.build(tables, starts, [shape[1]] * shape[0], self.block_size, tokens.device)
            tokens = tokens.reshape(1, -1)  # [1, B * S]
        if self.row_split is not None:  # decode rows come first, one token per sequence
            self.row_split.dense_from = meta.decode_rows
        freqs = meta.positions[0, :, None].to(self.inv_freq.dtype) * self.inv_freq  # [T, D / 2]
        emb = torch.cat((freqs, freqs), dim=-1)[:, None]  # [T, 1, D]
        x = self.tok_embeddings(tokens)  # x: [1, T, hidden]
        half = emb.shape[-1] // 2
        sin = emb.sin()
        sin[..., :half].neg_()  # rotate_half(q) * sin == q.roll(D / 2) * (sin, first half negated)
        cos, sin = emb.cos().to(x.dtype), sin.to(x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, meta)
        if last_only:
            x = x[:, meta.last]  # [1, N, hidden]
        x = self.norm(x)
        if self.lm_head is not None:
            logits = self.lm_head(x)  # [1, T or N, V]
        elif self.output is None:
            logits = F.linear(x, self.tok_embeddings.weight)
        else:
            logits = self.output(x)
        if by_slot and not last_only:
            return logits.view(shape[0], shape[1], -1)  # [B, S, V]
        return logits  # [1, T or N, V]


def rope_inv_freq(config: ModelConfig) -> Tensor:
    """Inverse frequencies of RoPE for the config's base and scaling: [D / 2] float32."""
    dim = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    scaling = config.rope_scaling
    if scaling is None:
        return inv_freq
    if scaling.kind == "linear":
        return inv_freq / scaling.factor
    # llama3: long wavelengths are slowed by `factor`, short ones kept, the band between blended
    low_wavelen = scaling.original_context_length / scaling.low_freq_factor
    high_wavelen = scaling.original_context_length / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (scaling.original_context_length / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    blended = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, blended, scaled)
