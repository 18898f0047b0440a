"""The SFTDataset preparation step: sources, limits, split, outputs and the command line."""

from __future__ import annotations

import gzip
import http.server
import importlib.util
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubesft.api.dataset import RowError, SFTDatasetSpec
from kubesft.api.report import PrepareTermination, TrainerReason
from kubesft_trainer import prepare as prepare_module
from kubesft_trainer.exit_codes import UserError
from kubesft_trainer.prepare import (
    DatasetInvalid,
    Prepared,
    choose_eval,
    eval_size,
    length_histogram,
    prepare_dataset,
)
from kubesft_trainer.sources import local_files, read_source
from kubesft_trainer.termination import fit_termination_message

DATA = Path(__file__).parent / "data"
STATS_KEYS = {
    "rows",
    "valid",
    "invalid",
    "duplicatesRemoved",
    "train",
    "eval",
    "format",
    "roles",
    "lengthHistogram",
    "ignoredColumns",
    "audit",
    "fingerprint",
    "errors",
}


def chat(i: int, answer: str = "Sure.") -> dict[str, Any]:
    user = {"role": "user", "content": f"Question {i}?"}
    return {"messages": [user, {"role": "assistant", "content": f"{answer} {'x' * i}"}]}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_spec(**fields: Any) -> SFTDatasetSpec:
    source = fields.pop("source", {"configMap": {"name": "data"}})
    return SFTDatasetSpec.model_validate({"source": source, **fields})


def run(tmp_path: Path, rows: list[Any], name: str = "out", **fields: Any) -> Prepared:
    data = write_jsonl(tmp_path / f"{name}.jsonl", rows)
    return prepare_dataset(make_spec(**fields), tmp_path / name, source_path=data)


