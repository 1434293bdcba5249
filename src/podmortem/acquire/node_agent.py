"""The node-agent Job: the node view of a Kubernetes pod when podmortem is not on its node.

A Job pinned to the pod's node (``nodeName``: no scheduler decision to get wrong) runs
``podmortem acquire cri://ID`` there, with the host PID namespace and the node's CRI socket,
into a case in its own emptyDir, then waits. Podmortem reads that case back over the exec
stream (``tar -cf -``, binary-safe, as ``kubectl cp`` does: never the pod log, which the
kubelet rotates at 10 MiB and frames by lines), checks it, imports it into the investigator's
case, tells the agent it may exit, and deletes the Job.

Integrity, in the order it is checked (any failure rejects the whole transfer; nothing of it
is imported, the custody log records the rejection):

1. the *seal*: SHA-256 of the agent case's manifest, custody log and hash list, computed on
   the node before the transfer and read over its own exec;
2. the transfer: SHA-256 of the exact tar stream, computed on the node while it was sent
   (``tee`` into ``sha256sum``) and compared with the hash of what arrived;
3. the unpacked case: regular files and folders only, names inside ``case/``, bounded sizes,
   then ``verify_case`` (every artifact's hash against the agent's custody chain).

What this cannot detect: a node whose root is compromised can forge a consistent case before
sealing it. The agent's custody chain records what the agent saw, nothing more.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tarfile
import tempfile
import time
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from podmortem.acquire.caveats import BUDGET_EXHAUSTED, NODE_AGENT_FAILED, NODE_AGENT_INTEGRITY
from podmortem.case import paths as case_paths
from podmortem.errors import AcquisitionError, IntegrityError, PodmortemError
from podmortem.findings import Caveat, Finding, Provenance

if TYPE_CHECKING:
    from podmortem.acquire.collector import TargetCollector
    from podmortem.acquire.runtimes.kubernetes import KubernetesRuntime

# Where the agent works inside its pod (an emptyDir), and the files of the hand-over.
WORK = "/podmortem-work"
CRI_SOCKET_IN_POD = "/run/podmortem/cri.sock"
CONTAINER = "podmortem-node-agent"
LABEL = "app.kubernetes.io/name"
LABEL_VALUE = "podmortem-node-agent"
# The store files the seal covers (the artifacts are covered by the custody log itself).
SEALED = ("case/case.json", "case/custody.jsonl", "case/hash_list.sha256")
# Derived or transient files of the agent's case that are not evidence and are not imported.
SKIPPED = frozenset({case_paths.LOCK, case_paths.INDEX, case_paths.INDEX + ".wal"})

# Per runtime (the scheme of the pod's containerID): the CRI socket, and the node folders
# mounted read-only at the same path so that what the agent reads from the runtime (the
# overlay upperdir named in mountinfo, the CRI log path) resolves inside its pod.
RUNTIME_DEFAULTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "containerd": ("/run/containerd/containerd.sock", ("/var/lib/containerd", "/var/log/pods")),
    "cri-o": ("/var/run/crio/crio.sock", ("/var/lib/containers/storage", "/var/log/pods")),
}

# The agent's script. Values come from the environment (never interpolated into the script),
# so a hostile case id or examiner name cannot become shell syntax.
AGENT_SCRIPT = r"""
W=/podmortem-work
trap 'exit 143' TERM
mkdir -p "$W/tmp" && export TMPDIR="$W/tmp" HOME="$W/tmp"
b=$(( PODMORTEM_DEADLINE - $(date +%s) )); [ "$b" -ge 1 ] || b=1
podmortem acquire "cri://$PODMORTEM_CID" --case "$W/case" --case-id "$PODMORTEM_CASE_ID" \
    --examiner "$PODMORTEM_EXAMINER" --budget "$b" \
    --cri-endpoint "unix://$PODMORTEM_CRI_SOCKET" $PODMORTEM_FLAGS
rc=$?
if [ -f "$W/case/case.json" ]; then
    (cd "$W" && sha256sum case/case.json case/custody.jsonl case/hash_list.sha256 > seal.tmp \
        && mv seal.tmp seal)
