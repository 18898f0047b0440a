"""Where weights come from: a mounted folder or GGUF file, or the hub; hub refusals are final."""

from __future__ import annotations

import copy

import pytest
from huggingface_hub.errors import RepositoryNotFoundError

from kubesft.api.job import SFTJobSpec
from kubesft.api.runtime import TrainerRuntime
from kubesft_trainer.exit_codes import UserError
from kubesft_trainer.model import hub_errors, model_source
from tests.support.sft_run import BASE_SPEC


def job_spec(**model) -> SFTJobSpec:
    spec = copy.deepcopy(BASE_SPEC)
    spec["model"] = model
    return SFTJobSpec.model_validate(spec)


def runtime(model_path=None) -> TrainerRuntime:
    return TrainerRuntime(
        output_dir="/out", datasets=[{"name": "d", "dir": "/data"}], model_path=model_path
    )


def test_a_mounted_gguf_file_loads_from_its_folder(tmp_path) -> None:
    gguf = tmp_path / "model-q4.gguf"
    gguf.write_bytes(b"")
    spec = job_spec(name="m", source="pvc", pvc={"claimName": "models"})

    source = model_source(spec, runtime(str(gguf)))

    assert (source.location, source.kwargs()["gguf_file"]) == (str(tmp_path), gguf.name)


def test_a_hub_model_is_loaded_at_its_revision_with_the_token(monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "secret")
    spec = job_spec(name="org/model", revision="v1", ggufFile="model.Q8_0.gguf")

    kwargs = model_source(spec, runtime()).kwargs()

    assert kwargs == {
        "revision": "v1",
        "token": "secret",
        "trust_remote_code": False,
        "gguf_file": "model.Q8_0.gguf",
    }


class HubSaysNotFound(RepositoryNotFoundError):
    """The hub's 404 without an HTTP response object behind it."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)


def test_a_missing_mount_and_an_unknown_repository_are_user_errors(tmp_path) -> None:
    spec = job_spec(name="org/missing")
    with pytest.raises(UserError, match=r"runtime\.modelPath"):
        model_source(spec, runtime(str(tmp_path / "nowhere")))

    # transformers wraps the hub's answer in an OSError; the cause decides.
    refusal = HubSaysNotFound("404 Repository Not Found")
    expected = r"spec\.model\.name org/missing is not a model repository"
    with pytest.raises(UserError, match=expected), hub_errors(spec):
        raise OSError("not a valid model identifier") from refusal


def test_a_network_failure_stays_retryable() -> None:
    with pytest.raises(OSError, match="couldn't connect"), hub_errors(job_spec(name="org/m")):
        raise OSError("We couldn't connect to the hub")
