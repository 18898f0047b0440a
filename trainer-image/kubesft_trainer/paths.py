"""The trainer's own check that it reads and writes inside its volumes (defence in depth).

Admission and the operator refuse PVC paths that leave their volume; a config handed to
the trainer directly (or built by an older operator) gets the same refusal here, exit 2
naming the field. Outputs are also resolved through symlinks: a link on the volume that
points elsewhere would put the model in the container's own filesystem, where it vanishes
with the pod. Inputs are checked lexically only: a link to a shared model folder placed on
a claim by its owner is a deliberate choice.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from kubesft.api.formats import RELATIVE_PATH, is_relative_path
from kubesft.api.runtime import TrainerConfig
from kubesft_trainer.exit_codes import UserError


def inside_mount(runtime_path: str, relative: str, field: str, *, follow_links: bool) -> Path:
    """`runtime_path` (= mount + `relative`) when it stays inside the mount.

    Raises UserError naming `field` when `relative` is absolute or has '.'/'..' segments,
    when `runtime_path` does not end with it, or (`follow_links`) when the resolved path
    leaves the resolved mount.
    """
    if not is_relative_path(relative):
        raise UserError(f"{field}: {RELATIVE_PATH.message} (got {relative!r})")
    path = PurePosixPath(runtime_path)
    parts = PurePosixPath(relative).parts if relative else ()
    if not path.is_absolute() or (parts and path.parts[-len(parts) :] != parts):
        raise UserError(f"{field}: {relative!r} does not match the pod's path {runtime_path}")
    mount = Path(*path.parts[: len(path.parts) - len(parts)])
    if follow_links and not Path(path).resolve().is_relative_to(mount.resolve()):
        raise UserError(
            f"{field}: {relative!r} resolves to {Path(path).resolve()}, outside its volume "
            f"(a symbolic link on the volume points out of it); results written there "
            "would be lost with the pod: remove the link or choose another path"
        )
    return Path(path)


def check_paths(config: TrainerConfig) -> None:
    """Every PVC path of the run stays inside its volume (see the module docstring)."""
    spec, runtime = config.spec, config.runtime
    if spec.output.pvc is not None:
        inside_mount(
            runtime.output_dir, spec.output.pvc.path, "spec.output.pvc.path", follow_links=True
        )
    if spec.model.source == "pvc" and spec.model.pvc is not None and runtime.model_path:
        inside_mount(
            runtime.model_path, spec.model.pvc.path, "spec.model.pvc.path", follow_links=False
        )
