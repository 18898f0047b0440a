"""The runtime section: what the operator adds to an SFTJob spec for the trainer.

The trainer's config file is ``{"spec": <SFTJob spec>, "runtime": <TrainerRuntime>}``.
Ranks and world size are not here: `accelerate launch` takes them from the environment
the operator sets on each pod (machine rank from the Job completion index).
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kubesft.api.job import SFTJobSpec


class TrainerDataset(BaseModel):
    """A Ready SFTDataset as the trainer pod sees it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    name: str
    """The SFTDataset's name (status and logs say it)."""
    dir: str
    """Its prepared data: train.jsonl, eval.jsonl, stats.json."""
    weight: float = Field(default=1.0, gt=0)
    """Its share of the mixture (spec.datasets[].weight, not normalized); 1 for spec.dataset."""
    fingerprint: str | None = None
    """Its status.fingerprint (sha256 of the normalized data)."""


class TrainerRuntime(BaseModel):
    """Paths and identities inside the trainer pod."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    output_dir: str
    """Where checkpoints, metrics.jsonl, eval.json, loss.png and the final model go."""
    datasets: list[TrainerDataset] = Field(min_length=1)
    """The SFTDatasets trained on, in spec order (one for spec.dataset)."""
    retention: TrainerDataset | None = None
    """spec.evaluation.retention's SFTDataset: scored, never trained on."""
    model_path: str | None = None
    """Local folder (or GGUF file) of the base model when it is mounted; else spec.model.name."""
    job_name: str = ""
    namespace: str = ""
    job_uid: str = ""
    """metadata.uid of the SFTJob: the run that the output directory and its checkpoints
    belong to (`kubesft_trainer.run_identity`); empty when the trainer runs by hand."""
    termination_log: str = "/dev/termination-log"
    """Where the final JSON summary (<= 4 KB) is written for the operator."""
    progress_interval_seconds: float = Field(default=5.0, ge=0.0)
    """Least time between two progress reports to the resource."""

    @property
    def dataset_fingerprint(self) -> str | None:
        """What was trained on: the dataset's fingerprint, or for a mixture the sha256 of its
        members' names, weights and fingerprints (None if any member has none)."""
        if len(self.datasets) == 1:
            return self.datasets[0].fingerprint
        if any(d.fingerprint is None for d in self.datasets):
            return None
        members = [[d.name, d.weight, d.fingerprint] for d in self.datasets]
        return hashlib.sha256(json.dumps(members).encode()).hexdigest()


class TrainerConfig(BaseModel):
    """The whole trainer input: the user's spec plus the runtime section."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    spec: SFTJobSpec
    runtime: TrainerRuntime
