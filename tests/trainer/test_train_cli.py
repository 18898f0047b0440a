"""`python -m kubesft_trainer train`: outputs of a whole run, and exit 2 for user mistakes."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, LlamaForCausalLM

from kubesft.api.report import ExitCode
from kubesft_trainer import cli
from tests.support.sft_run import trainer_config, trainer_env, write_config, write_prepared_dataset


def test_train_writes_adapter_tokenizer_template_config_and_merged_model(
    tiny_model_dir, tmp_path, capsys
) -> None:
    data = write_prepared_dataset(tmp_path / "data")
    output = tmp_path / "out"
    config = trainer_config(
        tiny_model_dir, data, output, output={"mergeAdapter": True}, checkpoints={"everySteps": 2}
    )
    path = write_config(tmp_path / "config.json", config)

    assert cli.main(["train", "--config", str(path)]) == ExitCode.OK

    model_dir = output / "model"
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json"):
        assert (model_dir / name).exists(), name
    template = (model_dir / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template  # auto on a tokenizer without a template: ChatML
    assert AutoTokenizer.from_pretrained(model_dir).chat_template == template
    resolved = json.loads((output / "config.json").read_text())
    assert resolved["spec"]["training"]["lossOn"] == "assistant"  # defaults are written out
    assert resolved["plan"]["total_steps"] == 4
    merged = LlamaForCausalLM.from_pretrained(output / "merged", dtype=torch.float32)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert load_file(model_dir / "adapter_model.safetensors")
    for name in ("metrics.jsonl", "eval.json", "loss.png", "preflight.json"):
        assert (output / name).exists(), name
    summary = json.loads((tmp_path / "out.termination-log").read_text())
    assert summary["phase"] == "Succeeded"
    assert summary["output"] == {"path": str(output / "merged"), "kind": "merged"}
    assert summary["progress"]["step"] == 4
    assert [c["step"] for c in summary["checkpoints"]] == [2, 4]
    assert len(summary["evaluation"]["samples"]) == 1
    assert "trained 4 steps" in capsys.readouterr().out


def test_invalid_config_exits_2_with_one_line_naming_the_field(tmp_path) -> None:
    config = trainer_config(tmp_path, tmp_path, tmp_path / "out", training={"microBatchSize": 0})
    path = write_config(tmp_path / "config.json", config)

    result = subprocess.run(
        [sys.executable, "-m", "kubesft_trainer", "train", "--config", str(path)],
        env=trainer_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == ExitCode.INVALID
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "spec.training.microBatchSize" in lines[0], result.stderr


def test_bad_data_row_exits_2_naming_the_file_and_line(tiny_model_dir, tmp_path, capsys) -> None:
    data = write_prepared_dataset(tmp_path / "data")
    with (data / "train.jsonl").open("a") as fh:
        fh.write(json.dumps({"messages": [{"role": "narrator", "content": "hi"}]}) + "\n")
    path = write_config(tmp_path / "config.json", trainer_config(tiny_model_dir, data, tmp_path))

    assert cli.main(["train", "--config", str(path)]) == ExitCode.INVALID

    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert "train.jsonl line 17" in err and "narrator" in err, err
    failure = json.loads((tmp_path.parent / f"{tmp_path.name}.termination-log").read_text())
    assert failure["phase"] == "Failed" and failure["reason"] == "InvalidInput"
    assert len(failure["fingerprint"]["config"]) == 64  # what was attempted, for the status
