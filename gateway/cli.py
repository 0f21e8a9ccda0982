"""The ``switchyard`` command: a thin dispatcher to one module per command group.

Each group lives in ``gateway/commands/<group>.py`` and exposes ``register(subparsers)``, which adds
its parser and sets ``func`` on it; modules load lazily so ``switchyard --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

GROUPS = ("policy", "usage", "replay", "eval", "bench", "data", "tune")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchyard", description="Switchyard: one client for every model.")
    subparsers = parser.add_subparsers(dest="group", required=True)
    for group in GROUPS:
        try:
            module = importlib.import_module(f"gateway.commands.{group}")
        except ModuleNotFoundError as exc:
            if exc.name != f"gateway.commands.{group}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    status = args.func(args)
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
