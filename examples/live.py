"""The live part of the bundled example: a container started from the compromised image on a
real engine, attacked through ``exec`` the way the audit log tells it, ready to be acquired.

The container carries the labels cri-dockerd (and dockershim before it) put on every
Kubernetes container, so the runtime says which pod it is, as on a real node. The attack is
harmless and stays inside the container: it drops a copy of busybox as ``/tmp/.x/sleep``, a
stage-two script, a crontab line, and runs the dropped binary. Nothing is sent anywhere.

The audit logs for the live run are written by ``make_examples.live_logs`` with the exec at
the moment it really happened and the command really run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import compromised_image
import make_examples

from podmortem.report.evidence import parse_time

NAMESPACE = "shop"
CONTAINER = "app"
POD_UID = "5f0c2a9e-7d41-4b3a-9c8e-1a2b3c4d5e6f"
LIVE_COMMAND = [
    "sh",
    "-c",
    "mkdir -p /tmp/.x && printf '#!/bin/sh\\n# stage two (example)\\n' > /tmp/.x/x.sh"
    " && chmod +x /tmp/.x/x.sh && cp /bin/busybox /tmp/.x/sleep"
    " && echo '* * * * * /tmp/.x/x.sh' >> /etc/crontabs/root && exec /tmp/.x/sleep 3600",
]


@dataclass
class LiveScenario:
    container_id: str
    name: str
    exec_time: datetime
    command: list[str]
    image: compromised_image.BuiltImage
    audit_logs: list[Path]

    @property
    def target(self) -> str:
        return f"docker://{self.name}"


def start(client: Any, workdir: Path, *, name_suffix: str = "") -> LiveScenario:
    """Load the image into ``client``'s engine, start the pod's container, attack it."""
    workdir.mkdir(parents=True, exist_ok=True)
    img = compromised_image.build(workdir / "payments-image.tar")
    if not img.runnable:
        raise RuntimeError("no /bin/busybox on this machine: the example image cannot run")
    client.images.load(img.path.read_bytes())
    name = f"k8s_{CONTAINER}_{make_examples.POD}_{NAMESPACE}_{POD_UID}_0{name_suffix}"
    container = client.containers.run(
        img.tag,
        name=name,
        detach=True,
        network_mode="none",
        labels={
            "io.kubernetes.pod.name": make_examples.POD,
            "io.kubernetes.pod.namespace": NAMESPACE,
            "io.kubernetes.pod.uid": POD_UID,
            "io.kubernetes.container.name": CONTAINER,
            "podmortem.test": "1",
        },
    )
    container.reload()
    started = parse_time(container.attrs["State"]["StartedAt"]) or datetime.now(UTC)
    # Let the container's own processes start clearly before the exec (distinct times; the
    # node's process start times are only as good as /proc/stat's whole-second boot time).
    time.sleep(3.0)
    exec_time = datetime.now(UTC)
    exec_id = client.api.exec_create(container.id, LIVE_COMMAND)["Id"]
    client.api.exec_start(exec_id, detach=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        top = client.api.top(container.id)
        if any("/tmp/.x/sleep" in " ".join(p) for p in top.get("Processes") or []):
            break
        time.sleep(0.2)
    else:
        raise RuntimeError("the example attack did not start in the container")
    # The audit story goes on after the exec (privileged pod, binding, event deletion): its
    # steps come after the exec session has done its work (however slow a loaded machine
    # made it), and the last one is in the past before anyone acquires.
    pace = (datetime.now(UTC) - exec_time).total_seconds() + make_examples.LIVE_PACE
    logs = make_examples.live_logs(
        workdir / "audit", exec_time, LIVE_COMMAND, img.tag, started=started, pace=pace
    )
    last = exec_time.timestamp() + 3 * pace
    time.sleep(max(0.0, last - time.time() + 0.2))
    return LiveScenario(str(container.id), name, exec_time, LIVE_COMMAND, img, logs)


def stop(client: Any, scenario: LiveScenario) -> None:
    """Remove the example container (by id) and its image."""
    try:
        client.api.remove_container(scenario.container_id, force=True)
    finally:
        try:
            client.api.remove_image(scenario.image.tag, force=True)
        except Exception:  # noqa: BLE001, S110 - another run may use the same image
            pass
