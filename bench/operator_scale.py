"""Benchmark: the operator at scale on the local control plane (issue "Benchmarks", item 3).

For each N: a fresh etcd + kube-apiserver + kube-controller-manager, the node runner (the
kubelet stand-in) with trainer containers that exit 0 at once with a final summary, one
SFTDataset marked Ready through the status subresource (standing in for preparation),
and the operator as a separate process watching one namespace. Then N SFTJobs are
created as fast as a thread pool can, and we measure:

- SFTJob created (client side, create response received) → its trainer Job seen by a
  watch (sub-second; creationTimestamps have 1 s resolution), p50/p90/p99;
- SFTJob created → phase Succeeded seen by a watch (the whole loop, incl. KCM and node);
- operator RSS (peak, psutil sampling every 0.2 s) and CPU seconds (user + system);
- API requests per SFTJob: the operator's own from the apiserver audit log (it has a
  client certificate of its own), every client's from `apiserver_request_total`.

    .venv/bin/python bench/operator_scale.py [--jobs 200 1000] [--label current]

Results go to bench/results/operator_scale.json under runs.<label>; the last line printed
is the one-line summary. Two shared CPU cores run everything here: numbers are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import psutil  # noqa: E402
from kubernetes import client, config  # noqa: E402
from kubernetes.watch.watch import iter_resp_lines  # noqa: E402
from scale_cluster import audit_offset as audit_position  # noqa: E402
from scale_cluster import delta as counter_delta  # noqa: E402
from scale_cluster import (  # noqa: E402
    fast_trainer,
    operator_requests,
    per_job,
    request_totals,
    start_cluster,
)

from kubesft.api import GROUP, VERSION  # noqa: E402
from tests.support.node_runner import NodeRunner  # noqa: E402
from tests.support.operator_process import OperatorProcess  # noqa: E402

NAMESPACE = "bench"
DATASET = "bench"
RESULTS = REPO / "bench" / "results" / "operator_scale.json"
CREATE_THREADS = 16


def job_manifest(name: str) -> dict[str, Any]:
    """A small CPU LoRA job (the quickstart's shape) on the benchmark's dataset."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SFTJob",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "tiny-llama", "source": "pvc",
                      "pvc": {"claimName": "kubesft-models", "path": "tiny-llama"}},
            "dataset": {"name": DATASET},
            "method": {"type": "lora", "lora": {"r": 8, "alpha": 16}},
            "training": {"maxSteps": 1, "microBatchSize": 1, "maxSeqLength": 128,
                         "precision": "fp32", "gradientCheckpointing": False},
            "output": {"pvc": {"claimName": "kubesft-outputs", "path": name}},
            "resources": {"gpus": 0, "cpu": "100m", "memory": "256Mi"},
        },
    }  # fmt: skip