fi
echo "$rc" > "$W/rc.tmp" && mv "$W/rc.tmp" "$W/rc"
i=0
while [ ! -e "$W/collected" ] && [ "$i" -lt "$PODMORTEM_HOLD" ]; do sleep 1; i=$((i+1)); done
[ -e "$W/collected" ] || exit 124
exit "$rc"
""".strip()

# The transfer, run by exec in the agent's pod: the tar goes to stdout and, through a FIFO,
# to sha256sum, so the hash of the exact stream sent is known on the node side.
TRANSFER_SCRIPT = (
    'cd "$0" && rm -f transfer.fifo transfer.sha256 transfer.rc && mkfifo transfer.fifo && '
    "{ sha256sum < transfer.fifo > transfer.sha256 & "
    "{ tar -cf - case; echo $? > transfer.rc; } | tee transfer.fifo; wait; }"
)

# Container states that will not get better by waiting.
FATAL_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)
POLL_S = 0.3
WAIT_S = 8
# Wait on the node (0.1 s steps, WAIT_S at most) for the agent's exit status, print it.
WAIT_SCRIPT = (
    f'i=0; while [ ! -e "$0/rc" ] && [ "$i" -lt {WAIT_S * 10} ]; do sleep 0.1; i=$((i+1)); done; '
    'cat "$0/rc"'
)
MAX_MEMBERS = 1_000_000
MAX_RUN_DOC = 256 << 20
_SHA_LINE = re.compile(r"^([0-9a-f]{64})  (\S+)$")


class NodeAgentError(AcquisitionError):
    """The node agent did not deliver a case (a caveat of the target; exit 5 at the end)."""


class TransferRejectedError(IntegrityError):
    """What arrived from the node agent failed verification (exit 1 at the end)."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """How to run the node agent. ``cri_socket`` and ``host_paths`` default per runtime
    (:data:`RUNTIME_DEFAULTS`)."""

    image: str
    namespace: str = "podmortem"
    keep: bool = False
    cri_socket: str | None = None
    host_paths: tuple[str, ...] | None = None
    service_account: str = "podmortem-node-agent"
    max_transfer_bytes: int = 16 << 30
    # Share of the remaining budget the agent's own acquisition may use; the rest is for the
    # pod to start and for the transfer and import.
    agent_share: float = 0.6


def node_agent_job(
    *,
    pod: Mapping[str, Any],
    container_id: str,
    image: str,
    namespace: str = "podmortem",
    budget: float = 30.0,
    cri_socket: str = "/run/containerd/containerd.sock",
    host_paths: tuple[str, ...] = RUNTIME_DEFAULTS["containerd"][1],
    service_account: str = "podmortem-node-agent",
    case_id: str = "node-agent",
    examiner: str = "podmortem node agent",
    flags: tuple[str, ...] = (),
    deadline_epoch: int | None = None,
    hold_s: int | None = None,
    keep: bool = False,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    max_transfer_bytes: int = 16 << 30,
) -> dict[str, Any]:
    """The Job manifest that runs ``podmortem acquire cri://ID`` on the pod's node.

    Pinned with ``nodeName``, host PID namespace (host ``/proc``), privileged (reading other
    processes' ``/proc/<pid>/{mem,environ,root}`` needs ptrace access that LSM profiles of
    unprivileged containers refuse), the node's CRI socket, and the runtime's folders
    read-only. No service-account token (the agent never calls the API), no host network,
    a read-only root filesystem; it writes only into its own emptyDir."""
    spec = pod.get("spec") or {}
    node = spec.get("nodeName") or spec.get("node_name")
    if not node:
        raise AcquisitionError("the pod is not scheduled on a node: no node agent possible")
    deadline = deadline_epoch if deadline_epoch is not None else int(time.time() + budget)
    hold = hold_s if hold_s is not None else int(budget) + 60
    mounts: list[dict[str, Any]] = [
        {"name": "cri", "mountPath": CRI_SOCKET_IN_POD},
        {"name": "work", "mountPath": WORK},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "cri", "hostPath": {"path": cri_socket, "type": "Socket"}},
        {"name": "work", "emptyDir": {"sizeLimit": str(max_transfer_bytes)}},
    ]
    for i, hp in enumerate(dict.fromkeys(host_paths)):
        if not hp.startswith("/") or ".." in hp.split("/"):
            raise AcquisitionError(f"node-agent mount {hp!r} must be an absolute path")
        mounts.append({"name": f"host-{i}", "mountPath": hp, "readOnly": True})
        volumes.append({"name": f"host-{i}", "hostPath": {"path": hp, "type": "Directory"}})
    env = {
        "PODMORTEM_CID": container_id,
        "PODMORTEM_DEADLINE": str(deadline),
        "PODMORTEM_HOLD": str(hold),
        "PODMORTEM_CASE_ID": case_id,
        "PODMORTEM_EXAMINER": examiner,
        "PODMORTEM_CRI_SOCKET": CRI_SOCKET_IN_POD,
        "PODMORTEM_FLAGS": " ".join(flags),
    }
    job_labels = {LABEL: LABEL_VALUE, "app.kubernetes.io/managed-by": "podmortem", **(labels or {})}
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        # Kubernetes ends the agent even if podmortem dies before deleting it.
        "activeDeadlineSeconds": hold + 60,
        "template": {
            "metadata": {"labels": {LABEL: LABEL_VALUE}},
            "spec": {
                "nodeName": node,
                "hostPID": True,
                "restartPolicy": "Never",
                "serviceAccountName": service_account,
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "terminationGracePeriodSeconds": 5,
                # A tainted (cordoned, quarantined) node is exactly where the agent must run.
                "tolerations": [{"operator": "Exists"}],
                "containers": [
                    {
                        "name": CONTAINER,
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["/bin/sh", "-c", AGENT_SCRIPT],
                        "env": [{"name": k, "value": v} for k, v in env.items()],
                        "securityContext": {
                            "privileged": True,
                            "runAsUser": 0,
                            "readOnlyRootFilesystem": True,
                        },
                        "volumeMounts": mounts,
                    }
                ],
                "volumes": volumes,
            },
        },
    }
    if not keep:
        job_spec["ttlSecondsAfterFinished"] = 600  # a safety net; podmortem deletes it itself
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "generateName": "podmortem-node-agent-",
            "namespace": namespace,
            "labels": job_labels,
            "annotations": dict(annotations or {}),
        },
        "spec": job_spec,
    }


def _label_value(text: str) -> str:
    """A Kubernetes label value: 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends."""
    v = re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:63].strip("_.-")
    return v or "x"


# --------------------------------------------------------------------------- the agent


@dataclass(slots=True)
class Delivery:
    """What the agent delivered and how it was checked (kept as ``node-agent/transfer.json``)."""

    job: str
    pod: str
    node: str
    agent_rc: int | None = None
    seal: dict[str, str] = field(default_factory=dict)
    transfer_sha256: str = ""
    transfer_sha256_on_node: str = ""
    transfer_bytes: int = 0
    custody_head: str = ""
    artifacts: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


class NodeAgent:
    """One node-agent Job for one target: :meth:`start`, :meth:`collect`, :meth:`finish`."""

    def __init__(self, rt: KubernetesRuntime, config: AgentConfig) -> None:
        self.rt = rt
        self.cfg = config
        self.batch = rt.k8s.client.BatchV1Api(rt.client)
        self.core = rt.core
        self.job: str | None = None
        self.job_uid: str | None = None
        self.pod: str | None = None
        self.manifest: dict[str, Any] = {}
        self.finished = False

    # ------------------------------------------------------------------ lifecycle

    def start(self, c: TargetCollector) -> None:
        """Create the Job (returns at once; the pod starts while other steps run)."""
        info = c.info()
        kind = info.runtime.partition("/")[2]
        sock, mounts = RUNTIME_DEFAULTS.get(kind, RUNTIME_DEFAULTS["containerd"])
        remaining = c.budget.remaining()
        agent_budget = max(1.0, remaining * self.cfg.agent_share)
        flags = tuple(
            f
            for f, on in (
                ("--memory", c.opt.memory),
                ("--checkpoint", c.opt.checkpoint),
                ("--no-exec", not c.opt.exec_allowed),
            )
            if on
        )
        pod_doc = self.rt.client.sanitize_for_serialization(self.rt.pod_object())
        self.manifest = node_agent_job(
            pod=pod_doc,
            container_id=info.container_id,
            image=self.cfg.image,
            namespace=self.cfg.namespace,
            budget=agent_budget,
            cri_socket=self.cfg.cri_socket or sock,
            host_paths=self.cfg.host_paths if self.cfg.host_paths is not None else mounts,
            service_account=self.cfg.service_account,
            case_id=c.case.case_id,
            examiner=f"podmortem node agent for {c.case.examiner}",
            flags=flags,
            deadline_epoch=int(time.time() + agent_budget),
            hold_s=math.ceil(remaining) + 30,
            keep=self.cfg.keep,
            labels={
                "podmortem.io/case": _label_value(c.case.case_id),
                "podmortem.io/target-pod-uid": _label_value(str(info.pod.get("uid") or "")),
            },
            annotations={"podmortem.io/target": c.r.target, "podmortem.io/case-id": c.case.case_id},
            max_transfer_bytes=self.cfg.max_transfer_bytes,
        )
        created = self.rt.api(
            self.batch.create_namespaced_job, self.cfg.namespace, self.manifest, _request_timeout=10
        )
        self.job = str(created.metadata.name)
        self.job_uid = str(created.metadata.uid or "")
        c.case.log_action(
            "node_agent_job_created",
            {
                "target": c.r.target,
                "namespace": self.cfg.namespace,
                "job": self.job,
                "uid": self.job_uid,
                "node": pod_doc.get("spec", {}).get("nodeName"),
                "image": self.cfg.image,
                "container_id": info.container_id,
                "agent_budget_s": round(agent_budget, 3),
            },
        )
        c.put(
            "node-agent/job.json",
            self.rt.client.sanitize_for_serialization(created),
            source="api",
            command=f"BatchV1Api.create_namespaced_job {self.cfg.namespace}",
        )

    def finish(self, c: TargetCollector) -> None:
        """Delete the Job (propagationPolicy Background: its pod goes too), unless kept."""
        if self.job is None or self.finished:
            return
        self.finished = True
        if self.cfg.keep:
            c.case.log_action(
                "node_agent_job_kept", {"namespace": self.cfg.namespace, "job": self.job}
            )
            c.caveat(
                "acquisition-side-effect",
                f"node-agent Job {self.cfg.namespace}/{self.job} kept (--keep-node-agent); "
                "delete it when done",
            )
            return
        try:
            self.rt.api(
                self.batch.delete_namespaced_job,
                self.job,
                self.cfg.namespace,
                propagation_policy="Background",
                _request_timeout=10,
            )
        except PodmortemError as exc:
            c.case.log_action(
                "node_agent_job_delete_failed",
                {"namespace": self.cfg.namespace, "job": self.job, "error": exc.message},
            )
            c.caveat(
                "acquisition-side-effect",
                f"node-agent Job {self.cfg.namespace}/{self.job} could not be deleted "
                f"({exc.message}); its activeDeadlineSeconds and TTL end it later",
            )
            return
        c.case.log_action(
            "node_agent_job_deleted",
            {"namespace": self.cfg.namespace, "job": self.job, "propagation": "Background"},
        )

    # ------------------------------------------------------------------- collect

    def collect(self, c: TargetCollector) -> Delivery:
        """Wait for the agent's case, fetch and verify it, import it, merge its records.
        Raises :class:`NodeAgentError` or :class:`TransferRejectedError`."""
        if self.job is None:
            raise NodeAgentError("the node-agent Job was not created")
        t0 = time.monotonic()
        pod = self._wait_running(c)
        d = Delivery(job=self.job, pod=pod, node=str(self.manifest_node()))
        d.seconds["pod_running"] = round(time.monotonic() - t0, 3)
        d.agent_rc = self._wait_done(c)
        d.seconds["agent_done"] = round(time.monotonic() - t0, 3)
        seal = self._exec_text(c, ["cat", f"{WORK}/seal"])
        if d.agent_rc != 0 and seal is None:
            raise NodeAgentError(
                f"the node agent's podmortem exited {d.agent_rc} without a case{self._log_tail()}"
            )
        d.seal = _parse_sums(seal or "")
        if set(d.seal) != set(SEALED):
            raise TransferRejectedError(
                "the node agent's seal is missing or malformed (nothing to check the transfer "
                "against; the agent image needs sha256sum)"
            )
        staging = _staging_dir(c.case.root)
        try:
            self._transfer(c, staging, d)
            d.seconds["transferred"] = round(time.monotonic() - t0, 3)
            case_dir = staging / "case"
            _unpack(staging / "transfer.tar", staging, self.cfg.max_transfer_bytes)
            self._check(case_dir, d)
            d.seconds["verified"] = round(time.monotonic() - t0, 3)
            # The agent may go now; the case is safe here.
            self._exec_text(c, ["touch", f"{WORK}/collected"])
            d.seconds["released"] = round(time.monotonic() - t0, 3)
            run_doc = _read_run_document(case_dir)
            _import(c, case_dir, d)
            d.seconds["imported"] = round(time.monotonic() - t0, 3)
            _record_delivery(c, d)
            _merge(c, run_doc, d, self._agent_target())
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if d.agent_rc != 0:
            raise NodeAgentError(
                f"the node agent's podmortem exited {d.agent_rc}; its case was imported"
                f"{self._log_tail()}"
            )
        return d

    def manifest_node(self) -> str:
        return str(self.manifest["spec"]["template"]["spec"]["nodeName"])

    def _agent_target(self) -> str:
        env = self.manifest["spec"]["template"]["spec"]["containers"][0]["env"]
        cid = next(e["value"] for e in env if e["name"] == "PODMORTEM_CID")
        return f"cri://{cid}"

    def _wait_running(self, c: TargetCollector) -> str:
        """The Job's pod, once its container runs; fails fast on states that will not heal."""
        last = "no pod yet"
        while not c.budget.expired():
            pods = self.rt.api(
                self.core.list_namespaced_pod,
                self.cfg.namespace,
                label_selector=f"job-name={self.job}",
                _request_timeout=max(1.0, min(10.0, c.budget.remaining())),
            )
            for p in pods.items or []:
                owners = p.metadata.owner_references or []
                if self.job_uid and not any(o.uid == self.job_uid for o in owners):
                    continue  # a pod of another Job that once had this name
                self.pod = str(p.metadata.name)
                phase = p.status.phase if p.status else None
                last = f"pod {self.pod} {phase}"
                for st in (p.status.container_statuses or []) if p.status else []:
                    w = st.state.waiting if st.state else None
                    if w is not None:
                        last = f"pod {self.pod}: {w.reason}: {w.message or ''}".strip()
                        if w.reason in FATAL_WAITING:
                            raise NodeAgentError(f"node-agent {last}"[:600])
                    if st.state and st.state.running:
                        return self.pod
                    t = st.state.terminated if st.state else None
                    if t is not None:
                        return self.pod  # finished already: its emptyDir may still hold the case
                if phase in ("Failed", "Succeeded"):
                    reason = p.status.reason or p.status.message or phase
                    raise NodeAgentError(f"node-agent pod {self.pod} {reason}{self._log_tail()}")
            time.sleep(min(POLL_S, c.budget.remaining()))
        raise NodeAgentError(f"the node agent did not start within the budget ({last})")

    def _wait_done(self, c: TargetCollector) -> int:
        """The agent's exit status of its acquisition (``rc``, written atomically): each exec
        waits on the node for up to WAIT_S (fewer round trips, no polling delay)."""
        while not c.budget.expired():
            text = self._exec_text(c, ["/bin/sh", "-c", WAIT_SCRIPT, WORK])
            if text is not None and text.strip().lstrip("-").isdigit():
                return int(text.strip())
            if text is None and self._pod_ended():
                raise NodeAgentError(f"the node-agent pod ended early{self._log_tail()}")
            time.sleep(min(POLL_S, c.budget.remaining()))
        raise NodeAgentError("the node agent did not finish within the budget")

    def _require_pod(self) -> str:
        if self.pod is None:
            raise NodeAgentError("the node-agent pod is unknown")
        return self.pod

    def _pod_ended(self) -> bool:
        # A list, like the wait above: the operator Role needs no `get` on pods.
        try:
            pods = self.rt.api(
                self.core.list_namespaced_pod,
                self.cfg.namespace,
                label_selector=f"job-name={self.job}",
                _request_timeout=10,
            )
        except PodmortemError:
            return True
        phases = [p.status.phase for p in pods.items or [] if p.metadata.name == self.pod]
        return not phases or phases[0] in ("Failed", "Succeeded")

    def _exec_text(self, c: TargetCollector, cmd: list[str]) -> str | None:
        """A small exec into the agent; its stdout when it exited 0, else None."""
        pod = self._require_pod()
        out = self.rt.exec_in(
            self.cfg.namespace,
            pod,
            CONTAINER,
            cmd,
            deadline=time.monotonic() + max(0.5, min(WAIT_S + 2.0, c.budget.remaining())),
            max_bytes=64 << 10,
        )
        if out.rc != 0:
            return None
        return out.stdout.decode("utf-8", "replace")

    def _transfer(self, c: TargetCollector, staging: Path, d: Delivery) -> None:
        pod = self._require_pod()
        sha = hashlib.sha256()
        size = 0
        over = False
        with open(staging / "transfer.tar", "xb") as fh:

            def sink(data: bytes) -> None:
                nonlocal size, over
                if size + len(data) > self.cfg.max_transfer_bytes:
                    over = True
                    data = data[: max(0, self.cfg.max_transfer_bytes - size)]
                fh.write(data)
                sha.update(data)
                size += len(data)

            out = self.rt.exec_in(
                self.cfg.namespace,
                pod,
                CONTAINER,
                ["/bin/sh", "-c", TRANSFER_SCRIPT, WORK],
                deadline=c.budget.deadline,
                max_bytes=64 << 10,
                sink=sink,
                should_stop=lambda: over or c.budget.expired(),
            )
        d.transfer_sha256, d.transfer_bytes = sha.hexdigest(), size
        if over:
            raise NodeAgentError(
                f"the node agent's case exceeds {self.cfg.max_transfer_bytes} bytes; not imported"
            )
        if out.timed_out or c.budget.expired():
            raise NodeAgentError(
                f"the transfer did not finish within the budget ({size} bytes received)"
            )
        if out.rc != 0:
            why = (out.error or "") + " " + out.stderr[:200].decode("utf-8", "replace")
            status = "broke off" if out.rc is None else f"ended with status {out.rc}"
            raise TransferRejectedError(
                f"the transfer stream {status} after {size} bytes ({why.strip()[:300]})"
            )
        tail = self._exec_text(
            c, ["/bin/sh", "-c", 'cat "$0/transfer.rc" "$0/transfer.sha256"', WORK]
        )
        lines = (tail or "").split("\n")
        if len(lines) < 2 or lines[0].strip() != "0":
            raise TransferRejectedError(f"tar on the node failed (status {lines[0][:20]!r})")
        d.transfer_sha256_on_node = lines[1].split(" ", 1)[0].strip()
        if d.transfer_sha256_on_node != d.transfer_sha256:
            raise TransferRejectedError(
                f"the transfer differs from what the node sent: sha256 on the node "
                f"{d.transfer_sha256_on_node[:16]}..., received {d.transfer_sha256[:16]}... "
                f"({size} bytes)"
            )

    def _check(self, case_dir: Path, d: Delivery) -> None:
        from podmortem.case import verify_case

        for rel, want in d.seal.items():
            got = _sha256_file(case_dir.parent / rel)
            if got != want:
                raise TransferRejectedError(f"{rel} differs from the agent's seal")
        try:
            report = verify_case(case_dir)
        except PodmortemError as exc:
            raise TransferRejectedError(f"the agent's case does not open: {exc.message}") from exc
        if not report.ok:
            shown = "; ".join(str(p) for p in report.problems[:3])
            raise TransferRejectedError(
                f"the agent's case fails verification ({len(report.problems)} problem(s)): {shown}"[
                    :800
                ]
            )
        d.custody_head = report.custody_head

    def _log_tail(self) -> str:
        """The last lines of the agent pod's log, for the error message (bounded; escaped
        by whoever prints it)."""
        if self.pod is None:
            return ""
        try:
            resp = self.core.read_namespaced_pod_log(
                self.pod,
                self.cfg.namespace,
                container=CONTAINER,
                tail_lines=5,
                limit_bytes=2048,
                _preload_content=False,
                _request_timeout=5,
            )
            try:
                text = bytes(resp.data).decode("utf-8", "replace")
            finally:
                resp.release_conn()
        except Exception:
            return ""
        text = " | ".join(line.strip() for line in text.splitlines() if line.strip())
        return f"; agent log: {text[:400]}" if text else ""


