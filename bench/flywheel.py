"""The flywheel on the real bundled model as the captured traffic grows: tune time and eval scores.

For each traffic size the example's whole loop runs (``examples/flywheel/run_flywheel.py``: capture
the teacher's answers on ``route:city``, export, tune the bundled SmolLM2 with the example's
settings, eval on 60 held-out prompts, reroute) in a fresh folder; then the tuned route answers 32
prompts about cities the traffic never named. The peer is the teacher, measured in the same run:
its held-out score and its cost per 1,000 requests beside the tuned model's.

Usage:
    python bench/flywheel.py [--traffic 60,150,300] [--unseen 32]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "examples" / "flywheel"))

import run_flywheel  # noqa: E402
from teacher_upstream import UNSEEN_CITIES, make_cases  # noqa: E402

from gateway import OpenAI  # noqa: E402


def unseen_score(policy: Path, count: int) -> float:
    """Exact-match score of the tuned model on prompts about cities the traffic never named."""
    cases = make_cases(count, seed=4, cities=UNSEEN_CITIES)
    with OpenAI(policy=policy) as client:
        right = 0
        for prompt, city in cases:
            reply = client.chat.completions.create(
                model="tuned", messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=16
            )
            right += (reply.choices[0].message.content or "").strip() == city
    return right / len(cases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traffic", default="60,150,300", help="comma-separated captured-request counts")
    parser.add_argument("--unseen", type=int, default=32)
    args = parser.parse_args()
    print(f"tune options: {' '.join(run_flywheel.FULL.tune)}; floor {run_flywheel.FLOOR}")
    print(
        "| captured | train examples | tune s | val loss | tuned (held-out) | teacher | unseen cities | cost ratio | routed to tuned | loop s |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for traffic in (int(t) for t in args.traffic.split(",")):
        sizes = run_flywheel.Sizes(traffic, 60, 20, (*run_flywheel.FULL.tune, "--no-progress"))
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()) as out:
                cleared = run_flywheel.run(work, sizes)
            loop_s = time.perf_counter() - started
            curve = json.loads((work / "adapters" / "city" / "loss.json").read_text())
            scores = run_flywheel.quality(work / "policy.yaml")
            unseen = unseen_score(work / "policy.yaml", args.unseen)  # the tuned model, called by name
            ratio = next(
                line for line in out.getvalue().splitlines() if "cost /" in line or "under the floor" in line
            )
        cost = ratio.rsplit("cost / ", 1)[-1] + "x" if "cost /" in ratio else "-"
        print(
            f"| {traffic} | {curve['train_examples']} | {curve['seconds']:.1f} | {curve['val_losses'][curve['best_epoch']]:.3f} "
            f"| {scores['tuned']:.2f} | {scores['teacher']:.2f} | {unseen:.2f} | {cost} | {'yes' if cleared else 'no'} | {loop_s:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    os.environ.setdefault("TEACHER_API_KEY", "sk-teacher-example")
    main()