def create_ready_dataset(custom: client.CustomObjectsApi) -> None:
    """Created and marked Ready before the operator starts, so no preparation Job runs."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SFTDataset",
        "metadata": {"name": DATASET},
        "spec": {"source": {"configMap": {"name": "bench-data"}}, "format": "messages"},
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "sftdatasets", body)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {
        "phase": "Ready",
        "observedGeneration": 1,
        "location": f"pvc://kubesft-data/datasets/{DATASET}/g1",
        "fingerprint": "0" * 64,
        "stats": {"rows": 10, "valid": 10, "train": 8, "eval": 2},
        "conditions": [{"type": "Ready", "status": "True", "reason": "Prepared",
                        "message": "stand-in", "lastTransitionTime": now,
                        "observedGeneration": 1}],
    }  # fmt: skip
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, NAMESPACE, "sftdatasets", DATASET, {"status": status}
    )


Obj = dict[str, Any]
LABEL_JOB = "kubesft.io/job"


def _conditions(obj: Obj) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}


# Milestones of one SFTJob, each "first time a watch saw this", keyed by the SFTJob's name.
MILESTONES: dict[str, tuple[str, Callable[[Obj], bool]]] = {
    "trainer Job created": ("jobs", lambda o: True),
    "pod created": ("pods", lambda o: True),
    "pod bound": ("pods", lambda o: bool(o["spec"].get("nodeName"))),
    "pod running": ("pods", lambda o: (o.get("status") or {}).get("phase") in
                    ("Running", "Succeeded", "Failed")),
    "pod succeeded": ("pods", lambda o: (o.get("status") or {}).get("phase") == "Succeeded"),
    "trainer Job complete": ("jobs", lambda o: _conditions(o).get("Complete") == "True"),
    "SFTJob Running seen": ("sftjobs", lambda o: (o.get("status") or {}).get("phase") in
                            ("Running", "Succeeded")),
    "SFTJob Succeeded": ("sftjobs", lambda o: (o.get("status") or {}).get("phase") ==
                         "Succeeded"),
}  # fmt: skip


class Watch(threading.Thread):
    """Records when each milestone of ``resource`` was first seen, by SFTJob name."""

    def __init__(self, resource: str, list_call: Callable[..., Any]) -> None:
        super().__init__(daemon=True, name=f"watch {resource}")
        self.list_call = list_call
        self.marks = {m: check for m, (res, check) in MILESTONES.items() if res == resource}
        self.key: Callable[[Obj], str | None] = (
            (lambda o: o["metadata"]["name"])
            if resource == "sftjobs"
            else (lambda o: (o["metadata"].get("labels") or {}).get(LABEL_JOB))
        )
        self.times: dict[str, dict[str, float]] = {m: {} for m in self.marks}
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        version = self.list_call()["metadata"]["resourceVersion"]
        self.ready.set()
        while not self.stop.is_set():
            resp = self.list_call(watch=True, resource_version=version, timeout_seconds=5,
                                  allow_watch_bookmarks=True, _preload_content=False)  # fmt: skip
            for line in iter_resp_lines(resp):
                now = time.time()
                if not line:
                    continue
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":  # 410 Gone: start again from a fresh list
                    version = self.list_call()["metadata"]["resourceVersion"]
                    break
                version = obj["metadata"]["resourceVersion"]
                key = self.key(obj) if event["type"] != "BOOKMARK" else None
                if key is None:
                    continue
                for mark, check in self.marks.items():
                    if key not in self.times[mark] and check(obj):
                        self.times[mark][key] = now


def raw_list(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
    """A list/watch call returning plain JSON (no model deserialization: cheap to run)."""

    def invoke(**extra: Any) -> Any:
        if extra.get("watch"):
            return call(*args, **kwargs, **extra)
        resp = call(*args, **kwargs, _preload_content=False, **extra)
        return json.loads(resp.data)

    return invoke


class Sampler(threading.Thread):
    """Peak RSS of a process, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return

    def cpu(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)


def quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:  # nearest rank
        return round(ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))], 3)

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": round(ordered[-1], 3),
            "mean": round(sum(ordered) / len(ordered), 3), "count": len(ordered)}  # fmt: skip


