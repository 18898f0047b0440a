"""A table of invalid SFTJob/SFTDataset manifests, each tagged with the field it breaks.

Used by the unit tests (the pydantic models), the integration tests (the apiserver with
the generated CRDs) and the CLI tests (`kubesft validate`): all three must reject every
case and name the same field.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

DELETE = object()


def valid_job(name: str = "valid-job") -> dict[str, Any]:
    return {
        "apiVersion": "kubesft.io/v1alpha1",
        "kind": "SFTJob",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct"},
            "dataset": {"name": "quickstart"},
            "method": {"type": "lora", "lora": {"r": 8}},
            "training": {"maxSteps": 10, "learningRate": 0.001},
            "output": {"pvc": {"claimName": "outputs", "path": "run"}},
            "resources": {"gpus": 1},
        },
    }


def valid_dataset(name: str = "valid-dataset") -> dict[str, Any]:
    return {
        "apiVersion": "kubesft.io/v1alpha1",
        "kind": "SFTDataset",
        "metadata": {"name": name},
        "spec": {
            "source": {"configMap": {"name": "data", "key": "data.jsonl"}},
            "format": "messages",
            "split": {"evalFraction": 0.1, "seed": 3},
        },
    }


@dataclass(frozen=True)
class InvalidCase:
    """``changes`` (dotted path → value, or DELETE) applied to a valid object."""

    id: str
    kind: str
    changes: dict[str, Any]
    field: str
    """The field path the rejection must name, as written in YAML."""
    name: str = field(default="")

    def manifest(self) -> dict[str, Any]:
        name = self.name or f"bad-{self.id}"
        obj = valid_job(name) if self.kind == "SFTJob" else valid_dataset(name)
        for path, value in self.changes.items():
            set_path(obj, path, value)
        return obj


def set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = obj
    for part in parents:
        node = node.setdefault(part, {})
    if value is DELETE:
        node.pop(last, None)
    else:
        node[last] = copy.deepcopy(value)


J, D = "SFTJob", "SFTDataset"
CASES: list[InvalidCase] = [
    InvalidCase("model-missing", J, {"spec.model": DELETE}, "spec.model"),
    InvalidCase("model-name-empty", J, {"spec.model.name": ""}, "spec.model.name"),
    InvalidCase("model-source-unknown", J, {"spec.model.source": "ftp"}, "spec.model.source"),
    InvalidCase("model-pvc-missing", J, {"spec.model.source": "pvc"}, "spec.model.pvc"),
    InvalidCase(
        "model-url-scheme",
        J,
        {"spec.model.source": "url", "spec.model.url": "ftp://x"},
        "spec.model.url",
    ),
    InvalidCase("dataset-missing", J, {"spec.dataset": DELETE}, "spec.dataset"),
    InvalidCase("method-type-unknown", J, {"spec.method.type": "adapter"}, "spec.method.type"),
    InvalidCase(
        "qlora-with-lora-type", J, {"spec.method.qlora": {"quantType": "nf4"}}, "spec.method.qlora"
    ),
    InvalidCase("lora-with-full-type", J, {"spec.method.type": "full"}, "spec.method.lora"),
    InvalidCase("lora-r-zero", J, {"spec.method.lora.r": 0}, "spec.method.lora.r"),
    InvalidCase(
        "lora-dropout-one", J, {"spec.method.lora.dropout": 1.0}, "spec.method.lora.dropout"
    ),
    InvalidCase(
        "lora-targets-empty",
        J,
        {"spec.method.lora.targetModules": []},
        "spec.method.lora.targetModules",
    ),
    InvalidCase(
        "qlora-quant-type",
        J,
        {"spec.method.type": "qlora", "spec.method.qlora": {"quantType": "int8"}},
        "spec.method.qlora.quantType",
    ),
    InvalidCase(
        "learning-rate-zero", J, {"spec.training.learningRate": 0}, "spec.training.learningRate"
    ),
    InvalidCase("epochs-negative", J, {"spec.training.epochs": -1}, "spec.training.epochs"),
    InvalidCase("max-steps-zero", J, {"spec.training.maxSteps": 0}, "spec.training.maxSteps"),
    InvalidCase("loss-on-unknown", J, {"spec.training.lossOn": "prompt"}, "spec.training.lossOn"),
    InvalidCase(
        "seq-length-tiny", J, {"spec.training.maxSeqLength": 8}, "spec.training.maxSeqLength"
    ),
    InvalidCase(
        "accumulation-and-batch-tokens",
        J,
        {"spec.training.gradientAccumulation": 4, "spec.training.globalBatchTokens": 65536},
        "spec.training.globalBatchTokens",
    ),
    InvalidCase(
        "precision-unknown", J, {"spec.training.precision": "int4"}, "spec.training.precision"
    ),
    InvalidCase("neftune-zero", J, {"spec.training.neftuneAlpha": 0}, "spec.training.neftuneAlpha"),
    InvalidCase(
        "warmup-over-one", J, {"spec.training.warmupRatio": 2}, "spec.training.warmupRatio"
    ),
    InvalidCase(
        "unknown-training-field", J, {"spec.training.lerningRate": 0.1}, "spec.training.lerningRate"
    ),
    InvalidCase(
        "eval-samples-too-many", J, {"spec.evaluation.samples": 1000}, "spec.evaluation.samples"
    ),
    InvalidCase("checkpoints-keep-zero", J, {"spec.checkpoints.keep": 0}, "spec.checkpoints.keep"),
    InvalidCase("output-missing", J, {"spec.output": DELETE}, "spec.output"),
    InvalidCase("output-two-targets", J, {"spec.output.url": "s3://bucket/x"}, "spec.output"),
    InvalidCase(
        "output-url-https", J, {"spec.output": {"url": "https://bucket/x"}}, "spec.output.url"
    ),
    InvalidCase("gpus-negative", J, {"spec.resources.gpus": -1}, "spec.resources.gpus"),
    InvalidCase("nodes-zero", J, {"spec.resources.nodes": 0}, "spec.resources.nodes"),
    InvalidCase(
        "multi-node-without-gpus",
        J,
        {"spec.resources": {"nodes": 2, "gpus": 0}},
        "spec.resources.nodes",
    ),
    InvalidCase(
        "multi-node-without-shared-output",
        J,
        {"spec.resources": {"nodes": 2, "gpus": 1}, "spec.output": {"url": "s3://bucket/run"}},
        "spec.output",
    ),
    InvalidCase(
        "memory-not-quantity", J, {"spec.resources.memory": "lots"}, "spec.resources.memory"
    ),
    InvalidCase(
        "toleration-operator",
        J,
        {"spec.resources.tolerations": [{"key": "gpu", "operator": "Maybe"}]},
        "spec.resources.tolerations[0].operator",
    ),
    InvalidCase("retry-negative", J, {"spec.retry": {"maxRestarts": -1}}, "spec.retry.maxRestarts"),
    InvalidCase(
        "deadline-zero", J, {"spec.activeDeadlineSeconds": 0}, "spec.activeDeadlineSeconds"
    ),
    InvalidCase("job-name-too-long", J, {}, "metadata.name", name="j" * 60),
    InvalidCase("source-two-kinds", D, {"spec.source.hf": {"repo": "org/data"}}, "spec.source"),
    InvalidCase("source-empty", D, {"spec.source": {}}, "spec.source"),
    InvalidCase("source-missing", D, {"spec.source": DELETE}, "spec.source"),
    InvalidCase(
        "url-scheme",
        D,
        {"spec.source": {"url": {"url": "ftp://host/data.jsonl"}}},
        "spec.source.url.url",
    ),
    InvalidCase(
        "hf-repo-missing", D, {"spec.source": {"hf": {"split": "train"}}}, "spec.source.hf.repo"
    ),
    InvalidCase(
        "pvc-claim-missing",
        D,
        {"spec.source": {"pvc": {"path": "data"}}},
        "spec.source.pvc.claimName",
    ),
    InvalidCase("format-unknown", D, {"spec.format": "csv"}, "spec.format"),
    InvalidCase(
        "eval-fraction-one", D, {"spec.split.evalFraction": 1.0}, "spec.split.evalFraction"
    ),
    InvalidCase(
        "max-invalid-negative",
        D,
        {"spec.validation": {"maxInvalidRows": -1}},
        "spec.validation.maxInvalidRows",
    ),
    InvalidCase(
        "min-examples-zero",
        D,
        {"spec.validation": {"minExamples": 0}},
        "spec.validation.minExamples",
    ),
    # The data audit's knobs (prepare's audit.py).
    InvalidCase(
        "audit-action-unknown",
        D,
        {"spec.validation": {"nearDuplicates": "ignore"}},
        "spec.validation.nearDuplicates",
    ),
    InvalidCase(
        "min-answer-words-zero",
        D,
        {"spec.validation": {"minAnswerWords": 0}},
        "spec.validation.minAnswerWords",
    ),
    InvalidCase(
        "length-score-zero",
        D,
        {"spec.validation": {"maxLengthScore": 0}},
        "spec.validation.maxLengthScore",
    ),
    InvalidCase(
        "overfitting-patience-zero",
        J,
        {"spec.evaluation.overfittingPatience": 0},
        "spec.evaluation.overfittingPatience",
    ),
    InvalidCase("dataset-name-too-long", D, {}, "metadata.name", name="d" * 60),
    # Kubernetes formats: names of objects (DNS-1123 subdomains).
    InvalidCase("job-name-not-a-name", J, {}, "metadata.name", name="Bad_Name"),
    InvalidCase(
        "dataset-ref-not-a-name", J, {"spec.dataset.name": "Bad_Name!"}, "spec.dataset.name"
    ),
    InvalidCase(
        "output-claim-uppercase",
        J,
        {"spec.output.pvc.claimName": "Outputs"},
        "spec.output.pvc.claimName",
    ),
    InvalidCase(
        "token-secret-underscore",
        J,
        {"spec.model.tokenSecretRef": {"name": "hf_token"}},
        "spec.model.tokenSecretRef.name",
    ),
    InvalidCase(
        "priority-class-space",
        J,
        {"spec.resources.priorityClassName": "high priority"},
        "spec.resources.priorityClassName",
    ),
    InvalidCase(
        "s3-credentials-not-a-name",
        J,
        {"spec.output": {"url": "s3://bucket/run", "credentialsSecretRef": {"name": "AWS Creds"}}},
        "spec.output.credentialsSecretRef.name",
    ),
    InvalidCase(
        "configmap-not-a-name",
        D,
        {"spec.source.configMap.name": "my_data"},
        "spec.source.configMap.name",
    ),
    InvalidCase(
        "configmap-key-dotdot", D, {"spec.source.configMap.key": ".."}, "spec.source.configMap.key"
    ),
    InvalidCase(
        "storage-claim-leading-dash",
        D,
        {"spec.storage": {"claimName": "-data"}},
        "spec.storage.claimName",
    ),
    # Label keys and values, tolerations.
    InvalidCase(
        "node-selector-key",
        J,
        {"spec.resources.nodeSelector": {"bad key!": "x"}},
        "spec.resources.nodeSelector",
    ),
    InvalidCase(
        "node-selector-value",
        J,
        {"spec.resources.nodeSelector": {"gpu": "a b"}},
        "spec.resources.nodeSelector",
    ),
    InvalidCase(
        "metadata-label-value", J, {"metadata.labels": {"team": "ML Team"}}, "metadata.labels"
    ),
    InvalidCase(
        "gpu-resource-name-space",
        J,
        {"spec.resources.gpuResourceName": "nvidia gpu"},
        "spec.resources.gpuResourceName",
    ),
    InvalidCase(
        "toleration-key",
        J,
        {"spec.resources.tolerations": [{"key": "-gpu", "operator": "Exists"}]},
        "spec.resources.tolerations[0].key",
    ),
    InvalidCase(
        "toleration-effect",
        J,
        {"spec.resources.tolerations": [{"key": "gpu", "effect": "NoRun"}]},
        "spec.resources.tolerations[0].effect",
    ),
    InvalidCase(
        "toleration-exists-with-value",
        J,
        {"spec.resources.tolerations": [{"key": "gpu", "operator": "Exists", "value": "a"}]},
        "spec.resources.tolerations[0].value",
    ),
    InvalidCase(
        "toleration-without-key-equal",
        J,
        {"spec.resources.tolerations": [{"operator": "Equal", "value": "a"}]},
        "spec.resources.tolerations[0].operator",
    ),
    InvalidCase(
        "toleration-seconds-without-noexecute",
        J,
        {
            "spec.resources.tolerations": [
                {"key": "gpu", "effect": "NoSchedule", "tolerationSeconds": 60}
            ]
        },
        "spec.resources.tolerations[0].tolerationSeconds",
    ),
    # Quantities: parseable and not negative.
    InvalidCase("cpu-negative", J, {"spec.resources.cpu": "-1"}, "spec.resources.cpu"),
    InvalidCase("memory-gb-suffix", J, {"spec.resources.memory": "64GB"}, "spec.resources.memory"),
    InvalidCase("shm-negative", J, {"spec.resources.shmSize": "-8Gi"}, "spec.resources.shmSize"),
    InvalidCase(
        "ephemeral-storage-words",
        J,
        {"spec.resources.ephemeralStorage": "lots"},
        "spec.resources.ephemeralStorage",
    ),
    # Image references.
    InvalidCase("image-uppercase-repo", J, {"spec.image": "ghcr.io/Org/trainer:1.0"}, "spec.image"),
    InvalidCase("image-space", J, {"spec.image": "trainer latest"}, "spec.image"),
    InvalidCase("dataset-image-empty-tag", D, {"spec.image": "trainer:"}, "spec.image"),
    # Paths stay inside their volume.
    InvalidCase(
        "output-path-absolute", J, {"spec.output.pvc.path": "/abs/path"}, "spec.output.pvc.path"
    ),
    InvalidCase(
        "output-path-dotdot", J, {"spec.output.pvc.path": "../../tmp/run"}, "spec.output.pvc.path"
    ),
    InvalidCase(
        "model-path-dotdot",
        J,
        {
            "spec.model": {
                "name": "m",
                "source": "pvc",
                "pvc": {"claimName": "models", "path": "a/../.."},
            }
        },
        "spec.model.pvc.path",
    ),
    InvalidCase(
        "gguf-file-absolute",
        J,
        {
            "spec.model": {
                "name": "m",
                "source": "pvc",
                "pvc": {"claimName": "models"},
                "ggufFile": "/m.gguf",
            }
        },
        "spec.model.ggufFile",
    ),
    InvalidCase(
        "source-pvc-path-absolute",
        D,
        {"spec.source": {"pvc": {"claimName": "data", "path": "/etc/passwd"}}},
        "spec.source.pvc.path",
    ),
    InvalidCase(
        "storage-path-dotdot",
        D,
        {"spec.storage": {"claimName": "data", "path": "datasets/../../x"}},
        "spec.storage.path",
    ),
    # Chat templates.
    InvalidCase(
        "template-unclosed-expression",
        J,
        {"spec.model.chatTemplate": "{% for m in messages %}{{ m.content }"},
        "spec.model.chatTemplate",
    ),
    InvalidCase(
        "template-unclosed-block",
        J,
        {"spec.model.chatTemplate": "{% for m in messages %}{{ m.content }}{% endfor"},
        "spec.model.chatTemplate",
    ),
    InvalidCase(
        "template-unknown-name", J, {"spec.model.chatTemplate": "chatm1"}, "spec.model.chatTemplate"
    ),
    # Settings that cannot act.
    InvalidCase(
        "merge-adapter-with-full",
        J,
        {"spec.method": {"type": "full"}, "spec.output.mergeAdapter": True},
        "spec.output.mergeAdapter",
    ),
    InvalidCase(
        "fsdp-for-adapters",
        J,
        {"spec.method": {"type": "lora"}, "spec.training.parallelism": "fsdp"},
        "spec.training.parallelism",
    ),
    InvalidCase(
        "credentials-for-pvc-output",
        J,
        {"spec.output.credentialsSecretRef": {"name": "s3"}},
        "spec.output.credentialsSecretRef",
    ),
    InvalidCase(
        "revision-for-pvc-model",
        J,
        {"spec.model": {"name": "m", "source": "pvc", "pvc": {"claimName": "m"}, "revision": "v1"}},
        "spec.model.revision",
    ),
    InvalidCase(
        "max-eval-rows-without-eval-split",
        D,
        {"spec.split": {"evalFraction": 0, "maxEvalRows": 10}},
        "spec.split.maxEvalRows",
    ),
    # Mixtures and retention (issue 11).
    InvalidCase(
        "mixture-weight-zero",
        J,
        {"spec.dataset": DELETE, "spec.datasets": [{"name": "a", "weight": 0}]},
        "spec.datasets[0].weight",
    ),
    InvalidCase(
        "mixture-weight-negative",
        J,
        {"spec.dataset": DELETE, "spec.datasets": [{"name": "a"}, {"name": "b", "weight": -0.5}]},
        "spec.datasets[1].weight",
    ),
    InvalidCase(
        "dataset-and-datasets",
        J,
        {"spec.datasets": [{"name": "a", "weight": 1}]},
        "spec.datasets",
    ),
    InvalidCase(
        "mixture-duplicate-member",
        J,
        {"spec.dataset": DELETE, "spec.datasets": [{"name": "a"}, {"name": "b"}, {"name": "a"}]},
        "spec.datasets",
    ),
    InvalidCase("mixture-empty", J, {"spec.dataset": DELETE, "spec.datasets": []}, "spec.datasets"),
    InvalidCase(
        "mixture-member-bad-name",
        J,
        {"spec.dataset": DELETE, "spec.datasets": [{"name": "Chat_Data"}]},
        "spec.datasets[0].name",
    ),
    InvalidCase(
        "retention-without-name",
        J,
        {"spec.evaluation.retention": {"threshold": 0.2}},
        "spec.evaluation.retention.name",
    ),
    InvalidCase(
        "retention-trained-on",
        J,
        {"spec.evaluation.retention": {"name": "quickstart"}},
        "spec.evaluation.retention.name",
    ),
    InvalidCase(
        "retention-member-of-mixture",
        J,
        {
            "spec.dataset": DELETE,
            "spec.datasets": [{"name": "a"}, {"name": "general"}],
            "spec.evaluation.retention": {"name": "general"},
        },
        "spec.evaluation.retention.name",
    ),
    InvalidCase(
        "retention-threshold-zero",
        J,
        {"spec.evaluation.retention": {"name": "general", "threshold": 0}},
        "spec.evaluation.retention.threshold",
    ),
    InvalidCase(
        "mix-by-without-mixture", J, {"spec.training.mixBy": "tokens"}, "spec.training.mixBy"
    ),
    # Names that cannot make valid children: the multi-node Service must be a DNS-1035 label.
    InvalidCase(
        "multi-node-dotted-name",
        J,
        {"spec.resources": {"nodes": 2, "gpus": 1}},
        "metadata.name",
        name="mn.v1",
    ),
]
