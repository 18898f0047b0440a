"""Reading raw rows from a dataset source: a local file or folder, a URL, or the hub.

Remote files are downloaded into a work directory first, so Parquet can seek and
`validation.maxBytes` is enforced while the bytes arrive rather than after. Each row comes
with its 1-based number in the source, so an error can point the user at it; a row that
cannot be parsed is reported as such instead of ending the run.
"""

from __future__ import annotations

import gzip
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from kubesft.api.dataset import DataSource, HFSource
from kubesft_trainer.exit_codes import UserError
from kubesft_trainer.s3 import s3_filesystem, split_url

DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet")
CHUNK_BYTES = 1 << 20
HTTP_TIMEOUT_S = 60
_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class SourceRow:
    """One record as read: parsed JSON (any type) or, when unreadable, why."""

    number: int
    value: Any = None
    error: str | None = None


class SourceTooLarge(UserError):
    """The source exceeds `spec.validation.maxBytes`."""

    def __init__(self, what: str, max_bytes: int) -> None:
        super().__init__(f"{what} is larger than spec.validation.maxBytes ({max_bytes} bytes)")


def read_source(
    source: DataSource,
    *,
    workdir: Path,
    max_bytes: int | None = None,
    local_path: Path | None = None,
    label: str = "spec.source",
) -> Iterator[SourceRow]:
    """Rows of `source`; `local_path` (where the operator mounted it) overrides the spec."""
    if local_path is not None:
        key = source.config_map.key if source.config_map else None
        files = local_files(local_path, configmap_key=key)
    elif source.hf is not None:
        yield from _hub_rows(source.hf, workdir, max_bytes, label)
        return
    elif source.url is not None:
        files = [download(source.url.url, workdir, max_bytes, label)]
    else:
        kind = "pvc" if source.pvc is not None else "configMap"
        raise UserError(
            f"{label}.{kind} is read from a mounted volume: pass --source-path "
            "(the operator does this when it mounts the volume)"
        )
    total = sum(f.stat().st_size for f in files)
    if max_bytes is not None and total > max_bytes:
        raise SourceTooLarge(f"the source ({total} bytes)", max_bytes)
    yield from read_files(files)


