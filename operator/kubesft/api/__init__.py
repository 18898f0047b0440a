"""The kubesft API: pydantic models of SFTDataset and SFTJob, the single source of truth.

The CRDs in `crds/` are generated from these models, the operator parses objects with
them, and the trainer reads its configuration through them. No kopf, no torch here.
"""

from kubesft.api.base import API_VERSION, GROUP, VERSION, Condition, ObjectMeta
from kubesft.api.dataset import SFTDatasetSpec, SFTDatasetStatus
from kubesft.api.errors import InvalidSpec, parse_object
from kubesft.api.job import SFTJobSpec
from kubesft.api.job_status import SFTJobStatus
from kubesft.api.resource import KINDS, SFT_DATASET, SFT_JOB, Kind, SFTDataset, SFTJob
from kubesft.api.runtime import TrainerConfig, TrainerRuntime

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "SFT_DATASET",
    "SFT_JOB",
    "VERSION",
    "Condition",
    "InvalidSpec",
    "Kind",
    "ObjectMeta",
    "SFTDataset",
    "SFTDatasetSpec",
    "SFTDatasetStatus",
    "SFTJob",
    "SFTJobSpec",
    "SFTJobStatus",
    "TrainerConfig",
    "TrainerRuntime",
    "parse_object",
]
