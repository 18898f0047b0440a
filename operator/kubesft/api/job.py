"""SFTJob: fine-tune a base model on an SFTDataset, with LoRA, QLoRA or full fine-tuning."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kubesft.api.base import (
    MAX_LIST,
    MAX_NAME,
    MAX_STRING,
    APIModel,
    PVCLocation,
    Rule,
    SecretKeyRef,
    SecretRef,
    cel_field,
    exactly_one,
)
from kubesft.api.chat_template import ChatTemplate
from kubesft.api.dataset import URL_PATTERN
from kubesft.api.formats import ImageReference, ObjectName, RelativePath
from kubesft.api.mixture import MAX_MEMBERS, MixBy, MixtureMember
from kubesft.api.resources import Resources
from kubesft.api.retention import Retention
from kubesft.api.tracking import Tracking

MethodType = Literal["lora", "qlora", "full"]
LossOn = Literal["assistant", "completion", "all"]
Precision = Literal["bf16", "fp16", "fp32"]
Scheduler = Literal["cosine", "linear", "constant", "constant_with_warmup"]
AttnImplementation = Literal["auto", "flash_attention_2", "sdpa", "eager"]
Parallelism = Literal["auto", "ddp", "fsdp"]

# Learning rates that work out of the box for each method (adapters tolerate larger steps).
DEFAULT_LEARNING_RATE: dict[str, float] = {"lora": 2e-4, "qlora": 2e-4, "full": 2e-5}


class ModelRef(APIModel):
    """The base model and how to load it."""

    rules = (
        Rule(
            cel=f"{cel_field('source', 'hf')} != 'pvc' || has(self.pvc)",
            message="model.pvc is required when model.source is pvc",
            check=lambda m: m.source != "pvc" or m.pvc is not None,
            field_path=".pvc",
        ),
        Rule(
            cel=f"{cel_field('source', 'hf')} != 'url' || has(self.url)",
            message="model.url is required when model.source is url",
            check=lambda m: m.source != "url" or m.url is not None,
            field_path=".url",
        ),
        # A setting that cannot act: only hub downloads take a revision.
        Rule(
            cel=f"!has(self.revision) || {cel_field('source', 'hf')} == 'hf'",
            message="model.revision applies only to source hf (a hub branch, tag or commit): "
            "remove it, or pin the version in model.pvc.path / model.url",
            check=lambda m: m.revision is None or m.source == "hf",
            field_path=".revision",
        ),
    )

    name: str = Field(min_length=1, max_length=MAX_NAME)
    """Hub repository id (e.g. `meta-llama/Llama-3.2-1B-Instruct`) or a display name."""
    source: Literal["hf", "pvc", "url"] = "hf"
    """Where the weights come from."""
    revision: str | None = Field(default=None, max_length=MAX_NAME)
    """Hub branch, tag or commit."""
    pvc: PVCLocation | None = None
    """Folder (or GGUF file) of the model on a PVC, for source pvc."""
    url: str | None = Field(default=None, pattern=URL_PATTERN, max_length=MAX_STRING)
    """Archive or folder URL, for source url."""
    gguf_file: RelativePath | None = None
    """Load (and dequantize) this GGUF file inside the model folder or repo (relative)."""
    token_secret_ref: SecretKeyRef | None = None
    """Secret key holding a hub token for gated models."""
    chat_template: ChatTemplate = "auto"
    """`auto` (the tokenizer's own, else chatml), `chatml`, `llama3` or inline Jinja."""
    trust_remote_code: bool = False
    """Allow model code from the repository; only for sources you trust."""


class DatasetRef(APIModel):
    """An SFTDataset in the same namespace; the job waits until it is Ready."""

    name: ObjectName


class LoraConfig(APIModel):
    """Low-rank adapter settings (used by lora and qlora)."""

    r: int = Field(default=16, gt=0, le=1024)
    """Adapter rank."""
    alpha: float = Field(default=32.0, gt=0)
    """Scaling numerator (scale = alpha / r)."""
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["all-linear"], min_length=1, max_length=MAX_LIST
    )
    """Module names to adapt; `all-linear` adapts every linear layer but the output head."""
    modules_to_save: list[str] = Field(default_factory=list, max_length=MAX_LIST)
    """Modules trained in full next to the adapters, e.g. `embed_tokens` for new tokens."""


class QLoraConfig(APIModel):
    """4-bit quantization of the frozen base (bitsandbytes)."""

    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    """Quantize the quantization constants too (saves ~0.4 bit per parameter)."""
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


