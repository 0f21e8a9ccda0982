"""Capture: production replies kept, redacted, as a dataset to curate, export and tune on.

```
core reply (CoreBase.reply) -> Capture.record: the route's capture: section? sample -> redact -> store
feedback(reply or id, score=, label=)  -> the example found by x-switchyard-id, x-request-id or id
switchyard data list | show | export   -> curate (filter, de-duplicate), split, write JSONL
```

Example:
    >>> from gateway.capture import feedback                                  # doctest: +SKIP
    >>> reply = client.chat.completions.create(model="route:support", messages=[...])  # doctest: +SKIP
    >>> feedback(reply, score=1.0, label="resolved")                           # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

from gateway.capture.config import DEFAULT_CAPTURE_STORE, CaptureConfig, Redaction
from gateway.capture.export import ExportResult, curate, export_examples
from gateway.capture.recorder import Capture
from gateway.capture.redact import Redactor
from gateway.capture.store import CapturedExample, DatasetStore, UnknownExampleError

__all__ = [
    "DEFAULT_CAPTURE_STORE",
    "Capture",
    "CaptureConfig",
    "CapturedExample",
    "DatasetStore",
    "ExportResult",
    "Redaction",
    "Redactor",
    "UnknownExampleError",
    "curate",
    "example_id",
    "export_examples",
    "feedback",
]


def example_id(reply_or_id: Any) -> str:
    """The id a captured example is found by: a string as is; a reply's ``x-switchyard-id``, else its id."""
    if isinstance(reply_or_id, str):
        return reply_or_id
    found = getattr(reply_or_id, "_switchyard_id", None)  # set on SDK replies by gateway/sdk/info.py
    headers = getattr(reply_or_id, "headers", None)
    if found is None and headers is not None:
        found = headers.get("x-switchyard-id")
    found = found or getattr(reply_or_id, "id", None)
    if not isinstance(found, str):
        raise TypeError(f"pass a reply or its id, not {type(reply_or_id).__name__}")
    return found


def feedback(reply_or_id: Any, *, score: float | None = None, label: str | None = None,
             store: str | os.PathLike[str] = DEFAULT_CAPTURE_STORE) -> CapturedExample:  # fmt: skip
    """Attach a user's score (0..1) or label to the captured example of a reply.

    Args:
        reply_or_id: a reply (``ChatCompletion``, raw response) or an ``x-switchyard-id``,
            upstream ``x-request-id`` or completion id.
        score: 0..1; ``switchyard data export --min-score`` filters on it.
        label: any short text ("resolved", "wrong-tone").
        store: the route's ``capture.store`` (default ``.switchyard/captures.sqlite``).

    Returns:
        The example, with its feedback.

    Raises:
        UnknownExampleError: nothing captured under that id.
        ValueError: ``score`` outside 0..1, or neither ``score`` nor ``label`` given.
    """
    if score is None and label is None:
        raise ValueError("give score= or label=")
    if score is not None and not 0 <= score <= 1:
        raise ValueError(f"score must be in 0..1, got {score}")
    dataset = DatasetStore(store)
    try:
        return dataset.set_feedback(example_id(reply_or_id), score, label)
    finally:
        dataset.close()
