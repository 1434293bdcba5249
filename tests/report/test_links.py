from __future__ import annotations

from pathlib import Path

import pytest
from helpers import TARGET, change, evidence, exec_event, image, proc, runtime

from podmortem.report import links, timeline
from podmortem.report.model import process_tree

LAYERS = [
    {"index": 0, "created_by": "ADD rootfs", "added": ["/bin/busybox", "/etc/crontabs/root"]},
    {"index": 1, "created_by": "COPY app", "added": ["/app/server.sh", "/app/.env"]},
    {"index": 2, "created_by": "RUN rm /app/.env", "deleted": ["/app/.env"]},
]


def _links(tmp_path: Path, audit, rts, images=()) -> list[links.Link]:  # type: ignore[no-untyped-def]
    ev = evidence(tmp_path, audit, rts, list(images))
    return links.correlate(ev, timeline.build(ev))


def _pairs(found: list[links.Link], relation: str) -> set[tuple[str, str]]:
    return {(lk.source, lk.target) for lk in found if lk.relation == relation}


def test_exec_spawns_its_session_not_the_workload(tmp_path: Path) -> None:
    procs = [
        proc(1001, 900, -60, ["/bin/sh", "/app/server.sh"], "/bin/busybox"),  # init
        proc(1007, 1001, 1.0, ["sleep", "60"], "/bin/busybox"),  # workload child, in window
        proc(1008, 950, 0.5, ["/tmp/.x/sleep", "3600"], "/tmp/.x/sleep"),  # exec'd (shim parent)
        proc(1009, 1008, 2.0, ["sh", "-c", "id"], "/bin/busybox"),  # its child
    ]
    found = _links(
        tmp_path,
        [exec_event("e1", 0, ["sh", "-c", "exec /tmp/.x/sleep 3600"])],
        [runtime(procs, [])],
    )
    spawned = _pairs(found, links.SPAWNED)
    assert spawned == {
        ("audit:e1", f"process:{TARGET}:1008"),
        ("audit:e1", f"process:{TARGET}:1009"),
    }
    strong = {lk.target: lk.confidence for lk in found if lk.relation == links.SPAWNED}
    assert strong[f"process:{TARGET}:1008"] == "high"  # the command names /tmp/.x/sleep


def test_process_outside_any_exec_window_is_not_linked(tmp_path: Path) -> None:
    procs = [
        proc(1001, 900, -60, ["sh"], "/bin/busybox"),
        proc(1008, 950, 3600, ["nc", "-l"], "/bin/busybox"),
    ]
    found = _links(tmp_path, [exec_event("e1", 0, ["sh"])], [runtime(procs, [])])
    assert _pairs(found, links.SPAWNED) == set()


def test_other_pod_or_container_is_not_linked(tmp_path: Path) -> None:
    procs = [
        proc(1001, 900, -60, ["sh"], "/bin/busybox"),
        proc(1008, 950, 1, ["sh"], "/bin/busybox"),
    ]
    audit = [
        exec_event("e1", 0, ["sh"], pod="other"),
        exec_event("e2", 0, ["sh"], container="side"),
    ]
    assert _pairs(_links(tmp_path, audit, [runtime(procs, [])]), links.SPAWNED) == set()


def test_file_goes_to_the_latest_exec_before_it(tmp_path: Path) -> None:
    audit = [exec_event("e1", 0, ["sh"]), exec_event("e2", 100, ["sh"])]
    changes = [
        change("/tmp/a", "added", 10),
        change("/tmp/b", "added", 130),
        change("/tmp/old", "added", -3600),
        change("/tmp/gone", "deleted", 20),
    ]
    wrote = _pairs(_links(tmp_path, audit, [runtime([], changes)]), links.LIKELY_WROTE)
    assert wrote == {("audit:e1", f"file:{TARGET}:/tmp/a"), ("audit:e2", f"file:{TARGET}:/tmp/b")}


def test_origin_in_the_image_or_dropped_at_runtime(tmp_path: Path) -> None:
    procs = [
        proc(1001, 900, -60, ["sh"], "/bin/busybox"),
        proc(1008, 950, 1, ["/tmp/.x/sleep"], "/tmp/.x/sleep"),
        proc(1010, 950, 1, ["/app/.env"], "/app/.env"),
    ]  # deleted by layer 2: not in image
    changes = [change("/tmp/.x/sleep", "added", 1), change("/etc/crontabs/root", "modified", 2)]
    found = _links(tmp_path, [], [runtime(procs, changes)], [image(LAYERS)])
    img = "image:artifacts/analysis/image-1.json"
    layer0 = "layer:artifacts/analysis/image-1.json:0"
    assert (f"process:{TARGET}:1001", layer0) in _pairs(found, links.FROM_LAYER)
    not_from = _pairs(found, links.NOT_FROM_IMAGE)
    assert (f"process:{TARGET}:1008", f"file:{TARGET}:/tmp/.x/sleep") in not_from
    assert (f"process:{TARGET}:1010", img) in not_from
    assert (f"file:{TARGET}:/tmp/.x/sleep", img) in not_from
    assert (f"file:{TARGET}:/etc/crontabs/root", layer0) in _pairs(found, links.MODIFIES_IMAGE_FILE)


def test_no_origin_links_for_another_image(tmp_path: Path) -> None:
    procs = [proc(1001, 900, -60, ["sh"], "/bin/busybox")]
    found = _links(tmp_path, [], [runtime(procs, [])], [image(LAYERS, image_id="sha256:other")])
    assert not found


def test_image_to_the_pods_that_ran_it(tmp_path: Path) -> None:
    create = exec_event("p1", -100, [])
    create.subresource, create.verb, create.resource = "", "create", "pods"
    create.request_object = {"spec": {"containers": [{"image": "shop/payments:1"}]}}
    pinned = exec_event("p2", -90, [])
    pinned.subresource, pinned.verb = "", "create"
    pinned.request_object = {
        "spec": {
            "template": {"spec": {"containers": [{"image": "registry/shop/payments@sha256:abc"}]}}
        }
    }
    pinned.resource = "deployments"
    found = _links(tmp_path, [create, pinned], [runtime([], [])], [image(LAYERS)])
    ran = {lk.target: lk.confidence for lk in found if lk.relation == links.RAN_IMAGE}
    # a tag is weak evidence (it can move), a digest strong; the runtime's own word is strong
    assert ran == {"audit:p1": "low", "audit:p2": "high", f"container:{TARGET}:started": "high"}


@pytest.mark.parametrize("n", [1, 50])
def test_process_tree_survives_a_pid_loop(n: int) -> None:
    procs = [{"pid": i, "ppid": (i + 1) % n} for i in range(n)]  # every pid is a parent
    procs.append({"pid": 10_000, "ppid": 0})
    order = process_tree(procs)
    assert sorted(p["pid"] for _, p in order) == sorted(p["pid"] for p in procs)


def test_renamed_copy_of_an_image_file(tmp_path: Path) -> None:
    ev = evidence(
        tmp_path,
        [],
        [runtime([], [change("/tmp/.x/sleep", "added", 1), change("/bin/busybox", "added", 1)])],
        [image(LAYERS)],
    )
    ev.image_hashes = {
        "0" * 64: [("sha256:abc", "/bin/busybox", 0)],
        "1" * 64: [("sha256:other", "/x", 0)],
    }
    found = links.correlate(ev, timeline.build(ev))
    # the same path is no copy; another image's file is not this image's
    assert _pairs(found, links.COPY_OF_IMAGE_FILE) == {
        (f"file:{TARGET}:/tmp/.x/sleep", "layer:artifacts/analysis/image-1.json:0")
    }
