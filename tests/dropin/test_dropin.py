"""Programs written for the official openai SDK run twice, unchanged but for their import line.

Once with ``openai``, once with ``gateway``, both against the loopback server: the two runs must
print the same thing. This keeps the test server honest and the gateway's surface faithful.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.http import LoopbackServer

PROGRAMS = sorted((Path(__file__).parent / "programs").glob("*.py"))
ROOT = Path(__file__).resolve().parents[2]


def as_gateway(source: str) -> str:
    """Change only the import lines: ``openai`` becomes ``gateway``."""
    source = re.sub(r"^import openai$", "import gateway as openai", source, flags=re.M)
    return re.sub(r"^from openai import ", "from gateway import ", source, flags=re.M)


def run(source: str, env: dict[str, str], tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    path.write_text(source)
    result = subprocess.run(
        [sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stderr}"
    return result.stdout


@pytest.fixture
def program_env(openai_upstream: LoopbackServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env.update(
        OPENAI_API_KEY="sk-dropin-test",
        OPENAI_BASE_URL=openai_upstream.base_url + "/v1",
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_same_output_with_either_import(program: Path, program_env: dict[str, str], tmp_path: Path) -> None:
    source = program.read_text()
    converted = as_gateway(source)
    assert converted != source, "the program must import openai"
    expected = run(source, program_env, tmp_path, "with_openai.py")
    actual = run(converted, program_env, tmp_path, "with_gateway.py")
    assert actual == expected
    assert expected.strip(), "the program printed nothing"
