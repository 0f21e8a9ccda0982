"""Runs the model for one scheduled step and samples the next token of each sequence."""

from __future__ import annotations

from dataclasses import dataclass

import torch

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
    """Owns the model and its KV cache ([num_slots, H_kv, max_len, D] per layer)."""

    def __init__(self, model: LlamaForCausalLM, num_slots: int, max_len: int) -> None:
        self.model, self.num_slots, self.max_len = model, num_slots, max_len
        self.device = model.tok_embeddings.weight.device
        model.setup_caches(num_slots, max_len)

    @torch.inference_mode()
    def run(self, seqs: list[Sequence], is_prefill: bool) -> dict[Sequence, StepResult]:
        device = self.device
        if is_prefill:
            (seq,) = seqs
            tokens = torch.tensor([seq.prompt_ids], dtype=torch.long, device=device)  # [1, S]
            positions = torch.arange(len(seq.prompt_ids), device=device)[None]  # [1, S]
            lengths = [len(seq.prompt_ids)]
        else:
            seqs = sorted(seqs, key=lambda seq: seq.slot or 0)  # consecutive slots read the cache as a view
            tokens = torch.tensor(
                [[seq.last_token] for seq in seqs], dtype=torch.long, device=device
            )  # [B, 1]
            lengths = [seq.num_tokens for seq in seqs]
            positions = torch.tensor([[n - 1] for n in lengths], device=device)  # [B, 1]
        meta = BatchMeta.build([seq.slot or 0 for seq in seqs], positions, lengths, device)
        logits = self.model(tokens, meta, last_only=True)[:, -1].float()  # [B, V]
        return dict(zip(seqs, self.sample(logits, seqs), strict=True))

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
