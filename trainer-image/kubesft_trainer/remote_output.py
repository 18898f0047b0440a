"""Mirror the output directory to `spec.output.url` (s3://…), and resume from it.

With an object-store output the trainer writes to local scratch, an emptyDir that dies
with its pod. So the bucket is checked for writes before any weights load; every
checkpoint is uploaded as soon as it is complete, `COMPLETE` last, so a half-uploaded
checkpoint is never resumed (pruned ones are deleted there, `COMPLETE` first); a new pod
(a Job retry) downloads the latest complete checkpoint with metrics.jsonl and
samples_before.json before resuming (only checkpoints of its own run: `run.json` at the
prefix names the run, see `run_identity`); and the results (model/, merged/, eval.json, …) are
uploaded before the run reports Succeeded, whose status then names their s3:// paths.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubesft.api.job import SFTJobSpec
from kubesft_trainer.checkpoint import CHECKPOINTS, COMPLETE, STEP_DIR, list_checkpoints
from kubesft_trainer.exit_codes import UserError
from kubesft_trainer.run_identity import RUN_FILE, RunIdentity, parse_record, require_own
from kubesft_trainer.s3 import s3_filesystem, split_url

LABEL = "spec.output.url"
RESUME_FILES = ("metrics.jsonl", "samples_before.json")
"""Besides the checkpoint, what a resumed run reads from its output directory."""
WRITE_PROBE = ".kubesft-write-check"


@dataclass(frozen=True)
class RemoteOutput:
    """The output directory's mirror at `url`."""

    url: str
    fs: Any

    @classmethod
    def for_spec(cls, spec: SFTJobSpec) -> RemoteOutput | None:
        if not spec.output.url:
            return None
        return cls(spec.output.url.rstrip("/"), s3_filesystem(LABEL))

    def _key(self, relative: str = "") -> str:
        base = split_url(self.url)
        return f"{base}/{relative}" if relative else base

    def url_of(self, local: Path, output_dir: Path) -> str:
        """The s3:// URL that mirrors `local`, a path inside `output_dir`."""
        return f"{self.url}/{local.relative_to(output_dir).as_posix()}"

    def check_writable(self) -> None:
        """Write and delete a small object, so bad credentials fail before hours of training."""
        with self._errors("write to"):
            self.fs.pipe(self._key(WRITE_PROBE), b"kubesft\n")
            self.fs.rm(self._key(WRITE_PROBE))

    def upload_checkpoint(self, path: Path, output_dir: Path) -> None:
        """Upload a complete `checkpoints/step-N`, COMPLETE last; prune what is gone locally.

        The RESUME_FILES go up before COMPLETE too: whenever the bucket shows a complete
        checkpoint, its metrics.jsonl holds every step up to it.
        """
        with self._errors("upload a checkpoint to"):
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != COMPLETE)
            self._put(files, output_dir)
            self._put([output_dir / name for name in RESUME_FILES], output_dir)
            self._put([path / COMPLETE], output_dir)
            self._prune(output_dir)

    def upload_resume_files(self, output_dir: Path) -> None:
        """metrics.jsonl and samples_before.json again, once the checkpoint is recorded."""
        with self._errors("upload to"):
            self._put([output_dir / name for name in RESUME_FILES], output_dir)

    def upload_results(self, output_dir: Path) -> None:
        """Everything in the output directory but checkpoints (already mirrored)."""
        with self._errors("upload results to"):
            self._put(_result_files(output_dir), output_dir)

    def claim(self, run: RunIdentity) -> None:
        """Refuse a prefix holding another run's checkpoints (OutputInUse); else record this run.

        Checked before `restore`, so a new run never downloads another run's checkpoint.
        """
        key = self._key(RUN_FILE)
        with self._errors("read"):
            try:
                self.fs.invalidate_cache()  # another pod may have written since this one listed
                record: dict[str, Any] | None = parse_record(self.fs.cat(key).decode())
            except FileNotFoundError:
                record = None
            require_own(run, record, where=f"{LABEL} {self.url}", has_outputs=bool(
                record is None and self._complete_steps()))  # fmt: skip
            if record is None:
                self.fs.pipe(key, json.dumps(run.document(), indent=2).encode() + b"\n")

    def restore(self, output_dir: Path) -> int | None:
        """Download the latest complete remote checkpoint (and RESUME_FILES); its step."""
        with self._errors("read"):
            if list_checkpoints(output_dir):  # this pod's scratch survived: resume from it
                return None
            steps = self._complete_steps()
            if not steps:
                return None
            local = output_dir / CHECKPOINTS
            step = max(steps)
            tmp, final = local / f".tmp-step-{step}", local / f"step-{step}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            remote = self._key(f"{CHECKPOINTS}/step-{step}")
            for key in self.fs.find(remote):
                relative = key.removeprefix(remote + "/")
                if relative != COMPLETE:
                    (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
                    self.fs.get(key, str(tmp / relative))
            self.fs.get(f"{remote}/{COMPLETE}", str(tmp / COMPLETE))
            tmp.rename(final)
            for name in (*RESUME_FILES, RUN_FILE):  # run.json: the scratch is this run's
                if self.fs.exists(self._key(name)):
                    self.fs.get(self._key(name), str(output_dir / name))
            return step

    def _complete_steps(self) -> list[int]:
        root = self._key(CHECKPOINTS)
        steps = []
        for key in self.fs.glob(f"{root}/step-*/{COMPLETE}"):
            match = STEP_DIR.match(key.rsplit("/", 2)[-2])
            if match:
                steps.append(int(match[1]))
        return steps

    def _prune(self, output_dir: Path) -> None:
        local = {p.name for p in (output_dir / CHECKPOINTS).iterdir()}
        for step in self._complete_steps():
            name = f"step-{step}"
            if name not in local:
                remote = self._key(f"{CHECKPOINTS}/{name}")
                self.fs.rm(f"{remote}/{COMPLETE}")  # first: never resume a half-deleted one
                self.fs.rm(remote, recursive=True)

    def _put(self, files: Iterable[Path], output_dir: Path) -> None:
        for path in files:
            if path.is_file():
                relative = path.relative_to(output_dir).as_posix()
                self.fs.put_file(str(path), self._key(relative))

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Refusals no retry can fix (no bucket, no access) become UserErrors naming the field."""
        try:
            yield
        except (FileNotFoundError, PermissionError) as err:
            detail = str(err) or type(err).__name__
            raise UserError(
                f"{LABEL}: cannot {doing} {self.url}: {detail}; check that the bucket exists "
                "and that spec.output.credentialsSecretRef may write to it"
            ) from None


def _result_files(output_dir: Path) -> Iterator[Path]:
    for path in sorted(output_dir.rglob("*")):
        relative = path.relative_to(output_dir)
        if path.is_file() and relative.parts[0] != CHECKPOINTS:
            yield path
