"""The trainer refuses output and model paths that leave their volume (exit 2, naming the field)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubesft.api.report import ExitCode
from kubesft_trainer.exit_codes import UserError
from kubesft_trainer.paths import inside_mount
from tests.support.sft_run import run_trainer, trainer_config, write_config


def _run(tmp_path: Path, output_path: str, output_dir: Path) -> tuple[int, str]:
    config = trainer_config(tmp_path / "model", tmp_path / "data", output_dir)
    config["spec"]["output"] = {"pvc": {"claimName": "out", "path": output_path}}
    result = run_trainer(write_config(tmp_path / "config.json", config), timeout=120)
    return result.returncode, result.stderr


@pytest.mark.parametrize("path", ["/abs/path", "../../tmp/run"])
def test_trainer_refuses_an_output_path_outside_its_volume(tmp_path: Path, path: str) -> None:
    mount = tmp_path / "volume"
    code, err = _run(tmp_path, path, mount / path.lstrip("/"))
    assert code == ExitCode.INVALID, err
    assert "spec.output.pvc.path" in err and "relative path" in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "tmp").exists() and not mount.exists()


def test_trainer_refuses_an_output_folder_that_links_out_of_its_volume(tmp_path: Path) -> None:
    mount, elsewhere = tmp_path / "volume", tmp_path / "container-fs"
    mount.mkdir()
    elsewhere.mkdir()
    (mount / "run").symlink_to(elsewhere)
    code, err = _run(tmp_path, "run", mount / "run")
    assert code == ExitCode.INVALID, err
    assert "spec.output.pvc.path" in err and "outside its volume" in err, err
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("relative", ["../../tmp/run", "/abs/path", "a/./b", "a//b"])
def test_inside_mount_refuses_paths_handed_to_it_directly(relative: str) -> None:
    with pytest.raises(UserError, match=r"^spec\.output\.pvc\.path: must be a relative path"):
        inside_mount(f"/output/{relative}", relative, "spec.output.pvc.path", follow_links=True)


def test_inside_mount_accepts_a_path_inside_the_mount(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "a"
    assert inside_mount(str(target), "runs/a", "f", follow_links=True) == target
    assert inside_mount(str(tmp_path), "", "f", follow_links=True) == tmp_path
    with pytest.raises(UserError, match="does not match"):
        inside_mount(str(tmp_path / "x"), "runs/a", "f", follow_links=True)
