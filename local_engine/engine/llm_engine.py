"""The synchronous engine: `add_request`, `step`, `abort`, `generate`. Not thread-safe by itself;
`AsyncEngine` drives one from a single background thread."""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import torch

from local_engine.engine.block_manager import BlockManager
from local_engine.engine.runner import ModelRunner
from local_engine.engine.scheduler import Scheduler
from local_engine.engine.sequence import Sequence as Seq
from local_engine.engine.sequence import TokenEvent, TopLogprob
from local_engine.errors import EngineError, ModelFileError, RequestError
from local_engine.loader.checkpoint import load_checkpoint
from local_engine.loader.paths import default_model_path
from local_engine.models.build import build_model
from local_engine.sampling import SamplingParams
from local_engine.settings import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_MAX_MODEL_LEN,
    DEFAULT_PREFILL_CHUNK,
    EngineSettings,
    available_memory,
    default_max_batch,
)
from local_engine.tokenizer import Tokenizer

__all__ = ["EngineStats", "LLMEngine", "RequestOutput"]

DEFAULT_MAX_BATCH = 4  # of `from_path`, for tests and tools; `load_engine` sizes it from memory


@dataclass(frozen=True, slots=True)
class EngineStats:
    """Load of the engine, named as the router's `LocalEngineLoad` names it.

    `queue_depth` sequences wait (for KV blocks or room in the batch), `running` are being
    prefilled or decoded, `free_slots` more could join the batch, `free_blocks` of `total_blocks`
    KV cache blocks are free (cached prefix blocks with no user count as free), `tokens_per_s` is
    the tokens produced per second over the last five seconds of steps (0 after five idle seconds).
    `prompt_tokens`, `generated_tokens`, `cached_tokens` (prompt tokens served by the prefix
    cache) and `preemptions` count since the engine started. `max_batch` is the capacity: the
    sequences decoded at once (`running + free_slots`), so a request beyond it waits.
    """

    queue_depth: int
    running: int
    free_slots: int
    free_blocks: int
    total_blocks: int
    tokens_per_s: float
    prompt_tokens: int
    generated_tokens: int
    cached_tokens: int = 0
    preemptions: int = 0
    max_batch: int = 0


@dataclass(frozen=True, slots=True)
class RequestOutput:
    """A `TokenEvent` of request `request_id`; `finished` is true when its last sequence ended."""

    request_id: str
    event: TokenEvent
    finished: bool


