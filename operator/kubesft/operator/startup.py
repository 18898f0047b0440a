"""Wiring: API client, configuration and metrics endpoint of a running operator."""

from __future__ import annotations

import logging
import os

from kubernetes import client, config
from prometheus_client import start_http_server

from kubesft.operator.config import OperatorConfig
from kubesft.operator.kube import Kube
from kubesft.operator.reconciler import Reconciler

log = logging.getLogger("kubesft.operator")


CONNECTIONS = 32
"""Pooled HTTP connections to the API server: 8 reconcile workers with a few writes each
at once (`Kube.ensure_all`); the client's default (5 per CPU) would reconnect under load."""


def api_client() -> client.ApiClient:
    """In-cluster credentials in a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    conf = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    ):
        config.load_incluster_config(client_configuration=conf)  # type: ignore[no-untyped-call, unused-ignore]
    else:
        config.load_kube_config(  # type: ignore[no-untyped-call, unused-ignore]
            config_file=os.environ.get("KUBECONFIG"), client_configuration=conf
        )
    conf.connection_pool_maxsize = CONNECTIONS
    return client.ApiClient(conf)


def make_reconciler() -> Reconciler:
    settings = OperatorConfig.from_env()
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
        log.info("metrics on :%d/metrics", settings.metrics_port)
    return Reconciler(Kube(api_client()), settings)
