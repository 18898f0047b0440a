"""Which run an output directory and its checkpoints belong to.

`<output>/run.json` names the SFTJob (namespace, name, uid) that claimed the directory and
the fingerprints of its config and dataset; every checkpoint carries a copy. A pod resumes
only checkpoints of its own run, and an output directory that another run has claimed is
refused (exit INVALID, reason `OutputInUse`) before the model loads.

Refusing, rather than writing each run to a fresh sub-directory, keeps `spec.output` the
place where the model is: serving pods, pipelines and `status.output.path` name it, and a
per-run sub-directory would move it on every re-create. Two runs writing one directory
would also overwrite each other's `model/` and prune each other's checkpoints.

A run is its SFTJob's uid: every retry, resume after suspend and restart of the same
object is the same run. Without a uid (the trainer run by hand, outside the operator) a run
is identified by its config and dataset fingerprints, so rerunning the same command
continues it. The config fingerprint covers the spec fields fixed once a job starts
(`immutable_after_start()`), so a suspend or a new deadline keeps a run resumable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubesft.api.job import SFTJobSpec, immutable_after_start
from kubesft.api.report import TrainerReason
from kubesft.api.runtime import TrainerConfig
from kubesft_trainer.exit_codes import UserError

RUN_FILE = "run.json"


class OutputInUse(UserError):
    """The output location holds another run's checkpoints or results."""

    reason = TrainerReason.OUTPUT_IN_USE


@dataclass(frozen=True)
class RunIdentity:
    """One run: the SFTJob object (uid) and what it trains (fingerprints)."""

    uid: str
    namespace: str
    job_name: str
    config: str
    """sha256 of the spec fields fixed at start (`immutable_after_start()`), hex."""
    dataset: str | None
    """The prepared dataset's fingerprint, when the operator passed one."""

    @classmethod
    def of(cls, config: TrainerConfig) -> RunIdentity:
        runtime = config.runtime
        return cls(
            uid=runtime.job_uid,
            namespace=runtime.namespace,
            job_name=runtime.job_name,
            config=config_fingerprint(config.spec),
            dataset=runtime.dataset_fingerprint,
        )

    def document(self) -> dict[str, Any]:
        """The `run.json` contents, with when it was written."""
        return {
            "uid": self.uid,
            "namespace": self.namespace,
            "jobName": self.job_name,
            "configFingerprint": self.config,
            "datasetFingerprint": self.dataset,
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def same_run(self, record: dict[str, Any]) -> bool:
        """Same object (uid), or, both without a uid, the same config and dataset."""
        if self.uid or record.get("uid"):
            return bool(self.uid) and record.get("uid") == self.uid
        return (
            record.get("configFingerprint") == self.config
            and record.get("datasetFingerprint") == self.dataset
        )


def config_fingerprint(spec: SFTJobSpec) -> str:
    """sha256 (hex) of the canonical JSON of the spec fields a started job may not change."""
    fixed = set(immutable_after_start())
    doc = {k: v for k, v in spec.model_dump(by_alias=True, mode="json").items() if k in fixed}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def output_label(spec: SFTJobSpec) -> str:
    """The output location as the spec names it: `spec.output.pvc pvc://claim/path`."""
    out = spec.output
    if out.pvc is not None:
        return f"spec.output.pvc {out.pvc.uri()}"
    return f"spec.output.url {out.url}"


def describe(record: dict[str, Any]) -> str:
    """`SFTJob default/quickstart (uid 1f2e…, started 2026-…)`, or what is known of it."""
    name = record.get("jobName")
    who = f"SFTJob {record.get('namespace')}/{name}" if name else "another run"
    details = [f"uid {record['uid']}"] if record.get("uid") else []
    if record.get("createdAt"):
        details.append(f"started {record['createdAt']}")
    return who + (f" ({', '.join(details)})" if details else "")


def parse_record(text: str) -> dict[str, Any]:
    """A `run.json` document; an unreadable one counts as another run's."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


def read_record(directory: Path) -> dict[str, Any] | None:
    """`directory/run.json`, or None when there is none."""
    path = Path(directory) / RUN_FILE
    return parse_record(path.read_text(encoding="utf-8")) if path.is_file() else None


def require_own(
    run: RunIdentity, record: dict[str, Any] | None, *, where: str, has_outputs: bool
) -> None:
    """Raise OutputInUse unless `where` is free or holds this run's record.

    `record` is what `where` says about its run (None: no run.json); `has_outputs` whether
    it holds checkpoints (a directory of an older kubesft has those without a record).
    """
    if record is None and not has_outputs:
        return
    if record is not None and run.same_run(record):
        if record.get("datasetFingerprint") != run.dataset:
            raise OutputInUse(
                f"{where}: this run started on dataset fingerprint "
                f"{record.get('datasetFingerprint')}, but its SFTDataset is now {run.dataset}; "
                "resuming would continue on other data. Re-create the SFTJob with a new "
                "spec.output"
            )
        return
    other = describe(record) if record else "a run of an older kubesft (no run.json)"
    raise OutputInUse(
        f"{where} already holds checkpoints or results of {other}; this run would resume "
        "from or overwrite them. Give this SFTJob its own output (a new spec.output.pvc.path "
        "or spec.output.url), or delete that directory to reuse it"
    )


def claim(directory: Path, run: RunIdentity, *, where: str, has_outputs: bool) -> None:
    """Check that `directory` is free or this run's, then record this run in it."""
    directory = Path(directory)
    record = read_record(directory)
    require_own(run, record, where=where, has_outputs=has_outputs)
    if record is None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{RUN_FILE}.tmp"
        tmp.write_text(json.dumps(run.document(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, directory / RUN_FILE)


def stamp(output_dir: Path, checkpoint_dir: Path) -> None:
    """Copy the run record into a checkpoint being written (before its COMPLETE)."""
    source = Path(output_dir) / RUN_FILE
    if source.is_file():
        shutil.copyfile(source, Path(checkpoint_dir) / RUN_FILE)


def require_own_checkpoint(run: RunIdentity, checkpoint_dir: Path, *, where: str) -> None:
    """Refuse to resume a checkpoint another run wrote (or one without a record)."""
    name = Path(checkpoint_dir).name
    require_own(run, read_record(checkpoint_dir) or {}, where=f"{where} ({name})", has_outputs=True)
