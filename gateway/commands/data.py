"""``switchyard data …``: the captured dataset: list, show, export for tuning.

```
switchyard data list [ROUTE] [--store PATH | --policy P] [--since 7d]       counts, or a route's examples
switchyard data show ID [--store PATH | --policy P]                           one example (redacted) as JSON
switchyard data export ROUTE --out DIR [--format openai-ft|jsonl|preference]
    [--since 7d] [--min-score 0.5] [--validation 0.1] [--seed 0] [--min-examples 20]
    [--held-out 0.2 [--scorer exact]]       also held_out.jsonl: an eval set of prompts not trained on
```

The store is ``--store``, else the route's ``capture.store`` in ``--policy``, else
``.switchyard/captures.sqlite``. ``--since`` takes seconds, or a number with ``m``, ``h`` or ``d``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

__all__ = ["register"]

EXIT_BAD_INPUT = 2
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def register(subparsers: Any) -> None:
    """Add the ``data`` group to the ``switchyard`` parser."""
    parser = subparsers.add_parser("data", help="list, show and export captured examples")
    commands = parser.add_subparsers(dest="data_command", required=True)
    listing = commands.add_parser("list", help="examples per route, or one route's examples")
    listing.add_argument("route", nargs="?")
    show = commands.add_parser("show", help="one captured example as JSON")
    show.add_argument("id", help="x-switchyard-id, upstream x-request-id or completion id")
    export = commands.add_parser("export", help="curate and write train/validation JSONL")
    export.add_argument("route")
    export.add_argument("--out", required=True, help="folder for train.jsonl and validation.jsonl")
    export.add_argument("--format", choices=("openai-ft", "jsonl", "preference"), default="openai-ft")
    export.add_argument("--min-score", type=float, help="keep examples with feedback score >= this")
    export.add_argument("--validation", type=float, default=0.1, help="share held out (default 0.1)")
    export.add_argument("--seed", type=int, default=0)
    export.add_argument("--min-examples", type=int, default=20, help="fewer is an error (default 20)")
    export.add_argument(
        "--held-out", type=float, default=0.0,
        help="share of the prompts written as an eval set, held_out.jsonl, none of them in training",
    )  # fmt: skip
    export.add_argument("--scorer", default="exact", help="the held-out set's scorer (default exact)")
    for command in (listing, show, export):
        command.add_argument("--store", help="the capture SQLite file")
        command.add_argument("--policy", help="read the store from the route's capture section")
        if command is not show:
            command.add_argument("--since", help="only examples this recent: 3600, 30m, 12h, 7d")
    listing.set_defaults(func=_list)
    show.set_defaults(func=_show)
    export.set_defaults(func=_export)


def _fail(message: str) -> int:
    sys.stderr.write(f"switchyard data: {message}\n")
    return EXIT_BAD_INPUT


def since_seconds(text: str | None, now: float | None = None) -> float | None:
    """``--since`` as an epoch time: ``7d`` is seven days before ``now``."""
    if text is None:
        return None
    unit = text[-1] if text[-1] in _UNITS else "s"
    number = text[:-1] if text[-1] in _UNITS else text
    try:
        amount = float(number)
    except ValueError:
        raise ValueError(f"--since {text!r}: a number of seconds, or with m, h or d (e.g. 7d)") from None
    return (time.time() if now is None else now) - amount * _UNITS[unit]


def _store(args: argparse.Namespace, route: str | None) -> Any:
    from gateway.capture import DEFAULT_CAPTURE_STORE, DatasetStore

    path = args.store
    if path is None and args.policy is not None:
        from gateway.policy import load_policy

        routes = load_policy(args.policy).routes
        candidates = [routes[route]] if route in routes else list(routes.values())
        stores = [r.capture.store for r in candidates if r.capture is not None]
        path = stores[0] if stores else None
    return DatasetStore(path or DEFAULT_CAPTURE_STORE)


def _list(args: argparse.Namespace) -> int:
    try:
        since = since_seconds(args.since)
        store = _store(args, args.route)
    except (ValueError, OSError) as exc:
        return _fail(str(exc))
    try:
        if args.route is None:
            for route, count in store.routes().items():
                _out(f"{route}\t{count}")
            return 0
        for example in store.examples(args.route, since=since):
            prompt = next(
                (m.get("content") for m in reversed(example.messages) if m.get("role") == "user"), ""
            )
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(example.created))
            score = "" if example.score is None else f"{example.score:g}"
            _out(f"{example.id}\t{when}\t{example.model}\t{score}\t{str(prompt)[:60]!r}")
    finally:
        store.close()
    return 0


def _show(args: argparse.Namespace) -> int:
    from gateway.capture import UnknownExampleError

    store = _store(args, None)
    try:
        _out(json.dumps(store.find(args.id).to_json(), indent=2, ensure_ascii=False))
    except UnknownExampleError as exc:
        return _fail(str(exc))
    finally:
        store.close()
    return 0


def _export(args: argparse.Namespace) -> int:
    from gateway.capture import export_examples

    try:
        since = since_seconds(args.since)
        store = _store(args, args.route)
    except (ValueError, OSError) as exc:
        return _fail(str(exc))
    try:
        result = export_examples(
            store.examples(args.route, since=since), args.out, fmt=args.format,
            min_score=args.min_score, validation=args.validation, seed=args.seed,
            held_out=args.held_out, route=args.route, scorer=args.scorer,
        )  # fmt: skip
    except ValueError as exc:
        return _fail(str(exc))
    finally:
        store.close()
    skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(result.skipped.items())) or "none"
    _out(f"wrote {result.train_count} training and {result.validation_count} validation rows to {args.out}")
    if result.held_out is not None:
        _out(f"wrote {result.held_out_count} held-out eval cases to {result.held_out}")
    _out(f"left out: {skipped}")
    total = result.train_count + result.validation_count
    if total < args.min_examples:
        return _fail(
            f"only {total} usable examples on route {args.route!r} (--min-examples {args.min_examples}): "
            "capture more traffic before tuning"
        )
    return 0
