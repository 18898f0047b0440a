"""Two data-parallel ranks train exactly like one process with the same global batch."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from tests.support.sft_run import (
    run_trainer,
    trainer_config,
    write_config,
    write_prepared_dataset,
)


def logged(output_dir) -> list[tuple[int, str, float, float | None]]:
    """(step, kind, loss, grad norm) of each train step and eval in metrics.jsonl."""
    records = [json.loads(line) for line in (output_dir / "metrics.jsonl").open()]
    return [
        (r["step"], r["type"], r.get("trainLoss") or r.get("evalLoss"), r.get("gradNorm"))
        for r in records
        if r["type"] in ("train", "eval")
    ]


def test_two_ranks_match_one_process_with_the_same_global_batch(tiny_model_dir, tmp_path) -> None:
    # maxSeqLength 32 packs one example per bin, so each rank's micro-batches hold different
    # numbers of label tokens: a per-rank mean would weigh them wrongly and fail this test.
    data = write_prepared_dataset(tmp_path / "data")
    outputs = {}
    for ranks, accumulation in ((2, 1), (1, 2)):
        output = tmp_path / f"out-{ranks}"
        training = {"gradientAccumulation": accumulation, "maxSteps": 3, "maxSeqLength": 32}
        config = trainer_config(tiny_model_dir, data, output, training=training)
        result = run_trainer(
            write_config(tmp_path / f"config-{ranks}.json", config),
            nproc=ranks,
            GLOO_SOCKET_IFNAME="lo",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[ranks] = output

    plan = json.loads((outputs[2] / "config.json").read_text())["plan"]
    assert plan["world_size"] == 2
    one, two = (load_file(outputs[n] / "model" / "adapter_model.safetensors") for n in (1, 2))
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=1e-5, rtol=1e-4, msg=name)
    # The grad norm also catches a uniform gradient scale, to which AdamW is nearly blind.
    for one_record, two_record in zip(logged(outputs[1]), logged(outputs[2]), strict=True):
        assert one_record[:2] == two_record[:2]
        for want, got in zip(one_record[2:], two_record[2:], strict=True):
            assert want == got or abs(want - got) < 1e-5, (one_record, two_record)
