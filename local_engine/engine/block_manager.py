"""KV cache blocks: a free list, a block table per sequence, and prefix caching by chain hash.

A full block of a prompt, once computed, is published under the hash of (previous block's hash,
its token ids); a later prompt with the same prefix shares it by reference count instead of
computing it again. A freed block keeps its contents and hash while it sits in the free list
(oldest freed is reused first), so a system prompt stays cached until its blocks are needed.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from local_engine.engine.sequence import Sequence

__all__ = ["Block", "BlockManager"]


@dataclass(slots=True)
class Block:
    """One block's bookkeeping (mutable: owned by the `BlockManager`)."""

    block_id: int
    ref_count: int = 0
    hash: int | None = None
    token_ids: tuple[int, ...] = ()


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool = True) -> None:
        self.block_size, self.num_blocks, self.prefix_caching = block_size, num_blocks, prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))  # oldest first
        self.cached: dict[int, int] = {}  # chain hash -> block id

    @property
    def num_free(self) -> int:
        return len(self.free)

    def _take(self) -> int:
        block_id, _ = self.free.popitem(last=False)
        block = self.blocks[block_id]
        if block.hash is not None and self.cached.get(block.hash) == block_id:
            del self.cached[block.hash]  # its contents are about to be overwritten
        block.hash, block.token_ids, block.ref_count = None, (), 1
        return block_id

    def _chunk(self, seq: Sequence, index: int) -> tuple[int, ...]:
        size = self.block_size
        return tuple(seq.prompt_ids[index * size : (index + 1) * size])

    def match_prefix(self, seq: Sequence) -> None:
        """Share the cached full blocks that begin `seq`'s prompt (never the block holding its
        last token, which must be computed to sample from)."""
        if not self.prefix_caching or seq.block_table:
            return
        parent: int | None = None
        for index in range((len(seq.prompt_ids) - 1) // self.block_size):
            tokens = self._chunk(seq, index)
            key = hash((parent, tokens))
            block_id = self.cached.get(key)
            if block_id is None or self.blocks[block_id].token_ids != tokens:
                break
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self.free[block_id]
            block.ref_count += 1
            seq.block_table.append(block_id)
            seq.block_hashes.append(key)
            parent = key
        seq.num_computed = len(seq.block_table) * self.block_size

    def ensure(self, seq: Sequence, num_tokens: int) -> bool:
        """Give `seq` blocks for its first `num_tokens` tokens; False (taking none) if too few are free."""
        need = -(-num_tokens // self.block_size) - len(seq.block_table)
        if need > len(self.free):
            return False
        seq.block_table.extend(self._take() for _ in range(need))
        return True

    def publish(self, seq: Sequence) -> None:
        """Register the prompt's full blocks that are now computed, for later prompts to share."""
        if not self.prefix_caching:
            return
        done = min(seq.num_computed, len(seq.prompt_ids)) // self.block_size
        for index in range(len(seq.block_hashes), done):
            tokens = self._chunk(seq, index)
            key = hash((seq.block_hashes[-1] if seq.block_hashes else None, tokens))
            seq.block_hashes.append(key)
            block = self.blocks[seq.block_table[index]]
            if key not in self.cached and block.hash is None:
                block.hash, block.token_ids = key, tokens
                self.cached[key] = block.block_id

    def free_seq(self, seq: Sequence) -> None:
        """Drop `seq`'s references; its blocks return to the free list (last block first)."""
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[block_id] = None
        seq.block_table, seq.block_hashes, seq.num_computed = [], [], 0
