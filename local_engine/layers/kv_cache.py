"""The paged KV cache, written by index, and `BatchMeta`: where a step's tokens live in it.

The cache holds `num_blocks` blocks of `block_size` tokens, stored flat: token slot
`block * block_size + offset`. A step packs the new tokens of every scheduled sequence into one
row ([1, T]); the projections run on that row, and attention runs per group: one group for the
decoding rows (one new token each, batched) and one per prefill chunk. Each group reads its keys
through the sequences' block tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["AttnGroup", "BatchMeta", "KVCache"]


@dataclass(frozen=True, slots=True)
class AttnGroup:
    """Rows `[start, start + rows * seqlen)` of the packed step, attended as [rows, H, seqlen, D]."""

    start: int
    rows: int
    seqlen: int
    gather: Tensor  # [rows, L]: cache slot of each key position (padding reads slot 0, masked)
    causal: bool = False
    mask: Tensor | None = None  # [rows, 1, seqlen, L] bool


@dataclass(frozen=True, slots=True)
class BatchMeta:
    positions: Tensor  # [1, T]
    slot_mapping: Tensor  # [T]: where each new token's K/V is written
    groups: tuple[AttnGroup, ...]
    last: Tensor  # [N]: index of each sequence's last new token in the packed row
    # Rows `[0, decode_rows)` are generated tokens (decode steps), the rest prompt tokens; a
    # quantized model computes the two kinds differently (`RowSplit`), so a token's kind, not the
    # batch it lands in, decides its arithmetic.
    decode_rows: int = 0

    @classmethod
    def build(cls, tables: Sequence[Sequence[int]], starts: Sequence[int], counts: Sequence[int],
              block_size: int, device: torch.device | str,
              decode_rows: int | None = None) -> BatchMeta:  # fmt: skip
        """Sequence i computes tokens `starts[i] : starts[i] + counts[i]` with block table
        `tables[i]`; the first `decode_rows` sequences are decode steps (default: the leading
        one-token ones). Built from host lists: no device reads."""
        positions = [p for s, c in zip(starts, counts, strict=True) for p in range(s, s + c)]
        slots = [
            table[p // block_size] * block_size + p % block_size
            for table, s, c in zip(tables, starts, counts, strict=True)
            for p in range(s, s + c)
        ]
        groups, offset, i = [], 0, 0
        while i < len(counts):
            j = i + 1
            if counts[i] == 1:  # a run of decoding rows attends as one batch
                while j < len(counts) and counts[j] == 1:
                    j += 1
            groups.append(_group(tables[i:j], starts[i:j], counts[i], offset, block_size, device))
            offset += sum(counts[i:j])
            i = j
        ends = torch.tensor(counts, device=device).cumsum(0) - 1  # [N]
        if decode_rows is None:
            decode_rows = next((i for i, count in enumerate(counts) if count != 1), len(counts))
        return cls(
            torch.tensor([positions], dtype=torch.long, device=device),
            torch.tensor(slots, dtype=torch.long, device=device),
            tuple(groups),
            ends,
            decode_rows,
        )


def _group(tables: Sequence[Sequence[int]], starts: Sequence[int], seqlen: int, offset: int,
           block_size: int, device: torch.device | str) -> AttnGroup:  # fmt: skip
    lengths = [s + seqlen for s in starts]
    length = max(lengths)
    num_blocks = -(-length // block_size)
    padded = [list(t[:num_blocks]) + [0] * (num_blocks - len(t[:num_blocks])) for t in tables]
    table = torch.tensor(padded, dtype=torch.long, device=device)  # [rows, blocks]
    key_pos = torch.arange(length, device=device)  # [L]
    gather = table[:, key_pos // block_size] * block_size + key_pos % block_size  # [rows, L]
    if len(tables) == 1 and starts[0] == 0:
        return AttnGroup(offset, 1, seqlen, gather, causal=seqlen > 1)
    if seqlen == 1 and len(set(lengths)) == 1:
        return AttnGroup(offset, len(tables), 1, gather)
    query_pos = torch.tensor(starts, device=device)[:, None] + torch.arange(
        seqlen, device=device
    )  # [rows, S]
    mask = key_pos[None, None, None, :] <= query_pos[:, None, :, None]  # [rows, 1, S, L]
    return AttnGroup(offset, len(tables), seqlen, gather, mask=mask)


class KVCache(nn.Module):
    """Keys and values of every block, flat and side by side: [num_blocks * block_size, 2, H_kv, D].

    One tensor for both, so that a step writes them with one `index_copy_` and a group reads them
    with one `index_select` (on CPU both cost a few microseconds; advanced indexing costs more).
    """

    def __init__(self, num_blocks: int, block_size: int, num_kv_heads: int, head_dim: int,
                 device: torch.device | str, dtype: torch.dtype) -> None:  # fmt: skip
        super().__init__()
        shape = (num_blocks * block_size, 2, num_kv_heads, head_dim)
        self.register_buffer("kv", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    def write(self, meta: BatchMeta, kv: Tensor) -> None:
        """Store the step's keys and values ([T, 2, H_kv, D]) at their slots."""
        self.kv.index_copy_(0, meta.slot_mapping, kv.to(self.kv.dtype))

    def read(self, group: AttnGroup) -> tuple[Tensor, Tensor]:
        """Keys and values of a group's rows: [rows, H_kv, L, D] each (strided views of one copy)."""
        rows, length = group.gather.shape
        kv = self.kv.index_select(0, group.gather.view(-1))  # [rows * L, 2, H_kv, D]
        kv = kv.view(rows, length, *self.kv.shape[1:]).permute(2, 0, 3, 1, 4)  # [2, rows, H_kv, L, D]
        return kv[0], kv[1]
