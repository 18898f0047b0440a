"""Pure: what in an SFTJob cannot act with its dataset, found before any trainer Job exists.

The models already refuse what one object shows alone (formats, inline chat templates that
do not compile, settings that exclude each other); this adds what needs the Ready
SFTDataset: settings that read eval loss are refused when its eval split is empty, since
they would silently never act. The reconciler reports the problems as a Failed condition
with reason InvalidSpec and a Warning Event, like a spec the models reject.
"""

from __future__ import annotations

from kubesft.api import SFTDataset, SFTJob

FIX_EVAL_SPLIT = (
    "give the SFTDataset an eval split (spec.split.evalFraction > 0 or spec.split.evalSource) "
    "or remove the setting"
)


def eval_split_size(dataset: SFTDataset) -> int | None:
    """Rows in the prepared eval split (status.stats.eval); before preparation, 0 when the
    spec makes none (evalFraction 0 and no evalSource: `kubesft validate`), else None."""
    stats = dataset.status.stats if dataset.status is not None else None
    if stats is not None:
        return stats.eval
    split = dataset.spec.split
    return 0 if split.eval_fraction == 0 and split.eval_source is None else None


def precheck(job: SFTJob, dataset: SFTDataset) -> list[str]:
    """One line per setting of `job` that cannot act with `dataset`, each naming its field.

    Only settings the user gave are refused: defaults that read eval loss (keepBest) fall
    back quietly to the latest checkpoint, as documented on the field.
    """
    spec = job.spec
    if eval_split_size(dataset) != 0:
        return []
    reading_eval = []
    if spec.training.early_stopping is not None:
        reading_eval.append("spec.training.earlyStopping")
    if spec.checkpoints.given("keep_best") and spec.checkpoints.keep_best:
        reading_eval.append("spec.checkpoints.keepBest")
    if spec.evaluation.given("every_steps"):
        reading_eval.append("spec.evaluation.everySteps")
    name = spec.dataset.name
    return [
        f"{field}: needs eval loss, but SFTDataset {name!r} has an empty eval split "
        f"(status.stats.eval is 0): {FIX_EVAL_SPLIT}"
        for field in reading_eval
    ]
