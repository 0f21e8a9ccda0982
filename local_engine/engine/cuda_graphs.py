"""Decode steps replayed from CUDA graphs, one graph per batch size (CUDA only).

A graph needs fixed shapes and fixed buffers, so a decode step of B sequences runs at the next
captured size (padding rows write to a scratch block outside the block manager's range and
attend to it alone) and attends over the whole context window with a mask. Each step copies its
tokens, positions, write slots, block tables and lengths into the static buffers and replays.
Off CUDA, `DecodeGraphs(capture=False)` runs the same static-buffer step eagerly: that is how
the CPU tests check its padding and masks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from local_engine.layers.kv_cache import AttnGroup, BatchMeta
from local_engine.models.llama import LlamaForCausalLM

__all__ = ["DecodeGraphs", "graph_sizes"]


def graph_sizes(max_batch: int) -> list[int]:
    """Captured batch sizes: 1, 2, 4, 8, then every 16, up to `max_batch`."""
    sizes = [b for b in (1, 2, 4, 8) if b < max_batch] + list(range(16, max_batch, 16))
    return [*sizes, max_batch]


class DecodeGraphs:
    """Static buffers for decode steps of up to `max_batch` sequences; captured on CUDA.

    `scratch_block` must be a KV cache block the block manager never hands out.
    """

    def __init__(self, model: LlamaForCausalLM, max_batch: int, max_len: int, scratch_block: int,
                 capture: bool = True) -> None:  # fmt: skip
        self.model, self.block_size, self.scratch = model, model.block_size, scratch_block
        self.sizes = graph_sizes(max_batch)
        self.max_blocks = -(-max_len // self.block_size)
        device = model.tok_embeddings.weight.device
        n, long = max_batch, torch.long
        self.tokens = torch.zeros(1, n, dtype=long, device=device)  # [1, B]
        self.positions = torch.zeros(1, n, dtype=long, device=device)  # [1, B]
        self.slots = torch.zeros(n, dtype=long, device=device)  # [B]
        self.tables = torch.zeros(n, self.max_blocks, dtype=long, device=device)  # [B, blocks]
        self.lengths = torch.ones(n, dtype=long, device=device)  # [B]
        self.key_pos = torch.arange(self.max_blocks * self.block_size, device=device)  # [L]
        self.last = torch.arange(n, device=device)  # [B]
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, Tensor] = {}
        if capture and device.type == "cuda":
            self._capture()

    @torch.inference_mode()
    def _forward(self, size: int) -> Tensor:
        """Logits [1, size, V] of the buffers' first `size` rows."""
        key_pos, tables = self.key_pos, self.tables[:size]
        gather = tables[:, key_pos // self.block_size] * self.block_size + key_pos % self.block_size  # [B, L]
        mask = (key_pos[None, :] < self.lengths[:size, None])[:, None, None, :]  # [B, 1, 1, L]
        group = AttnGroup(0, size, 1, gather, mask=mask)
        meta = BatchMeta(self.positions[:, :size], self.slots[:size], (group,), self.last[:size], size)
        return self.model(self.tokens[:, :size], meta, last_only=True)

    def _capture(self) -> None:
        pool = None
        for size in reversed(self.sizes):  # largest first, so the smaller ones reuse its memory pool
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self._forward(size)  # warm-up outside the graph
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.outputs[size] = self._forward(size)
            pool = graph.pool()
            self.graphs[size] = graph

    def run(
        self, tokens: Sequence[int], positions: Sequence[int], tables: Sequence[Sequence[int]]
    ) -> Tensor | None:
        """Logits [B, V] of one decode step (token i at `positions[i]`), or None if B is too large."""
        count = len(tokens)
        size = next((s for s in self.sizes if s >= count), None)
        if size is None:
            return None
        pad = size - count
        bs, scratch = self.block_size, self.scratch
        slots = [t[p // bs] * bs + p % bs for t, p in zip(tables, positions, strict=True)] + [
            scratch * bs
        ] * pad
        padded = [list(t) + [scratch] * (self.max_blocks - len(t)) for t in tables]
        padded += [[scratch] * self.max_blocks] * pad
        lengths = [p + 1 for p in positions] + [1] * pad

        def put(buffer: Tensor, values: list[int] | list[list[int]]) -> None:
            buffer.copy_(torch.tensor(values, dtype=torch.long), non_blocking=True)

        put(self.tokens[0, :size], list(tokens) + [0] * pad)
        put(self.positions[0, :size], list(positions) + [0] * pad)
        put(self.slots[:size], slots)
        put(self.tables[:size], padded)
        put(self.lengths[:size], lengths)
        if size in self.graphs:
            self.graphs[size].replay()
            return self.outputs[size][0, :count]
        return self._forward(size)[0, :count]