# --------------------------------------------------------------------- transfer helpers


def _staging_dir(case_root: Path) -> Path:
    """Beside the case folder (same filesystem, so usually room for it), else the system
    temporary folder; removed when the transfer is done, whatever its outcome."""
    try:
        return Path(tempfile.mkdtemp(prefix=".podmortem-node-agent-", dir=case_root.parent))
    except OSError:
        return Path(tempfile.mkdtemp(prefix="podmortem-node-agent-"))


def _parse_sums(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines()[:16]:
        m = _SHA_LINE.match(line.strip())
        if m and m.group(2) in SEALED:
            out[m.group(2)] = m.group(1)
    return out


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    except OSError:
        return ""
    return h.hexdigest()


def _unpack(tar_path: Path, dest: Path, max_bytes: int) -> None:
    """Unpack the agent's tar into ``dest/case``: regular files and folders only, every name
    inside ``case/``, no duplicates, bounded. Anything else rejects the transfer: a case
    never holds links or devices, and this tar comes from a node that may be compromised."""
    seen: set[str] = set()
    total = 0
    try:
        with tarfile.open(tar_path, mode="r|") as tar:
            for n, m in enumerate(tar):
                if n >= MAX_MEMBERS:
                    raise TransferRejectedError(
                        f"the agent's tar holds more than {MAX_MEMBERS} entries"
                    )
                rel = _member_path(m.name)
                if rel in seen:
                    raise TransferRejectedError(f"the agent's tar names {rel[:120]!r} twice")
                seen.add(rel)
                if rel == "case" or rel.startswith("case/.partial"):
                    continue  # interrupted writes of the agent: named by its verify, not evidence
                target = dest / rel
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not m.isfile():
                    raise TransferRejectedError(f"the agent's tar holds a non-file {rel[:120]!r}")
                total += m.size
                if total > max_bytes:
                    raise TransferRejectedError("the agent's tar unpacks beyond the transfer limit")
                if PurePosixPath(rel).name in SKIPPED and rel.count("/") == 1:
                    continue
                src = tar.extractfile(m)
                if src is None:  # pragma: no cover - isfile() members always have data
                    raise TransferRejectedError(f"no data for {rel[:120]!r}")
                target.parent.mkdir(parents=True, exist_ok=True)
                _write_new(target, src, m.size)
    except tarfile.TarError as exc:
        raise TransferRejectedError(f"the agent's tar is damaged or truncated: {exc}") from exc
    if not (dest / "case" / case_paths.MANIFEST).is_file():
        raise TransferRejectedError("the agent's tar holds no case manifest")


def _member_path(name: str) -> str:
    p = PurePosixPath(name)
    parts = [x for x in p.parts if x != "."]
    if (
        p.is_absolute()
        or not parts
        or parts[0] != "case"
        or any(x in ("..", "") for x in parts)
        or any(len(x) > case_paths.MAX_COMPONENT for x in parts)
        or len(name) > case_paths.MAX_PATH + 64
        or re.search(r"[\x00-\x1f\x7f\\]", name)
    ):
        raise TransferRejectedError(f"unsafe name in the agent's tar: {name[:120]!r}")
    return "/".join(parts)


def _write_new(target: Path, src: IO[bytes], size: int) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        left = size
        while left > 0:
            buf = src.read(min(1 << 20, left))
            if not buf:
                raise TransferRejectedError(f"the agent's tar ends inside {target.name!r}")
            out.write(buf)
            left -= len(buf)


def _import(c: TargetCollector, case_dir: Path, d: Delivery) -> None:
    """Every file of the verified agent case into the investigator's case under
    ``<target>/node-agent/case/``, each hash checked again on the way in (against the
    agent's custody log for artifacts, the seal for the store files)."""
    from podmortem.case.store import load_manifest

    manifest = load_manifest(case_dir)
    want = {str(a["path"]): str(a["sha256"]) for a in manifest["artifacts"] if isinstance(a, dict)}
    for rel, sha in d.seal.items():
        want[rel.removeprefix("case/")] = sha
    base = f"{c.prefix}/node-agent/case"
    command = (
        f"node-agent Job {d.job} on {d.node}: exec tar of its case (sha256 {d.transfer_sha256})"
    )
    for rel in sorted(want):
        rec = c.case.add_file(
            f"{base}/{rel}",
            case_dir / rel,
            source="node",
            command=command,
            sensitive=_agent_sensitive(manifest, rel),
        )
        if rec.sha256 != want[rel]:
            raise TransferRejectedError(f"{rel} changed while it was imported")
    d.artifacts = len(want)
    c.case.log_action(
        "node_agent_case_imported",
        {
            "target": c.r.target,
            "job": d.job,
            "into": f"artifacts/{base}",
            "transfer_sha256": d.transfer_sha256,
            "transfer_bytes": d.transfer_bytes,
            "agent_custody_head": d.custody_head,
            "files": d.artifacts,
        },
    )


def _record_delivery(c: TargetCollector, d: Delivery) -> None:
    """How the agent's case was checked, kept beside it."""
    c.put(
        "node-agent/transfer.json",
        {
            "job": d.job,
            "pod": d.pod,
            "node": d.node,
            "agent_rc": d.agent_rc,
            "seal": d.seal,
            "transfer_sha256": d.transfer_sha256,
            "transfer_sha256_on_node": d.transfer_sha256_on_node,
            "transfer_bytes": d.transfer_bytes,
            "agent_custody_head": d.custody_head,
            "files": d.artifacts,
            "seconds": d.seconds,
        },
        source="analysis",
        command="podmortem: node-agent transfer checks",
    )


def _agent_sensitive(manifest: Mapping[str, Any], rel: str) -> bool:
    for a in manifest["artifacts"]:
        if isinstance(a, dict) and a.get("path") == rel:
            return bool(a.get("sensitive"))
    return False


# ------------------------------------------------------------------------ merge records


def _read_run_document(case_dir: Path) -> dict[str, Any]:
    """The agent's run document (``acquisition.json`` of its one run), from its verified case."""
    docs = sorted((case_dir / "artifacts" / "acquisitions").glob("*/acquisition.json"))
    if len(docs) != 1 or docs[0].stat().st_size > MAX_RUN_DOC:
        raise TransferRejectedError("the agent's case holds no single run document")
    try:
        doc = json.loads(docs[0].read_bytes())
    except ValueError as exc:
        raise TransferRejectedError(f"the agent's run document is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise TransferRejectedError("the agent's run document is not a JSON object")
    # The run document lists a summary of each process; the target's own artifacts hold the
    # full records (NSpid chain, state, fds...), which is what this target's result carries.
    targets = [t for t in (docs[0].parent / "targets").glob("*") if t.is_dir()]
    if len(targets) == 1:
        for key, rel, inner in (
            ("processes", "t1/processes.json", "processes"),
            ("sockets", "t1/sockets.json", None),
            ("fs_changes", "t4/fs_changes.json", "changes"),
        ):
            f = targets[0] / rel
            if not f.is_file() or f.stat().st_size > MAX_RUN_DOC:
                continue
            try:
                full = json.loads(f.read_bytes())
            except ValueError as exc:
                raise TransferRejectedError(f"the agent's {rel} is not JSON: {exc}") from exc
            doc[key] = full.get(inner) if inner and isinstance(full, dict) else full
    return doc


def _merge(c: TargetCollector, doc: Mapping[str, Any], d: Delivery, agent_target: str) -> None:
    """The agent's run document into this target's result: its processes, sockets,
    writable-layer changes, findings and caveats, re-addressed to this target and to where
    its artifacts now are."""
    from podmortem.acquire.node import procfs, sockets, writable_layer

    moved = f"{c.prefix}/node-agent/case/artifacts/"
    bad = 0
    for key, cls, out in (
        ("processes", procfs.ProcessRecord, c.r.processes),
        ("sockets", sockets.SocketRecord, c.r.sockets),
        ("fs_changes", writable_layer.FsChange, c.r.fs_changes),
    ):
        for item in _items(doc, key):
            rec = _record(cls, item)
            if rec is None:
                bad += 1
            else:
                out.append(rec)
    for item in _items(doc, "findings"):
        try:
            f = Finding.from_dict(item)
        except (KeyError, TypeError, ValueError):
            bad += 1
            continue
        subject = f.subject
        if subject.startswith(agent_target):
            subject = c.r.target + subject[len(agent_target) :]
        c.r.findings.append(
            replace(
                f,
                subject=subject,
                evidence=tuple(moved + e for e in f.evidence),
                extra={**dict(f.extra), "node_agent_job": d.job},
            )
        )
    for item in _items(doc, "caveats"):
        try:
            cv = Caveat.from_dict(item)
        except (KeyError, TypeError, ValueError):
            bad += 1
            continue
        c.r.caveats.append(
            Caveat(
                cv.kind,
                f"node agent: {cv.message}",
                Provenance(source=c.r.target, parser="podmortem.acquire (node agent)"),
                {**dict(cv.details), "node_agent_job": d.job},
            )
        )
    targets = [t for t in _items(doc, "targets")]
    for t in targets:
        for s in t.get("steps") or []:
            if isinstance(s, dict):
                c.r.steps.append({**s, "step": f"node agent: {s.get('step')}"})
    c.r.node_view = any(t.get("node_view") is True for t in targets)
    if bad:
        c.caveat("malformed-record", f"{bad} record(s) of the node agent's run could not be read")


def _items(doc: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    v = doc.get(key)
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _record(cls: Any, item: Mapping[str, Any]) -> Any:
    """``cls(**item)`` for a dataclass, only when every value has its field's type (the
    document comes from a node that may be compromised; a wrong type would break the index)."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in item:
            if not _fits(item[f.name], hints[f.name]):
                return None
            kwargs[f.name] = item[f.name]
    try:
        return cls(**kwargs)
    except TypeError:  # a required field is missing
        return None


def _fits(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1 << 63
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value) if args else True
    if origin is dict:
        return isinstance(value, dict)
    return hint is Any


# Re-exported so that callers need one name.
__all__ = [
    "AgentConfig",
    "Delivery",
    "NodeAgent",
    "NodeAgentError",
    "TransferRejectedError",
    "node_agent_job",
]


def start_step(c: TargetCollector, agent: NodeAgent) -> Callable[[], None]:
    """The collector step that creates the Job; a refusal is a node-agent caveat that says
    what to fix (the namespace and RBAC ship in deploy/rbac/podmortem-acquire.yaml)."""

    def step() -> None:
        try:
            agent.start(c)
        except PodmortemError as exc:
            hint = ""
            if any(f"failed: {code} " in exc.message for code in (401, 403, 404)):
                hint = (
                    f" (does namespace {agent.cfg.namespace!r} exist, and may you create Jobs "
                    "there? see deploy/rbac/podmortem-acquire.yaml)"
                )
            c.caveat(
                NODE_AGENT_FAILED,
                f"node agent: the Job could not be created: {exc.message}{hint}"[:1000],
            )

    return step


def collect_step(c: TargetCollector, agent: NodeAgent) -> Callable[[], None]:
    """The collector step: the agent's delivery, or a caveat that says why not."""

    def step() -> None:
        try:
            d = agent.collect(c)
        except TransferRejectedError as exc:
            c.case.log_action(
                "node_agent_case_rejected",
                {"target": c.r.target, "job": agent.job, "reason": exc.message},
            )
            c.caveat(
                NODE_AGENT_INTEGRITY,
                f"node agent: transfer rejected, nothing of it imported: {exc.message}",
                job=agent.job,
            )
            c.r.node_view = False
            return
        except PodmortemError as exc:
            c.caveat(NODE_AGENT_FAILED, f"node agent: {exc.message}"[:1000], job=agent.job)
            if c.budget.expired():
                c.caveat(BUDGET_EXHAUSTED, "the node view (node agent) did not arrive in time")
            return
        except Exception as exc:  # a bug of ours must still read as "no node view"
            c.caveat(
                NODE_AGENT_FAILED,
                f"node agent: internal error: {type(exc).__name__}: {exc}"[:1000],
                job=agent.job,
            )
            return
        c.progress(c.r.target, f"node agent: {d.artifacts} files")

    return step
