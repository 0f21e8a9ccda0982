"""The LoRA training loop: AdamW on the adapter only, validation loss each epoch, early stopping.

Deterministic for a given ``seed`` (the LoRA init, the shuffling and torch's generator), on one
device. The progress bar is tqdm's when installed (loaded only here), else one line per epoch.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from local_engine.errors import EngineError
from local_engine.tune.data import IGNORE, Example

if TYPE_CHECKING:
    from local_engine.models.llama import LlamaForCausalLM

__all__ = ["TooLittleDataError", "TuneConfig", "TuneResult", "train_lora"]

DEFAULT_TARGETS = ("q_proj", "v_proj", "o_proj", "up_proj", "down_proj")


class TooLittleDataError(EngineError):
    """Fewer usable examples than ``min_examples``: tuning would make a worse model, silently."""

    code = "tune.too-little-data"


@dataclass(frozen=True, slots=True)
class TuneConfig:
    """Hyperparameters of a tune (the defaults are sized for a 135M model on a 2-core CPU).

    ``top_layers``: adapt only the last N decoder layers (0: all); the layers below run without
    autograd, which is most of the speed on a CPU.
    """

    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = DEFAULT_TARGETS
    top_layers: int = 8
    epochs: int = 3
    batch_size: int = 8
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    max_len: int = 192
    patience: int = 1  # epochs without a better validation loss before stopping
    min_examples: int = 20
    seed: int = 0
    max_steps: int | None = None


@dataclass(slots=True)
class TuneResult:
    """What a tune did: the loss curve (per step and per epoch), where it stopped and why."""

    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)  # one per epoch, before and after each
    best_epoch: int = 0
    steps: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    train_examples: int = 0
    val_examples: int = 0
    tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def train_lora(model: LlamaForCausalLM, train: Sequence[Example], validation: Sequence[Example],
               config: TuneConfig, *, progress: bool = True) -> tuple[Any, TuneResult]:  # fmt: skip
    """Train a LoRA on ``model`` (frozen; float32) and return the best adapter (by validation loss).

    Returns:
        ``(LoraLayers, TuneResult)``: the pairs at the best epoch, and the record of the run.

    Raises:
        TooLittleDataError: fewer than ``config.min_examples`` training examples, or no validation.
    """
    from local_engine.tune.forward import LoraLayers, causal_loss, frozen_hidden

    if len(train) < config.min_examples or not validation:
        raise TooLittleDataError(
            f"{len(train)} training and {len(validation)} validation examples: at least "
            f"{config.min_examples} training examples and one validation example are needed "
            "(capture more traffic, or lower --min-examples knowingly)"
        )
    layers = model.config.num_layers
    chosen = tuple(range(layers - config.top_layers if 0 < config.top_layers < layers else 0, layers))
    torch.manual_seed(config.seed)
    lora = LoraLayers(model, config.rank, config.alpha, config.targets, chosen, config.seed)
    optimizer = torch.optim.AdamW(
        lora.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    result = TuneResult(train_examples=len(train), val_examples=len(validation))
    shuffler = random.Random(config.seed)
    total = config.epochs * -(-len(train) // config.batch_size)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    bar = _progress(total, progress)
    started = time.perf_counter()

    cache: dict[int, torch.Tensor] = {}  # id(example) -> its frozen hidden states [S, hidden]
    for group in (train, validation):
        for start in range(0, len(group), config.batch_size):
            batch = group[start : start + config.batch_size]
            hidden = frozen_hidden(model, lora, _pad(batch)[0])  # [B, S, hidden]
            for row, example in enumerate(batch):
                cache[id(example)] = hidden[row, : len(example.ids)].clone()

    def loss_of(batch: Sequence[Example]) -> torch.Tensor:
        labels = _pad(batch)[1]
        hidden = torch.zeros(len(batch), labels.shape[1], model.config.hidden_size)  # [B, S, hidden]
        for row, example in enumerate(batch):
            hidden[row, : len(example.ids)] = cache[id(example)]
        return causal_loss(model, lora, hidden, labels)

    result.val_losses.append(_evaluate(loss_of, validation, config.batch_size))
    best, best_state, waited = result.val_losses[0], _snapshot(lora), 0
    for epoch in range(1, config.epochs + 1):
        order = list(train)
        shuffler.shuffle(order)
        for start in range(0, len(order), config.batch_size):
            if result.steps == total:
                break
            batch = order[start : start + config.batch_size]
            loss = loss_of(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            result.steps += 1
            result.tokens += sum(len(e.ids) for e in batch)
            result.train_losses.append(float(loss.detach()))
            bar(f"epoch {epoch} loss {result.train_losses[-1]:.3f}")
        val = _evaluate(loss_of, validation, config.batch_size)
        result.val_losses.append(val)
        if val < best:
            best, best_state, waited, result.best_epoch = val, _snapshot(lora), 0, epoch
        else:
            waited += 1
        if waited >= config.patience and epoch < config.epochs:
            result.stopped_early = True
            break
        if result.steps == total:
            break
    bar(None)
    lora.load_state_dict(best_state)
    result.seconds = time.perf_counter() - started
    return lora, result


def _pad(batch: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(e.ids) for e in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)  # [B, S], right-padded with token 0
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)  # [B, S]
    for row, example in enumerate(batch):
        ids[row, : len(example.ids)] = torch.tensor(example.ids)
        labels[row, : len(example.labels)] = torch.tensor(example.labels)
    return ids, labels


def _evaluate(
    loss_of: Callable[[Sequence[Example]], torch.Tensor], examples: Sequence[Example], size: int
) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), size):
            batch = examples[start : start + size]
            total += float(loss_of(batch)) * len(batch)
            count += len(batch)
    return total / count


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _progress(total: int, enabled: bool) -> Callable[[str | None], None]:
    """``update(description)`` advances one step; ``update(None)`` closes the bar."""
    if not enabled:
        return lambda _: None
    try:
        from tqdm import tqdm
    except ImportError:
        done = [0]

        def plain(text: str | None) -> None:
            if text is not None:
                done[0] += 1
                sys.stderr.write(f"\rstep {done[0]}/{total} {text}")
            else:
                sys.stderr.write("\n")

        return plain
    bar = tqdm(total=total, unit="step", file=sys.stderr)

    def update(text: str | None) -> None:
        if text is None:
            bar.close()
        else:
            bar.set_description(text)
            bar.update(1)

    return update


def write_curve(result: TuneResult, out_dir: str | Path) -> list[Path]:
    """``loss.json`` always; ``loss.png`` too when matplotlib is installed."""
    out = Path(out_dir)
    written = [out / "loss.json"]
    written[0].write_text(json.dumps(result.to_json(), indent=2) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    steps_per_epoch = max(1, result.steps // max(1, len(result.val_losses) - 1))
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.plot(range(1, len(result.train_losses) + 1), result.train_losses, label="train (per step)")
    axes.plot(
        [i * steps_per_epoch for i in range(len(result.val_losses))],
        result.val_losses,
        "o-",
        label="validation",
    )
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.legend()
    figure.tight_layout()
    figure.savefig(out / "loss.png", dpi=100)
    plt.close(figure)
    written.append(out / "loss.png")
    return written
