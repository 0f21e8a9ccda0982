"""The preallocated KV cache, written by index, and `BatchMeta`: where a step's rows live in it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["BatchMeta", "KVCache"]


@dataclass(frozen=True, slots=True)
class BatchMeta:
    """Where a batch's rows live in the cache and what they may attend to.

    `mask` is None when no mask is needed: `causal` for a prefill from position 0, or a decode
    whose rows all have the same length (each query sees every key up to `length`).
    """

    slots: Tensor  # [B]
    positions: Tensor  # [B, S]
    length: int  # keys to attend over
    slot_start: int | None = None  # set when the slots are slot_start, slot_start + 1, ...
    causal: bool = False
    mask: Tensor | None = None  # [B, 1, S, L] bool

    @classmethod
    def build(
        cls, slots: list[int], positions: Tensor, lengths: list[int], device: torch.device | str
    ) -> BatchMeta:
        """From host-side slot numbers and each row's length after this step: no device reads."""
        length = max(lengths)
        start = slots[0] if slots == list(range(slots[0], slots[0] + len(slots))) else None
        slot_tensor = torch.tensor(slots, dtype=torch.long, device=device)  # [B]
        seqlen = positions.shape[1]
        if len(slots) == 1 and lengths[0] == seqlen:
            return cls(slot_tensor, positions, length, start, causal=seqlen > 1)
        if seqlen == 1 and len(set(lengths)) == 1:
            return cls(slot_tensor, positions, length, start)
        key_pos = torch.arange(length, device=device)  # [L]
        mask = key_pos[None, None, None, :] <= positions[:, None, :, None]  # [B, 1, S, L]
        return cls(slot_tensor, positions, length, start, mask=mask)


class KVCache(nn.Module):
    """Keys and values of every slot: [num_slots, H_kv, max_len, D] each."""

    def __init__(self, num_slots: int, num_kv_heads: int, max_len: int, head_dim: int,
                 device: torch.device | str, dtype: torch.dtype) -> None:  # fmt: skip
        super().__init__()
        shape = (num_slots, num_kv_heads, max_len, head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    def update(self, meta: BatchMeta, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v ([B, H_kv, S, D]) at the batch's positions; return keys, values [B, H_kv, L, D]."""
        rows = meta.slots[:, None]  # [B, 1], broadcast against positions [B, S]
        self.k_cache[rows, :, meta.positions] = k.transpose(1, 2)  # indexed: [B, S, H_kv, D]
        self.v_cache[rows, :, meta.positions] = v.transpose(1, 2)
        if meta.slot_start is not None:  # consecutive slots: a view, no copy
            end = meta.slot_start + k.shape[0]
            return (
                self.k_cache[meta.slot_start : end, :, : meta.length],
                self.v_cache[meta.slot_start : end, :, : meta.length],
            )
        return self.k_cache[meta.slots, :, : meta.length], self.v_cache[meta.slots, :, : meta.length]
