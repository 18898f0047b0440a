"""One way to reach S3 for dataset sources and job outputs: s3fs with the AWS_* environment.

The operator sets AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optionally
AWS_SESSION_TOKEN, AWS_DEFAULT_REGION and AWS_ENDPOINT_URL (MinIO, Ceph, R2, ...) from
the resource's `credentialsSecretRef`; without one, botocore's usual chain applies
(e.g. a pod identity).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from kubesft_trainer.exit_codes import UserError


def s3_filesystem(label: str) -> Any:
    """An fsspec S3 filesystem; `label` names the field (e.g. `spec.output.url`) in errors."""
    if importlib.util.find_spec("s3fs") is None:
        raise UserError(
            f"{label}: s3:// needs the s3fs package, which this trainer image lacks; "
            "add it to the image or use an https (e.g. presigned) URL"
        )
    import fsspec

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    client_kwargs = {"endpoint_url": endpoint} if endpoint else {}
    # A fresh instance: credentials come from the environment at call time.
    return fsspec.filesystem("s3", client_kwargs=client_kwargs, skip_instance_cache=True)


def split_url(url: str) -> str:
    """`s3://bucket/prefix/` → `bucket/prefix`, the path form fsspec takes."""
    return url.removeprefix("s3://").strip("/")
