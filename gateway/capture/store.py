"""The dataset store: captured examples in one SQLite file (several processes may share it).

One row per captured reply, keyed by its ``x-switchyard-id``; the upstream's ``x-request-id`` and
the completion's own ``id`` are kept too, so feedback can name any of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CapturedExample", "DatasetStore", "UnknownExampleError"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS examples (
    id TEXT PRIMARY KEY, route TEXT NOT NULL, model TEXT, provider TEXT, upstream_id TEXT,
    completion_id TEXT, created REAL NOT NULL, messages TEXT NOT NULL, completion TEXT,
    tool_calls TEXT, metadata TEXT, digest TEXT NOT NULL, score REAL, label TEXT
);
CREATE INDEX IF NOT EXISTS examples_route ON examples (route, created);
CREATE INDEX IF NOT EXISTS examples_upstream ON examples (upstream_id);
CREATE INDEX IF NOT EXISTS examples_completion ON examples (completion_id);
"""


class UnknownExampleError(LookupError):
    """No captured example has this id (``x-switchyard-id``, ``x-request-id`` or completion id)."""

    code = "capture.unknown-example"


@dataclass(frozen=True, slots=True)
class CapturedExample:
    id: str
    route: str
    created: float
    messages: list[dict[str, Any]]
    completion: str | None
    model: str | None = None
    provider: str | None = None
    upstream_id: str | None = None
    completion_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    score: float | None = None
    label: str | None = None

    @property
    def digest(self) -> str:
        """What de-duplication compares: the prompt and the completion."""
        body = json.dumps([self.messages, self.completion, self.tool_calls], sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "route": self.route, "created": self.created, "model": self.model,
            "provider": self.provider, "upstream_id": self.upstream_id, "completion_id": self.completion_id,
            "messages": self.messages, "completion": self.completion, "tool_calls": self.tool_calls,
            "metadata": self.metadata, "score": self.score, "label": self.label,
        }  # fmt: skip


class DatasetStore:
    """Captured examples in SQLite at ``path`` (created with its folder on first use)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def add(self, example: CapturedExample) -> None:
        row = (
            example.id, example.route, example.model, example.provider, example.upstream_id,
            example.completion_id, example.created, json.dumps(example.messages), example.completion,
            None if example.tool_calls is None else json.dumps(example.tool_calls),
            json.dumps(example.metadata), example.digest, example.score, example.label,
        )  # fmt: skip
        with self._lock, self._db:
            self._db.execute(f"INSERT OR REPLACE INTO examples VALUES ({', '.join('?' * 14)})", row)

    def expire(self, route: str, older_than: float) -> int:
        """Delete the route's examples created before ``older_than`` (epoch seconds); how many."""
        with self._lock, self._db:
            cursor = self._db.execute(
                "DELETE FROM examples WHERE route = ? AND created < ?", (route, older_than)
            )
        return cursor.rowcount

    def find(self, any_id: str) -> CapturedExample:
        """The example a reply's ``x-switchyard-id``, upstream ``x-request-id`` or completion id names."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM examples WHERE id = ? OR upstream_id = ? OR completion_id = ? LIMIT 1",
                (any_id, any_id, any_id),
            ).fetchone()
        if row is None:
            raise UnknownExampleError(f"no captured example has id {any_id!r} (in {self.path})")
        return _example(row)

    def set_feedback(self, any_id: str, score: float | None, label: str | None) -> CapturedExample:
        example = self.find(any_id)
        with self._lock, self._db:
            self._db.execute(
                "UPDATE examples SET score = COALESCE(?, score), label = COALESCE(?, label) WHERE id = ?",
                (score, label, example.id),
            )
        return self.find(example.id)

    def examples(self, route: str | None = None, *, since: float | None = None) -> Iterator[CapturedExample]:
        """The examples of ``route`` (every route when None), oldest first."""
        query, args = "SELECT * FROM examples WHERE 1 = 1", list[Any]()
        if route is not None:
            query, args = query + " AND route = ?", [route]
        if since is not None:
            query, args = query + " AND created >= ?", [*args, since]
        with self._lock:
            rows = self._db.execute(query + " ORDER BY created, id", args).fetchall()
        return (_example(row) for row in rows)

    def routes(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT route, COUNT(*) FROM examples GROUP BY route ORDER BY route"
            ).fetchall()
        return {str(route): int(count) for route, count in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _example(row: tuple[Any, ...]) -> CapturedExample:
    (id_, route, model, provider, upstream, completion_id, created, messages, completion, tools, metadata,
     _digest, score, label) = row  # fmt: skip
    return CapturedExample(
        id=id_, route=route, created=created, messages=json.loads(messages), completion=completion,
        model=model, provider=provider, upstream_id=upstream, completion_id=completion_id,
        tool_calls=None if tools is None else json.loads(tools), metadata=json.loads(metadata or "{}"),
        score=score, label=label,
    )  # fmt: skip


def now() -> float:
    return time.time()
