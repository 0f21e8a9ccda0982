"""The drop-in programs (written for the openai SDK) run on Anthropic and Gemini too.

Each program runs once with ``openai`` against the OpenAI loopback server, and once with ``gateway``
and ``DROPIN_MODEL=anthropic/...`` (or ``gemini/...``) against that protocol's loopback server. The
same brain answers behind every protocol, so the printed results must be the same. The programs run
in this process (``runpy``) with the environment they would see, so the comparison costs well under a
second per program; ``tests/dropin`` already runs them as real subprocesses.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import runpy
import warnings
from pathlib import Path

import pytest

from tests.dropin.test_dropin import PROGRAMS, as_gateway
from tests.servers.http import LoopbackServer

MODELS = {"anthropic": "anthropic/claude-sonnet-4-5", "gemini": "gemini/gemini-2.0-flash"}
EMBED_MODELS = {"gemini": "gemini/gemini-embedding-001"}
# What a protocol cannot do, by program: Anthropic has no embeddings endpoint; request ids are each
# provider's own (Gemini sends none), so the program that prints them is OpenAI's alone.
NOT_APPLICABLE = {("anthropic", "embeddings"), ("anthropic", "request_id"), ("gemini", "request_id")}
# Programs that print what each provider answers in its own way: the Responses programs print the
# served model, response ids and timestamps (the Responses API on every protocol is compared field by
# field in test_responses_e2e.py); Gemini sends tool arguments as an object (re-serialised compactly)
# and no x-request-id.
NOT_APPLICABLE |= {
    (p, name)
    for p in ("anthropic", "gemini")
    for name in ("responses_basic", "responses_stream", "responses_tools")
}
NOT_APPLICABLE |= {("gemini", "chat_stream_helper"), ("gemini", "streaming_response")}
CASES = [(provider, p.stem) for provider in ("openai", *sorted(MODELS)) for p in PROGRAMS]


@pytest.fixture(scope="module")
def outputs(
    openai_upstream: LoopbackServer,
    anthropic_upstream: LoopbackServer,
    gemini_upstream: LoopbackServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[tuple[str, str], str]:
    env = {
        "OPENAI_API_KEY": "sk-dropin-test",
        "OPENAI_BASE_URL": openai_upstream.base_url + "/v1",
        "ANTHROPIC_API_KEY": "sk-ant-dropin",
        "ANTHROPIC_BASE_URL": anthropic_upstream.base_url,
        "GEMINI_API_KEY": "gm-dropin",
        "GEMINI_BASE_URL": gemini_upstream.base_url,
    }
    sources = {p.stem: p.read_text() for p in PROGRAMS}

    def one(case: tuple[str, str]) -> str:
        provider, program = case
        case_env = dict(env, DROPIN_MODEL=MODELS.get(provider, "gpt-4o-mini"))
        if provider != "openai":
            case_env["DROPIN_ERROR_PREFIX"] = f"{provider}/"
            case_env.update(
                {"DROPIN_EMBED_MODEL": EMBED_MODELS[provider]} if provider in EMBED_MODELS else {}
            )
        source = sources[program] if provider == "openai" else as_gateway(sources[program])
        path = tmp_path_factory.mktemp(f"{provider}-{program}") / f"{program}.py"
        path.write_text(source)
        return _comparable(program, _run_here(path, case_env))

    return {case: one(case) for case in CASES if case not in NOT_APPLICABLE}


def _run_here(path: Path, env: dict[str, str]) -> str:
    """Run a program as ``__main__`` with ``env`` replacing the provider variables; return its stdout."""
    saved = dict(os.environ)
    out = io.StringIO()
    try:
        for name in [
            n for n in os.environ if n.endswith(("_API_KEY", "_BASE_URL")) or n.startswith("DROPIN_")
        ]:
            del os.environ[name]
        os.environ.update(env)
        with warnings.catch_warnings(), contextlib.redirect_stdout(out):
            # A program that never closes its client leaves sockets to the garbage collector.
            warnings.simplefilter("ignore", ResourceWarning)
            runpy.run_path(str(path), run_name="__main__")
            gc.collect()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return out.getvalue()


def _comparable(program: str, output: str) -> str:
    """``raw_response`` checks OpenAI's ``x-request-id`` header; Anthropic names it ``request-id`` and
    Gemini sends none, so that one word is left out of the comparison."""
    if program != "raw_response":
        return output
    first, _, rest = output.partition("\n")
    return first.rsplit(" ", 1)[0] + "\n" + rest


PROVIDER_CASES = [case for case in CASES if case[0] != "openai" and case not in NOT_APPLICABLE]


@pytest.mark.parametrize(("provider", "program"), PROVIDER_CASES, ids=[f"{p}-{s}" for p, s in PROVIDER_CASES])
def test_program_prints_the_same_on_other_protocols(
    provider: str, program: str, outputs: dict[tuple[str, str], str]
) -> None:
    assert outputs[(provider, program)] == outputs[("openai", program)]
    assert outputs[("openai", program)].strip()


def test_every_program_is_compared() -> None:
    skipped = {"request_id", "responses_basic", "responses_stream", "responses_tools"}
    assert {Path(p).stem for p in PROGRAMS} - skipped <= {program for _, program in PROVIDER_CASES}
