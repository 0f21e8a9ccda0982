"""The vendored recordings are the shared ones, unedited (where the shared folder is present)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENDORED = ROOT / "tests" / "fixtures" / "recorded"
SHARED = ROOT.parent / "shared" / "fixtures"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_vendored_recordings_exist() -> None:
    names = _files(VENDORED)
    assert "SOURCES.md" in names and len(names) > 250


@pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared/fixtures beside this checkout to compare with")
def test_vendored_recordings_equal_the_shared_ones() -> None:
    assert _files(VENDORED) == _files(SHARED)
