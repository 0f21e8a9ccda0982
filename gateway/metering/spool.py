"""A bounded on-disk spool of usage records that a sink could not write (a state outage).

``StateSink`` puts a batch here when its backend is unreachable, and drains the spool into the
backend once it answers again (records are idempotent per ``record_id``, so a batch written twice
changes nothing). The spool survives the process: another process with the same spool directory
(the default is per backend) drains what a process left behind.

Layout: one directory; each process appends to its own ``<pid>-<token>.jsonl`` (one record per
line, flushed and fsynced per batch). Draining claims a file by renaming it to ``.draining``, so
two processes never drain the same file; a claimed file is deleted once written, or renamed back
when the write fails. A claim left behind by a process that died is taken back when a spool opens.

Bound: ``max_bytes`` over all files. A batch that would pass it is refused: its records are
counted (``dropped``) and logged as an error, never silently lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from gateway.metering.records import UsageRecord

__all__ = ["DEFAULT_SPOOL_MAX_BYTES", "DiskSpool", "SPOOL_DIR_ENV", "default_spool_dir"]

logger = logging.getLogger("gateway.metering")

DEFAULT_SPOOL_MAX_BYTES = 64 * 1024 * 1024
SPOOL_DIR_ENV = "SWITCHYARD_USAGE_SPOOL"
_DRAIN_CHUNK = 500


def default_spool_dir(backend_name: str) -> Path:
    """``$SWITCHYARD_USAGE_SPOOL/<id>``, else ``$XDG_STATE_HOME`` (or ``~/.local/state``)
    ``/switchyard/usage-spool/<id>``, where ``<id>`` hashes the backend's (redacted) name."""
    root = os.environ.get(SPOOL_DIR_ENV)
    if root:
        base = Path(root)
    else:
        state_home = os.environ.get("XDG_STATE_HOME") or os.path.join(
            os.path.expanduser("~"), ".local", "state"
        )
        base = Path(state_home) / "switchyard" / "usage-spool"
    return base / hashlib.sha256(backend_name.encode()).hexdigest()[:16]


class DiskSpool:
    """Usage records kept on disk until they can be written.

    Args:
        directory: Where the files live; created on first use.
        max_bytes: The most bytes held over all files.

    Example:
        >>> import tempfile
        >>> spool = DiskSpool(tempfile.mkdtemp())
        >>> spool.put([UsageRecord("r1", 0, 0.0, "gpt-4o-mini", "openai", prompt_tokens=3)])
        1
        >>> written = []
        >>> spool.drain(written.extend), [r.record_id for r in written]
        (1, ['r1:0'])
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, max_bytes: int = DEFAULT_SPOOL_MAX_BYTES
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"DiskSpool.max_bytes must be >= 1, got {max_bytes}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.dropped = 0
        self._lock = threading.Lock()
        self._own = f"{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self._adopted = False

    def __repr__(self) -> str:
        return f"DiskSpool({str(self.directory)!r})"

    def put(self, records: Sequence[UsageRecord]) -> int:
        """Append ``records``; returns how many were spooled (0 when the bound refused them)."""
        lines = "".join(record.to_json() + "\n" for record in records).encode()
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            if self._size() + len(lines) > self.max_bytes:
                self.dropped += len(records)
                logger.error(
                    "usage spool %s is full (%d bytes): %d usage records dropped (%d so far); "
                    "restore the state backend or raise max_bytes",
                    self.directory,
                    self.max_bytes,
                    len(records),
                    self.dropped,
                )
                return 0
            _append(self.directory / self._own, lines)
        return len(records)

    def pending(self) -> int:
        """Records waiting in this directory (every process's files)."""
        with self._lock:
            self._adopt()
            return sum(_count_lines(path) for path in self._files("*.jsonl"))

    def drain(self, write: Callable[[list[UsageRecord]], object]) -> int:
        """Hand every spooled record to ``write`` (in chunks) and delete what was written.

        Returns:
            How many records were written. When ``write`` raises, the file being drained is put
            back (its records are written again next time: idempotent sinks make that harmless)
            and the exception propagates.
        """
        written = 0
        with self._lock:
            self._adopt()
            files = self._files("*.jsonl")
        for path in files:
            claimed = path.with_name(f"{path.stem}.{os.getpid()}.draining")
            try:
                os.rename(path, claimed)
            except FileNotFoundError:
                continue  # another process claimed it
            try:
                with open(claimed, "rb") as file:
                    _lock(file)  # a writer that opened it before the rename finishes first
                records = [UsageRecord.from_dict(json.loads(line)) for line in _lines(claimed)]
                for start in range(0, len(records), _DRAIN_CHUNK):
                    write(records[start : start + _DRAIN_CHUNK])
            except BaseException:
                os.rename(claimed, path)
                raise
            claimed.unlink()
            written += len(records)
        return written

    def _files(self, pattern: str) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(pattern))

    def _size(self) -> int:
        return sum(path.stat().st_size for path in self._files("*") if path.is_file())

    def _adopt(self) -> None:
        """Take back the claims of processes that died while draining (once per spool)."""
        if self._adopted:
            return
        self._adopted = True
        for path in self._files("*.draining"):
            stem, pid = path.stem.rsplit(".", 1)
            if pid.isdigit() and not _alive(int(pid)):
                os.replace(path, path.with_name(stem + ".jsonl"))


def _append(path: Path, data: bytes) -> None:
    """Append under an exclusive lock, to the file that has this name now (not one renamed away)."""
    while True:
        with open(path, "ab") as file:
            _lock(file)
            try:
                same = os.fstat(file.fileno()).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                continue  # claimed by a drainer between open and lock: write to a fresh file
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
            return


def _lock(file: BinaryIO) -> None:
    """An exclusive advisory lock, released when the file closes (none where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return
    fcntl.flock(file.fileno(), fcntl.LOCK_EX)


def _lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as file:
        return [line for line in file if line.strip()]


def _count_lines(path: Path) -> int:
    try:
        return len(_lines(path))
    except FileNotFoundError:
        return 0


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
