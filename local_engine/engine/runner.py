"""Runs the model for one scheduled step and samples the next token of each sequence."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from local_engine.engine.cuda_graphs import DecodeGraphs
from local_engine.engine.scheduler import Chunk
from local_engine.engine.sequence import Sequence
from local_engine.layers.kv_cache import BatchMeta
from local_engine.models.decode_script import ScriptedDecode
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
                 num_blocks: int | None = None, cuda_graphs: bool = True) -> None:  # fmt: skip
        self.model, self.num_slots, self.max_len = model, num_slots, max_len
        self.device = model.tok_embeddings.weight.device
        per_sequence = -(-max_len // block_size)
        # at least one full-length sequence: alone, a sequence always fits
        num_blocks = max(num_blocks or num_slots * per_sequence, per_sequence)
        graphs = cuda_graphs and self.device.type == "cuda"
        model.setup_caches(num_slots, max_len, block_size, num_blocks + graphs)  # + a scratch block
        self.block_size, self.num_blocks = block_size, num_blocks
        self.graphs = DecodeGraphs(model, num_slots, max_len, scratch_block=num_blocks) if graphs else None
        self.scripted = ScriptedDecode.build(model)  # the CPU's decode steps (None: the modules)

    @torch.inference_mode()
    def run(self, chunks: list[Chunk]) -> dict[Sequence, StepResult]:
        """Compute the chunks in one forward; sample for those that reach their sequence's end."""
        rows = [i for i, chunk in enumerate(chunks) if chunk.samples]
        logits = self.logits(chunks)  # [N, V]
        if not rows:
            return {}
        if len(rows) < len(chunks):
            logits = logits[torch.tensor(rows, device=self.device)]  # [N_sample, V]
        seqs = [chunks[i].seq for i in rows]
        return dict(zip(seqs, self.sample(logits.float(), seqs), strict=True))

    def logits(self, chunks: list[Chunk]) -> Tensor:
        """Logits [N, V] at each chunk's last token (a CUDA graph when every chunk is one token)."""
        starts = [chunk.start for chunk in chunks]
        tables = [chunk.seq.block_table for chunk in chunks]
        ids = [t for chunk in chunks for t in chunk.seq.token_ids(chunk.start, chunk.start + chunk.count)]
        if self.graphs is not None and len(ids) == len(chunks):
            logits = self.graphs.run(ids, starts, tables)
            if logits is not None:
                return logits
        tokens = torch.tensor([ids], dtype=torch.long, device=self.device)  # [1, T]
        counts = [chunk.count for chunk in chunks]
        decodes = sum(chunk.decodes for chunk in chunks)  # they come first (`Scheduler.schedule`)
        meta = BatchMeta.build(tables, starts, counts, self.block_size, self.device, decodes)
        # every chunk one generated token (a recomputed chunk after preemption is a decode chunk of several)
        if self.scripted is not None and decodes == len(chunks) == len(ids):
            return self.scripted(tokens, meta)
        return self.model(tokens, meta, last_only=True)[0]  # [N, V]

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
