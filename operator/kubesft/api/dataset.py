"""SFTDataset: where instruction data lives, its format, and how to validate and split it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kubesft.api.base import (
    MAX_LIST,
    MAX_NAME,
    MAX_STRING,
    APIModel,
    Condition,
    PVCLocation,
    Rule,
    SecretKeyRef,
    SecretRef,
    StatusModel,
    cel_field,
    exactly_one,
)
from kubesft.api.formats import ConfigMapKey, ImageReference, ObjectName

DatasetFormat = Literal["auto", "messages", "prompt-completion", "text"]
DatasetPhase = Literal["Pending", "Validating", "Ready", "Failed"]
AuditAction = Literal["warn", "drop", "fail"]
"""What the data audit does with flagged examples: keep and report them, drop them, or fail
the dataset."""

URL_PATTERN = r"^(https?|s3)://\S+$"


class HFSource(APIModel):
    """A dataset on a Hugging Face hub (or a mirror set by HF_ENDPOINT)."""

    repo: str = Field(min_length=1, max_length=MAX_NAME)
    """Dataset repository id, e.g. `HuggingFaceH4/no_robots`."""
    revision: str | None = Field(default=None, max_length=MAX_NAME)
    """Branch, tag or commit; pin a commit for reproducible runs."""
    split: str = Field(default="train", min_length=1, max_length=MAX_NAME)
    """Split to read."""
    config: str | None = Field(default=None, max_length=MAX_NAME)
    """Dataset configuration (subset) name."""
    token_secret_ref: SecretKeyRef | None = None
    """Secret key holding a hub token for gated or private datasets."""


class URLSource(APIModel):
    """A JSONL/JSON/Parquet file behind an http(s) or s3 URL."""

    url: str = Field(pattern=URL_PATTERN, max_length=MAX_STRING)
    """`https://…`, `http://…` or `s3://bucket/key`."""
    credentials_secret_ref: SecretRef | None = None
    """Secret with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and optionally AWS_ENDPOINT_URL)."""


class ConfigMapSource(APIModel):
    """Small inline JSONL data in a ConfigMap, handy for quickstarts and tests."""

    name: ObjectName
    """Name of the ConfigMap in the same namespace."""
    key: ConfigMapKey = "data.jsonl"
    """Key holding the JSONL text."""


class DataSource(APIModel):
    """Exactly one place to read rows from."""

    rules = (exactly_one("hf", "url", "pvc", "configMap"),)

    hf: HFSource | None = None
    """A hub dataset."""
    url: URLSource | None = None
    """A file behind a URL."""
    pvc: PVCLocation | None = None
    """A file or folder of JSONL/JSON/Parquet files on a PersistentVolumeClaim."""
    config_map: ConfigMapSource | None = None
    """Inline JSONL in a ConfigMap."""


class ColumnMapping(APIModel):
    """Maps other schemas onto kubesft's formats (alpaca, sharegpt, custom)."""

    messages: str | None = Field(default=None, max_length=MAX_NAME)
    """Column with a list of turns, e.g. `conversations` for sharegpt."""
    role: str = Field(default="role", min_length=1, max_length=MAX_NAME)
    """Key of the speaker inside a turn, e.g. `from` for sharegpt."""
    content: str = Field(default="content", min_length=1, max_length=MAX_NAME)
    """Key of the text inside a turn, e.g. `value` for sharegpt."""
    role_map: dict[str, str] = Field(default_factory=dict, max_length=MAX_LIST)
    """Speaker names to roles; sharegpt's human/gpt/system/tool are known already."""
    prompt: list[str] = Field(default_factory=list, max_length=8)
    """Columns joined (blank line between) into the prompt, e.g. `[instruction, input]`."""
    completion: str | None = Field(default=None, max_length=MAX_NAME)
    """Column with the response, e.g. `output` for alpaca."""
    system: str | None = Field(default=None, max_length=MAX_NAME)
    """Column with a system prompt."""
    text: str | None = Field(default=None, max_length=MAX_NAME)
    """Column with plain text (format text)."""


class Split(APIModel):
    """How the eval split is made: a random fraction, or a separate source."""

    rules = (
        Rule(
            cel="!has(self.maxEvalRows) || has(self.evalSource) || "
            f"{cel_field('evalFraction', 0.05)} > 0.0",
            message="split.maxEvalRows caps an eval split, but evalFraction is 0 and there is no "
            "evalSource: set evalFraction > 0 or remove maxEvalRows",
            check=lambda s: (
                s.max_eval_rows is None or s.eval_source is not None or s.eval_fraction > 0
            ),
            field_path=".maxEvalRows",
        ),
    )

    eval_fraction: float = Field(default=0.05, ge=0.0, lt=1.0)
    """Share of rows held out for evaluation; ignored when evalSource is set."""
    seed: int = Field(default=42, ge=0)
    """Seed of the train/eval shuffle."""
    eval_source: DataSource | None = None
    """A separate source for the eval split."""
    max_eval_rows: int | None = Field(default=None, gt=0)
    """Cap on eval rows, to keep evaluation cheap."""


