"""Print an SFTJob's held-out score and a few before/after answers, read with kubesft.client.

python examples/smollm2/show_results.py smollm2-json [--namespace NS] [--rows 4]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kubesft.client import SFTClient


def one_line(text: str, width: int = 110) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("job")
    parser.add_argument("--namespace", "-n")
    parser.add_argument("--rows", type=int, default=4, help="held-out rows to show")
    parser.add_argument("--eval-json", type=Path, help="eval.json of the job's output")
    args = parser.parse_args()

    job = SFTClient(args.namespace).get_job(args.job)
    evaluation = job.status.evaluation if job.status else None
    if evaluation is None:
        raise SystemExit(f"SFTJob {args.job} has no evaluation yet")
    if args.eval_json is not None:
        rows = json.loads(args.eval_json.read_text())["samples"][: args.rows]
        samples = [(r["promptText"], r["before"], r["after"], r["reference"]) for r in rows]
    else:
        samples = [(s.prompt, s.before, s.after, None) for s in evaluation.samples[: args.rows]]
    for prompt, before, after, reference in samples:
        print(one_line(prompt.split("\n\n")[-1]))
        if reference is not None:
            print(f"  reference: {one_line(reference)}")
        print(f"  before:    {one_line(before)}")
        print(f"  after:     {one_line(after)}")
    score = evaluation.held_out
    if score is None:
        raise SystemExit("no held-out score in status.evaluation.heldOut")
    print(
        f"held-out score over {score.examples} eval rows (status.evaluation.heldOut): "
        f"exact match {score.exact_match_before:.0%} -> {score.exact_match_after:.0%}"
    )
    if score.format_valid_before is not None and score.format_valid_after is not None:
        print(
            f"valid JSON with the expected keys {score.format_valid_before:.0%} -> "
            f"{score.format_valid_after:.0%}"
        )


if __name__ == "__main__":
    main()