class Method(APIModel):
    """How weights are trained."""

    rules = (
        Rule(
            cel=f"!has(self.qlora) || {cel_field('type', 'lora')} == 'qlora'",
            message="method.qlora is allowed only when method.type is qlora",
            check=lambda m: m.qlora is None or m.type == "qlora",
            field_path=".qlora",
        ),
        Rule(
            cel=f"!has(self.lora) || {cel_field('type', 'lora')} != 'full'",
            message="method.lora is not allowed when method.type is full",
            check=lambda m: not m.given("lora") or m.type != "full",
            field_path=".lora",
        ),
    )

    type: MethodType = "lora"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    qlora: QLoraConfig | None = None
    """Quantization settings; defaults apply when type is qlora and this is omitted."""

    @property
    def quantization(self) -> QLoraConfig | None:
        """The effective 4-bit settings, or None when the base is not quantized."""
        if self.type != "qlora":
            return None
        return self.qlora or QLoraConfig()


class EarlyStopping(APIModel):
    """Stop when eval loss stops improving."""

    patience: int = Field(default=3, ge=1)
    """Evaluations without improvement before stopping."""
    min_delta: float = Field(default=0.0, ge=0.0)
    """Smallest eval-loss decrease that counts as improvement."""


class Training(APIModel):
    """Optimization hyper-parameters."""

    rules = (
        Rule(
            cel="!(has(self.gradientAccumulation) && has(self.globalBatchTokens))",
            message="set training.gradientAccumulation or training.globalBatchTokens, not both",
            check=lambda t: (
                not (t.given("gradient_accumulation") and t.given("global_batch_tokens"))
            ),
            field_path=".globalBatchTokens",
        ),
    )

    epochs: float = Field(default=3.0, gt=0, le=1000)
    """Passes over the training split; ignored when maxSteps is set."""
    max_steps: int | None = Field(default=None, gt=0)
    """Optimizer steps to run; overrides epochs."""
    learning_rate: float | None = Field(default=None, gt=0, le=1)
    """Peak learning rate; defaults to 2e-4 for lora/qlora and 2e-5 for full."""
    scheduler: Scheduler = "cosine"
    warmup_ratio: float = Field(default=0.03, ge=0.0, le=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    """Gradient clipping threshold."""
    optimizer: Literal["adamw", "adamw_8bit", "sgd"] = "adamw"
    micro_batch_size: int = Field(default=1, ge=1, le=1024)
    """Packed sequences (or examples, without packing) per GPU per forward pass."""
    gradient_accumulation: int = Field(default=8, ge=1, le=4096)
    """Micro-batches per optimizer step."""
    global_batch_tokens: int | None = Field(default=None, gt=0)
    """Target tokens per optimizer step over all GPUs; sets gradientAccumulation."""
    max_seq_length: int = Field(default=2048, ge=16, le=262144)
    packing: bool = True
    """Pack short examples into full sequences without cross-example attention."""
    loss_on: LossOn = "assistant"
    """Tokens that are graded: assistant turns, the final completion, or all tokens."""
    neftune_alpha: float | None = Field(default=None, gt=0, le=100)
    """NEFTune noise scale (5 is typical); off when unset."""
    gradient_checkpointing: bool = True
    precision: Precision = "bf16"
    attn_implementation: AttnImplementation = "auto"
    """auto picks flash_attention_2 when installed, else sdpa."""
    parallelism: Parallelism = "auto"
    """Over several GPUs: fsdp shards weights, gradients and optimizer states (full only);
    ddp keeps a replica per GPU; auto is fsdp for method full on gpus x nodes > 1, else ddp."""
    seed: int = Field(default=42, ge=0)
    """Seeds weight initialization, shuffling, dropout and the mixture's draw."""
    mix_by: MixBy = "examples"
    """What the weights of spec.datasets share out: examples or tokens."""
    early_stopping: EarlyStopping | None = None
    hang_timeout_seconds: int = Field(default=1800, ge=0, le=604800)
    """End a run (reason Hung, retried from the last checkpoint) when no optimizer step,
    evaluation or checkpoint finishes for this long: a rank stuck in a collective or the data
    loader. Count the slowest of these (a long evaluation) in; 0 turns the watchdog off."""


class Evaluation(APIModel):
    """When and how the model is evaluated."""

    every_steps: int | None = Field(default=None, gt=0)
    """Evaluate every N optimizer steps (and always at the end); default: with checkpoints."""
    samples: int = Field(default=4, ge=0, le=64)
    """Eval prompts answered greedily before and after training."""
    max_new_tokens: int = Field(default=128, ge=1, le=8192)
    max_examples: int | None = Field(default=None, gt=0)
    """Cap on eval examples per evaluation: the first N of the eval split, of each member's
    eval split for spec.datasets, and of the retention set."""
    overfitting_patience: int = Field(default=3, ge=1, le=100)
    """Consecutive evaluations whose eval loss rose, while the train loss fell, that set the
    Overfitting condition."""
    retention: Retention | None = None
    """An SFTDataset scored before training and at every evaluation, never trained on: the
    Forgetting condition and status.retention."""


class Checkpoints(APIModel):
    """How often to checkpoint and how many to keep."""

    every_steps: int = Field(default=500, gt=0)
    keep: int = Field(default=3, ge=1, le=100)
    """Most recent checkpoints kept."""
    keep_best: bool = True
    """Also keep the checkpoint with the lowest eval loss (set explicitly, it is refused
    when the dataset's eval split is empty)."""


class Output(APIModel):
    """Where the adapter or model is written."""

    rules = (
        exactly_one("pvc", "url"),
        Rule(
            cel="!has(self.credentialsSecretRef) || has(self.url)",
            message="output.credentialsSecretRef applies only to output.url (S3): remove it",
            check=lambda o: o.credentials_secret_ref is None or o.url is not None,
            field_path=".credentialsSecretRef",
        ),
    )

    pvc: PVCLocation | None = None
    url: str | None = Field(default=None, pattern=r"^s3://\S+$", max_length=MAX_STRING)
    """`s3://bucket/prefix`: checked for writes at start; each checkpoint is uploaded when
    complete (a retried pod resumes from it) and the results before the job succeeds."""
    credentials_secret_ref: SecretRef | None = None
    """Secret with AWS credentials for url."""
    merge_adapter: bool = False
    """Also write the base model with the adapter merged in (lora/qlora)."""


class Retry(APIModel):
    """Restarts after retryable failures; each resumes from the latest checkpoint."""

    max_restarts: int = Field(default=3, ge=0, le=100)
    termination_grace_period_seconds: int = Field(default=120, ge=1, le=86400)
    """Time a trainer pod gets after SIGTERM (node drain, preemption, spot reclaim) to finish
    its optimizer step and write a checkpoint before SIGKILL. Longer saves more work on big
    models (a checkpoint is the model's and optimizer's size), but delays drains, and a spot
    reclaim kills at the provider's notice (30 s on GCP, 2 min on AWS) whatever is set.
    A preempted pod does not count against maxRestarts."""


class SFTJobSpec(APIModel):
    """Desired state of an SFTJob."""

    rules = (
        Rule(
            cel="has(self.dataset) || has(self.datasets)",
            message="spec.dataset is required: the SFTDataset to train on (or spec.datasets, "
            "a weighted mixture of several)",
            check=lambda s: s.dataset is not None or s.datasets is not None,
            field_path=".dataset",
        ),
        Rule(
            cel="!(has(self.dataset) && has(self.datasets))",
            message="set spec.dataset or spec.datasets, not both: a single dataset is "
            "spec.datasets with one member",
            check=lambda s: s.dataset is None or s.datasets is None,
            field_path=".datasets",
        ),
        Rule(
            cel="!has(self.datasets) || "
            "self.datasets.all(a, self.datasets.exists_one(b, b.name == a.name))",
            message="spec.datasets names an SFTDataset more than once: give each member once, "
            "with the sum of the weights",
            check=lambda s: (
                s.datasets is None or len({m.name for m in s.datasets}) == len(s.datasets)
            ),
            field_path=".datasets",
        ),
        Rule(
            cel="!has(self.evaluation) || !has(self.evaluation.retention) || "
            "(has(self.dataset) ? self.dataset.name != self.evaluation.retention.name : "
            "!has(self.datasets) || "
            "!self.datasets.exists(m, m.name == self.evaluation.retention.name))",
            message="spec.evaluation.retention names a dataset that is trained on: retention "
            "measures forgetting on data the job does not train on; name another SFTDataset",
            check=lambda s: (
                s.evaluation.retention is None
                or s.evaluation.retention.name not in s.training_dataset_names()
            ),
            field_path=".evaluation.retention.name",
        ),
        Rule(
            cel="!has(self.training) || !has(self.training.mixBy) || has(self.datasets)",
            message="training.mixBy applies only to a mixture (spec.datasets): remove it",
            check=lambda s: not s.training.given("mix_by") or s.datasets is not None,
            field_path=".training.mixBy",
        ),
        Rule(
            cel="!has(self.resources) || "
            f"{cel_field('resources.nodes', 1)} == 1 || has(self.output.pvc)",
            message="resources.nodes > 1 needs output.pvc (a ReadWriteMany claim): the ranks "
            "of every node write their checkpoint shards into one output directory",
            check=lambda s: s.resources.nodes == 1 or s.output.pvc is not None,
            field_path=".output",
        ),
        Rule(
            cel="!has(self.training) || !has(self.training.parallelism) || "
            "self.training.parallelism != 'fsdp' || "
            "(has(self.method) && has(self.method.type) && self.method.type == 'full')",
            message="training.parallelism fsdp shards full fine-tuning only: set method.type "
            "full, or parallelism auto (lora and qlora run data-parallel)",
            check=lambda s: s.training.parallelism != "fsdp" or s.method.type == "full",
            field_path=".training.parallelism",
        ),
        Rule(
            cel="!has(self.output.mergeAdapter) || !self.output.mergeAdapter || "
            "!has(self.method) || !has(self.method.type) || self.method.type != 'full'",
            message="output.mergeAdapter needs an adapter to merge: method.type full writes the "
            "whole model already; remove mergeAdapter",
            check=lambda s: not (s.output.merge_adapter and s.method.type == "full"),
            field_path=".output.mergeAdapter",
        ),
    )

    model: ModelRef
    dataset: DatasetRef | None = None
    """The SFTDataset to train on; or spec.datasets, a weighted mixture."""
    datasets: list[MixtureMember] | None = Field(default=None, min_length=1, max_length=MAX_MEMBERS)
    """Several SFTDatasets mixed with weights (a text member is replay); or spec.dataset."""
    method: Method = Field(default_factory=Method)
    training: Training = Field(default_factory=Training)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    checkpoints: Checkpoints = Field(default_factory=Checkpoints)
    output: Output
    resources: Resources = Field(default_factory=Resources)
    tracking: Tracking = Field(default_factory=Tracking)
    """Experiment trackers (MLflow) besides the TensorBoard files every run writes."""
    image: ImageReference | None = None
    """Trainer image; defaults to the operator's configured image."""
    suspend: bool = False
    """Hold (or pause) the job; drives the trainer Job's suspend."""
    retry: Retry = Field(default_factory=Retry)
    active_deadline_seconds: int | None = Field(default=None, gt=0)
    """Fail the job when it runs longer than this."""
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    """Delete the trainer Job, pods and ConfigMap this long after finishing; the SFTJob stays."""

    @model_validator(mode="after")
    def _default_learning_rate(self) -> SFTJobSpec:
        if self.training.learning_rate is None:
            self.training.learning_rate = DEFAULT_LEARNING_RATE[self.method.type]
        return self

    def mixture(self) -> list[MixtureMember]:
        """The training datasets as a mixture: spec.datasets, or spec.dataset with weight 1."""
        if self.datasets is not None:
            return list(self.datasets)
        assert self.dataset is not None  # exactly one of the two (a rule above)
        return [MixtureMember(name=self.dataset.name)]

    def training_dataset_names(self) -> list[str]:
        """Names of the SFTDatasets trained on, in spec order."""
        if self.datasets is not None:
            return [m.name for m in self.datasets]
        return [self.dataset.name] if self.dataset is not None else []

    def dataset_names(self) -> list[str]:
        """Every SFTDataset the job reads (members, then the retention set); it waits for all."""
        retention = self.evaluation.retention
        return self.training_dataset_names() + ([retention.name] if retention else [])

    @property
    def learning_rate(self) -> float:
        """The effective peak learning rate (set by the validator above)."""
        assert self.training.learning_rate is not None
        return self.training.learning_rate


# Spec fields a started job may still change (camelCase): suspend drives the trainer Job's
# suspend; the deadline and the TTL are copied onto the trainer Job, where both are
# mutable, until the job finishes. Every other spec field is baked into the trainer's
# ConfigMap or pod template and is fixed from status.startTime on (a CEL transition rule
# per field, generated in kubesft.crd), so a field added later is fixed by default.
MUTABLE_AFTER_START = ("suspend", "activeDeadlineSeconds", "ttlSecondsAfterFinished")
MUTABLE_UNTIL_FINISHED = ("activeDeadlineSeconds", "ttlSecondsAfterFinished")


def immutable_after_start() -> tuple[str, ...]:
    """camelCase names of the spec fields fixed once the job started."""
    fields = (f.alias or name for name, f in SFTJobSpec.model_fields.items())
    return tuple(f for f in fields if f not in MUTABLE_AFTER_START)
