"""``switchyard policy check | explain | schema`` through ``gateway.cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.cli import main

POLICIES = Path(__file__).resolve().parents[2] / "policies"

BROKEN = """\
version: 1
routes:
  support:
    candidates: [gpt-4o, gpt4o-mini]
    wieghts: {quality: 1}
"""


def test_check_ok(capsys, preset_env) -> None:
    assert main(["policy", "check", str(POLICIES / "default.yaml"), "--strict"]) == 0
    assert capsys.readouterr().out == f"{POLICIES / 'default.yaml'}: ok (3 routes, 0 models, 0 warnings)\n"


def test_check_lists_every_error_located(tmp_path, capsys) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    assert main(["policy", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"{path}:4:26 at routes.support.candidates[1]: unknown model 'gpt4o-mini'; did you mean 'gpt-4o-mini'? "
        "[policy.unknown-model]",
        f"{path}:5:5 at routes.support.wieghts: unknown field 'wieghts'; did you mean 'weights'? [policy.unknown-field]",
        f"{path}: 2 error(s)",
    ]


def test_check_strict_turns_lints_into_errors(tmp_path, capsys) -> None:
    path = tmp_path / "lint.yaml"
    path.write_text("version: 1\nroutes:\n  r:\n    candidates: [gpt-4o]\n    weights: {}\n")
    assert main(["policy", "check", str(path)]) == 0
    assert "warning [lint.zero-weights]" in capsys.readouterr().out
    assert main(["policy", "check", str(path), "--strict"]) == 1
    assert "1 lint warning(s), errors under --strict" in capsys.readouterr().err


def test_check_without_secrets(capsys) -> None:
    path = str(POLICIES / "default.yaml")
    assert main(["policy", "check", path]) == 1
    assert "environment variable 'OPENAI_API_KEY' is not set" in capsys.readouterr().err
    assert main(["policy", "check", path, "--no-env"]) == 0


def test_explain_prints_the_plan(tmp_path, capsys) -> None:
    from tests.router.conftest import WORKED_EXAMPLE

    path = tmp_path / "worked.yaml"
    path.write_text(WORKED_EXAMPLE)
    args = ["policy", "explain", str(path), "--route", "support", "--prompt", "hi", "--prompt-tokens", "1000"]
    assert main([*args, "--tools"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "route support: weights: $2.5 per quality point, $0 per second of ttft, $1.5 per second of latency, "
        "cost x1 (per 1k requests; ties: order)",
        "prompt 1000 tokens, output 500 tokens",
        "",
        " #  model                                quality     ttft   latency   $/request samples     U $/1k  basis",
        " 1  big                                    0.900    0.50s     5.50s    0.007500     0.0     209.25  weights",
        " 2  small                                  0.700    0.30s     4.30s    0.000450     0.0     168.10  weights",
        "",
        "why big: $41.15 per 1k requests over small (quality +50.00, cost -7.05, latency -1.80)",
        "",
        "excluded:",
        "    local                                missing_capability   does not support tools",
    ]


def test_explain_unknown_route(tmp_path, capsys) -> None:
    assert (
        main(["policy", "explain", str(POLICIES / "local-only.yaml"), "--route", "defualt", "--prompt", "x"])
        == 1
    )
    assert "did you mean 'default'?" in capsys.readouterr().err


def test_schema_writes_the_file(tmp_path, capsys) -> None:
    out = tmp_path / "schema.json"
    assert main(["policy", "schema", "--output", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    schema = json.loads(out.read_text())
    assert schema["$id"] == "https://switchyard.dev/policy.schema.json"
    assert schema["properties"]["version"] == {"const": 1, "title": "Version", "type": "integer"}
    assert main(["policy", "schema", "--stdout"]) == 0
    assert json.loads(capsys.readouterr().out) == schema


def test_check_locates_a_bad_cache_write_price(tmp_path, capsys) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        "version: 1\nmodels:\n  m:\n    provider: openai\n    price:\n      input: 1\n      cache_write: -2\n"
    )
    assert main(["policy", "check", str(path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:7:20 at models.m.price.cache_write: Input should be greater than or equal to 0 "
        "[policy.greater-than-equal]",
        f"{path}: 1 error(s)",
    ]
