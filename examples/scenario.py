"""Set up the bundled example for ``podmortem investigate`` (``scripts/demo.sh`` calls this).

    python examples/scenario.py prepare WORKDIR   prints investigate's arguments, one a line
    python examples/scenario.py cleanup WORKDIR   removes the live container, if one was made

``prepare`` builds the compromised image (``compromised_image.py``). When the test Docker
engine runs (``scripts/engines.sh start``; ``PODMORTEM_DOCKER_HOST`` to point elsewhere), it
also starts a live container from that image, attacks it by exec, and writes the audit logs
re-timed around that exec: investigate then acquires the container and exports its image
through the engine. Otherwise the committed audit logs and the image archive are used.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import compromised_image  # noqa: E402
import live  # noqa: E402

DOCKER_HOST = os.environ.get("PODMORTEM_DOCKER_HOST", "unix:///run/podmortem-ci/docker.sock")


def _docker():  # type: ignore[no-untyped-def]
    if not DOCKER_HOST.startswith("unix://") or not Path(DOCKER_HOST[7:]).exists():
        return None
    try:
        import docker

        client = docker.DockerClient(base_url=DOCKER_HOST, timeout=20)
        client.ping()
        return client
    except Exception:  # noqa: BLE001 - no engine: the offline example
        return None


def prepare(work: Path) -> list[str]:
    work.mkdir(parents=True, exist_ok=True)
    client = _docker() if os.environ.get("PODMORTEM_EXAMPLE_OFFLINE") != "1" else None
    if client is not None and Path("/bin/busybox").exists():
        sc = live.start(client, work)
        (work / "live.json").write_text(json.dumps({"container_id": sc.container_id,
                                                    "tag": sc.image.tag}))
        print(f"example: live container {sc.name} on {DOCKER_HOST}", file=sys.stderr)
        args = [sc.target, "--docker-host", DOCKER_HOST]
        for log in sc.audit_logs:
            args += ["--audit", str(log)]
        return args
    img = compromised_image.build(work / "payments-image.tar")
    print("example: offline (no test engine, or PODMORTEM_EXAMPLE_OFFLINE=1): image archive + audit logs",
          file=sys.stderr)
    return ["--image", str(img.path), "--audit", str(HERE / "audit" / "eks-attack.json"),
            "--audit", str(HERE / "audit" / "native-attack.jsonl")]


def cleanup(work: Path) -> None:
    state = work / "live.json"
    if not state.exists():
        return
    info = json.loads(state.read_text())
    client = _docker()
    if client is None:
        return
    try:
        client.api.remove_container(info["container_id"], force=True)
        client.api.remove_image(info["tag"], force=True)
    except Exception as exc:  # noqa: BLE001
        print(f"example: cleanup: {exc}", file=sys.stderr)
    state.unlink()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("prepare", "cleanup"):
        sys.exit(__doc__)
    if sys.argv[1] == "prepare":
        print("\n".join(prepare(Path(sys.argv[2]))))
    else:
        cleanup(Path(sys.argv[2]))