class Validation(APIModel):
    """What counts as acceptable data."""

    max_invalid_rows: int = Field(default=0, ge=0)
    """Invalid rows tolerated (they are dropped); one more fails the dataset."""
    min_examples: int = Field(default=1, ge=1)
    """Fewest usable training examples after validation and dedupe."""
    dedupe: bool = True
    """Drop exact duplicates (after normalization)."""
    max_bytes: int | None = Field(default=None, gt=0)
    """Refuse sources larger than this many bytes."""
    near_duplicates: AuditAction = "warn"
    """Examples equal to an earlier one up to whitespace and case (the later ones are
    flagged): warn keeps and reports them, drop removes them, fail rejects the dataset."""
    contradictions: AuditAction = "warn"
    """Examples whose prompt (up to whitespace and case) also appears with a different answer;
    drop removes every example of such a prompt, since neither answer is known to be right."""
    short_answers: AuditAction = "warn"
    """Examples whose final answer has fewer than minAnswerWords words."""
    min_answer_words: int = Field(default=2, ge=1)
    """Words an answer needs not to count as short; 2 flags empty and one-word answers."""
    length_outliers: AuditAction = "warn"
    """Examples whose length is an outlier (modified z-score of log length above
    maxLengthScore), too short or too long."""
    max_length_score: float = Field(default=3.5, gt=0)
    """Modified z-score beyond which a length is an outlier; 3.5 is Iglewicz and Hoaglin's
    recommendation."""


class SFTDatasetSpec(APIModel):
    """Desired state of an SFTDataset."""

    source: DataSource
    """Where the rows come from."""
    format: DatasetFormat = "auto"
    """Row shape; auto detects messages, prompt/completion or text per dataset."""
    columns: ColumnMapping | None = None
    """Column mapping for other schemas (alpaca, sharegpt, custom)."""
    split: Split = Field(default_factory=Split)
    """Train/eval split."""
    validation: Validation = Field(default_factory=Validation)
    """Validation limits."""
    storage: PVCLocation | None = None
    """Where prepared data is written; defaults to the operator's data claim, path
    `datasets/<name>`. Trainer pods mount it read-only, so multi-node jobs need RWX."""
    image: ImageReference | None = None
    """Image for the preparation Job; defaults to the operator's trainer image."""


class RowError(StatusModel):
    """One invalid row: where and why."""

    row: int
    """1-based row number in the source."""
    field: str = ""
    """Field path inside the row, e.g. `messages[2].role`."""
    message: str = ""


class AuditFinding(StatusModel):
    """Examples the data audit flagged in one category."""

    count: int = 0
    """Examples flagged."""
    rows: list[int] = Field(default_factory=list)
    """The first few flagged examples' 1-based row numbers in the source."""
    action: str = "warn"
    """What was done with them: warn, drop or fail (spec.validation)."""


class DataAudit(StatusModel):
    """Data-quality findings of the preparation step, over the training source's examples
    after validation and exact dedupe."""

    near_duplicates: AuditFinding = Field(default_factory=AuditFinding)
    """Examples equal to an earlier one up to whitespace and case."""
    contradictions: AuditFinding = Field(default_factory=AuditFinding)
    """Examples whose prompt also appears with a different answer."""
    short_answers: AuditFinding = Field(default_factory=AuditFinding)
    """Examples whose final answer is empty or shorter than minAnswerWords words."""
    length_outliers: AuditFinding = Field(default_factory=AuditFinding)
    """Examples whose length (characters) lies outside minChars..maxChars."""
    min_chars: int | None = None
    """Shortest length that is not an outlier; unset when too few examples to judge."""
    max_chars: int | None = None
    """Longest length that is not an outlier; unset when too few examples to judge."""
    dropped: int = 0
    """Examples removed by the audit (categories set to drop)."""


class DatasetStats(StatusModel):
    """Counts and histograms from the preparation step."""

    rows: int = 0
    """Rows read from the source."""
    valid: int = 0
    invalid: int = 0
    duplicates_removed: int = 0
    train: int = 0
    eval: int = 0
    format: str | None = None
    """Detected or configured format."""
    roles: dict[str, int] = Field(default_factory=dict)
    """Turns per role."""
    length_histogram: dict[str, int] = Field(default_factory=dict)
    """Examples per character-length bucket (bucket upper bound → count)."""
    ignored_columns: dict[str, int] = Field(default_factory=dict)
    """Columns (and turn keys, as `messages[].key`) kubesft does not use → rows holding them."""
    audit: DataAudit | None = None
    """Near-duplicates, contradictions, short answers and length outliers."""


class SFTDatasetStatus(StatusModel):
    """Observed state of an SFTDataset."""

    phase: DatasetPhase = "Pending"
    conditions: list[Condition] = Field(default_factory=list)
    stats: DatasetStats | None = None
    errors: list[RowError] = Field(default_factory=list)
    """The first invalid rows."""
    fingerprint: str | None = None
    """sha256 of the normalized data; changes when the data does."""
    location: str | None = None
    """Where the prepared data lives (pvc://claim/path or a URL)."""
    observed_generation: int | None = None
