"""A local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) for tests.

Integration tests need a real apiserver: CRD validation (structural schemas, CEL rules),
RBAC, TokenRequest and garbage collection are all server behaviour that no fake reproduces.
A full cluster (kind) needs Docker; the bare control plane needs only the binaries that
``hack/controlplane/build`` compiles from pinned Go modules, and starts in a few seconds.

There is no kubelet and no scheduler: pods are created but stay Pending, which is all the
operator's tests need to observe.

Library use (pytest fixtures)::

    cp = start_control_plane(build_binaries())
    ...
    cp.start_controller_manager()
    cp.stop()

CLI use (by hand)::

    python -m tests.support.controlplane up [--controller-manager] [--dir DIR]
    python -m tests.support.controlplane down [--dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "controlplane" / "build"
DEFAULT_RUN_DIR = REPO_ROOT / ".cache" / "controlplane-run"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.0.0.0/24"
PEM, PKCS8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
SERVING_SANS = (
    "127.0.0.1",
    "localhost",
    "10.0.0.1",  # first address of SERVICE_CIDR: the in-cluster `kubernetes` Service
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


class ControlPlaneError(RuntimeError):
    """A component failed to build, start or become healthy; the message says which and why."""


def build_binaries() -> Path:
    """Run ``hack/controlplane/build`` and return the directory holding the binaries.

    The script caches by a hash of the pins, so this is fast after the first build. Its
    stderr (e.g. "Go is required") becomes the error message, never a silent skip.
    """
    proc = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ControlPlaneError(
            f"{BUILD_SCRIPT.relative_to(REPO_ROOT)} failed (exit {proc.returncode}):\n"
            f"{proc.stderr.strip()}"
        )
    return Path(proc.stdout.strip().splitlines()[-1])


# --- TLS material -----------------------------------------------------------------------


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(key.private_bytes(PEM, PKCS8, serialization.NoEncryption()))
    path.chmod(0o600)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _san(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    usage: x509.ObjectIdentifier | None = None,
    sans: tuple[str, ...] = (),
) -> x509.Certificate:
    """Sign ``key``'s certificate: a self-signed CA when ``ca`` is None, else a leaf of ``ca``.

    Key identifiers and key usage are set so that strict verifiers (OpenSSL's X509_STRICT,
    the default from Python 3.13) accept the chain too.
    """
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca[0].subject if ca else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca is None, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if ca is None:
        # digital_signature, key_cert_sign and crl_sign; the other six usages off.
        ca_usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
        return builder.add_extension(ca_usage, True).sign(key, hashes.SHA256())
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca[1].public_key())
    builder = builder.add_extension(aki, False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(map(_san, sans)), False)
    return builder.sign(ca[1], hashes.SHA256())


def generate_pki(pki_dir: Path) -> None:
    """Write ca, apiserver (serving), admin and controller-manager (client) certs, and sa keys.

    X.509 keys are ECDSA P-256 (fast to generate, accepted everywhere); the service-account
    key is RSA because RS256 is what Kubernetes and every token consumer expect.
    """
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue(_name("kubesft-test-ca"), ca_key)
    pairs = {"ca": (ca, ca_key)}
    client, server = ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH
    # system:masters for KCM: --use-service-account-credentials=false runs every controller
    # with this one identity.
    kcm = _name("system:kube-controller-manager", "system:masters")
    leaves = [
        ("apiserver", _name("kube-apiserver"), server, SERVING_SANS),
        ("admin", _name("kubesft-admin", "system:masters"), client, ()),
        ("controller-manager", kcm, client, ()),
    ]
    for stem, subject, usage, sans in leaves:
        key = ec.generate_private_key(ec.SECP256R1())
        pairs[stem] = (_issue(subject, key, (ca, ca_key), usage, sans), key)
    for stem, (cert, key) in pairs.items():
        (pki_dir / f"{stem}.crt").write_bytes(cert.public_bytes(PEM))
        _write_private(pki_dir / f"{stem}.key", key)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_private(pki_dir / "sa.key", sa_key)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    (pki_dir / "sa.pub").write_bytes(sa_key.public_key().public_bytes(PEM, spki))


def write_kubeconfig(path: Path, server: str, pki_dir: Path, user: str) -> None:
    """A kubeconfig with the CA and ``user``'s client cert embedded (self-contained)."""

    def b64(name: str) -> str:
        return base64.b64encode((pki_dir / name).read_bytes()).decode()

    path.write_text(
        f"""\
apiVersion: v1
kind: Config
clusters:
- name: kubesft-local
  cluster:
    server: {server}
    certificate-authority-data: {b64("ca.crt")}
users:
- name: {user}
  user:
    client-certificate-data: {b64(f"{user}.crt")}
    client-key-data: {b64(f"{user}.key")}
contexts:
- name: kubesft-local
  context: {{cluster: kubesft-local, user: {user}}}
current-context: kubesft-local
"""
    )
    path.chmod(0o600)