def read_lines(path: Path, rows: bool = False) -> list[dict[str, Any]]:
    """Prepared examples; without `rows`, less the source row number each one keeps."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return lines if rows else [{k: v for k, v in line.items() if k != "row"} for line in lines]


def test_prepare_writes_normalized_splits_and_stats(tmp_path: Path) -> None:
    rows = [chat(i) for i in range(20)]
    result = run(tmp_path, rows, split={"evalFraction": 0.1})
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["eval.jsonl", "stats.json", "train.jsonl"]
    train, evals = read_lines(out / "train.jsonl"), read_lines(out / "eval.jsonl")
    assert (len(train), len(evals)) == (18, 2)
    assert sorted(train + evals, key=str) == sorted(rows, key=str)
    numbered = read_lines(out / "train.jsonl", rows=True) + read_lines(
        out / "eval.jsonl", rows=True
    )
    assert all(rows[line["row"] - 1]["messages"] == line["messages"] for line in numbered)
    stats = json.loads((out / "stats.json").read_text())
    assert set(stats) == STATS_KEYS
    assert stats["rows"] == stats["valid"] == 20
    assert (stats["invalid"], stats["duplicatesRemoved"], stats["format"]) == (0, 0, "messages")
    assert stats["roles"] == {"assistant": 20, "user": 20}
    assert stats["fingerprint"] == result.fingerprint
    assert not list(tmp_path.glob(".out.*")), "no staging directory is left behind"


def test_alpaca_json_array_and_sharegpt_files_are_prepared(tmp_path: Path) -> None:
    spec = make_spec(split={"evalFraction": 0})
    alpaca = prepare_dataset(spec, tmp_path / "a", source_path=DATA / "alpaca.json")
    assert (alpaca.stats.format, alpaca.stats.train) == ("prompt-completion", 3)
    first = read_lines(tmp_path / "a" / "train.jsonl")[0]
    assert first == {"prompt": "Add the numbers.\n\n2 and 3", "completion": "5"}
    sharegpt = prepare_dataset(spec, tmp_path / "s", source_path=DATA / "sharegpt.jsonl")
    assert sharegpt.stats.roles == {"assistant": 5, "system": 1, "tool": 1, "user": 4}


def test_parquet_files_and_folders_are_read(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "src"
    (folder / "..2024_01_01").mkdir(parents=True)  # a mounted ConfigMap's hidden entries
    write_jsonl(folder / "..2024_01_01" / "ignored.jsonl", [{"bad": 1}])
    pq.write_table(pa.Table.from_pylist([{"text": "one"}, {"text": "two"}]), folder / "a.parquet")
    write_jsonl(folder / "b.jsonl", [{"text": "three"}])
    (folder / "README.md").write_text("not data")
    assert [p.name for p in local_files(folder)] == ["a.parquet", "b.jsonl"]
    rows = list(read_source(make_spec().source, workdir=tmp_path, local_path=folder))
    assert [(r.number, r.value) for r in rows] == [
        (1, {"text": "one"}),
        (2, {"text": "two"}),
        (3, {"text": "three"}),
    ]


def test_gzipped_jsonl_is_read(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "one"}\n{"text": "two"}\n'))
    rows = list(read_source(make_spec().source, workdir=tmp_path, local_path=path))
    assert [r.value["text"] for r in rows] == ["one", "two"]


def test_configmap_folder_reads_the_spec_key(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data.jsonl", [{"text": "kept"}])
    write_jsonl(tmp_path / "other.jsonl", [{"text": "other key"}])
    source = make_spec(source={"configMap": {"name": "cm", "key": "data.jsonl"}}).source
    rows = list(read_source(source, workdir=tmp_path, local_path=tmp_path))
    assert [r.value for r in rows] == [{"text": "kept"}]


def test_unparseable_lines_are_invalid_rows_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"text": "ok"}\n\n{"text": \n\xff\xfe\n')
    rows = list(read_source(make_spec().source, workdir=tmp_path, local_path=path))
    assert [(r.number, r.error) for r in rows] == [
        (1, None),
        (3, "is not valid JSON: Expecting value at column 9"),
        (4, "is not valid UTF-8"),
    ]


def test_duplicates_are_removed_and_counted(tmp_path: Path) -> None:
    rows = [chat(1), chat(2), chat(1), chat(1), chat(3)]
    stats = run(tmp_path, rows, split={"evalFraction": 0}).stats
    assert (stats.rows, stats.valid, stats.duplicates_removed, stats.train) == (5, 5, 2, 3)
    kept = run(tmp_path, rows, name="all", validation={"dedupe": False}, split={"evalFraction": 0})
    assert (kept.stats.duplicates_removed, kept.stats.train) == (0, 5)


def test_invalid_rows_within_the_allowance_are_dropped(tmp_path: Path) -> None:
    rows = [chat(1), {"messages": "oops"}, chat(2)]
    result = run(tmp_path, rows, validation={"maxInvalidRows": 1}, split={"evalFraction": 0})
    assert (result.stats.invalid, result.stats.train) == (1, 2)
    assert result.errors == [RowError(row=2, field="messages", message=result.errors[0].message)]
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["errors"][0]["row"] == 2


@pytest.mark.parametrize(
    ("total", "fraction", "cap", "expected"),
    [
        (100, 0.05, None, 5),
        (10, 0.05, None, 1),
        (1, 0.5, None, 0),
        (3, 0.9, None, 2),
        (100, 0.0, None, 0),
        (100, 0.2, 7, 7),
    ],
)
def test_eval_size_follows_fraction_and_cap(
    total: int, fraction: float, cap: int | None, expected: int
) -> None:
    assert eval_size(total, fraction, cap) == expected


def test_split_is_deterministic_by_seed(tmp_path: Path) -> None:
    rows = [chat(i) for i in range(40)]

    def eval_rows(name: str, seed: int) -> str:
        run(tmp_path, rows, name=name, split={"evalFraction": 0.25, "seed": seed})
        return (tmp_path / name / "eval.jsonl").read_text()

    first, again, other = eval_rows("a", 1), eval_rows("b", 1), eval_rows("c", 2)
    assert first == again
    assert first != other
    assert len(first.splitlines()) == len(other.splitlines()) == 10


def test_eval_choice_does_not_depend_on_row_order() -> None:
    digests = [bytes([i]) * 32 for i in range(30)]
    chosen = {digests[i] for i in choose_eval(digests, 6, seed=3)}
    reordered = digests[::-1]
    assert {reordered[i] for i in choose_eval(reordered, 6, seed=3)} == chosen


def test_max_eval_rows_caps_the_eval_split(tmp_path: Path) -> None:
    stats = run(
        tmp_path, [chat(i) for i in range(40)], split={"evalFraction": 0.5, "maxEvalRows": 3}
    )
    assert (stats.stats.train, stats.stats.eval) == (37, 3)


def test_eval_source_is_used_and_deduped_against_train(tmp_path: Path) -> None:
    evals = write_jsonl(tmp_path / "eval.jsonl", [chat(1), chat(100), chat(101), chat(102)])
    spec = make_spec(split={"evalSource": {"configMap": {"name": "e"}}, "maxEvalRows": 2})
    data = write_jsonl(tmp_path / "train.jsonl", [chat(i) for i in range(5)])
    result = prepare_dataset(spec, tmp_path / "out", source_path=data, eval_source_path=evals)
    assert (result.stats.train, result.stats.eval, result.stats.duplicates_removed) == (5, 2, 1)


def test_too_many_invalid_rows_reject_the_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetInvalid) as caught:
        prepare_dataset(make_spec(), tmp_path / "out", source_path=DATA / "chat_with_errors.jsonl")
    message = str(caught.value)
    assert message.startswith("dataset invalid: 3 invalid rows (allowed 0")
    assert "row 2 messages[1].role: unknown role 'bot'" in message
    assert [(e.row, e.field) for e in caught.value.errors] == [
        (2, "messages[1].role"),
        (4, "messages"),
        (5, "messages[1].content"),
    ]


def test_too_few_examples_reject_the_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetInvalid, match=r"2 usable examples .*minExamples \(3\)"):
        run(tmp_path, [chat(1), chat(1), chat(2)], validation={"minExamples": 3})


def test_rejected_dataset_replaces_an_earlier_result_with_errors_json(tmp_path: Path) -> None:
    run(tmp_path, [chat(1), chat(2)])
    assert (tmp_path / "out" / "stats.json").exists()
    with pytest.raises(DatasetInvalid):
        run(tmp_path, [chat(1), {"text": 3}])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["errors.json"]
    failure = json.loads((tmp_path / "out" / "errors.json").read_text())
    assert (failure["phase"], failure["invalid"], failure["errors"][0]["row"]) == ("Failed", 1, 2)


def test_failure_while_writing_leaves_no_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def write_then_fail(directory: Path, *args: Any) -> str:
        (directory / "train.jsonl").write_text("partial\n")
        raise OSError("disk full")

    monkeypatch.setattr(prepare_module, "write_examples", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        run(tmp_path, [chat(1), chat(2)])
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_local_source_over_max_bytes_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DatasetInvalid, match=r"larger than spec.validation.maxBytes \(100 bytes\)"):
        run(tmp_path, [chat(i) for i in range(5)], validation={"maxBytes": 100})


def test_stats_and_fingerprint_are_stable_and_follow_the_data(tmp_path: Path) -> None:
    rows = [chat(i) for i in range(30)]
    first, again = run(tmp_path, rows, name="a"), run(tmp_path, rows, name="b")
    assert first.fingerprint == again.fingerprint
    assert first.stats == again.stats
    assert first.stats.length_histogram == {"32": 15, "64": 15}
    changed = run(tmp_path, [*rows[:-1], chat(29, answer="No.")], name="c")
    assert changed.fingerprint != first.fingerprint


def test_length_histogram_uses_power_of_two_bounds() -> None:
    assert length_histogram([0, 16, 17, 1000, 1024, 1025]) == {
        "16": 2,
        "32": 1,
        "1024": 2,
        "2048": 1,
    }


def test_termination_summary_fits_in_4_kib() -> None:
    errors = [RowError(row=i, field="messages[0].content", message="x" * 500) for i in range(20)]
    failed = PrepareTermination(
        phase="Failed", reason=TrainerReason.DATASET_INVALID, message="y" * 5000, errors=errors
    )
    text = fit_termination_message(failed)
    doc = json.loads(text)
    assert PrepareTermination.model_validate(doc).reason == "DatasetInvalid"
    assert len(text.encode()) <= 4096
    assert doc["phase"] == "Failed" and 0 < len(doc["errors"]) < 20


def test_s3_source_without_s3fs_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "s3fs" else real_find_spec(name, *args),
    )
    source = make_spec(source={"url": {"url": "s3://bucket/data.jsonl"}}).source
    with pytest.raises(UserError, match="needs the s3fs package"):
        list(read_source(source, workdir=tmp_path))


class _Files(http.server.BaseHTTPRequestHandler):
    """Serves `routes`: path → (body, whether to send Content-Length)."""

    routes: dict[str, tuple[bytes, bool]] = {}

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path not in self.routes:
            self.send_error(404)
            return
        body, with_length = self.routes[path]
        self.send_response(200)
        if with_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_files(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict]]:
    """A local http server on 127.0.0.1; yields its base URL and its routes to fill in."""
    monkeypatch.setenv("no_proxy", "*")
    routes: dict[str, tuple[bytes, bool]] = {}
    handler = type("Files", (_Files,), {"routes": routes})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", routes
    server.shutdown()
    server.server_close()


def url_spec(url: str, **fields: Any) -> SFTDatasetSpec:
    return make_spec(source={"url": {"url": url}}, **fields)


def test_http_source_is_downloaded_and_prepared(tmp_path: Path, http_files: tuple) -> None:
    base, routes = http_files
    routes["/data.jsonl"] = ("".join(json.dumps(chat(i)) + "\n" for i in range(4)).encode(), True)
    result = prepare_dataset(url_spec(f"{base}/data.jsonl?sig=secret"), tmp_path / "out")
    assert (result.stats.rows, result.stats.train + result.stats.eval) == (4, 4)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "eval.jsonl",
        "stats.json",
        "train.jsonl",
    ]


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "streamed"])
def test_http_source_over_max_bytes_is_rejected(
    tmp_path: Path, http_files: tuple, with_length: bool
) -> None:
    base, routes = http_files
    routes["/big.jsonl"] = (b'{"text": "hello"}\n' * 5000, with_length)
    spec = url_spec(f"{base}/big.jsonl?sig=secret", validation={"maxBytes": 1000})
    with pytest.raises(DatasetInvalid, match="maxBytes") as caught:
        prepare_dataset(spec, tmp_path / "out")
    assert "secret" not in str(caught.value)
    assert (tmp_path / "out" / "errors.json").exists()


def test_http_not_found_is_a_user_error(tmp_path: Path, http_files: tuple) -> None:
    base, _ = http_files
    with pytest.raises(
        DatasetInvalid, match=r"spec.source.url: GET .*/missing.jsonl returned HTTP 404"
    ):
        prepare_dataset(url_spec(f"{base}/missing.jsonl"), tmp_path / "out")


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "kubesft_trainer", "prepare", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_cli_rejects_bad_data_with_exit_2_and_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"source": {"configMap": {"name": "data"}}}))
    log = tmp_path / "termination-log"
    data = DATA / "chat_with_errors.jsonl"
    done = cli(
        "--spec",
        spec,
        "--output",
        tmp_path / "out",
        "--source-path",
        data,
        "--termination-log",
        log,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("dataset invalid: 3 invalid rows (allowed 0")
    summary = json.loads(log.read_text())
    assert (summary["phase"], summary["reason"], summary["stats"]["invalid"]) == (
        "Failed",
        "DatasetInvalid",
        3,
    )
    assert not (tmp_path / "out" / "stats.json").exists()


def test_cli_names_the_invalid_spec_field(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps({"source": {"configMap": {"name": "d"}}, "split": {"evalFraction": 2}})
    )
    done = cli("--spec", spec, "--output", tmp_path / "out", "--termination-log", tmp_path / "log")
    assert (done.returncode, "Traceback" in done.stderr) == (2, False)
    assert (
        done.stderr.strip() == "invalid spec: spec.split.evalFraction: must be less than 1 (got 2)"
    )


def test_cli_prepares_and_reports_ready(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"source": {"configMap": {"name": "d"}}, "split": {"seed": 7}}))
    log = tmp_path / "log"
    data = DATA / "sharegpt.jsonl"
    done = cli(
        "--spec",
        spec,
        "--output",
        tmp_path / "out",
        "--source-path",
        data,
        "--termination-log",
        log,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(log.read_text())
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert (summary["phase"], summary["fingerprint"]) == ("Ready", stats["fingerprint"])
    assert summary["stats"]["train"] + summary["stats"]["eval"] == 3
