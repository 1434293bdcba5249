"""The CloudWatch Logs source against moto's server (boto3 through AWS_ENDPOINT_URL):
events put into an EKS audit stream come out once each, across polls and a restart from
the saved position, including an event ingested late with an older timestamp."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

import pytest
from burst import burst

from podmortem.audit.analyze import load_rules
from podmortem.findings import Severity
from podmortem.watch.jsonlog import JsonLog
from podmortem.watch.loop import Watcher
from podmortem.watch.responder import ResponsePolicy
from podmortem.watch.sources.cloudwatch import CloudWatchSource

GROUP = "/aws/eks/prod/cluster"
STREAM = "kube-apiserver-audit-0123456789abcdef"


def put(client: object, events: list[dict[str, object]], base_ms: int) -> None:
    client.put_log_events(  # type: ignore[attr-defined]
        logGroupName=GROUP,
        logStreamName=STREAM,
        logEvents=[
            {"timestamp": base_ms + i, "message": json.dumps(e)} for i, e in enumerate(events)
        ],
    )


@pytest.fixture
def logs(aws_env: str) -> object:
    boto3 = pytest.importorskip("boto3")
    client = boto3.client("logs", region_name="us-east-1")
    client.create_log_group(logGroupName=GROUP)
    client.create_log_stream(logGroupName=GROUP, logStreamName=STREAM)
    return client


def ids(data: bytes) -> list[str]:
    return [json.loads(x)["auditID"] for x in data.splitlines() if x.strip()]


def test_each_event_once_across_polls_and_restart(logs: object) -> None:
    events = burst(30)
    base = 1_795_000_000_000
    put(logs, events[:20], base)
    src = CloudWatchSource.from_environment(GROUP, region="us-east-1")
    c1 = src.poll(1 << 20)
    assert c1 is not None
    got = ids(c1.data)
    assert got == [e["auditID"] for e in events[:20]]
    assert src.poll(1 << 20) is None  # nothing new: nothing handed out again

    # A restart from the saved position; one more event, and a late one older than the
    # newest seen (within the overlap).
    again = CloudWatchSource.from_environment(GROUP, region="us-east-1")
    again.seek(json.loads(json.dumps(c1.position)))
    put(logs, events[20:29], base + 100)
    put(logs, events[29:], base + 5)
    c2 = again.poll(1 << 20)
    assert c2 is not None
    assert sorted(ids(c2.data)) == sorted(e["auditID"] for e in events[20:])


def test_non_json_message_is_handed_on_and_noted(logs: object) -> None:
    logs.put_log_events(  # type: ignore[attr-defined]
        logGroupName=GROUP,
        logStreamName=STREAM,
        logEvents=[{"timestamp": 1_795_000_000_000, "message": "not json\nat all"}],
    )
    src = CloudWatchSource.from_environment(GROUP, region="us-east-1")
    c = src.poll(1 << 20)
    assert c is not None
    assert c.data == b"not json at all\n"
    assert [n["event"] for n in c.notes] == ["message-not-json"]


def test_watch_over_cloudwatch_finds_the_exec(logs: object, tmp_path: Path) -> None:
    from fake_actions import RecordingActions

    put(logs, burst(400, pods=3), 1_795_000_000_000)
    actions = RecordingActions()
    with (tmp_path / "log.jsonl").open("a") as logf:
        run_once(logs, tmp_path, actions, logf)
    assert sorted(p for s, p in actions.calls if s == "acquire") == [
        "default/web-0",
        "default/web-1",
        "default/web-2",
    ]


def run_once(logs: object, tmp_path: Path, actions: object, logf: TextIO) -> None:
    w = Watcher(
        [CloudWatchSource.from_environment(GROUP, region="us-east-1")],
        state_dir=tmp_path / "state",
        rules=load_rules(),
        policy=ResponsePolicy(mode="acquire", min_severity=Severity.HIGH, cooldown_s=0),
        actions=actions,  # type: ignore[arg-type]
        case_root=tmp_path / "cases",
        log=JsonLog(logf),
    )
    w.start()
    while w.step():
        pass
    w.close()