# --- processes --------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port that was free a moment ago (the kernel picks it; races are rare)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL the child when the test process dies, so no apiserver outlives it."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _alive(pid: int, exe: str) -> bool:
    """True when ``pid`` still runs ``exe`` (guards against signalling a reused pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and cmdline == exe


LOG_NOISE = ("may not be in the loopback range", "Namespace has been deleted")
"""Lines every session logs by design (the e2e node runner's pods have loopback IPs, tests
delete namespaces): left out of failure tails, where they pushed the assertion out of view."""
TAIL_LINE_CHARS = 400


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    kept = [line for line in text.splitlines() if not any(n in line for n in LOG_NOISE)]
    return "\n".join(line[:TAIL_LINE_CHARS] for line in kept[-lines:])


@dataclass
class Component:
    """One started binary: what runs, its pid, where it logs, and its health URL."""

    name: str
    exe: str
    pid: int
    log: str
    health_url: str

    def alive(self) -> bool:
        return _alive(self.pid, self.exe)


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver (+ optional kube-controller-manager) in ``state_dir``.

    Serialisable to ``state.json`` so that ``down`` (another process) can stop what ``up``
    started. ``_children`` holds the Popen objects in the process that started them, so that
    stop() can reap them instead of leaving zombies.
    """

    bin_dir: str
    state_dir: str
    apiserver_port: int = 0
    detach: bool = False
    startup_seconds: float = 0.0
    components: dict[str, Component] = field(default_factory=dict)
    _children: dict[str, subprocess.Popen[bytes]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def pki(self) -> Path:
        return Path(self.state_dir) / "pki"

    @property
    def kubeconfig(self) -> Path:
        return Path(self.state_dir) / "admin.kubeconfig"

    def binary(self, name: str) -> str:
        return str(Path(self.bin_dir) / name)

    # -- lifecycle

    def _spawn(self, name: str, args: list[str], health_url: str, timeout: float) -> None:
        log = Path(self.state_dir) / f"{name}.log"
        exe = self.binary(name)
        with log.open("ab") as out:
            child = subprocess.Popen(
                [exe, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                start_new_session=self.detach,
                preexec_fn=None if self.detach or sys.platform != "linux" else _die_with_parent,
            )
        self._children[name] = child
        self.components[name] = Component(name, exe, child.pid, str(log), health_url)
        self.save_state()
        self._wait_healthy(self.components[name], timeout)

    def _wait_healthy(self, comp: Component, timeout: float) -> None:
        """Poll the health URL (with the admin cert) until 200, or fail with the log tail."""
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        if comp.name == "kube-controller-manager":  # serves a self-signed cert of its own
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        last = "no attempt yet"
        while time.monotonic() < deadline:
            child = self._children.get(comp.name)
            if child is not None and child.poll() is not None:
                raise ControlPlaneError(
                    f"{comp.name} exited with code {child.returncode} before becoming healthy; "
                    f"log {comp.log} ends with:\n{_tail(Path(comp.log), 40)}"
                )
            try:
                with urllib.request.urlopen(comp.health_url, context=ctx, timeout=2) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as err:
                last = f"HTTP {err.code}: {err.read()[-400:].decode(errors='replace')}"
            except (OSError, ssl.SSLError) as err:
                last = repr(err)
            time.sleep(0.2)
        raise ControlPlaneError(
            f"{comp.name} not healthy at {comp.health_url} after {timeout:.0f}s "
            f"(last: {last}); log {comp.log} ends with:\n{_tail(Path(comp.log), 40)}"
        )

    def _start_etcd(self, timeout: float) -> str:
        client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
        args = [
            "--name=kubesft",
            f"--data-dir={Path(self.state_dir) / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=kubesft={peer}",
            "--unsafe-no-fsync",  # test data; durability is not worth the latency
            "--log-level=warn",
        ]
        self._spawn("etcd", args, f"{client}/health", timeout)
        return client

    def _start_apiserver(self, etcd_url: str, timeout: float) -> None:
        self.apiserver_port = free_port()
        pki = self.pki
        args = [
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={Path(self.state_dir) / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--api-audiences={SA_ISSUER}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # The default "lease" reconciler writes 127.0.0.1 into the `kubernetes` Endpoints,
            # which validation rejects (loopback) every 10s; nothing in-cluster could reach
            # it anyway without a node, so publish no endpoints.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]
        self._spawn("kube-apiserver", args, f"{self.server}/readyz", timeout)

    def start_controller_manager(self, timeout: float = 60) -> None:
        """Start kube-controller-manager (Jobs, GC, ServiceAccounts, ...) unless it runs."""
        comp = self.components.get("kube-controller-manager")
        if comp is not None and comp.alive():
            return
        kubeconfig = Path(self.state_dir) / "controller-manager.kubeconfig"
        write_kubeconfig(kubeconfig, self.server, self.pki, "controller-manager")
        port, pki = free_port(), self.pki
        args = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            # Authenticate client certs with our CA instead of looking up the apiserver's
            # extension-apiserver-authentication ConfigMap, whose request-header CA is unset
            # (no aggregation layer) and would be reported as an error in a loop.
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authentication-skip-lookup",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={Path(self.state_dir) / 'controller-manager-certs'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Default is /usr/libexec/kubernetes/..., which KCM would create on the host.
            f"--flex-volume-plugin-dir={Path(self.state_dir) / 'flexvolume'}",
            "--use-service-account-credentials=false",
            "--controllers=*",
            "--leader-elect=false",
            "--profiling=false",
        ]
        self._spawn("kube-controller-manager", args, f"https://127.0.0.1:{port}/healthz", timeout)

    def log_tails(self, lines: int = 25) -> dict[str, str]:
        """The last ``lines`` of each component's log, for attaching to a failed test."""
        return {name: _tail(Path(c.log), lines) for name, c in self.components.items()}

    def stop(self, keep: bool = False, grace: float = 5.0) -> None:
        """Stop components newest first, then remove ``state_dir`` unless ``keep``.

        One at a time: kube-apiserver shuts down in about a second while etcd is up, but
        hangs until SIGKILL when etcd goes away at the same moment.
        """
        for comp in reversed(self.components.values()):
            child = self._children.pop(comp.name, None)
            if not comp.alive():
                continue
            with contextlib.suppress(ProcessLookupError):  # it may exit at any moment
                os.kill(comp.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while comp.alive() and time.monotonic() < deadline:
                if child is not None:
                    child.poll()  # reap our own child so that it does not linger as a zombie
                time.sleep(0.05)
            if comp.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(comp.pid, signal.SIGKILL)
            if child is not None:
                child.wait(timeout=grace)
            # An orphan of a detached `up` is reaped by init, which may lag a moment; wait so
            # that `down` returns only once `pgrep` no longer sees it.
            while Path(f"/proc/{comp.pid}").exists() and time.monotonic() < deadline + grace:
                time.sleep(0.05)
        if keep:
            self.save_state()
        else:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    # -- persistence (for the detached CLI)

    def save_state(self) -> None:
        state = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        state["components"] = {k: asdict(c) for k, c in self.components.items()}
        (Path(self.state_dir) / "state.json").write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> ControlPlane | None:
        path = state_dir / "state.json"
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        comps = {k: Component(**v) for k, v in state.pop("components").items()}
        return cls(**state, components=comps)


def start_control_plane(
    bin_dir: Path, state_dir: Path | None = None, *, detach: bool = False, timeout: float = 60
) -> ControlPlane:
    """Generate PKI, start etcd and kube-apiserver, write ``admin.kubeconfig``; wait for ready.

    ``state_dir`` defaults to a fresh temp dir; an existing one is wiped first (fresh etcd).
    ``detach`` puts the processes in their own session so they outlive this process.
    """
    if state_dir is None:
        state_dir = Path(tempfile.mkdtemp(prefix="kubesft-controlplane-"))
    else:
        if state_dir.exists() and any(state_dir.iterdir()):
            if not (state_dir / "state.json").exists():  # never wipe a directory not ours
                raise ControlPlaneError(f"{state_dir} is not empty and holds no state.json")
            shutil.rmtree(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
    cp = ControlPlane(bin_dir=str(bin_dir), state_dir=str(state_dir.resolve()), detach=detach)
    began = time.monotonic()
    try:
        generate_pki(cp.pki)
        etcd_url = cp._start_etcd(timeout)
        cp._start_apiserver(etcd_url, timeout)
        write_kubeconfig(cp.kubeconfig, cp.server, cp.pki, "admin")
    except BaseException:
        cp.stop(keep=True)  # keep the logs the error message points at
        raise
    cp.startup_seconds = round(time.monotonic() - began, 2)
    cp.save_state()
    return cp


# --- CLI --------------------------------------------------------------------------------


def _cli_up(run_dir: Path, controller_manager: bool) -> int:
    existing = ControlPlane.load(run_dir)
    comps = existing.components if existing is not None else {}
    if (
        existing is not None
        and "kube-apiserver" in comps
        and all(c.alive() for c in comps.values())
    ):
        cp = existing
        print(f"control plane already running in {run_dir}", file=sys.stderr)
    else:
        if existing is not None:
            existing.stop(keep=True)  # half-dead leftovers: clear them before starting fresh
        cp = start_control_plane(build_binaries(), run_dir, detach=True)
        print(f"kube-apiserver ready at {cp.server} in {cp.startup_seconds}s", file=sys.stderr)
    if controller_manager:
        cp.start_controller_manager()
        print("kube-controller-manager healthy", file=sys.stderr)
    print(f"logs: {run_dir}/*.log; stop with hack/controlplane/down", file=sys.stderr)
    print(f"export KUBECONFIG={cp.kubeconfig}")
    return 0


def _cli_down(run_dir: Path, keep: bool) -> int:
    cp = ControlPlane.load(run_dir)
    if cp is None:
        print(f"nothing to stop: no {run_dir / 'state.json'}", file=sys.stderr)
        return 0
    cp.stop(keep=keep)
    print(f"stopped control plane in {run_dir}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.controlplane")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start etcd + kube-apiserver detached; print KUBECONFIG")
    up.add_argument("--controller-manager", action="store_true", help="also start KCM")
    down = sub.add_parser("down", help="stop what `up` started and remove its directory")
    down.add_argument("--keep", action="store_true", help="keep the directory (logs, etcd)")
    for p in (up, down):
        p.add_argument("--dir", type=Path, default=DEFAULT_RUN_DIR, help="state directory")
    args = parser.parse_args(argv)
    run_dir = args.dir.resolve()
    try:
        if args.command == "up":
            return _cli_up(run_dir, args.controller_manager)
        return _cli_down(run_dir, args.keep)
    except ControlPlaneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
