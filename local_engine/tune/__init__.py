"""LoRA tuning of the engine's own decoder, in torch only (no transformers or peft at run time).

Example:
    >>> from local_engine.tune import TuneConfig, tune                      # doctest: +SKIP
    >>> report = tune(None, "train.jsonl", "adapters/support", TuneConfig())  # doctest: +SKIP
    >>> report.result.val_losses                                             # doctest: +SKIP

The adapter is written in PEFT's layout (``adapter_config.json`` + ``adapter_model.safetensors``,
see `local_engine/adapters.py`), with ``loss.json`` (and ``loss.png`` with matplotlib) beside it.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from local_engine.tune.data import Example, Problem, TuneData, encode_example, read_examples
from local_engine.tune.train import TooLittleDataError, TuneConfig, TuneResult, train_lora, write_curve

if TYPE_CHECKING:
    from local_engine.adapters import LoraAdapter
    from local_engine.models.llama import LlamaForCausalLM
    from local_engine.tune.forward import LoraLayers

__all__ = [
    "Example",
    "Problem",
    "TooLittleDataError",
    "TuneConfig",
    "TuneData",
    "TuneReport",
    "TuneResult",
    "encode_example",
    "load_base",
    "read_examples",
    "to_adapter",
    "train_lora",
    "tune",
]


@dataclass(slots=True)
class TuneReport:
    out_dir: Path
    result: TuneResult
    problems: list[Problem]
    files: list[Path]


def load_base(path: str | os.PathLike[str] | None) -> tuple[LlamaForCausalLM, object, str]:
    """The base checkpoint as a float32, unquantized model, its tokenizer and its resolved path."""
    import torch

    from local_engine.loader.checkpoint import load_checkpoint
    from local_engine.loader.paths import default_model_path
    from local_engine.models.build import build_model
    from local_engine.tokenizer import Tokenizer

    resolved = str(path) if path is not None else default_model_path()
    checkpoint = load_checkpoint(resolved)
    tokenizer = Tokenizer.from_gguf_metadata(checkpoint.tokenizer_metadata)
    model = build_model(checkpoint, dtype=torch.float32, quantization="none")
    return model, tokenizer, checkpoint.path


def to_adapter(lora: LoraLayers, base_model: str = "") -> LoraAdapter:
    """The trained pairs as a `LoraAdapter` (PEFT names, float32 arrays)."""
    from local_engine.adapters import LoraAdapter

    weights = {}
    for key, pair in lora.pairs.items():
        layer, module = key.split("-", 1)
        weights[(int(layer), module)] = (pair.a.detach().numpy().copy(), pair.b.detach().numpy().copy())
    return LoraAdapter(lora.rank, lora.alpha, lora.modules_, lora.layers_, weights, base_model)


def tune(base: str | os.PathLike[str] | None, data: str | os.PathLike[str], out_dir: str | os.PathLike[str],
         config: TuneConfig | None = None, *, validation: str | os.PathLike[str] | None = None,
         progress: bool = True) -> TuneReport:  # fmt: skip
    """Tune a LoRA on ``base`` (None: the bundled SmolLM2) with the chat JSONL ``data``.

    Without a ``validation`` file, a tenth of ``data`` (at least one example) is held out, chosen
    by ``config.seed``.

    Raises:
        TooLittleDataError: too few usable examples (the refused lines are in its message).
    """
    from local_engine.adapters import write_adapter

    config = config or TuneConfig()
    model, tokenizer, path = load_base(base)
    train_data = read_examples(data, tokenizer, config.max_len)  # type: ignore[arg-type]
    problems = list(train_data.problems)
    train = train_data.examples
    if validation is not None:
        val_data = read_examples(validation, tokenizer, config.max_len)  # type: ignore[arg-type]
        problems += val_data.problems
        held_out = val_data.examples
    else:
        shuffled = list(train)
        random.Random(config.seed).shuffle(shuffled)
        cut = max(1, len(shuffled) // 10) if len(shuffled) > 1 else 0
        held_out, train = shuffled[:cut], shuffled[cut:]
    try:
        lora, result = train_lora(model, train, held_out, config, progress=progress)
    except TooLittleDataError as exc:
        if problems:
            raise TooLittleDataError(f"{exc}; {len(problems)} lines refused: {_summary(problems)}") from exc
        raise
    out = write_adapter(to_adapter(lora, os.path.basename(path)), out_dir)
    files = [out / "adapter_config.json", out / "adapter_model.safetensors", *write_curve(result, out)]
    return TuneReport(out, result, problems, files)


def _summary(problems: list[Problem]) -> str:
    shown = "; ".join(f"line {p.line}: {p.message}" for p in problems[:5])
    return shown + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
