"""An S3-compatible endpoint on loopback for tests: moto's server, speaking the S3 REST API.

The trainer reaches it exactly as it reaches AWS or MinIO: s3fs/botocore over HTTP with
the AWS_* variables the operator would set from a credentialsSecretRef. Only the storage
behind the API is moto's, not the code path under test.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class S3Endpoint:
    url: str

    def env(self) -> dict[str, str]:
        """What the operator sets from a credentialsSecretRef, pointed at this endpoint."""
        return {
            "AWS_ACCESS_KEY_ID": "kubesft-test",
            "AWS_SECRET_ACCESS_KEY": "kubesft-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.url,
        }


@contextmanager
def s3_server() -> Iterator[S3Endpoint]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Endpoint(f"http://{host}:{port}")
    finally:
        server.stop()
