"""Programs written for the official openai SDK run twice, unchanged but for their import line.

Once with ``openai``, once with ``gateway``, both against the loopback server: the two runs must
print the same thing, and the upstream must receive the same requests (method, path, JSON body and
headers, in order). This keeps the test server honest and the gateway's surface faithful.

A program whose requests run concurrently says so with a line ``# dropin: unordered``: its requests
are then compared as a sorted list.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.http import LoopbackServer, Recorded

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


# Differ without meaning anything: the socket, the byte length of equal JSON, and ``accept`` (the
# gateway asks for ``text/event-stream`` on a stream, where the SDK sends ``application/json``).
UNCOMPARED_HEADERS = frozenset({"host", "content-length", "accept"})


def requests_seen(log: list[Recorded], *, ordered: bool) -> list[tuple[str, str, str, str]]:
    """What the upstream received, as comparable values: method, path, JSON body and headers."""
    seen = [
        (
            rec.method,
            rec.path,
            json.dumps(rec.json(), sort_keys=True),
            json.dumps({k: v for k, v in rec.headers.items() if k not in UNCOMPARED_HEADERS}, sort_keys=True),
        )
        for rec in log
    ]
    return seen if ordered else sorted(seen)


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
def test_same_output_with_either_import(
    program: Path, program_env: dict[str, str], openai_upstream: LoopbackServer, tmp_path: Path
) -> None:
    source = program.read_text()
    converted = as_gateway(source)
    assert converted != source, "the program must import openai"
    ordered = "# dropin: unordered" not in source
    openai_upstream.reset_log()
    expected = run(source, program_env, tmp_path, "with_openai.py")
    expected_requests = requests_seen(list(openai_upstream.log), ordered=ordered)
    openai_upstream.reset_log()
    actual = run(converted, program_env, tmp_path, "with_gateway.py")
    actual_requests = requests_seen(list(openai_upstream.log), ordered=ordered)
    assert actual == expected
    assert expected.strip(), "the program printed nothing"
    assert expected_requests, "the program sent nothing upstream"
    assert actual_requests == expected_requests
