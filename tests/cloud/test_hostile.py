"""Hostile or broken input: node providerIDs, label selectors, playbooks, recorded undo
state and a tampered custody log. Each is refused with a one-line InputError (or an
IntegrityError for the log) and nothing is sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podmortem.case import Case
from podmortem.cloud import labels
from podmortem.cloud.calls import MAX_RESPONSE, CallLog, ProviderRefused, bounded, to_jsonable
from podmortem.cloud.executor import Procedure, StepContext
from podmortem.cloud.kubernetes import parse_provider_id, selector_matches
from podmortem.cloud.model import Outcome, Status, Target
from podmortem.cloud.playbook import parse
from podmortem.errors import InputError, IntegrityError


@pytest.mark.parametrize(
    ("provider", "pid"),
    [
        ("eks", "aws:///us-east-1a/i-0abc/../../etc"),
        ("eks", "gce://p/z/name"),
        (
            "aks",
            "azure:///subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/"
            "virtualMachineScaleSets/x/virtualMachines/1;rm",
        ),
        ("gke", "gce://p/z/NAME_WITH_CAPS"),
        ("gke", "gce://p/z/name\n"),
    ],
)
def test_hostile_provider_ids_are_refused(provider: str, pid: str) -> None:
    with pytest.raises(InputError):
        parse_provider_id(provider, pid, Target(provider, "c"))  # type: ignore[arg-type]


def test_good_provider_ids() -> None:
    t = Target("eks", "c")
    parse_provider_id("eks", "aws:///us-east-1a/i-0123456789abcdef0", t)
    assert (t.instance, t.zone) == ("i-0123456789abcdef0", "us-east-1a")
    t = Target("gke", "c")
    parse_provider_id("gke", "gce://proj/europe-west1-b/gke-n-1", t)
    assert (t.instance, t.zone, t.extra["project"]) == ("gke-n-1", "europe-west1-b", "proj")


@pytest.mark.parametrize(
    ("selector", "labels_", "want"),
    [
        ({}, {"a": "1"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
            {"a": "2"},
            True,
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
            {"a": "1"},
            False,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "q", "operator": "DoesNotExist"}]}, {"q": "x"}, False),
        ({"matchExpressions": [{"key": "q", "operator": "Exists"}]}, {}, False),
    ],
)
def test_selector_semantics(selector: dict[str, Any], labels_: dict[str, str], want: bool) -> None:
    assert selector_matches(selector, labels_) is want


@given(st.text(max_size=300))
def test_names_always_valid(case_id: str) -> None:
    import re

    v = labels.k8s_label_value(case_id)
    assert len(v) <= 63 and re.fullmatch(r"([A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?)?", v)
    g = labels.gcp_name("pm", case_id)
    assert len(g) <= 63 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", g)
    a = labels.azure_name("pm", case_id)
    assert len(a) <= 80 and re.fullmatch(r"[A-Za-z0-9_.-]+", a)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text() | st.binary(),
        lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(), c, max_size=5),
        max_leaves=40,
    )
)
def test_recorded_responses_are_json_and_bounded(value: Any) -> None:
    kept, sha, _ = bounded(value)
    assert len(sha) == 64
    assert len(json.dumps(kept)) <= MAX_RESPONSE + 100
    json.dumps(to_jsonable(value))


def test_playbook_typos_are_input_errors() -> None:
    with pytest.raises(InputError, match="unknown fields"):
        parse("steps:\n  - id: x\n    phse: contain\n", "bad.yaml")
    with pytest.raises(InputError, match="not valid YAML"):
        parse("steps: [", "bad.yaml")


class _Refusing:
    """A step set whose only step is refused and whose undo records what it was given."""

    def __init__(self) -> None:
        self.undone: list[Any] = []
        self.steps = {"eks.termination-protection": self.step}
        self.undos = {"eks.termination-protection": self.undo}

    def resolve(self, target: Target, calls: CallLog) -> None:
        pass

    def step(self, ctx: StepContext) -> Outcome:
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE)
        return Outcome(Status.CHANGED, undo={"value": False})

    def undo(self, ctx: StepContext, saved: Any) -> Outcome:
        self.undone.append(saved)
        raise ProviderRefused("AccessDenied", "no")


def test_release_refuses_a_tampered_custody_log(tmp_path: Path) -> None:
    case = Case.init(tmp_path / "c", case_id="X", examiner="e")
    steps = _Refusing()
    proc = Procedure(steps, None, case=case)
    target = Target("eks", "prod", instance="i-0123456789abcdef0")
    proc.run(target, ("preserve",), execute=True)
    log = case.root / "custody.jsonl"
    text = log.read_text().replace('"value":false', '"value":true')
    log.write_text(text)
    with pytest.raises(IntegrityError, match="refusing to release"):
        Procedure(steps, None, case=Case.open(case.root)).pending_releases(target, ("preserve",))
    assert steps.undone == []


def test_a_refused_undo_is_recorded_and_stays_pending(tmp_path: Path) -> None:
    case = Case.init(tmp_path / "c", case_id="X", examiner="e")
    steps = _Refusing()
    proc = Procedure(steps, None, case=case)
    target = Target("eks", "prod", instance="i-0123456789abcdef0")
    proc.run(target, ("preserve",), execute=True)
    reports = proc.release(target, ("preserve",), execute=True)
    assert [r.outcome.status for r in reports] == [Status.NOT_PERMITTED]
    assert len(proc.pending_releases(target, ("preserve",))) == 1  # can be retried
    assert '"action":"cloud_release"' in (case.root / "custody.jsonl").read_text()


def test_instance_selectors_are_checked_before_any_call() -> None:
    from podmortem.cloud.providers.aws import EksSteps

    class NoCalls:
        def describe_cluster(self, **_: Any) -> Any:
            return {"cluster": {}}

        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"unexpected call {name}")

    steps = EksSteps(lambda _name: NoCalls())
    with pytest.raises(InputError, match="not an EC2 instance id"):
        steps.resolve(Target("eks", "c", instance="i-../../x"), CallLog(execute=False))


def test_refused_resolution_stops_before_any_step(tmp_path: Path) -> None:
    from podmortem.errors import AcquisitionError

    class Blind(_Refusing):
        def resolve(self, target: Target, calls: CallLog) -> None:
            raise ProviderRefused("UnauthorizedOperation", "ec2:DescribeInstances")

    case = Case.init(tmp_path / "c", case_id="X", examiner="e")
    with pytest.raises(AcquisitionError, match="cannot resolve"):
        Procedure(Blind(), None, case=case).resolve(Target("eks", "p", instance="i-01234567"))
    log = (case.root / "custody.jsonl").read_text()
    assert '"action":"cloud_target_resolved"' in log and "UnauthorizedOperation" in log


def test_quarantine_warns_when_nothing_enforces_policy(tmp_path: Path) -> None:
    from podmortem.cloud.kubernetes import KubernetesContainment

    from .k8s_server import FakeKube, kube_clients

    kube = FakeKube()
    url = kube.start()
    try:
        kube.add_node("n1", "aws:///us-east-1a/i-0123456789abcdef0")
        kube.add_pod("shop", "p", "n1", {"app": "x"})
        kube.add_daemonset("kube-system", "aws-node", ["aws-node"])  # VPC CNI, agent off
        k8s = KubernetesContainment(*kube_clients(url))
        case = Case.init(tmp_path / "c", case_id="X", examiner="e")
        proc = Procedure(_Refusing(), k8s, case=case)
        target = Target("eks", "prod", pod="shop/p", node="n1", instance="i-0123456789abcdef0")
        rep = next(
            r
            for r in proc.run(target, ("contain",), execute=True)
            if r.step_id == "k8s.quarantine-network-policy"
        )
        assert rep.outcome.status == Status.CHANGED
        assert "WARNING: no NetworkPolicy enforcer" in rep.outcome.reason
    finally:
        kube.stop()
