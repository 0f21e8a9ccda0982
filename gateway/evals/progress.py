"""Progress bars for eval runs: rich's when it is installed and the output is a terminal, else plain.

``rich`` is imported only when a rich bar is made, so ``import gateway`` (and a plain run) never
loads it.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Literal, Protocol, TextIO

__all__ = ["NullProgress", "PlainProgress", "Progress", "make_progress"]

ProgressKind = Literal["auto", "rich", "plain", "none"]


class Progress(Protocol):
    """What the runner reports: the total once, then one ``advance`` per finished case."""

    def start(self, total: int, description: str) -> None: ...

    def advance(self, cached: bool = False) -> None: ...

    def close(self) -> None: ...


class NullProgress:
    """Reports nothing."""

    def start(self, total: int, description: str) -> None:
        return None

    def advance(self, cached: bool = False) -> None:
        return None

    def close(self) -> None:
        return None


class PlainProgress:
    """One line per tenth of the work (and at the end), for logs and pipes.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> bar = PlainProgress(out)
        >>> bar.start(2, "demo")
        >>> bar.advance(); bar.advance(cached=True); bar.close()
        >>> print(out.getvalue().strip().splitlines()[-1])
        demo: 2/2 (1 cached)
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._lock = threading.Lock()
        self._total = self._done = self._cached = self._shown = 0
        self._description = ""

    def start(self, total: int, description: str) -> None:
        with self._lock:
            self._total, self._description = total, description

    def advance(self, cached: bool = False) -> None:
        with self._lock:
            self._done += 1
            self._cached += cached
            step = max(1, self._total // 10)
            if self._done - self._shown >= step or self._done == self._total:
                self._shown = self._done
                self._write()

    def _write(self) -> None:
        self._stream.write(f"{self._description}: {self._done}/{self._total} ({self._cached} cached)\n")
        self._stream.flush()

    def close(self) -> None:
        with self._lock:
            if self._shown != self._done:
                self._write()


class RichProgress:
    """A rich progress bar (rich is imported here, on construction)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(file=stream if stream is not None else sys.stderr)
        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=console, transient=False,
        )  # fmt: skip
        self._task: Any = None

    def start(self, total: int, description: str) -> None:
        self._bar.start()
        self._task = self._bar.add_task(description, total=total)

    def advance(self, cached: bool = False) -> None:
        self._bar.advance(self._task)

    def close(self) -> None:
        self._bar.stop()


def make_progress(kind: ProgressKind = "auto", stream: TextIO | None = None) -> Progress:
    """A progress reporter: ``auto`` picks rich on a terminal when rich is installed, else plain."""
    target = stream if stream is not None else sys.stderr
    if kind == "none":
        return NullProgress()
    if kind == "plain":
        return PlainProgress(target)
    if kind == "rich" or target.isatty():
        try:
            return RichProgress(target)
        except ImportError:
            if kind == "rich":
                raise
    return PlainProgress(target)
