"""Connecting to a cluster the way kubectl does: kubeconfig, context, namespace.

`kubectl` plugins receive no connection from kubectl itself (it passes only the arguments),
so `kubectl sft` and the Python client resolve `--kubeconfig`, `--context` and `-n` the same
way kubectl would: the flag, else `$KUBECONFIG`, else `~/.kube/config`; inside a pod with no
kubeconfig, the pod's service account and namespace.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class KubeconfigError(RuntimeError):
    """No usable cluster connection; the message names the kubeconfig or context to fix."""


@dataclass(frozen=True)
class Connection:
    """An API client and the namespace commands act in when none is named."""

    api: Any
    """A ``kubernetes.client.ApiClient``."""
    namespace: str


def connect(
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    namespace: str | None = None,
) -> Connection:
    """An API client for `context` of `kubeconfig`, and the namespace to use.

    The namespace is `namespace`, else the context's, else `default` (in a pod: its own).
    Raises :class:`KubeconfigError` when the kubeconfig is missing or has no such context.
    """
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    path = str(kubeconfig) if kubeconfig else None
    if path is None and not os.environ.get("KUBECONFIG") and _in_cluster():
        config.load_incluster_config()  # type: ignore[no-untyped-call, unused-ignore]
        from kubernetes import client

        own = IN_CLUSTER_NAMESPACE.read_text().strip() if IN_CLUSTER_NAMESPACE.exists() else ""
        return Connection(client.ApiClient(), namespace or own or "default")
    try:
        contexts, active = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call, unused-ignore]
        chosen = active
        if context is not None:
            chosen = next((c for c in contexts if c.get("name") == context), None)
            if chosen is None:
                names = ", ".join(c.get("name", "?") for c in contexts) or "none"
                raise KubeconfigError(f"context {context!r} not in the kubeconfig ({names})")
        api = config.new_client_from_config(config_file=path, context=context)  # type: ignore[no-untyped-call, unused-ignore]
    except ConfigException as err:
        where = path or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise KubeconfigError(f"cannot use kubeconfig {where}: {err}") from None
    ns = namespace or (chosen or {}).get("context", {}).get("namespace") or "default"
    return Connection(api, ns)


def _in_cluster() -> bool:
    return (
        bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        and not Path("~/.kube/config").expanduser().exists()
    )


def add_connection_flags(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """`--kubeconfig` and `--context`, as kubectl spells them.

    Added to the top-level parser and again to each cluster command, so they work before
    and after the command name (`kubectl sft --context c status x` and `kubectl sft status
    x --context c`); the command's copies default to "not given" so they never hide the
    top-level ones.
    """
    default = None if top_level else argparse.SUPPRESS
    parser.add_argument(
        "--kubeconfig",
        default=default,
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)",
    )
    parser.add_argument("--context", default=default, help="kubeconfig context to use")
