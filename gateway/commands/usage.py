"""``switchyard usage``: usage and cost totals from a SQLite or Redis state store.

```
switchyard usage --store sqlite:///var/lib/switchyard/state.sqlite --since 7d --by team
switchyard usage --store redis://cache:6379/0 --by day --format csv
```

Totals are grouped by one dimension (``team``, ``route``, ``model``, ``provider``, ``key`` or
``day``, in UTC) and printed as a table, CSV or JSON. Costs are exact decimals; records of models
without a price count 0 USD here (their full records keep cost null).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = ["Row", "parse_since", "register", "run", "totals"]

DIMENSIONS = ("team", "route", "model", "provider", "key", "day")
COLUMNS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DAY_S = 86400


@dataclass(frozen=True, slots=True)
class Row:
    """One group's totals."""

    group: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def values(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": str(self.cost_usd),
        }


def register(subparsers: Any) -> None:
    """Add the ``usage`` command to the CLI."""
    parser = subparsers.add_parser("usage", help="usage and cost totals from a state store")
    parser.add_argument("--store", required=True, help="sqlite:///path/state.sqlite or redis://host:port/db")
    parser.add_argument("--since", default="30d", help="7d, 12h, 30m, 2w, a date (2026-11-01) or Unix time")
    parser.add_argument("--until", default=None, help="the end of the period, same forms (default: now)")
    parser.add_argument("--by", choices=DIMENSIONS, default="team", help="the dimension to group by")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("--key-prefix", default="switchyard:", help="Redis only: the gateway's key prefix")
    parser.set_defaults(func=run)


def parse_since(text: str, now: float) -> float:
    """A point in time from ``7d``/``12h``/``30m``/``2w``/``45s`` (ago), an ISO date or Unix seconds.

    Example:
        >>> parse_since("1d", 100_000.0)
        13600.0
        >>> parse_since("2026-11-01", 0.0)
        1793491200.0
    """
    text = text.strip()
    match = _RELATIVE.match(text)
    if match:
        return now - float(match[1]) * _UNIT_S[match[2]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"cannot read the time {text!r}: use 7d, 12h, 30m, 2w, an ISO date (2026-11-01) or Unix seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def totals(backend: Any, by: str, since: float, until: float) -> list[Row]:
    """Totals of the usage stored in ``backend`` between ``since`` and ``until``, grouped ``by``."""
    if by == "day":
        return _by_day(backend, since, until)
    rows = backend.query_usage(since, group_by=[by], until=until)
    return [
        Row(dict(t.group)[by], t.requests, t.prompt_tokens, t.completion_tokens, t.cost_usd)
        for t in rows
        if t.requests
    ]


def _by_day(backend: Any, since: float, until: float) -> list[Row]:
    rows = []
    day = datetime.fromtimestamp(since, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    while day.timestamp() < until:
        start, end = max(day.timestamp(), since), min((day + timedelta(days=1)).timestamp(), until)
        for t in backend.query_usage(start, group_by=[], until=end):
            if t.requests:
                rows.append(
                    Row(day.date().isoformat(), t.requests, t.prompt_tokens, t.completion_tokens, t.cost_usd)
                )
        day += timedelta(days=1)
    return rows


def render(rows: Sequence[Row], by: str, fmt: str) -> str:
    """The rows as a table (with a total line), CSV or JSON."""
    if fmt == "json":
        return json.dumps([{by: r.group, **r.values()} for r in rows], indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([by, *COLUMNS])
        for r in rows:
            writer.writerow([r.group, *r.values().values()])
        return out.getvalue()
    total = Row(
        "TOTAL",
        requests=sum(r.requests for r in rows),
        prompt_tokens=sum(r.prompt_tokens for r in rows),
        completion_tokens=sum(r.completion_tokens for r in rows),
        cost_usd=sum((r.cost_usd for r in rows), Decimal(0)),
    )
    lines = [[by, *COLUMNS]] + [[r.group or "-", *map(str, r.values().values())] for r in (*rows, total)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    text.insert(len(text) - 1, "  ".join("-" * w for w in widths))
    return "\n".join(text) + "\n"


def run(args: argparse.Namespace) -> int:
    """Print the totals; exit status 2 with a message (URL without password) when the store fails."""
    from gateway.state import BackendConfig, open_backend, redact_url
    from gateway.state.errors import StateBackendError

    now = time.time()
    try:
        since = parse_since(args.since, now)
        until = parse_since(args.until, now) if args.until else now
    except ValueError as exc:
        sys.stderr.write(f"switchyard usage: {exc}\n")
        return 2
    store = str(args.store)
    if store.startswith("sqlite://"):
        path = Path(store.removeprefix("sqlite://"))
        if not path.is_file():
            sys.stderr.write(f"switchyard usage: no SQLite store at {path}\n")
            return 2
    try:
        backend = open_backend(BackendConfig(store, key_prefix=args.key_prefix))
        try:
            rows = totals(backend, args.by, since, until)
        finally:
            backend.close()
    except (StateBackendError, ValueError) as exc:
        sys.stderr.write(f"switchyard usage: cannot read {redact_url(store)}: {exc}\n")
        return 2
    sys.stdout.write(render(rows, args.by, args.format))
    return 0
