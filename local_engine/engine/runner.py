"""Runs the model for one scheduled step and samples the next token of each sequence."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from local_engine.engine.scheduler import Chunk
from local_engine.engine.sequence import Sequence
from local_engine.layers.kv_cache import BatchMeta
from local_engine.models.llama import LlamaForCausalLM
from local_engine.sampling import apply_penalties, sample

__all__ = ["ModelRunner", "StepResult"]


@dataclass(frozen=True, slots=True)
class StepResult:
    token_id: int
    logprob: float | None
    top_logprobs: tuple[tuple[int, float], ...] | None


class ModelRunner:
    """Owns the model and its paged KV cache (`num_blocks` blocks of `block_size` tokens)."""

    def __init__(self, model: LlamaForCausalLM, num_slots: int, max_len: int, block_size: int = 16,
                 num_blocks: int | None = None) -> None:  # fmt: skip
        self.model, self.num_slots, self.max_len = model, num_slots, max_len
        self.device = model.tok_embeddings.weight.device
        if num_blocks is not None:  # at least one full-length sequence: alone, a sequence always fits
            num_blocks = max(num_blocks, -(-max_len // block_size))
        model.setup_caches(num_slots, max_len, block_size, num_blocks)
        self.block_size, self.num_blocks = block_size, model.num_blocks

    @torch.inference_mode()
    def run(self, chunks: list[Chunk]) -> dict[Sequence, StepResult]:
        """Compute the chunks in one forward; sample for those that reach their sequence's end."""
        ids = [t for chunk in chunks for t in chunk.seq.token_ids(chunk.start, chunk.start + chunk.count)]
        tokens = torch.tensor([ids], dtype=torch.long, device=self.device)  # [1, T]
        meta = BatchMeta.build(
            [chunk.seq.block_table for chunk in chunks], [chunk.start for chunk in chunks],
            [chunk.count for chunk in chunks], self.block_size, self.device,
        )  # fmt: skip
        logits = self.model(tokens, meta, last_only=True)[0]  # [N, V]
        rows = [i for i, chunk in enumerate(chunks) if chunk.samples]
        if not rows:
            return {}
        if len(rows) < len(chunks):
            logits = logits[torch.tensor(rows, device=self.device)]  # [N_sample, V]
        seqs = [chunks[i].seq for i in rows]
        return dict(zip(seqs, self.sample(logits.float(), seqs), strict=True))

    def sample(self, logits: torch.Tensor, seqs: list[Sequence]) -> list[StepResult]:
        params = [seq.params for seq in seqs]
        penalized = apply_penalties(
            logits, params, [s.prompt_ids for s in seqs], [s.output_ids for s in seqs]
        )
        token_ids = sample(penalized, params, [seq.generator for seq in seqs])  # [B]
        want = [p.logprobs or p.top_logprobs > 0 for p in params]
        logprobs = logits.log_softmax(dim=-1) if any(want) else None  # [B, V]: the model's own distribution
        results = []
        for row, (seq, token) in enumerate(zip(seqs, token_ids.tolist(), strict=True)):
            if logprobs is None or not want[row]:
                results.append(StepResult(token, None, None))
                continue
            top = None
            if seq.params.top_logprobs:
                values, ids = logprobs[row].topk(seq.params.top_logprobs)
                top = tuple(zip(ids.tolist(), values.tolist(), strict=True))
            results.append(StepResult(token, float(logprobs[row, token]), top))
        return results