def local_files(path: Path, configmap_key: str | None = None) -> list[Path]:
    """The data files at `path`: the file itself, or a folder's data files by name.

    Hidden entries are skipped: a mounted ConfigMap holds `..data` links next to its keys.
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"source path {path} does not exist")
    if configmap_key is not None and (path / configmap_key).is_file():
        return [path / configmap_key]
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
        and p.name.removesuffix(".gz").endswith(DATA_SUFFIXES)
    )
    if not files:
        raise UserError(f"source path {path} holds no .jsonl, .json or .parquet files")
    return files


def read_files(files: list[Path]) -> Iterator[SourceRow]:
    """Rows of several files as one source; numbering continues from file to file."""
    offset = 0
    for path in files:
        last = 0
        for row in read_file(path):
            last = row.number
            yield SourceRow(offset + row.number, row.value, row.error)
        offset += last


def read_file(path: Path) -> Iterator[SourceRow]:
    """Rows of one file; its content decides the format (Parquet, JSON array or JSONL)."""
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic == b"PAR1":
        yield from _parquet_rows(path)
        return
    opener = gzip.open if magic.startswith(_GZIP_MAGIC) else open
    with opener(path, "rb") as fh:
        start = fh.read(4096).lstrip(_BOM + b" \t\r\n")
        fh.seek(0)
        if start.startswith(b"["):
            yield from _json_array_rows(fh.read(), path.name)
        else:
            yield from _jsonl_rows(fh)


def _jsonl_rows(fh: Iterable[bytes]) -> Iterator[SourceRow]:
    # Row numbers are line numbers, so `sed -n 5p` shows row 5; blank lines are skipped.
    for number, raw in enumerate(fh, 1):
        line = raw.removeprefix(_BOM).strip() if number == 1 else raw.strip()
        if not line:
            continue
        try:
            yield SourceRow(number, json.loads(line.decode("utf-8")))
        except UnicodeDecodeError:
            yield SourceRow(number, error="is not valid UTF-8")
        except json.JSONDecodeError as err:
            yield SourceRow(number, error=f"is not valid JSON: {err.msg} at column {err.colno}")


def _json_array_rows(data: bytes, name: str) -> Iterator[SourceRow]:
    try:
        rows = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{name} starts like a JSON array but is not valid JSON: {err}") from None
    for number, value in enumerate(rows, 1):
        yield SourceRow(number, value)


def _parquet_rows(path: Path) -> Iterator[SourceRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=1024)
        number = 0
        for batch in batches:
            for value in batch.to_pylist():
                number += 1
                yield SourceRow(number, value)
    except pa.ArrowException as err:
        raise UserError(f"{path.name} is not a readable Parquet file: {err}") from None


def download(url: str, workdir: Path, max_bytes: int | None, label: str = "spec.source") -> Path:
    """Fetch an http(s) or s3 URL into `workdir`, stopping as soon as it exceeds max_bytes."""
    workdir.mkdir(parents=True, exist_ok=True)
    dest = workdir / (Path(urlsplit(url).path).name or "source")
    if url.startswith("s3://"):
        _download_s3(url, dest, max_bytes, label)
    else:
        _download_http(url, dest, max_bytes, label)
    return dest


def _download_http(url: str, dest: Path, max_bytes: int | None, label: str) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "kubesft-trainer"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            if max_bytes is not None and length and int(length) > max_bytes:
                raise SourceTooLarge(f"{redact(url)} ({length} bytes)", max_bytes)
            _copy_limited(response, dest, max_bytes, redact(url))
    except urllib.error.HTTPError as err:
        # 4xx means the URL or its credentials are wrong; 5xx, 408 and 429 may pass.
        if 400 <= err.code < 500 and err.code not in (408, 429):
            raise UserError(
                f"{label}.url: GET {redact(url)} returned HTTP {err.code} {err.reason}; "
                "check the URL and its credentials"
            ) from None
        raise


def _download_s3(url: str, dest: Path, max_bytes: int | None, label: str) -> None:
    fs = s3_filesystem(f"{label}.url")
    key = split_url(url)
    try:
        size = fs.size(key)
        if max_bytes is not None and size > max_bytes:
            raise SourceTooLarge(f"{url} ({size} bytes)", max_bytes)
        with fs.open(key, "rb") as src:
            _copy_limited(src, dest, max_bytes, url)
    except (FileNotFoundError, PermissionError) as err:
        raise UserError(
            f"{label}.url: cannot read {url}: {err or type(err).__name__}; check the bucket, "
            "the key and credentialsSecretRef"
        ) from None


def _copy_limited(src: IO[bytes], dest: Path, max_bytes: int | None, what: str) -> None:
    total = 0
    with dest.open("wb") as out:
        while chunk := src.read(CHUNK_BYTES):
            total += len(chunk)
            if max_bytes is not None and total > max_bytes:
                raise SourceTooLarge(what, max_bytes)
            out.write(chunk)


def _hub_rows(
    hf: HFSource, workdir: Path, max_bytes: int | None, label: str
) -> Iterator[SourceRow]:
    from datasets import load_dataset
    from datasets.exceptions import DatasetNotFoundError

    # The operator sets HF_TOKEN from tokenSecretRef; without a cache setting, keep the
    # download in the work dir (the image's home may be read-only).
    cache = None if os.environ.get("HF_DATASETS_CACHE") or os.environ.get("HF_HOME") else workdir
    try:
        dataset = load_dataset(
            hf.repo,
            name=hf.config,
            split=hf.split,
            revision=hf.revision,
            token=os.environ.get("HF_TOKEN") or None,
            cache_dir=str(cache) if cache else None,
        )
    except DatasetNotFoundError as err:
        raise UserError(
            f"{label}.hf.repo: {err} (check repo, revision and tokenSecretRef)"
        ) from None
    except ValueError as err:  # unknown split or config
        raise UserError(f"{label}.hf: {err}") from None
    size = dataset.data.nbytes  # in-memory Arrow size: close to the data's size on disk
    if max_bytes is not None and size > max_bytes:
        raise SourceTooLarge(f"hub dataset {hf.repo} ({size} bytes)", max_bytes)
    for number, value in enumerate(dataset, 1):
        yield SourceRow(number, value)


def redact(url: str) -> str:
    """The URL without user info or query, which may hold credentials (presigned URLs)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