def operator_reconciles(port: int) -> dict[str, float]:
    """kubesft_reconcile_total by kind/result, from the operator's own metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("kubesft_reconcile_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.removeprefix("kubesft_reconcile_total")] = float(value)
    return out


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """user + system CPU of each process (and its reaped children: the node's containers)."""
    out = {}
    for name, pid in pids.items():
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        out[name] = t.user + t.system + t.children_user + t.children_system
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def start_profiler(pid: int, out: Path | None) -> subprocess.Popen[bytes] | None:
    """py-spy (not a project dependency: PY_SPY=path/to/py-spy) recording collapsed stacks."""
    if out is None:
        return None
    exe = os.environ.get("PY_SPY", "py-spy")
    argv = [exe, "record", "-p", str(pid), "-r", "50", "--gil", "-f", "raw", "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_watches(api: client.ApiClient) -> dict[str, Watch]:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    managed = "app.kubernetes.io/managed-by=kubesft"
    calls = {
        "jobs": raw_list(batch.list_namespaced_job, NAMESPACE, label_selector=managed),
        "pods": raw_list(core.list_namespaced_pod, NAMESPACE, label_selector=managed),
        "sftjobs": raw_list(
            custom.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, "sftjobs"
        ),
    }
    watches = {resource: Watch(resource, call) for resource, call in calls.items()}
    for watch in watches.values():
        watch.start()
        watch.ready.wait(30)
    return watches


def create_jobs(custom: client.CustomObjectsApi, n: int) -> dict[str, tuple[float, float]]:
    """Create N SFTJobs from a thread pool; (request sent, response received) by name."""
    created: dict[str, tuple[float, float]] = {}

    def create(name: str) -> None:
        sent = time.time()
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "sftjobs", job_manifest(name)
        )
        created[name] = (sent, time.time())

    with ThreadPoolExecutor(CREATE_THREADS) as pool:
        list(pool.map(create, [f"job-{i:04d}" for i in range(n)]))
    return created


def milestones(watches: dict[str, Watch], created: dict[str, tuple[float, float]]) -> Obj:
    """Seconds from each SFTJob's create response to each milestone, as quantiles."""
    seen = {mark: times for w in watches.values() for mark, times in w.times.items()}
    out = {}
    for mark in MILESTONES:
        times = seen[mark]
        out[mark] = quantiles([times[k] - sent[1] for k, sent in created.items() if k in times])
    return out


def run_scale(n: int, timeout: float, env: dict[str, str], profile: Path | None) -> Obj:
    cp, operator_kubeconfig = start_cluster(REPO / "crds")
    work = Path(cp.state_dir)
    runner = operator = None
    try:
        api = config.new_client_from_config(config_file=str(cp.kubeconfig))
        api.configuration.connection_pool_maxsize = CREATE_THREADS * 2
        custom = client.CustomObjectsApi(api)
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
        create_ready_dataset(custom)
        runner = NodeRunner(str(cp.kubeconfig), work / "node", command_override=fast_trainer)
        runner.start()
        metrics_port = free_port()
        env = {"KUBESFT_METRICS_PORT": str(metrics_port), **env}
        operator = OperatorProcess(str(operator_kubeconfig), NAMESPACE, work / "op.log", env)
        operator.start()
        operator.wait_started(60)
        time.sleep(2)  # let the initial listings settle before measuring
        assert operator.process is not None
        sampler = Sampler(operator.process.pid)
        sampler.start()
        rss_start, cpu_start = sampler.peak, sampler.cpu()
        profiler = start_profiler(operator.process.pid, profile)
        watches = start_watches(api)
        totals_before, audit_before = request_totals(cp), audit_position(cp)
        pids = {name: c.pid for name, c in cp.components.items()}
        pids["operator"] = operator.process.pid
        pids["node runner, containers and this benchmark"] = os.getpid()
        cpu_before = cpu_seconds(pids)

        load_before = os.getloadavg()[0]
        began = time.time()
        created = create_jobs(custom, n)
        submitted = time.time()
        job_times = watches["jobs"].times["trainer Job created"]
        all_jobs = wait_until(lambda: len(job_times) >= n, timeout)
        jobs_done = time.time()
        done_times = watches["sftjobs"].times["SFTJob Succeeded"]
        all_done = wait_until(lambda: len(done_times) >= n, timeout)
        finished = time.time()

        totals_after = request_totals(cp)
        ours = operator_requests(cp, audit_before)
        cpu = sampler.cpu() - cpu_start
        cpu_after = cpu_seconds(pids)
        rss_end = sampler.process.memory_info().rss
        sampler.stop.set()
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(30)
        reconciles = operator_reconciles(metrics_port)
        for watch in watches.values():
            watch.stop.set()
        stages = milestones(watches, created)
        mib = 1024 * 1024
        return {
            "jobs": n,
            "create_seconds": round(submitted - began, 2),
            "create_request_seconds": quantiles([c[1] - c[0] for c in created.values()]),
            "job_created_latency_seconds": stages["trainer Job created"],
            "all_jobs_created": all_jobs,
            "last_job_created_after_seconds": round(jobs_done - began, 2) if all_jobs else None,
            "succeeded_latency_seconds": stages["SFTJob Succeeded"],
            "all_succeeded": all_done,
            "last_succeeded_after_seconds": round(finished - began, 2) if all_done else None,
            "milestones_seconds_after_create": stages,
            "operator": {
                "rss_start_mb": round(rss_start / mib, 1),
                "rss_peak_mb": round(sampler.peak / mib, 1),
                "rss_end_mb": round(rss_end / mib, 1),
                "cpu_seconds": round(cpu, 2),
                "cpu_ms_per_job": round(1000 * cpu / n, 1),
                "reconciles": reconciles,
            },
            "cpu_seconds_by_process": {
                k: round(v - cpu_before.get(k, 0), 1) for k, v in cpu_after.items()
            },
            "wall_seconds": round(finished - began, 1),
            "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "operator_requests_per_job": per_job(ours, n),
            "all_clients_requests_per_job": per_job(counter_delta(totals_after, totals_before), n),
        }
    finally:
        if operator is not None:
            operator.stop()
        if runner is not None:
            runner.stop()
        cp.stop()


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())  # fmt: skip
    env_file = (REPO / "hack" / "controlplane" / "versions.env").read_text().splitlines()
    versions = [line for line in env_file if "=" in line and not line.startswith("#")]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "controlplane": versions,
        "note": "2 shared cores run apiserver, etcd, KCM, node runner, operator and this "
        "client together: latencies and CPU are noisy (expect +-30%)",
    }


