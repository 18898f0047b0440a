"""A PVC path that would leave its volume never reaches a pod spec."""

from __future__ import annotations

import pytest

from kubesft.api import InvalidSpec, SFTJob, parse_object
from kubesft.api.base import PVCLocation
from kubesft.operator import build_trainer, trainer_data
from kubesft.operator.pod_parts import inside_volume, join
from tests.support.invalid_manifests import valid_job
from tests.unit.operator.fixtures import inputs, job

ESCAPING = ["/abs/path", "../../tmp/run", "run/../..", "./run", "run//x", "run/"]


@pytest.mark.parametrize("path", ESCAPING)
def test_operator_refuses_to_parse_a_job_with_an_escaping_output_path(path: str) -> None:
    """The reconciler parses every object first: an InvalidSpec names the field and
    stops it before any child is built (it becomes the Failed/InvalidSpec condition)."""
    obj = valid_job()
    obj["spec"]["output"]["pvc"]["path"] = path
    with pytest.raises(InvalidSpec) as info:
        parse_object(obj)
    assert info.value.problems[0].startswith("spec.output.pvc.path: must be a relative path")


@pytest.mark.parametrize("path", ESCAPING)
def test_builders_refuse_an_escaping_path_that_bypassed_validation(path: str) -> None:
    """An object stored under an older CRD, built without validation: the output path
    reaches the pod only through the trainer's ConfigMap, and that is never built."""
    bad: SFTJob = job().model_copy(deep=True)
    assert bad.spec.output.pvc is not None
    object.__setattr__(bad.spec.output.pvc, "path", path)  # bypasses the validators
    with pytest.raises(ValueError, match="leaves its volume"):
        build_trainer.build_config_map(bad, inputs())
    assert path not in str(build_trainer.build_job(bad, inputs()))


def test_valid_paths_join_and_mount_inside_their_volume() -> None:
    assert join("/output", "runs/llama") == "/output/runs/llama"
    assert join("/output", "") == "/output"
    assert inside_volume("a/b.c/..d") == "a/b.c/..d"  # '..d' is a name, not a parent


def test_prepared_data_is_mounted_by_subpath_at_its_own_path() -> None:
    loc = PVCLocation(claim_name="kubesft-data", path="datasets/quickstart/g1")
    pod = build_trainer.build_job(job(), inputs())["spec"]["template"]["spec"]
    (data,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "data"]
    assert data == {
        "name": "data",
        "mountPath": f"/data/{loc.claim_name}/{loc.path}",
        "readOnly": True,
        "subPath": loc.path,
    }
    cfg = build_trainer.trainer_config(job(), inputs())
    assert cfg.runtime.datasets[0].dir == data["mountPath"]


@pytest.mark.parametrize("path", ESCAPING)
def test_no_mixture_member_or_retention_set_mounts_outside_its_claim(path: str) -> None:
    """Every dataset a job reads goes through the same check, whichever its place."""
    members = [{"name": "chat"}, {"name": "code"}]
    sft = job(dataset=None, datasets=members, evaluation={"retention": {"name": "held"}})
    good = PVCLocation(claim_name="kubesft-data", path="datasets/x/g1")
    bad = PVCLocation.model_construct(claim_name="kubesft-data", path=path)  # unvalidated
    for place in ("member", "retention"):
        chat = trainer_data.DatasetInput("chat", good, None)
        code = trainer_data.DatasetInput("code", bad if place == "member" else good, None)
        held = trainer_data.DatasetInput("held", bad if place == "retention" else good, None)
        inputs_ = trainer_data.TrainerInputs((chat, code), inputs().config, held)
        with pytest.raises(ValueError, match="leaves its volume"):
            build_trainer.build_config_map(sft, inputs_)
        with pytest.raises(ValueError, match="leaves its volume"):
            build_trainer.build_job(sft, inputs_)
