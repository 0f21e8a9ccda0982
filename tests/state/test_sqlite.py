"""SQLite specifics: WAL mode, persistence, corrupt and unopenable files, URL parsing."""

from __future__ import annotations

import sqlite3

import pytest

from gateway.core.errors import StateBackendError
from gateway.state import BackendConfig, open_backend
from gateway.state.errors import StateCorruptError
from gateway.state.memory import MemoryBackend
from gateway.state.sqlite import SQLiteBackend

T0 = 1_800_000_000.0


def test_state_survives_a_restart_and_runs_in_wal_mode(tmp_path):
    path = tmp_path / "state.sqlite"
    first = open_backend(f"sqlite://{path}")
    first.incr("hits", 3)
    first.reserve("b", 100, 40, "r1", 600, T0 + 3600, T0)
    first.settle("b", "r1", 30, T0 + 3600, T0)
    first.reserve("b", 100, 50, "r2", 600, T0 + 3600, T0)
    first.close()
    second = open_backend(f"sqlite://{path}")
    assert second.incr("hits", 1) == 4.0
    assert second.budget_usage("b", T0) == (30, 50)
    second.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_corrupt_file_is_reported_with_its_path_and_left_untouched(tmp_path):
    path = tmp_path / "state.sqlite"
    garbage = b"this is not a database, it is a shopping list\n" * 200
    path.write_bytes(garbage)
    with pytest.raises(StateCorruptError) as caught:
        open_backend(f"sqlite://{path}")
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)
    assert "not modified" in str(caught.value)
    assert isinstance(caught.value, StateBackendError)
    assert path.read_bytes() == garbage


def test_a_file_corrupted_while_open_is_reported_not_overwritten(tmp_path):
    path = tmp_path / "state.sqlite"
    backend = SQLiteBackend(str(path))
    backend.incr("hits", 1)
    backend.close()
    damaged = b"\x00" * 100 + path.read_bytes()[100:]  # the 100-byte header is gone
    path.write_bytes(damaged)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"state.sqlite{suffix}").unlink(missing_ok=True)
    with pytest.raises(StateCorruptError, match="state.sqlite"):
        SQLiteBackend(str(path)).incr("hits", 1)
    assert path.read_bytes() == damaged


def test_an_unopenable_path_is_a_backend_error_naming_it(tmp_path):
    missing = tmp_path / "no-such-dir" / "state.sqlite"
    with pytest.raises(StateBackendError, match="no-such-dir") as caught:
        open_backend(f"sqlite://{missing}")
    assert not isinstance(caught.value, StateCorruptError)


def test_urls_choose_the_backend(tmp_path):
    assert isinstance(open_backend("memory://"), MemoryBackend)
    assert isinstance(open_backend(BackendConfig(f"sqlite://{tmp_path / 's.sqlite'}")), SQLiteBackend)
    with pytest.raises(ValueError, match="needs a path"):
        open_backend("sqlite://")
    with pytest.raises(ValueError, match=r"unknown state backend URL 'mongodb://<redacted>@db'"):
        open_backend("mongodb://admin:hunter22@db")


def test_config_repr_hides_the_password():
    config = BackendConfig("redis://:hunter22@cache:6379/0")
    assert "hunter22" not in repr(config)
    assert "cache:6379" in repr(config)


def test_close_while_other_threads_are_mid_query_neither_crashes_nor_loses_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``close()`` from one thread while others run transactions (a client closed while its background
    breaker records still run): each connection is closed only between queries, and a thread whose
    connection was closed opens a new one. Before, this could crash the interpreter (sqlite3 closed
    a connection under a running statement)."""
    import threading

    backend = SQLiteBackend(str(tmp_path / "state.sqlite"))
    stop = threading.Event()
    failures: list[BaseException] = []
    counts = [0] * 4

    def hammer(me: int) -> None:
        while not stop.is_set():
            try:
                backend.incr("n", 1)
                backend.breaker_record("p", True, 1.0, 10, 5, 0.5, 30)
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                failures.append(exc)
                return
            counts[me] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(30):
        backend.close()
        threading.Event().wait(0.01)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert failures == [] and sum(counts) > 0
    assert backend.incr("n", 0) == sum(counts)  # every increment landed once, across the reopenings
    backend.close()
