"""Pure: what in an SFTJob cannot act with its datasets, found before any trainer Job exists.

The models already refuse what one object shows alone (formats, inline chat templates that
do not compile, settings that exclude each other); this adds what needs the Ready
SFTDatasets: settings that read eval loss (and the retention score, measured at each
evaluation) are refused when no training member has an eval split, since they would
silently never act. The reconciler reports the problems as a Failed condition
with reason InvalidSpec and a Warning Event, like a spec the models reject.
"""

from __future__ import annotations

from collections.abc import Mapping

from kubesft.api import SFTDataset, SFTJob

EVAL_SPLIT = "an eval split (spec.split.evalFraction > 0 or spec.split.evalSource)"


def eval_split_size(dataset: SFTDataset) -> int | None:
    """Rows in the prepared eval split (status.stats.eval); before preparation, 0 when the
    spec makes none (evalFraction 0 and no evalSource: `kubesft validate`), else None."""
    stats = dataset.status.stats if dataset.status is not None else None
    if stats is not None:
        return stats.eval
    split = dataset.spec.split
    return 0 if split.eval_fraction == 0 and split.eval_source is None else None


def _no_eval_split(job: SFTJob, datasets: Mapping[str, SFTDataset]) -> str | None:
    """What says no training member has an eval split; None when one has or may have one
    (its count unknown before preparation, or the member not given)."""
    members = job.spec.training_dataset_names()
    if any(name not in datasets or eval_split_size(datasets[name]) != 0 for name in members):
        return None
    if len(members) == 1:
        return (
            f"SFTDataset {members[0]!r} has an empty eval split (status.stats.eval is 0): "
            f"give the SFTDataset {EVAL_SPLIT} or remove the setting"
        )
    quoted = ", ".join(repr(name) for name in members)
    return (
        f"no member of spec.datasets has an eval split (SFTDatasets {quoted}: "
        f"status.stats.eval is 0): give one of them {EVAL_SPLIT} or remove the setting"
    )


def precheck(job: SFTJob, datasets: Mapping[str, SFTDataset]) -> list[str]:
    """One line per setting of `job` that cannot act with its training datasets, each
    naming its field; `datasets` maps names to SFTDatasets (those of the job's members
    missing from it are taken to have an eval split).

    Evaluation runs on the members' eval splits, so settings that read eval loss, and
    spec.evaluation.retention (scored at each evaluation), are refused when no member
    has one. Only settings the user gave are refused: defaults that read eval loss
    (keepBest) fall back quietly to the latest checkpoint, as documented on the field.
    """
    spec = job.spec
    empty = _no_eval_split(job, datasets)
    if empty is None:
        return []
    reading_eval = []
    if spec.training.early_stopping is not None:
        reading_eval.append("spec.training.earlyStopping")
    if spec.checkpoints.given("keep_best") and spec.checkpoints.keep_best:
        reading_eval.append("spec.checkpoints.keepBest")
    if spec.evaluation.given("every_steps"):
        reading_eval.append("spec.evaluation.everySteps")
    problems = [f"{field}: needs eval loss, but {empty}" for field in reading_eval]
    if spec.evaluation.retention is not None:
        problems.append(
            "spec.evaluation.retention: is scored at each evaluation, and there is none to "
            f"score it at: {empty}"
        )
    return problems
