"""Pod volumes as host directories, and the bind mounts that put them at their mountPaths.

configMap, secret, downwardAPI and projected volumes are written once when the pod starts
(later changes to the objects are not propagated, and tokens are not refreshed); emptyDir
is a directory per pod; a persistentVolumeClaim is ``<root>/pvcs/<namespace>/<claim>``,
shared by every pod that names it and kept after they are gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tests.support.node_runner.env import (
    ContainerConfigError,
    expand,
    field_value,
    required_source,
    resource_value,
)
from tests.support.node_runner.host import Host
from tests.support.node_runner.kube import JSON

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_TOKEN_VOLUME = "kube-api-access-node-runner"
DEFAULT_MODE = 0o644

Files = dict[str, tuple[bytes, int]]  # relative path -> (content, mode)


class VolumeError(Exception):
    """A volume cannot be set up: a missing object (retried) or an unsupported type."""


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool


def _write_files(directory: Path, files: Files) -> None:
    for relative, (content, mode) in files.items():
        if PurePosixPath(relative).is_absolute() or ".." in PurePosixPath(relative).parts:
            raise VolumeError(f"volume item path {relative!r} must be relative, without '..'")
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)


def _key_files(data: dict[str, bytes], source: JSON, default_mode: int, what: str) -> Files:
    items = source.get("items")
    if items is None:
        return {key: (value, default_mode) for key, value in data.items()}
    files: Files = {}
    for item in items:
        if item["key"] not in data:
            if source.get("optional"):
                continue
            raise VolumeError(f"{what} references non-existent key: {item['key']}")
        files[item["path"]] = (data[item["key"]], item.get("mode", default_mode))
    return files


def _object_files(host: Host, pod: JSON, kind: str, name: str, source: JSON, mode: int) -> Files:
    namespace = pod["metadata"]["namespace"]
    try:
        data = required_source(host.kube, namespace, kind, name, bool(source.get("optional")))
    except ContainerConfigError as err:
        raise VolumeError(str(err)) from err
    return _key_files(data, source, mode, f"{kind.lower()} {namespace}/{name}")


def _downward_files(host: Host, pod: JSON, items: list[JSON], mode: int) -> Files:
    files: Files = {}
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    for item in items:
        try:
            if "fieldRef" in item:
                value = field_value(pod, item["fieldRef"]["fieldPath"], host.node.host_ip)
            else:
                ref = item["resourceFieldRef"]
                container = containers.get(ref.get("containerName", ""), {})
                value = resource_value(container, ref, host.node.capacity)
        except ContainerConfigError as err:
            raise VolumeError(str(err)) from err
        files[item["path"]] = (value.encode(), item.get("mode", mode))
    return files


def _token_files(host: Host, pod: JSON, source: JSON, mode: int) -> Files:
    audiences = [source["audience"]] if source.get("audience") else []
    token = host.kube.request_token(pod, audiences, int(source.get("expirationSeconds", 3600)))
    return {source["path"]: (token.encode(), mode)}


def _projected_files(host: Host, pod: JSON, projected: JSON) -> Files:
    mode = projected.get("defaultMode", DEFAULT_MODE)
    files: Files = {}
    for source in projected.get("sources", []):
        if "serviceAccountToken" in source:
            files.update(_token_files(host, pod, source["serviceAccountToken"], mode))
        elif "configMap" in source:
            cm = source["configMap"]
            files.update(_object_files(host, pod, "ConfigMap", cm["name"], cm, mode))
        elif "secret" in source:
            secret = source["secret"]
            files.update(_object_files(host, pod, "Secret", secret["name"], secret, mode))
        elif "downwardAPI" in source:
            files.update(_downward_files(host, pod, source["downwardAPI"].get("items", []), mode))
        else:
            raise VolumeError(f"unsupported projected volume source {sorted(source)}")
    return files


def _volume_files(host: Host, pod: JSON, volume: JSON) -> Files:
    if "configMap" in volume:
        cm = volume["configMap"]
        mode = cm.get("defaultMode", DEFAULT_MODE)
        return _object_files(host, pod, "ConfigMap", cm["name"], cm, mode)
    if "secret" in volume:
        secret = volume["secret"]
        mode = secret.get("defaultMode", DEFAULT_MODE)
        return _object_files(host, pod, "Secret", secret["secretName"], secret, mode)
    if "downwardAPI" in volume:
        downward = volume["downwardAPI"]
        mode = downward.get("defaultMode", DEFAULT_MODE)
        return _downward_files(host, pod, downward.get("items", []), mode)
    if "projected" in volume:
        return _projected_files(host, pod, volume["projected"])
    raise VolumeError(f"volume {volume['name']!r}: unsupported type {sorted(volume)}")


def prepare_volume(host: Host, pod: JSON, volume: JSON, volumes_dir: Path) -> Path:
    """Create ``volume``'s contents on the host; return the directory to bind-mount."""
    if "persistentVolumeClaim" in volume:
        path = host.pvc_path(
            pod["metadata"]["namespace"], volume["persistentVolumeClaim"]["claimName"]
        )
        path.mkdir(parents=True, exist_ok=True)
        return path
    if "hostPath" in volume:
        path = Path(volume["hostPath"]["path"])
        if volume["hostPath"].get("type") == "DirectoryOrCreate":
            path.mkdir(parents=True, exist_ok=True)
        return path
    directory = volumes_dir / str(volume["name"])
    directory.mkdir(parents=True, exist_ok=True)
    if "emptyDir" not in volume:  # emptyDir, medium Memory included, is just the directory
        _write_files(directory, _volume_files(host, pod, volume))
    return directory


