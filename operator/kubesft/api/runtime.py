"""The runtime section: what the operator adds to an SFTJob spec for the trainer.

The trainer's config file is ``{"spec": <SFTJob spec>, "runtime": <TrainerRuntime>}``.
Ranks and world size are not here: `accelerate launch` takes them from the environment
the operator sets on each pod (machine rank from the Job completion index).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kubesft.api.job import SFTJobSpec


class TrainerRuntime(BaseModel):
    """Paths and identities inside the trainer pod."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    output_dir: str
    """Where checkpoints, metrics.jsonl, eval.json, loss.png and the final model go."""
    dataset_dir: str
    """Prepared data of the SFTDataset: train.jsonl, eval.jsonl, stats.json."""
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
    dataset_fingerprint: str | None = None


class TrainerConfig(BaseModel):
    """The whole trainer input: the user's spec plus the runtime section."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    spec: SFTJobSpec
    runtime: TrainerRuntime
