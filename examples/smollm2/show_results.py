"""Print an SFTJob's held-out score and a few before/after answers, read with kubesft.client.

python examples/smollm2/show_results.py smollm2-json [--namespace NS] [--rows 4]
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from kubesft.client import SFTClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("job")
    parser.add_argument("--namespace", "-n")
    parser.add_argument("--rows", type=int, default=4, help="sample rows to show")
    args = parser.parse_args()

    job = SFTClient(args.namespace).get_job(args.job)
    evaluation = job.status.evaluation if job.status else None
    if evaluation is None:
        raise SystemExit(f"SFTJob {args.job} has no evaluation yet")
    console = Console()
    table = Table(title="held-out prompts, greedy answers", show_lines=True)
    for column in ("prompt", "before (base model)", "after (LoRA)"):
        table.add_column(column, overflow="fold")
    for sample in evaluation.samples[: args.rows]:
        table.add_row(sample.prompt.split("\n\n")[-1], sample.before, sample.after)
    console.print(table)
    score = evaluation.held_out
    if score is None:
        raise SystemExit("no held-out score in status.evaluation.heldOut")
    console.print(
        f"[bold]held-out score over {score.examples} eval rows[/bold] "
        f"(status.evaluation.heldOut): exact match "
        f"{score.exact_match_before:.0%} -> {score.exact_match_after:.0%}"
    )
    if score.format_valid_before is not None and score.format_valid_after is not None:
        console.print(
            f"valid JSON with the expected keys {score.format_valid_before:.0%} -> "
            f"{score.format_valid_after:.0%}"
        )


if __name__ == "__main__":
    main()
