"""Operator configuration: defaults a platform team sets once (Helm values → env)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from pydantic import BaseModel, Field

ENV_PREFIX = "KUBESFT_"


class OperatorConfig(BaseModel):
    """Settings read from `KUBESFT_*` environment variables."""

    trainer_image: str = "ghcr.io/kubesft/trainer:0.1.0"
    """Image of trainer and preparation pods when a resource names none."""
    image_pull_policy: str = "IfNotPresent"
    data_claim: str = "kubesft-data"
    """PVC (in each namespace) holding prepared datasets, unless spec.storage says otherwise."""
    python: str = "python"
    """Interpreter inside the trainer image."""
    progress_interval_seconds: float = Field(default=5.0, ge=1.0)
    """Least time between two progress updates a trainer pod makes to its SFTJob."""
    prepare_cpu: str = "1"
    prepare_memory: str = "2Gi"
    prepare_backoff_limit: int = 2
    prepare_ttl_seconds: int = 86400
    """Finished preparation Jobs are removed after this; the dataset's status stays."""
    gpu_memory_gib: dict[str, float] = Field(default_factory=lambda: {"nvidia.com/gpu": 80.0})
    """Memory of one GPU per extended resource name, for the feasibility check."""
    resync_seconds: float = Field(default=30.0, gt=0)
    """Every unfinished resource is reconciled at least this often, even without events
    (one that an event reconciled within the period waits for the next pass)."""
    metrics_port: int = 8080
    run_as_user: int = 1000
    cluster_scanning: bool = True
    """Watch CRDs (and, with named namespaces, namespaces) cluster-wide to notice ones added
    later; false when the operator has no cluster-scoped RBAC (chart: rbac.clusterScanning),
    so kopf serves what exists at start instead of retrying refused calls for a minute."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for name, field in cls.model_fields.items():
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is None:
                continue
            values[name] = json.loads(raw) if field.annotation not in (str, "str") else raw
        return cls.model_validate(values)
