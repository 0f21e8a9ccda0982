"""Every example runs offline, as a user would run it, and exits cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HELPERS = {"loopback_upstream.py", "fake_upstream.py", "teacher_upstream.py"}
ARGUMENTS = {"run_flywheel.py": ["--quick"]}  # its full run tunes for minutes: the test runs the loop small
PROGRAMS = sorted(p for p in EXAMPLES.rglob("*.py") if p.name not in HELPERS and not p.name.startswith("_"))


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_runs_offline(program: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    result = subprocess.run(
        [sys.executable, program.name, *ARGUMENTS.get(program.name, [])],
        cwd=program.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip()
