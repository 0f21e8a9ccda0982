"""Switchyard's local engine: Llama-family models from GGUF or safetensors, run by PyTorch.

Example:
    >>> from local_engine import SamplingParams, load_engine
    >>> engine = load_engine()  # the bundled SmolLM2-135M-Instruct
    >>> prompt = engine.tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}])
    >>> text = "".join(e.text_delta for e in engine.generate_sync(prompt, SamplingParams(max_tokens=8)))
    >>> engine.close()
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from local_engine.errors import (
    ChatTemplateError,
    EngineClosedError,
    EngineError,
    MissingModelError,
    ModelFileError,
    ModelPathError,
    PickleRefusedError,
    RequestError,
    SettingsError,
    UnsupportedModelError,
)
from local_engine.loader.paths import default_model_path, resolve_model_path
from local_engine.settings import DEFAULT_BLOCK_SIZE, DEFAULT_MAX_MODEL_LEN, DEFAULT_PREFILL_CHUNK

if TYPE_CHECKING:
    import torch

    from local_engine.engine.async_engine import AsyncEngine
    from local_engine.engine.llm_engine import EngineStats, LLMEngine
    from local_engine.engine.sequence import TokenEvent, TopLogprob
    from local_engine.sampling import SamplingParams
    from local_engine.settings import EngineSettings
    from local_engine.tokenizer import Tokenizer

__all__ = [
    "AsyncEngine",
    "ChatTemplateError",
    "EngineClosedError",
    "EngineError",
    "EngineSettings",
    "EngineStats",
    "LLMEngine",
    "MissingModelError",
    "ModelFileError",
    "ModelPathError",
    "PickleRefusedError",
    "RequestError",
    "SamplingParams",
    "SettingsError",
    "TokenEvent",
    "Tokenizer",
    "TopLogprob",
    "UnsupportedModelError",
    "default_model_path",
    "load_engine",
    "resolve_model_path",
]

_LAZY = {
    "AsyncEngine": "local_engine.engine.async_engine",
    "LLMEngine": "local_engine.engine.llm_engine",
    "EngineStats": "local_engine.engine.llm_engine",
    "TokenEvent": "local_engine.engine.sequence",
    "TopLogprob": "local_engine.engine.sequence",
    "Tokenizer": "local_engine.tokenizer",
    "SamplingParams": "local_engine.sampling",
    "EngineSettings": "local_engine.settings",
}


def __getattr__(name: str) -> object:
    # torch loads with the first of these names, so that `import local_engine` stays light
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'local_engine' has no attribute {name!r}")


def load_engine(
    path: str | os.PathLike[str] | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str | None = None,
    quantization: str | None = None,
    threads: int | None = None,
    max_batch: int | None = None,
    max_model_len: int = DEFAULT_MAX_MODEL_LEN,
    roots: Iterable[str | os.PathLike[str]] | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    kv_blocks: int | None = None,
    prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
    prefix_caching: bool = True,
    adapters: Iterable[str | os.PathLike[str]] = (),
) -> AsyncEngine:
    """Load a model and start its engine thread.

    Args:
        path: a GGUF file or a safetensors folder; None loads the bundled SmolLM2-135M-Instruct.
        device: where the model runs ("cpu", "cuda", "cuda:1", "mps").
        dtype: "float32", "bfloat16", "float16" or the torch dtype; None: bfloat16 on CUDA and
            with quantized weights, else float32.
        quantization: "none", "int8" or "int4" weights (CPU only, bfloat16 activations); None:
            "int4" on CPU when `dtype` is None too, else "none".
        threads: torch intra-op threads, set by the engine thread; default min(2, cores). torch
            has one such setting per process, so this affects other torch work in the process.
        max_batch: sequences in the running batch at once; None: as many full-length sequences
            as fit in a tenth of the available memory, at most 64.
        max_model_len: tokens per sequence, prompt included (capped by the model's context).
        roots: allowed model directories; a path resolving outside them raises `ModelPathError`.
        block_size: tokens per KV cache block.
        kv_blocks: KV cache blocks; default enough for `max_batch` sequences of `max_model_len`.
        prefill_chunk: tokens computed per step (decodes first, then prompt chunks).
        prefix_caching: share full prompt blocks between requests with the same prefix.
        adapters: LoRA adapter folders (PEFT layout, `local_engine/adapters.py`) merged into the
            weights at load time, in order.

    The resolved settings are on `engine.settings` (an `EngineSettings`).

    Raises:
        SettingsError: a setting out of range; its `setting` names it (raised before any load).
        ModelPathError, ModelFileError, UnsupportedModelError, MissingModelError.
    """
    from local_engine.settings import EngineSettings

    settings = EngineSettings(
        device=str(device), dtype=dtype, quantization=quantization, max_batch=max_batch,  # type: ignore[arg-type]
        max_model_len=max_model_len, kv_blocks=kv_blocks, threads=threads,
        prefill_chunk=prefill_chunk, block_size=block_size, prefix_caching=prefix_caching,
    )  # fmt: skip
    from local_engine.engine.async_engine import AsyncEngine
    from local_engine.engine.llm_engine import LLMEngine

    threads = settings.resolved().threads
    # built on the engine thread, where its steps run (see AsyncEngine)
    return AsyncEngine(
        lambda: LLMEngine.from_settings(path, settings, roots, adapters=tuple(adapters)), threads=threads
    )
