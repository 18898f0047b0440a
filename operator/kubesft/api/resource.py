"""Whole objects (apiVersion, kind, metadata, spec, status) and the CRD identities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from kubesft.api.base import GROUP, VERSION, ObjectMeta
from kubesft.api.dataset import SFTDatasetSpec, SFTDatasetStatus
from kubesft.api.formats import DNS1035_LABEL_RE, cel_string, is_dns1035_label
from kubesft.api.job import SFTJobSpec
from kubesft.api.job_status import SFTJobStatus

SpecT = TypeVar("SpecT", bound=BaseModel)
StatusT = TypeVar("StatusT", bound=BaseModel)


class Resource(BaseModel, Generic[SpecT, StatusT]):
    model_config = ConfigDict(alias_generator=None, populate_by_name=True, extra="forbid")

    api_version: Literal["kubesft.io/v1alpha1"] = Field(
        default="kubesft.io/v1alpha1", alias="apiVersion"
    )
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: SpecT
    status: StatusT | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = self.model_dump(
            by_alias=True, exclude_none=True, exclude_unset=True, mode="json"
        )
        return out


class SFTDataset(Resource[SFTDatasetSpec, SFTDatasetStatus]):
    """Instruction data for fine-tuning: where it lives, its format, validation and split."""

    kind: Literal["SFTDataset"] = "SFTDataset"


class SFTJob(Resource[SFTJobSpec, SFTJobStatus]):
    """A supervised fine-tuning run: base model + SFTDataset + method → adapter or model."""

    kind: Literal["SFTJob"] = "SFTJob"

    @model_validator(mode="after")
    def _name_fits_children(self) -> SFTJob:
        name = self.metadata.name
        if name and self.spec.resources.nodes > 1 and not is_dns1035_label(name):
            raise PydanticCustomError(
                "kubesft_rule", MULTI_NODE_NAME_MESSAGE, {"field_path": "metadata.name"}
            )
        return self


# A regex rather than format.dns1035Label(): the apiserver estimates the latter over its
# cost budget on metadata.name.
MULTI_NODE_NAME_RULE = (
    "!has(self.spec.resources) || !has(self.spec.resources.nodes) || "
    "self.spec.resources.nodes == 1 || "
    f"self.metadata.name.matches({cel_string(DNS1035_LABEL_RE.pattern)})"
)
MULTI_NODE_NAME_MESSAGE = (
    "metadata.name must be a DNS-1035 label (lower-case letters, digits and '-', starting "
    "with a letter; no '.') when resources.nodes > 1: the multi-node rendezvous Service "
    "<name>-train is named after it"
)


@dataclass(frozen=True)
class Kind:
    """Names of one custom resource, as the CRD and clients use them."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    model: type[BaseModel]
    spec: type[BaseModel]
    status: type[BaseModel]

    group: str = GROUP
    version: str = VERSION
    categories: tuple[str, ...] = ("sft",)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"


SFT_DATASET = Kind(
    kind="SFTDataset",
    plural="sftdatasets",
    singular="sftdataset",
    short_names=("sftds",),
    model=SFTDataset,
    spec=SFTDatasetSpec,
    status=SFTDatasetStatus,
)
SFT_JOB = Kind(
    kind="SFTJob",
    plural="sftjobs",
    singular="sftjob",
    short_names=("sftj",),
    model=SFTJob,
    spec=SFTJobSpec,
    status=SFTJobStatus,
)
KINDS = (SFT_DATASET, SFT_JOB)