def summary(runs: dict[str, dict[str, Any]]) -> str:
    small, large = runs[min(runs, key=int)], runs[max(runs, key=int)]
    lat = small["job_created_latency_seconds"]
    return (
        f"operator at {small['jobs']} jobs: p50 {lat.get('p50', float('nan')):.2f} s, "
        f"p99 {lat.get('p99', float('nan')):.2f} s; at {large['jobs']}: RSS "
        f"{large['operator']['rss_peak_mb']:.0f} MB; "
        f"{large['operator_requests_per_job']['writes']:.1f} writes/job"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--label", default="current", help="key under runs in the results")
    parser.add_argument("--timeout", type=float, default=240, help="per phase, seconds")
    parser.add_argument("--resync-seconds", default="30", help="KUBESFT_RESYNC_SECONDS")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--profile", type=Path, help="write py-spy stacks here (<dir>/N.txt)")
    parser.add_argument(
        "--operator-path",
        type=Path,
        help="run the operator from this source tree (e.g. an extracted older commit's "
        "operator/ folder), for before/after comparisons",
    )
    args = parser.parse_args()
    env = {"KUBESFT_RESYNC_SECONDS": args.resync_seconds}
    if args.operator_path:
        env["PYTHONPATH"] = str(args.operator_path.resolve())
    runs = {}
    for n in args.jobs:
        print(f"running {n} SFTJobs ...", file=sys.stderr, flush=True)
        profile = args.profile / f"{n}.txt" if args.profile else None
        if profile is not None:
            profile.parent.mkdir(parents=True, exist_ok=True)
        runs[str(n)] = run_scale(n, args.timeout, env, profile)
        print(json.dumps(runs[str(n)], indent=1), file=sys.stderr, flush=True)
    line = summary(runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data["machine"] = machine()
    data.setdefault("runs", {})[args.label] = {
        "summary": line,
        "operator_source": str(args.operator_path or "working tree"),
        "resync_seconds": float(args.resync_seconds),
        **runs,
    }
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
