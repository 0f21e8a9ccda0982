"""``switchyard tune``: train a LoRA adapter for the local model on exported examples.

```
switchyard tune --base local/smollm2-135m-instruct --data train.jsonl --out adapters/support
    [--validation validation.jsonl] [--rank 8] [--alpha 16] [--targets q_proj,v_proj,...]
    [--top-layers 8] [--epochs 3] [--batch-size 8] [--lr 2e-3] [--max-len 192]
    [--patience 1] [--min-examples 20] [--seed 0] [--max-steps N] [--no-progress]
```

The adapter (PEFT layout) is served as ``local/<base>+<adapter folder>``, e.g.
``local/smollm2-135m-instruct+adapters/support``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]

EXIT_BAD_INPUT = 2


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def register(subparsers: Any) -> None:
    """Add the ``tune`` command to the ``switchyard`` parser."""
    parser = subparsers.add_parser("tune", help="train a LoRA adapter for the local model")
    parser.add_argument("--base", default="local/smollm2-135m-instruct", help="local/<model> or a model path")
    parser.add_argument(
        "--data", required=True, help="chat JSONL (switchyard data export --format openai-ft)"
    )
    parser.add_argument("--validation", help="held-out chat JSONL (default: a tenth of --data)")
    parser.add_argument("--out", required=True, help="the adapter folder")
    for name, kind in (("rank", int), ("alpha", float), ("top-layers", int), ("epochs", int),
                       ("batch-size", int), ("lr", float), ("max-len", int), ("patience", int),
                       ("min-examples", int), ("seed", int), ("max-steps", int)):  # fmt: skip
        parser.add_argument(f"--{name}", type=kind)
    parser.add_argument(
        "--targets", help="comma-separated: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=_tune)


def base_path(base: str) -> str | None:
    """``local/<name>`` -> None for the bundled model, else the path after ``local/``."""
    name = base.removeprefix("local/")
    return None if name == "smollm2-135m-instruct" else name


def _tune(args: argparse.Namespace) -> int:
    from local_engine import EngineError
    from local_engine.tune import TuneConfig, tune

    given = {
        "rank": args.rank, "alpha": args.alpha, "top_layers": args.top_layers, "epochs": args.epochs,
        "batch_size": args.batch_size, "learning_rate": args.lr, "max_len": args.max_len,
        "patience": args.patience, "min_examples": args.min_examples, "seed": args.seed,
        "max_steps": args.max_steps,
    }  # fmt: skip
    options: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if args.targets:
        options["targets"] = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    try:
        config = TuneConfig(**options)
        report = tune(base_path(args.base), args.data, args.out, config, validation=args.validation,
                      progress=not args.no_progress)  # fmt: skip
    except (EngineError, OSError, ValueError) as exc:
        sys.stderr.write(f"switchyard tune: {exc}\n")
        return EXIT_BAD_INPUT
    for problem in report.problems:
        sys.stderr.write(f"refused line {problem.line}: {problem.message} ({problem.code})\n")
    result = report.result
    if report.problems:
        counts = ", ".join(f"{n} {code}" for code, n in sorted(_counts(report.problems).items()))
        _out(f"refused {len(report.problems)} lines: {counts}")
    _out(
        f"trained {result.steps} steps on {result.train_examples} examples ({result.tokens} tokens) in "
        f"{result.seconds:.1f}s; validation loss {result.val_losses[0]:.3f} -> {min(result.val_losses):.3f}"
        f" (best epoch {result.best_epoch}{', stopped early' if result.stopped_early else ''})"
    )
    _out(
        f"adapter: {report.out_dir} (serve it as {args.base}+{report.out_dir.name}, with its folder "
        f"{report.out_dir.parent} in the local provider's model_roots)"
    )
    return 0


def _counts(problems: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for problem in problems:
        counts[problem.code] = counts.get(problem.code, 0) + 1
    return counts
