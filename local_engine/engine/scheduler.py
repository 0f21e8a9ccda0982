"""Which sequences run next: a waiting queue, a running set, and the free KV cache slots.

Each step is either one prefill (the oldest waiting sequence, when a slot is free) or one decode
of every running sequence together. Continuous batching follows from this: a sequence joins the
running batch as soon as its prefill is done, and leaves it the step it finishes.
"""

from __future__ import annotations

from collections import deque

from local_engine.engine.sequence import Sequence, SequenceStatus

__all__ = ["Scheduler"]


class Scheduler:
    def __init__(self, num_slots: int) -> None:
        self.num_slots = num_slots
        self.free_slots: deque[int] = deque(range(num_slots))
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> tuple[list[Sequence], bool]:
        """Return (sequences, is_prefill) for the next step; empty when there is nothing to do."""
        if self.waiting and self.free_slots:
            seq = self.waiting.popleft()
            seq.slot = self.free_slots.popleft()
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            return [seq], True
        return list(self.running), False

    def finish(self, seq: Sequence) -> None:
        """Take `seq` out of the queues and give its cache slot back."""
        seq.status = SequenceStatus.FINISHED
        if seq in self.running:
            self.running.remove(seq)
        if seq in self.waiting:
            self.waiting.remove(seq)
        if seq.slot is not None:
            self.free_slots.append(seq.slot)
            seq.slot = None

    def abort(self, request_id: str) -> list[Sequence]:
        """Finish every sequence of `request_id`; return them."""
        found = [s for s in [*self.waiting, *self.running] if s.request_id == request_id]
        for seq in found:
            seq.finish_reason = seq.finish_reason or "abort"
            self.finish(seq)
        return found
