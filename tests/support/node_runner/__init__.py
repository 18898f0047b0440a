"""A local node runner: a TEST DOUBLE for the kubelet and the container runtime only.

There is no kubelet, scheduler or container runtime on a test machine; the control plane
(``tests/support/controlplane.py``) creates pods from Jobs but nothing would run them. The
runner registers one fake Node, binds pending pods to it (honouring ``nodeSelector``) and
runs each container's ``command`` as a local process:

- images are ignored: the command runs with this repository's Python environment (its
  virtualenv's ``bin`` first on PATH, ``python`` meaning the venv's interpreter), as root,
  with no cgroup limits, no network namespace (pod IP is 127.0.0.1) and no probes;
- volumes (configMap, secret, downwardAPI, projected incl. service-account tokens,
  emptyDir, persistentVolumeClaim, hostPath) are host directories, bind-mounted at their
  mountPaths inside a private mount namespace, so absolute paths work unchanged;
- the pod status is reported as a kubelet reports it (phase, container states, exit
  codes, termination messages, restarts), and deleted pods are stopped and removed.

It exists so that e2e tests exercise the real operator, the real kube-controller-manager
and the real trainer; nothing here is part of what ships.

Not modelled: probes and lifecycle hooks, sidecars (init containers with restartPolicy
Always are run like plain init containers), resource limits (memory is never enforced: use
``simulate_oom``), pod-level activeDeadlineSeconds, updates of mounted ConfigMaps/Secrets
and token refresh, other pods' requests when scheduling. A mountPath may not hide this
repository or its virtualenv (the stand-in image): such a container fails with StartError.
Mount points missing on the host (``/dev/termination-log``, ``/var/run/secrets/...``) are
created there while a container needs them and removed afterwards.

    runner = NodeRunner(kubeconfig, root).start()   # or: with NodeRunner(...) as runner:
    runner.pvc_path("ns", "data")                    # pre-populate a PVC's directory
    runner.simulate_oom(lambda pod: pod["metadata"]["name"].startswith("train-"))
    runner.stop()

CLI (for demos): ``python -m tests.support.node_runner --kubeconfig K --root DIR [--gpus N]``.
"""

from tests.support.node_runner.containers import ContainerProcess
from tests.support.node_runner.runner import NodeRunner

__all__ = ["ContainerProcess", "NodeRunner"]
