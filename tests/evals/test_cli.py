"""``switchyard eval run / report / explain`` end to end, through ``gateway.cli.main``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.state import open_backend
from tests.servers.http import LoopbackServer


def first_candidate(text: str) -> str:
    return next(line.split()[1] for line in text.splitlines() if line.startswith(" 1  "))


def test_run_report_explain(
    policy_file: Path, set_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    servers: dict[str, LoopbackServer],
) -> None:  # fmt: skip
    store = f"sqlite:///{tmp_path}/state/evals.sqlite"
    explain = ["eval", "explain", "--policy", str(policy_file), "--route", "qa", "--store", store]
    assert main(explain) == 0
    before = capsys.readouterr().out
    assert first_candidate(before) == "bad/model"  # the priors: bad 0.9, good 0.2
    assert "bad/model   0.90 from the prior (no eval on set 'quiz')" in before

    run = ["eval", "run", str(set_file), "--policy", str(policy_file), "--route", "qa", "--store", store]
    assert main([*run, "--concurrency", "2", "--progress", "plain"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[2].split()[:2] == ["good/model", "1.000"]
    assert "8 model calls, 0 cached results" in out
    assert err.splitlines()[-1] == "eval quiz: 8/8 (0 cached)"

    assert main([*run, "--progress", "none"]) == 0  # resumed: nothing to call
    assert "0 model calls, 8 cached results" in capsys.readouterr().out

    assert main(explain) == 0
    after = capsys.readouterr().out
    assert first_candidate(after) == "good/model"
    assert "good/model  1.00 from eval set 'quiz' v" in after and "(4 cases, 95% CI" in after

    out_dir = tmp_path / "reports"
    assert main(["eval", "report", str(set_file), "--store", store, "--out", str(out_dir)]) == 0
    report = capsys.readouterr().out
    assert f"chart: {out_dir / 'quiz.png'}" in report and (out_dir / "quiz.png").stat().st_size > 0
    assert "**Pareto front** (cheapest first): bad/model, good/model." in (out_dir / "quiz.md").read_text()
    assert main(["eval", "report", "quiz", "--store", store, "--out", str(out_dir)]) == 0  # by name
    capsys.readouterr()

    backend = open_backend(store)  # every eval call was metered into the same store
    routes = {dict(t.group)["route"]: t.requests for t in backend.query_usage(0, ["route"], time.time() + 60)}
    backend.close()
    assert routes == {"eval:quiz": 8}


def test_models_flag_and_fail_fast(
    policy_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "numbers.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"id": f"n{i}", "prompt": "What is 2+2?", "expected": 4, "scorer": "numeric"})
            for i in range(3)
        )
    )
    store = f"sqlite:///{tmp_path}/evals.sqlite"
    args = ["eval", "run", str(path), "--policy", str(policy_file), "--store", store, "--progress", "none"]
    assert (
        main(
            [
                *args,
                "--models",
                "good/model,bad/broken",
                "--fail-fast",
                "--concurrency",
                "1",
                "--max-retries",
                "0",
            ]
        )
        == 1
    )
    assert "stopped at the first failure (--fail-fast)" in capsys.readouterr().err
    assert main(["eval", "report", "numbers", "--store", store]) == 2
    assert "no results for set 'numbers'" in capsys.readouterr().err
    assert main([*args, "--models", "good/model"]) == 0


@pytest.mark.parametrize(
    ("extra", "lines", "message"),
    [
        (["--models", "good/model"], ['{"prompt": "a"}', "{oops"], ":2: not valid JSON"),
        (["--models", "nope/model"], ['{"prompt": "a"}'], "unknown model 'nope/model'"),
        ([], ['{"prompt": "a"}'], "name the models with --models"),
        (["--route", "missing"], ['{"prompt": "a"}'], "the policy has no route 'missing'"),
    ],
)
def test_bad_input_exits_2(
    policy_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    lines: list[str],
    message: str,
) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines))
    store = f"sqlite:///{tmp_path}/evals.sqlite"
    assert main(["eval", "run", str(path), "--policy", str(policy_file), "--store", store, *extra]) == 2
    assert message in capsys.readouterr().err


def test_skip_reports_malformed_lines_and_runs_the_rest(
    policy_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"prompt": "What is 2+2?", "expected": "4"}\n{oops\n')
    store = f"sqlite:///{tmp_path}/evals.sqlite"
    args = [
        "eval",
        "run",
        str(path),
        "--policy",
        str(policy_file),
        "--store",
        store,
        "--models",
        "good/model",
    ]
    assert main([*args, "--on-error", "skip", "--progress", "none"]) == 0
    out, err = capsys.readouterr()
    assert f"skipped {path}:2: not valid JSON" in err and "1 model calls" in out


def test_the_store_defaults_to_the_policys_state(
    policy_file: Path,
    set_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    text = policy_file.read_text() + "state: {backend: sqlite, path: shared/state.sqlite}\n"
    policy_file.write_text(text)
    run = [
        "eval",
        "run",
        str(set_file),
        "--policy",
        str(policy_file),
        "--models",
        "good/model",
        "--progress",
        "none",
    ]
    assert main(run) == 0
    assert f"stored in sqlite://{tmp_path}/shared/state.sqlite" in capsys.readouterr().out  # sqlite:///abs
    assert main(["eval", "report", "quiz", "--policy", str(policy_file), "--out", "r"]) == 0
    assert (tmp_path / "r" / "quiz.md").exists()
    policy_file.write_text(text.replace("state: {backend: sqlite, path: shared/state.sqlite}\n", ""))
    assert main(run) == 0  # no state section: the working directory's .switchyard/evals.sqlite
    assert f"stored in sqlite://{tmp_path}/.switchyard/evals.sqlite" in capsys.readouterr().out
