"""Pure: the SFTDatasets a trainer reads (its mixture's members and the retention set), as
the builders need them: where each one's prepared data is, and where the pod sees it.

Each dataset is mounted read-only by subPath at `/data/<claim>/<path>`: the trainer sees
each one's own prepared generation and nothing else of the claims, and no two datasets
of a job share a mount path (members may live on different claims under the same path).
`reconcile_dataset.generations_in_use` reads these paths back from trainer ConfigMaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubesft.api import SFTDataset, SFTJob
from kubesft.api.base import PVCLocation
from kubesft.api.runtime import TrainerDataset
from kubesft.operator.config import OperatorConfig
from kubesft.operator.pod_parts import inside_volume, join, mount, parse_location, pvc_volume

DATA_DIR = "/data"


@dataclass(frozen=True)
class DatasetInput:
    """One Ready SFTDataset the trainer reads: where its prepared data is, and what it is."""

    name: str
    location: PVCLocation
    fingerprint: str | None
    weight: float = 1.0
    """spec.datasets[].weight (not normalized); 1 for spec.dataset and the retention set."""


@dataclass(frozen=True)
class TrainerInputs:
    """What the builders need besides the SFTJob: its datasets, and the operator's config."""

    datasets: tuple[DatasetInput, ...]
    """The members trained on, in spec order (one for spec.dataset)."""
    config: OperatorConfig
    retention: DatasetInput | None = None
    """spec.evaluation.retention's SFTDataset."""

    def read(self) -> tuple[DatasetInput, ...]:
        """Every dataset the trainer reads: the members, then the retention set."""
        return self.datasets + ((self.retention,) if self.retention else ())


def trainer_inputs(
    job: SFTJob, found: Sequence[SFTDataset], config: OperatorConfig
) -> TrainerInputs:
    """The inputs from the job's Ready SFTDatasets (`found` holds every one of
    `job.spec.dataset_names()`, each with a status.location)."""
    by_name = {d.metadata.name: d for d in found}

    def one(name: str, weight: float = 1.0) -> DatasetInput:
        status = by_name[name].status
        assert status is not None and status.location is not None  # Ready: see derive_job
        return DatasetInput(name, parse_location(status.location), status.fingerprint, weight)

    members = tuple(one(m.name, m.weight) for m in job.spec.mixture())
    retention = job.spec.evaluation.retention
    return TrainerInputs(members, config, one(retention.name) if retention else None)


def dataset_dir(dataset: DatasetInput) -> str:
    """`/data/<claim>/<path>`: distinct for every dataset of a job (members may live on
    different claims under the same path), and inside /data (`join` refuses a path that
    would leave it)."""
    return join(DATA_DIR, f"{dataset.location.claim_name}/{inside_volume(dataset.location.path)}")


def trainer_dataset(dataset: DatasetInput) -> TrainerDataset:
    """The dataset as the trainer's runtime config names it (runtime.datasets[i])."""
    return TrainerDataset(
        name=dataset.name,
        dir=dataset_dir(dataset),
        weight=dataset.weight,
        fingerprint=dataset.fingerprint,
    )


def data_volumes(inputs: TrainerInputs) -> tuple[list[Any], list[Any]]:
    """One read-only volume per data claim ("data", "data-1", ...) and one mount per
    dataset, by subPath: the trainer sees each dataset's own prepared generation and
    nothing else of the claims."""
    volumes: dict[str, dict[str, Any]] = {}
    mounts: dict[str, dict[str, Any]] = {}
    for dataset in inputs.read():
        claim = dataset.location.claim_name
        if claim not in volumes:
            volume = f"data-{len(volumes)}" if volumes else "data"
            volumes[claim] = pvc_volume(volume, claim, read_only=True)
        path = dataset_dir(dataset)
        volume_name = volumes[claim]["name"]
        mounts[path] = mount(volume_name, path, read_only=True, sub_path=dataset.location.path)
    return list(volumes.values()), list(mounts.values())