def _all_containers(pod: JSON) -> list[JSON]:
    return [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]


def wants_default_token(host: Host, pod: JSON) -> bool:
    """True when no container mounts the token directory and automount is not turned off.

    The apiserver's ServiceAccount admission plugin normally adds a projected
    ``kube-api-access-*`` volume itself; this covers clusters where it is disabled.
    """
    mounts = (m for c in _all_containers(pod) for m in c.get("volumeMounts", []))
    if any(m["mountPath"].rstrip("/") == SERVICE_ACCOUNT_DIR for m in mounts):
        return False
    automount = pod["spec"].get("automountServiceAccountToken")
    if automount is None:
        account = pod["spec"].get("serviceAccountName") or "default"
        found = host.kube.read_service_account(pod["metadata"]["namespace"], account) or {}
        automount = found.get("automountServiceAccountToken", True)
    return bool(automount)


def prepare_default_token(host: Host, pod: JSON, volumes_dir: Path) -> Path:
    """token, ca.crt (the control plane's CA) and namespace, as the admission plugin's volume."""
    directory = volumes_dir / DEFAULT_TOKEN_VOLUME
    directory.mkdir(parents=True, exist_ok=True)
    files = _token_files(host, pod, {"path": "token", "expirationSeconds": 3607}, DEFAULT_MODE)
    files["ca.crt"] = (host.cluster.ca_pem, DEFAULT_MODE)
    files["namespace"] = (pod["metadata"]["namespace"].encode(), DEFAULT_MODE)
    _write_files(directory, files)
    return directory


def prepare_volumes(host: Host, pod: JSON) -> dict[str, Path]:
    """Every volume of ``pod`` by name (plus the default token volume where it applies)."""
    volumes_dir = host.pod_dir(pod["metadata"]["uid"]) / "volumes"
    paths = {
        v["name"]: prepare_volume(host, pod, v, volumes_dir) for v in pod["spec"].get("volumes", [])
    }
    if wants_default_token(host, pod):
        paths[DEFAULT_TOKEN_VOLUME] = prepare_default_token(host, pod, volumes_dir)
    return paths


def check_not_hiding(mounts: list[Mount], protected: tuple[Path, ...]) -> None:
    """Refuse a mountPath at or above the Python environment the containers run with:
    mounting there would hide the stand-in "image" (a real image has its own root)."""
    for mount in mounts:
        target = PurePosixPath(mount.target)
        for path in protected:
            if target == PurePosixPath(path) or target in PurePosixPath(path).parents:
                raise VolumeError(
                    f"mountPath {mount.target} would hide {path}, which the node runner "
                    "runs containers from (images are ignored); choose another mountPath"
                )


def container_mounts(container: JSON, volumes: dict[str, Path], env: dict[str, str]) -> list[Mount]:
    """``volumeMounts`` resolved to host paths (``subPath`` / ``subPathExpr`` applied)."""
    mounts: list[Mount] = []
    for mount in container.get("volumeMounts", []):
        if mount["name"] not in volumes:
            raise VolumeError(f"volumeMount {mount['name']!r} names no volume of the pod")
        source = volumes[mount["name"]]
        sub_path = mount.get("subPath") or expand(mount.get("subPathExpr", ""), env)
        if sub_path:
            if PurePosixPath(sub_path).is_absolute() or ".." in PurePosixPath(sub_path).parts:
                raise VolumeError(f"subPath {sub_path!r} must be relative, without '..'")
            source = source / sub_path
            if not source.exists():
                source.mkdir(parents=True)  # the kubelet creates missing subPath directories
        mounts.append(Mount(source, mount["mountPath"], bool(mount.get("readOnly"))))
    if DEFAULT_TOKEN_VOLUME in volumes:
        mounts.append(Mount(volumes[DEFAULT_TOKEN_VOLUME], SERVICE_ACCOUNT_DIR, True))
    return mounts
