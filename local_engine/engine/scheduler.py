"""Which tokens run next: a waiting queue, a running list, and the KV cache blocks.

Every step packs work up to a token budget (`max_step_tokens`): first each running sequence's
next tokens (one for a decode, the next chunk for a prompt still being prefilled), then new
sequences from the waiting queue while there are free blocks for their first chunk and room in
the batch. So sequences join and leave the batch every step, and a long prompt is prefilled in
chunks beside the running decodes instead of stalling them. When a running sequence needs a
block and none is free, the newest running sequence is preempted: its blocks are freed and it
goes back to the front of the queue, to be recomputed (prompt and output so far) later.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from local_engine.engine.block_manager import BlockManager
from local_engine.engine.sequence import Sequence, SequenceStatus

__all__ = ["Chunk", "Scheduler"]


@dataclass(frozen=True, slots=True)
class Chunk:
    """`seq` computes its tokens `start : start + count` this step."""

    seq: Sequence
    start: int
    count: int

    @property
    def decodes(self) -> bool:
        """Whether the chunk computes a generated token (a decode step), not prompt tokens."""
        return self.start >= len(self.seq.prompt_ids)

    @property
    def samples(self) -> bool:
        """Whether the chunk reaches the sequence's end, so a next token is sampled from it."""
        return self.start + self.count == self.seq.num_tokens


class Scheduler:
    def __init__(self, blocks: BlockManager, max_seqs: int, max_step_tokens: int) -> None:
        self.blocks, self.max_seqs, self.max_step_tokens = blocks, max_seqs, max_step_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.preemptions = 0
        self.cached_tokens = 0  # prompt tokens served from the prefix cache

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> list[Chunk]:
        """The chunks of the next step, decodes first; empty when there is nothing to do."""
        budget, chunks, preempted = self.max_step_tokens, [], False
        scheduled: set[Sequence] = set()
        for seq in sorted(self.running, key=lambda s: s.num_tokens - s.num_computed > 1):  # decodes first
            if budget <= 0:
                break
            if seq.status is not SequenceStatus.RUNNING:
                continue  # preempted earlier in this loop
            count = min(seq.num_tokens - seq.num_computed, budget)
            while not self.blocks.ensure(seq, seq.num_computed + count):
                victim = next(s for s in reversed(self.running) if s not in scheduled)  # the newest
                self._preempt(victim)
                preempted = True
                if victim is seq:
                    break
            if seq.status is SequenceStatus.RUNNING:
                chunks.append(Chunk(seq, seq.num_computed, count))
                scheduled.add(seq)
                budget -= count
        while self.waiting and budget > 0 and len(self.running) < self.max_seqs and not preempted:
            seq = self.waiting[0]
            self.blocks.match_prefix(seq)
            count = min(seq.num_tokens - seq.num_computed, budget)
            if not self.blocks.ensure(seq, seq.num_computed + count):
                self.blocks.free_seq(seq)
                break
            self.cached_tokens += seq.num_computed
            self.waiting.popleft()
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            chunks.append(Chunk(seq, seq.num_computed, count))
            budget -= count
        # Decodes first, then one-token prompt chunks (a prompt the prefix cache held but for its
        # last token): one-token rows attend as one batch, and only decodes take the decode kernels.
        chunks.sort(key=lambda chunk: (chunk.count != 1, not chunk.decodes))
        return chunks

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.free_seq(seq)
        seq.status = SequenceStatus.WAITING
        self.waiting.appendleft(seq)
        self.preemptions += 1

    def computed(self, chunks: list[Chunk]) -> None:
        """Record that the chunks ran: advance each sequence and publish its full prompt blocks."""
        for chunk in chunks:
            chunk.seq.num_computed = chunk.start + chunk.count
            self.blocks.publish(chunk.seq)

    def finish(self, seq: Sequence) -> None:
        """Take `seq` out of the queues and free its blocks."""
        seq.status = SequenceStatus.FINISHED
        if seq in self.running:
            self.running.remove(seq)
        if seq in self.waiting:
            self.waiting.remove(seq)
        self.blocks.free_seq(seq)

    def abort(self, request_id: str) -> list[Sequence]:
        """Finish every sequence of `request_id`; return them."""
        found = [s for s in [*self.waiting, *self.running] if s.request_id == request_id]
        for seq in found:
            seq.finish_reason = seq.finish_reason or "abort"
            self.finish(seq)
        return found
