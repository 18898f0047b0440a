"""A killed run resumes by itself from its latest complete checkpoint and ends identically."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from accelerate import Accelerator
from peft import PeftModel
from safetensors.torch import load_file
from transformers import LlamaForCausalLM, get_scheduler

from kubesft_trainer import checkpoint
from kubesft_trainer.checkpoint import Progress
from kubesft_trainer.collate import collate_packed
from kubesft_trainer.data import DataPosition
from kubesft_trainer.loop import backward_step
from kubesft_trainer.masking import TokenizedExample
from tests.support.sft_run import (
    run_trainer,
    start_trainer,
    trainer_config,
    wait_while_running,
    write_config,
    write_prepared_dataset,
)
from tests.support.trainer_faults import SLEEP as TEST_SLEEP_AFTER_STEP

# Dropout and NEFTune draw random numbers every step, so only restored RNG states match.
TRAINING = {"maxSteps": 10, "gradientAccumulation": 2, "neftuneAlpha": 5.0}
METHOD = {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.1}}


def train_losses(output_dir: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (output_dir / "metrics.jsonl").open()]
    return [(r["step"], r["trainLoss"]) for r in records if r["type"] == "train"]


def test_killed_run_resumes_to_the_same_weights_and_loss(tiny_model_dir, tmp_path) -> None:
    data = write_prepared_dataset(tmp_path / "data")
    straight_out, resumed_out = tmp_path / "straight", tmp_path / "resumed"
    sections = {"training": TRAINING, "method": METHOD, "checkpoints": {"everySteps": 5}}
    configs = {
        out: write_config(
            tmp_path / f"{out.name}.json", trainer_config(tiny_model_dir, data, out, **sections)
        )
        for out in (straight_out, resumed_out)
    }
    straight = start_trainer(configs[straight_out], tmp_path / "straight.log")
    killed_log = tmp_path / "killed.log"
    killed = start_trainer(configs[resumed_out], killed_log, **{TEST_SLEEP_AFTER_STEP: "5"})
    try:
        wait_while_running(killed, killed_log, "sleeping after step 5")
    finally:
        killed.kill()  # SIGKILL: no cleanup of any kind runs
        killed.wait()
    root = resumed_out / "checkpoints"
    assert (root / "step-5" / checkpoint.COMPLETE).exists()
    (root / ".tmp-step-7").mkdir()
    (root / ".tmp-step-7" / "adapter_model.safetensors").write_bytes(b"torn write")

    resumed = run_trainer(configs[resumed_out])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {root / 'step-5'} (step 5)" in resumed.stdout
    assert straight.wait(timeout=240) == 0, (tmp_path / "straight.log").read_text()[-3000:]

    assert not (root / ".tmp-step-7").exists()
    assert [r.step for r in checkpoint.list_checkpoints(resumed_out)] == [5, 10]
    expected = load_file(straight_out / "model" / "adapter_model.safetensors")
    actual = load_file(resumed_out / "model" / "adapter_model.safetensors")
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, atol=1e-5, rtol=1e-4, msg=name)
    straight_losses, resumed_losses = train_losses(straight_out), train_losses(resumed_out)
    assert [s for s, _ in resumed_losses] == list(range(1, 11))
    for (_, want), (_, got) in zip(straight_losses, resumed_losses, strict=True):
        assert abs(want - got) < 1e-5
    for step in (5, 10):  # each checkpoint is an adapter peft can load
        model = LlamaForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        PeftModel.from_pretrained(model, root / f"step-{step}")


def test_full_model_checkpoint_restores_weights_optimizer_schedule_and_rng(
    tiny_model_dir, tmp_path
) -> None:
    accelerator = Accelerator(cpu=True)

    def setup():
        model = LlamaForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=1, num_training_steps=9)
        return model, optimizer, scheduler

    model, optimizer, scheduler = setup()
    ids = list(range(10, 30))
    backward_step(accelerator, model, [collate_packed([TokenizedExample(ids, ids)])], "sdpa")
    optimizer.step()
    scheduler.step()
    progress = Progress(step=3, position=DataPosition(1, 2), eval_loss=1.5, best_eval_loss=1.25)
    record = checkpoint.save_checkpoint(
        accelerator, model, optimizer, scheduler, tmp_path, progress, keep=2, keep_best=True
    )
    after_save = torch.rand(3)

    fresh, fresh_optimizer, fresh_scheduler = setup()
    restored = checkpoint.resume_from(record, accelerator, fresh, fresh_optimizer, fresh_scheduler)

    assert restored == progress
    assert (record.path / "config.json").exists()  # loadable with from_pretrained
    for (name, want), got in zip(
        model.state_dict().items(), fresh.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(got, want, msg=name)
    want_state = optimizer.state_dict()["state"][0]["exp_avg"]
    torch.testing.assert_close(fresh_optimizer.state_dict()["state"][0]["exp_avg"], want_state)
    assert fresh_scheduler.state_dict()["last_epoch"] == scheduler.state_dict()["last_epoch"]
    torch.testing.assert_close(torch.rand(3), after_save)


def fake_checkpoint(output_dir: Path, step: int, eval_loss: float | None, complete=True) -> None:
    path = output_dir / checkpoint.CHECKPOINTS / f"step-{step}"
    path.mkdir(parents=True)
    (path / checkpoint.STATE_FILE).write_text(json.dumps({"step": step, "evalLoss": eval_loss}))
    if complete:
        (path / checkpoint.COMPLETE).write_text("")


def test_pruning_keeps_the_latest_and_the_best_and_ignores_incomplete(tmp_path) -> None:
    for step, loss in ((1, 2.0), (2, 0.5), (3, 1.0), (4, None), (5, 3.0)):
        fake_checkpoint(tmp_path, step, loss)
    fake_checkpoint(tmp_path, 6, 0.1, complete=False)

    checkpoint.prune_checkpoints(tmp_path, keep=2, keep_best=True)

    assert [r.step for r in checkpoint.list_checkpoints(tmp_path)] == [2, 4, 5]
    checkpoint.remove_incomplete(tmp_path)
    assert not (tmp_path / checkpoint.CHECKPOINTS / "step-6").exists()
