"""Hot reload: keep serving the last good policy while the file on disk changes under it.

``PolicyWatcher.current()`` is cheap: it looks at the file at most every ``interval_s`` (by the
injected ``clock``), reloads only when its size, modification time or inode changed, and swaps the
policy in one reference assignment, so readers on other threads see the old or the new policy,
never a mix. A broken edit is logged once (a warning) and kept in ``last_error``; the last good
policy stays in service until the file is fixed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping

from gateway.core.errors import PolicyError
from gateway.policy.loader import load_policy
from gateway.policy.schema import Policy

__all__ = ["DEFAULT_RELOAD_INTERVAL_S", "PolicyWatcher"]

DEFAULT_RELOAD_INTERVAL_S = 1.0

logger = logging.getLogger("gateway.policy")

_Signature = tuple[int, int, int]  # (mtime_ns, size, inode)


class PolicyWatcher:
    """Serve the policy at ``path``, reloading it when the file changes.

    Args:
        path: the policy file.
        env: where ``${VAR}`` references are looked up; ``os.environ`` when ``None``.
        clock: monotonic seconds; injected so tests control time.
        interval_s: the file is looked at no more often than this.

    Raises:
        PolicyError: from the constructor, when the file is invalid at start (there is no last good
            policy to fall back to yet).

    Example:
        >>> watcher = PolicyWatcher("policies/local-only.yaml")
        >>> watcher.current().version
        1
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval_s: float = DEFAULT_RELOAD_INTERVAL_S,
    ) -> None:
        self.path = os.fspath(path)
        self._env = env
        self._clock = clock
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._signature = self._stat()
        self._policy = load_policy(self.path, env=env)
        self._checked_at = clock()
        self._failed_signature: _Signature | None = None
        self.last_error: PolicyError | None = None
        self.reloads = 0

    def _stat(self) -> _Signature | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def current(self) -> Policy:
        """The policy in force: reloaded first if the interval passed and the file changed."""
        now = self._clock()
        if now - self._checked_at < self._interval_s:
            return self._policy
        if not self._lock.acquire(blocking=False):
            return self._policy  # another thread is reloading; serve the current one meanwhile
        try:
            self._checked_at = now
            self._reload_if_changed()
        finally:
            self._lock.release()
        return self._policy

    def _reload_if_changed(self) -> None:
        signature = self._stat()
        if signature is None or signature == self._signature or signature == self._failed_signature:
            return
        try:
            policy = load_policy(self.path, env=self._env)
        except PolicyError as exc:
            self._failed_signature = signature
            self.last_error = exc
            logger.warning(
                "policy %s: keeping the last good policy; the new file is invalid: %s", self.path, exc
            )
            return
        self._policy = policy
        self._signature = signature
        self._failed_signature = None
        self.last_error = None
        self.reloads += 1
        logger.info("policy %s reloaded", self.path)
