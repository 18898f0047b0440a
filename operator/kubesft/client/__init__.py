"""kubesft's Python client: SFTDatasets and SFTJobs from scripts and notebooks.

    from kubesft.client import SFTClient
    sft = SFTClient(namespace="team-a")
    sft.apply_yaml("examples/quickstart/")
    job = sft.wait_for_job("quickstart", progress=True)

No torch and no kopf: install `kubesft[operator]` (kubernetes client and rich).
"""

from kubesft.client.client import JobFailed, NotFound, SFTClient, load_yaml
from kubesft.client.connect import Connection, KubeconfigError, add_connection_flags, connect
from kubesft.client.history import MetricsHistory, read_metrics

__all__ = [
    "Connection",
    "JobFailed",
    "KubeconfigError",
    "MetricsHistory",
    "NotFound",
    "SFTClient",
    "add_connection_flags",
    "connect",
    "load_yaml",
    "read_metrics",
]