class LLMEngine:
    """Tokenizer, model runner and scheduler together; see `load_engine` to build one."""

    def __init__(self, tokenizer: Tokenizer, runner: ModelRunner, *, model_name: str = "",
                 prefill_chunk: int = DEFAULT_PREFILL_CHUNK, prefix_caching: bool = True) -> None:  # fmt: skip
        self.tokenizer, self.runner, self.model_name = tokenizer, runner, model_name
        self.config = runner.model.config
        self.blocks = BlockManager(runner.num_blocks, runner.block_size, prefix_caching)
        self.scheduler = Scheduler(self.blocks, runner.num_slots, max(prefill_chunk, runner.num_slots))
        self._ids = itertools.count()
        self._open: dict[str, int] = {}  # request id -> sequences not yet finished
        self._recent: deque[tuple[float, int]] = deque(maxlen=256)  # (time, tokens) of recent steps
        self._prompt_tokens = self._generated_tokens = 0
        self.settings = EngineSettings(
            device=str(runner.device), dtype=str(runner.model.tok_embeddings.weight.dtype),
            max_batch=runner.num_slots, max_model_len=runner.max_len, kv_blocks=runner.num_blocks,
            prefill_chunk=prefill_chunk, block_size=runner.block_size, prefix_caching=prefix_caching,
        )  # fmt: skip

    @classmethod
    def from_path(cls, path: str | os.PathLike[str] | None = None, *, device: torch.device | str = "cpu",
                  dtype: torch.dtype | str | None = torch.float32, quantization: str | None = "none",
                  max_batch: int | None = DEFAULT_MAX_BATCH, max_model_len: int = DEFAULT_MAX_MODEL_LEN,
                  roots: Iterable[str | os.PathLike[str]] | None = None,
                  block_size: int = DEFAULT_BLOCK_SIZE, kv_blocks: int | None = None,
                  prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
                  prefix_caching: bool = True) -> LLMEngine:  # fmt: skip
        """Load a GGUF file or safetensors folder (the bundled SmolLM2 when `path` is None).

        The keywords are `EngineSettings`' (float32, unquantized and a batch of 4 by default
        here, for tests and tools; `load_engine` picks the machine's defaults instead).
        """
        settings = EngineSettings(
            device=str(device), dtype=dtype, quantization=quantization, max_batch=max_batch,
            max_model_len=max_model_len, kv_blocks=kv_blocks, prefill_chunk=prefill_chunk,
            block_size=block_size, prefix_caching=prefix_caching,
        )  # fmt: skip
        return cls.from_settings(path, settings, roots)

    @classmethod
    def from_settings(cls, path: str | os.PathLike[str] | None, settings: EngineSettings,
                      roots: Iterable[str | os.PathLike[str]] | None = None,
                      adapters: Sequence[str | os.PathLike[str]] = ()) -> LLMEngine:  # fmt: skip
        """Load a model with `settings` (resolved here: see `EngineSettings.resolved`).

        `kv_blocks` (default: enough for `max_batch` full-length sequences) is raised to at least
        one full-length sequence, so that a sequence alone always fits.
        """
        settings = settings.resolved()
        checkpoint = load_checkpoint(path if path is not None else default_model_path(), roots)
        if adapters:  # LoRA adapters merged into the weights before the model is built (adapters.py)
            from local_engine.adapters import merge_adapters

            merge_adapters(checkpoint, adapters)
        try:
            tokenizer = Tokenizer.from_gguf_metadata(checkpoint.tokenizer_metadata)
        except (ValueError, TypeError, KeyError) as exc:
            if isinstance(exc, EngineError):
                raise
            raise ModelFileError(
                f"bad tokenizer metadata: {exc}", path=checkpoint.path, code="tokenizer.bad-metadata"
            ) from exc
        model = build_model(
            checkpoint, device=settings.device, dtype=settings.torch_dtype,
            quantization=settings.quantization or "none",
        )  # fmt: skip
        checkpoint.weights.clear()
        config = checkpoint.config
        max_len = min(settings.max_model_len, config.context_length)
        max_batch = settings.max_batch
        if max_batch is None:
            per_token = 2 * config.num_layers * config.num_kv_heads * config.head_dim
            per_sequence = per_token * max_len * settings.torch_dtype.itemsize
            max_batch = default_max_batch(per_sequence, available_memory(settings.device))
        runner = ModelRunner(model, max_batch, max_len, settings.block_size, settings.kv_blocks)
        engine = cls(
            tokenizer, runner, model_name=config.name, prefill_chunk=settings.prefill_chunk,
            prefix_caching=settings.prefix_caching,
        )  # fmt: skip
        engine.settings = replace(settings, max_batch=max_batch, max_model_len=max_len)
        return engine

    @property
    def max_model_len(self) -> int:
        return self.runner.max_len

    def add_request(self, prompt: str | Sequence[int], params: SamplingParams | None = None,
                    request_id: str | None = None) -> str:  # fmt: skip
        """Queue a prompt (text, or token ids); return its request id.

        Raises:
            RequestError: the prompt is empty or leaves no room to generate in the context.
        """
        params = params or SamplingParams()
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
        if not ids:
            raise RequestError("the prompt is empty", code="request.empty-prompt")
        if len(ids) >= self.max_model_len:
            raise RequestError(
                f"the prompt is {len(ids)} tokens; the engine's context is {self.max_model_len} tokens",
                code="request.prompt-too-long",
            )
        if any(not 0 <= t < self.tokenizer.vocab_size for t in ids):
            raise RequestError("a prompt token id is outside the vocabulary", code="request.bad-token-id")
        request_id = request_id or f"req-{next(self._ids)}"
        for index in range(params.n):
            generator = None
            if params.seed is not None:
                generator = torch.Generator(device=self.runner.device).manual_seed(params.seed + index)
            self.scheduler.add(Seq(request_id, index, list(ids), params, self.tokenizer, generator))
        self._open[request_id] = params.n
        self._prompt_tokens += len(ids)
        return request_id

    def abort(self, request_id: str) -> None:
        """Stop a request now and free its KV cache blocks; unknown ids are ignored."""
        self.scheduler.abort(request_id)
        self._open.pop(request_id, None)

    def has_unfinished(self) -> bool:
        return self.scheduler.has_work()

    def step(self) -> list[RequestOutput]:
        """Run one step (decodes and prefill chunks together); return one output per sequence that
        produced a token."""
        chunks = self.scheduler.schedule()
        if not chunks:
            return []
        results = self.runner.run(chunks)
        self.scheduler.computed(chunks)
        self._recent.append((time.monotonic(), len(results)))
        outputs = []
        for seq, result in results.items():
            text, kept = seq.append(result.token_id, self.max_model_len)
            if kept:
                self._generated_tokens += 1
            top = None
            if result.top_logprobs is not None:
                top = tuple(self._top_logprob(t, lp) for t, lp in result.top_logprobs)
            done = seq.finish_reason is not None
            event = TokenEvent(
                text, result.token_id if kept else None, result.logprob if kept else None,
                top if kept else None, seq.finish_reason, seq.index,
                len(seq.prompt_ids) if done else None, len(seq.output_ids) + (not kept) if done else None,
            )  # fmt: skip
            finished = False
            if seq.finish_reason is not None:
                self.scheduler.finish(seq)
                left = self._open.get(seq.request_id, 1) - 1
                finished = left <= 0
                if finished:
                    self._open.pop(seq.request_id, None)
                else:
                    self._open[seq.request_id] = left
            outputs.append(RequestOutput(seq.request_id, event, finished))
        return outputs

    def _top_logprob(self, token_id: int, logprob: float) -> TopLogprob:
        raw = self.tokenizer.token_bytes(token_id, skip_special=False)
        return TopLogprob(token_id, raw.decode("utf-8", errors="replace"), logprob, raw)

    def generate(
        self, prompts: Sequence[str | Sequence[int]], params: SamplingParams | None = None
    ) -> list[list[str]]:
        """Run prompts to completion; return each prompt's `n` output texts."""
        ids = [self.add_request(prompt, params) for prompt in prompts]
        texts: dict[str, dict[int, list[str]]] = {rid: {} for rid in ids}
        while self.has_unfinished():
            for out in self.step():
                texts[out.request_id].setdefault(out.event.index, []).append(out.event.text_delta)
        return [["".join(parts) for _, parts in sorted(texts[rid].items())] for rid in ids]

    def stats(self) -> EngineStats:
        now = time.monotonic()
        window = [(t, n) for t, n in self._recent if now - t <= 5.0]
        rate = 0.0
        if len(window) > 1 and window[-1][0] > window[0][0]:
            rate = sum(n for _, n in window[1:]) / (window[-1][0] - window[0][0])
        return EngineStats(
            queue_depth=len(self.scheduler.waiting),
            running=len(self.scheduler.running),
            free_slots=self.scheduler.max_seqs - len(self.scheduler.running),
            free_blocks=self.blocks.num_free,
            total_blocks=self.blocks.num_blocks,
            tokens_per_s=rate,
            prompt_tokens=self._prompt_tokens,
            generated_tokens=self._generated_tokens,
            cached_tokens=self.scheduler.cached_tokens,
            preemptions=self.scheduler.preemptions,
            max_batch=self.scheduler.max_seqs,
        )
