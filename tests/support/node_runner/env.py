"""Container environment as the kubelet computes it: service variables, envFrom, env.

Also the downward-API lookups (``fieldRef``, ``resourceFieldRef``) and ConfigMap/Secret
reads that env and volumes share, and the kubelet's ``$(VAR)`` expansion.
"""

from __future__ import annotations

import base64
import json
import math
import re

from tests.support.node_runner.kube import JSON, ClusterAccess, Kube, quantity

POD_IP = "127.0.0.1"
_KEYED_FIELD = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")
_REFERENCE = re.compile(r"\$(?:\$|\(([^)]*)\))")


class ContainerConfigError(Exception):
    """A referenced ConfigMap, Secret or key is missing (CreateContainerConfigError)."""


def expand(text: str, env: dict[str, str]) -> str:
    """``$(VAR)`` → its value when defined (else left as is); ``$$`` → ``$``."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return env.get(name, match.group(0))

    return _REFERENCE.sub(substitute, text)


# --- downward API -----------------------------------------------------------------------


def field_value(pod: JSON, path: str, host_ip: str) -> str:
    """The value of a ``fieldRef.fieldPath`` for ``pod``; unknown paths are config errors."""
    meta, spec = pod["metadata"], pod["spec"]
    keyed = _KEYED_FIELD.match(path)
    if keyed:
        return str(meta.get(keyed[1], {}).get(keyed[2], ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted(meta.get(path.split(".")[1], {}).items())
        return "".join(f"{key}={json.dumps(value)}\n" for key, value in items)
    simple = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "status.podIP": POD_IP,
        "status.podIPs": POD_IP,
    }
    if path not in simple:
        raise ContainerConfigError(f"unsupported fieldRef.fieldPath {path!r}")
    return str(simple[path])


def resource_value(container: JSON, ref: JSON, capacity: dict[str, str]) -> str:
    """A ``resourceFieldRef`` value; unset limits fall back to the node's capacity."""
    kind, _, name = ref["resource"].partition(".")
    resources = container.get("resources", {})
    value = resources.get(kind, {}).get(name)
    if value is None and kind == "limits":
        value = capacity.get(name, "0")
    if value is None:  # requests default to limits, as API defaulting would have done
        value = resources.get("limits", {}).get(name, "0")
    divisor = quantity(ref.get("divisor") or "1") or 1
    return str(math.ceil(quantity(value) / divisor))


# --- ConfigMaps and Secrets -------------------------------------------------------------


def source_data(kube: Kube, namespace: str, kind: str, name: str) -> dict[str, bytes] | None:
    """The keys of ConfigMap or Secret ``name`` as bytes, or None when it does not exist."""
    if kind == "ConfigMap":
        config_map = kube.read_config_map(namespace, name)
        if config_map is None:
            return None
        data = {k: v.encode() for k, v in config_map.get("data", {}).items()}
        binary = {k: base64.b64decode(v) for k, v in config_map.get("binaryData", {}).items()}
        return {**data, **binary}
    secret = kube.read_secret(namespace, name)
    if secret is None:
        return None
    return {k: base64.b64decode(v) for k, v in secret.get("data", {}).items()}


def required_source(
    kube: Kube, namespace: str, kind: str, name: str, optional: bool
) -> dict[str, bytes]:
    """Like ``source_data``, but a missing required object is a ContainerConfigError."""
    data = source_data(kube, namespace, kind, name)
    if data is None:
        if optional:
            return {}
        raise ContainerConfigError(f'{kind.lower()} "{name}" not found')
    return data


def _key_ref(kube: Kube, namespace: str, kind: str, ref: JSON) -> str | None:
    optional = bool(ref.get("optional", False))
    data = required_source(kube, namespace, kind, ref["name"], optional)
    if ref["key"] not in data:
        if optional:
            return None
        raise ContainerConfigError(
            f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}"
        )
    return data[ref["key"]].decode(errors="replace")


# --- the environment --------------------------------------------------------------------


def service_env(cluster: ClusterAccess) -> dict[str, str]:
    """The ``kubernetes`` Service's variables, pointing at the real apiserver."""
    host, port = cluster.host, str(cluster.port)
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "KUBERNETES_PORT": f"tcp://{host}:{port}",
    }


def _value_from(
    kube: Kube, pod: JSON, container: JSON, source: JSON, capacity: dict[str, str], host_ip: str
) -> str | None:
    namespace = pod["metadata"]["namespace"]
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"], host_ip)
    if "resourceFieldRef" in source:
        return resource_value(container, source["resourceFieldRef"], capacity)
    if "configMapKeyRef" in source:
        return _key_ref(kube, namespace, "ConfigMap", source["configMapKeyRef"])
    if "secretKeyRef" in source:
        return _key_ref(kube, namespace, "Secret", source["secretKeyRef"])
    raise ContainerConfigError(f"unsupported valueFrom {sorted(source)}")


def container_env(
    kube: Kube,
    pod: JSON,
    container: JSON,
    cluster: ClusterAccess,
    capacity: dict[str, str],
    host_ip: str,
) -> dict[str, str]:
    """Service variables, then ``envFrom``, then ``env`` (later wins; values may use ``$(VAR)``
    of variables defined before them)."""
    namespace = pod["metadata"]["namespace"]
    env = service_env(cluster)
    for source in container.get("envFrom", []):
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        ref = source.get("configMapRef") or source.get("secretRef") or {}
        data = required_source(kube, namespace, kind, ref["name"], bool(ref.get("optional")))
        prefix = source.get("prefix", "")
        env.update(
            {prefix + k: v.decode(errors="replace") for k, v in data.items() if "=" not in k}
        )
    for var in container.get("env", []):
        if "valueFrom" in var:
            value = _value_from(kube, pod, container, var["valueFrom"], capacity, host_ip)
            if value is None:  # optional and missing: the variable is not set at all
                continue
        else:
            value = expand(var.get("value", ""), env)
        env[var["name"]] = value
    return env
