"""Amazon EKS through boto3.

Clients come from a factory (``boto3.Session(profile_name=..., region_name=...).client`` by
default), so the usual configuration applies: profiles, ``AWS_REGION``, and
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` (which the tests point at moto's server).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from podmortem.cloud import labels as names
from podmortem.cloud.calls import CallLog, ProviderRefused
from podmortem.cloud.executor import StepContext, StepFn, UndoFn
from podmortem.cloud.model import Outcome, Status, Target
from podmortem.cloud.readiness import kubernetes_minor
from podmortem.errors import CapabilityUnavailable, InputError

ClientFactory = Callable[[str], Any]
GroupStep = Callable[[StepContext, dict[str, Any], str], Outcome]
SUSPEND = ("ReplaceUnhealthy", "AZRebalance")
AUTO_MODE_REASON = (
    "EKS Auto Mode manages this instance: ENI and instance-profile changes are refused"
)


def session_factory(profile: str | None = None, region: str | None = None) -> ClientFactory:
    """The client factory most users expect: a boto3 session with their profile/region."""
    try:
        import boto3  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - boto3 is a dependency
        raise CapabilityUnavailable("boto3 is not installed") from exc
    session = boto3.Session(profile_name=profile, region_name=region)

    def make(name: str) -> Any:
        return session.client(name)

    return make


def _code(exc: Exception) -> str:
    resp = getattr(exc, "response", None) or {}
    return str((resp.get("Error") or {}).get("Code", ""))


class EksSteps:
    """The ``eks.*`` steps against one cluster in one account and region."""

    def __init__(
        self, clients: ClientFactory, *, lock_days: int = 30, lock_mode: str = "governance"
    ):
        self._factory = clients
        self._clients: dict[str, Any] = {}
        self.lock_days = lock_days
        self.lock_mode = lock_mode
        self.steps: dict[str, StepFn] = {
            "eks.termination-protection": self.termination_protection,
            "eks.stop-on-shutdown": self.stop_on_shutdown,
            "eks.scale-in-protection": self._grouped(self.scale_in_protection),
            "eks.suspend-replacement": self._grouped(self.suspend_replacement),
            "eks.snapshot-volumes": self.snapshot_volumes,
            "eks.lock-snapshots": self.lock_snapshots,
            "eks.enable-audit-logs": self.enable_audit_logs,
            "eks.scaling-standby": self._grouped(self.scaling_standby),
            "eks.isolation-security-group": self.isolation_security_group,
            "eks.revoke-role-sessions": self.revoke_role_sessions,
        }
        self.undos: dict[str, UndoFn] = {
            "eks.termination-protection": self.undo_termination_protection,
            "eks.stop-on-shutdown": self.undo_stop_on_shutdown,
            "eks.scale-in-protection": self.undo_scale_in_protection,
            "eks.suspend-replacement": self.undo_suspend_replacement,
            "eks.scaling-standby": self.undo_scaling_standby,
            "eks.isolation-security-group": self.undo_isolation_security_group,
            "eks.revoke-role-sessions": self.undo_revoke_role_sessions,
        }

    def client(self, name: str) -> Any:
        if name not in self._clients:
            self._clients[name] = self._factory(name)
        return self._clients[name]

    def _read(self, calls: CallLog, service: str, method: str, **params: Any) -> Any:
        """``<service client>.<method>(**params)``, recorded as a read."""
        return calls.read(service, method, getattr(self.client(service), method), **params)

    def _write(self, calls: CallLog, service: str, method: str, **params: Any) -> Any:
        """``<service client>.<method>(**params)``, recorded as a write (never in a dry run)."""
        return calls.write(service, method, getattr(self.client(service), method), **params)

    # ------------------------------------------------------------------ resolve

    def resolve(self, target: Target, calls: CallLog) -> None:
        try:
            cluster = self.cluster(calls, target.cluster)
        except ProviderRefused as exc:
            # Not fatal: the steps then do not know about Auto Mode or the cluster security
            # group (the API refuses what Auto Mode forbids anyway). The instance's cluster
            # tag below is still checked before anything is touched.
            target.extra["cluster_unreadable"] = str(exc)[:300]
            cluster = {}
        target.extra["auto_mode"] = bool((cluster.get("computeConfig") or {}).get("enabled"))
        vpc = cluster.get("resourcesVpcConfig") or {}
        target.extra["cluster_security_group"] = vpc.get("clusterSecurityGroupId")
        if target.instance is None:
            return
        if not re.fullmatch(r"i-[0-9a-f]{8,17}", target.instance):
            raise InputError(f"{target.instance[:80]!r} is not an EC2 instance id (i-...)")
        inst = self._instance(calls, target.instance)
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags") or []}
        member = tags.get("eks:cluster-name") == target.cluster or any(
            k == f"kubernetes.io/cluster/{target.cluster}" for k in tags
        )
        if not member:
            # Acting on an instance of another cluster would change an unrelated machine.
            raise InputError(
                f"instance {target.instance} carries no tag of EKS cluster {target.cluster!r}"
            )
        target.zone = target.zone or (inst.get("Placement") or {}).get("AvailabilityZone")
        target.extra["vpc_id"] = inst.get("VpcId")
        target.extra["private_dns"] = inst.get("PrivateDnsName")

    def cluster(self, calls: CallLog, name: str) -> dict[str, Any]:
        """``describe_cluster``'s cluster; a cluster that does not exist is bad input."""
        try:
            return dict(self._read(calls, "eks", "describe_cluster", name=name)["cluster"])
        except ProviderRefused:
            raise
        except Exception as exc:
            if _code(exc) == "ResourceNotFoundException":
                raise InputError(f"EKS cluster {name!r} not found") from exc
            raise

    def _instance(self, calls: CallLog, instance_id: str) -> dict[str, Any]:
        resp = self._read(calls, "ec2", "describe_instances", InstanceIds=[instance_id])
        for r in resp.get("Reservations") or []:
            for inst in r.get("Instances") or []:
                if inst.get("InstanceId") == instance_id:
                    return dict(inst)
        raise InputError(f"EC2 instance {instance_id} not found")

    # ---------------------------------------------------------- instance flags

    def _attribute(self, ctx: StepContext, attribute: str) -> Any:
        """An instance attribute's value; the response names it with a capital letter."""
        resp = self._read(
            ctx.calls,
            "ec2",
            "describe_instance_attribute",
            InstanceId=ctx.target.instance,
            Attribute=attribute,
        )
        return (resp.get(attribute[0].upper() + attribute[1:]) or {}).get("Value")

    def _set_attribute(self, ctx: StepContext, attribute: str, value: Any) -> None:
        self._write(
            ctx.calls,
            "ec2",
            "modify_instance_attribute",
            InstanceId=ctx.target.instance,
            **{attribute[0].upper() + attribute[1:]: {"Value": value}},
        )

    def _ensure_attribute(
        self, ctx: StepContext, attribute: str, want: Any, unset: Any, says: tuple[str, str, str]
    ) -> Outcome:
        """Set an instance attribute to ``want`` unless it is; ``says`` are the outcomes'
        reasons (already, would ``{have}``, done). The undo keeps the prior value (``unset``
        when the instance reported none)."""
        already, would, done = says
        have = self._attribute(ctx, attribute)
        if have == want:
            return Outcome(Status.UNCHANGED, already)
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, would.format(have=have))
        self._set_attribute(ctx, attribute, want)
        return Outcome(Status.CHANGED, done, undo={"value": have or unset})

    def termination_protection(self, ctx: StepContext) -> Outcome:
        return self._ensure_attribute(
            ctx,
            "disableApiTermination",
            True,
            False,
            (
                "termination protection already on",
                "would set DisableApiTermination=true",
                "termination protection on",
            ),
        )

    def undo_termination_protection(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        self._set_attribute(ctx, "disableApiTermination", bool(saved.get("value")))
        return Outcome(Status.CHANGED, f"DisableApiTermination={bool(saved.get('value'))}")

    def stop_on_shutdown(self, ctx: StepContext) -> Outcome:
        return self._ensure_attribute(
            ctx,
            "instanceInitiatedShutdownBehavior",
            "stop",
            "stop",
            (
                "shutdown already stops the instance",
                "would change shutdown behaviour {have} -> stop",
                "shutdown now stops",
            ),
        )

    def undo_stop_on_shutdown(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        value = str(saved.get("value") or "stop")
        if value not in ("stop", "terminate"):
            raise InputError(f"recorded shutdown behaviour {value!r} is not stop/terminate")
        self._set_attribute(ctx, "instanceInitiatedShutdownBehavior", value)
        return Outcome(Status.CHANGED, f"shutdown behaviour {value}")

    # ------------------------------------------------------------ Auto Scaling

    def _asg_instance(self, ctx: StepContext) -> dict[str, Any] | None:
        resp = self._read(
            ctx.calls,
            "autoscaling",
            "describe_auto_scaling_instances",
            InstanceIds=[ctx.target.instance],
        )
        items = resp.get("AutoScalingInstances") or []
        return dict(items[0]) if items else None

    def _grouped(self, step: GroupStep) -> StepFn:
        """An Auto Scaling step: not applicable to an instance in no group; otherwise run
        with the instance's Auto Scaling record and its group's name."""

        def run(ctx: StepContext) -> Outcome:
            inst = self._asg_instance(ctx)
            if inst is None:
                return Outcome(Status.NOT_APPLICABLE, "the instance is in no Auto Scaling group")
            return step(ctx, inst, str(inst["AutoScalingGroupName"]))

        return run

    def scale_in_protection(self, ctx: StepContext, inst: dict[str, Any], group: str) -> Outcome:
        if inst.get("ProtectedFromScaleIn"):
            return Outcome(Status.UNCHANGED, f"already protected from scale-in in {group}")
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would protect from scale-in in {group}")
        self._protect(ctx, group, True)
        return Outcome(
            Status.CHANGED,
            f"protected from scale-in in {group}",
            undo={"group": group, "value": False},
        )

    def _protect(self, ctx: StepContext, group: str, value: bool) -> None:
        self._write(
            ctx.calls,
            "autoscaling",
            "set_instance_protection",
            InstanceIds=[ctx.target.instance],
            AutoScalingGroupName=group,
            ProtectedFromScaleIn=value,
        )

    def undo_scale_in_protection(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        self._protect(ctx, str(saved["group"]), bool(saved.get("value")))
        return Outcome(Status.CHANGED, "scale-in protection restored")

    def suspend_replacement(self, ctx: StepContext, inst: dict[str, Any], group: str) -> Outcome:
        resp = self._read(
            ctx.calls,
            "autoscaling",
            "describe_auto_scaling_groups",
            AutoScalingGroupNames=[group],
        )
        groups = resp.get("AutoScalingGroups") or [{}]
        suspended = {p.get("ProcessName") for p in groups[0].get("SuspendedProcesses") or []}
        missing = [p for p in SUSPEND if p not in suspended]
        if not missing:
            return Outcome(Status.UNCHANGED, f"{', '.join(SUSPEND)} already suspended")
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would suspend {missing} on {group}")
        self._write(
            ctx.calls,
            "autoscaling",
            "suspend_processes",
            AutoScalingGroupName=group,
            ScalingProcesses=missing,
        )
        return Outcome(
            Status.CHANGED,
            f"suspended {missing} on {group}",
            undo={"group": group, "processes": missing},
        )

    def undo_suspend_replacement(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        procs = [p for p in saved.get("processes") or [] if p in SUSPEND]
        self._write(
            ctx.calls,
            "autoscaling",
            "resume_processes",
            AutoScalingGroupName=str(saved["group"]),
            ScalingProcesses=procs,
        )
        return Outcome(Status.CHANGED, f"resumed {procs}")

    def scaling_standby(self, ctx: StepContext, inst: dict[str, Any], group: str) -> Outcome:
        state = inst.get("LifecycleState")
        if state in ("Standby", "Pending:Wait", "EnteringStandby"):
            return Outcome(Status.UNCHANGED, f"already {state} in {group}")
        if state != "InService":
            return Outcome(Status.NOT_APPLICABLE, f"lifecycle state {state}: cannot enter standby")
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would move to Standby in {group}")
        self._write(
            ctx.calls,
            "autoscaling",
            "enter_standby",
            InstanceIds=[ctx.target.instance],
            AutoScalingGroupName=group,
            ShouldDecrementDesiredCapacity=True,
        )
        return Outcome(Status.CHANGED, f"Standby in {group}", undo={"group": group})

    def undo_scaling_standby(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        self._write(
            ctx.calls,
            "autoscaling",
            "exit_standby",
            InstanceIds=[ctx.target.instance],
            AutoScalingGroupName=str(saved["group"]),
        )
        return Outcome(Status.CHANGED, "back in service")

    # --------------------------------------------------------------- snapshots

    def _case_filters(self, ctx: StepContext) -> list[dict[str, Any]]:
        return [
            {"Name": f"tag:{names.TAG_CASE}", "Values": [ctx.case_id]},
            {"Name": f"tag:{names.TAG_SOURCE}", "Values": [str(ctx.target.instance)]},
        ]

    def _case_snapshots(self, ctx: StepContext) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"OwnerIds": ["self"], "Filters": self._case_filters(ctx)}
        while True:
            resp = self._read(ctx.calls, "ec2", "describe_snapshots", **kwargs)
            out += resp.get("Snapshots") or []
            token = resp.get("NextToken")
            if not token:
                return out
            kwargs["NextToken"] = token

    def _tags(self, ctx: StepContext, extra: Mapping[str, str]) -> list[dict[str, str]]:
        tags = {
            names.TAG_CASE: ctx.case_id,
            names.TAG_SOURCE: str(ctx.target.instance),
            "podmortem:cluster": ctx.target.cluster,
            **extra,
        }
        return [{"Key": k, "Value": v[:256]} for k, v in tags.items()]

    def snapshot_volumes(self, ctx: StepContext) -> Outcome:
        inst = self._instance(ctx.calls, str(ctx.target.instance))
        volumes = [
            m["Ebs"]["VolumeId"]
            for m in inst.get("BlockDeviceMappings") or []
            if (m.get("Ebs") or {}).get("VolumeId")
        ]
        if not volumes:
            return Outcome(Status.NOT_APPLICABLE, "the instance has no EBS volumes")
        have = {s.get("VolumeId"): s.get("SnapshotId") for s in self._case_snapshots(ctx)}
        missing = [v for v in volumes if v not in have]
        if not missing:
            return Outcome(
                Status.UNCHANGED,
                f"{len(volumes)} volume(s) already snapshotted",
                result={"snapshots": have},
            )
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would snapshot {missing}")
        desc = f"podmortem case {ctx.case_id} instance {ctx.target.instance}"[:255]
        made: dict[str, str] = {}
        if len(missing) == len(volumes):
            # One multi-volume call: the snapshots are crash-consistent with each other.
            resp = self._write(
                ctx.calls,
                "ec2",
                "create_snapshots",
                InstanceSpecification={
                    "InstanceId": ctx.target.instance,
                    "ExcludeBootVolume": False,
                },
                Description=desc,
                CopyTagsFromSource="volume",
                TagSpecifications=[{"ResourceType": "snapshot", "Tags": self._tags(ctx, {})}],
            )
            made = {s["VolumeId"]: s["SnapshotId"] for s in resp.get("Snapshots") or []}
        else:
            for vol in missing:
                resp = self._write(
                    ctx.calls,
                    "ec2",
                    "create_snapshot",
                    VolumeId=vol,
                    Description=desc,
                    TagSpecifications=[{"ResourceType": "snapshot", "Tags": self._tags(ctx, {})}],
                )
                made[vol] = resp["SnapshotId"]
        return Outcome(Status.CHANGED, f"snapshotted {sorted(made)}", result={"snapshots": made})

    def lock_snapshots(self, ctx: StepContext) -> Outcome:
        snaps = [s["SnapshotId"] for s in self._case_snapshots(ctx)]
        if not snaps:
            if not ctx.execute:  # in a plan, the snapshot step before this one makes them
                return Outcome(Status.WOULD_CHANGE, "would lock the snapshots taken above")
            return Outcome(Status.NOT_APPLICABLE, "no snapshots of this case to lock")
        resp = self._read(ctx.calls, "ec2", "describe_locked_snapshots", SnapshotIds=snaps)
        locked = {s.get("SnapshotId") for s in resp.get("Snapshots") or []}
        todo = [s for s in snaps if s not in locked]
        if not todo:
            return Outcome(Status.UNCHANGED, f"{len(snaps)} snapshot(s) already locked")
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would lock {todo} ({self.lock_mode})")
        for sid in todo:
            self._write(
                ctx.calls,
                "ec2",
                "lock_snapshot",
                SnapshotId=sid,
                LockMode=self.lock_mode,
                LockDuration=self.lock_days,
            )
        return Outcome(Status.CHANGED, f"locked {todo} for {self.lock_days} days")

    # ------------------------------------------------------------- audit logs

    def enable_audit_logs(self, ctx: StepContext) -> Outcome:
        cluster = self.cluster(ctx.calls, ctx.target.cluster)
        enabled = enabled_log_types(cluster)
        want = ["audit", "authenticator"]
        missing = [t for t in want if t not in enabled]
        if not missing:
            return Outcome(Status.UNCHANGED, "audit and authenticator logs already on")
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would enable {missing}")
        self._write(
            ctx.calls,
            "eks",
            "update_cluster_config",
            name=ctx.target.cluster,
            logging={"clusterLogging": [{"types": missing, "enabled": True}]},
        )
        return Outcome(Status.CHANGED, f"enabled {missing}")

    # ---------------------------------------------------------------- network

    def _group(self, ctx: StepContext, name: str, vpc: str) -> str | None:
        resp = self._read(
            ctx.calls,
            "ec2",
            "describe_security_groups",
            Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc]}],
        )
        groups = resp.get("SecurityGroups") or []
        return str(groups[0]["GroupId"]) if groups else None

    def _create_group(self, ctx: StepContext, name: str, vpc: str, why: str) -> str:
        resp = self._write(
            ctx.calls,
            "ec2",
            "create_security_group",
            GroupName=name,
            Description=why[:255],
            VpcId=vpc,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": self._tags(ctx, {})}],
        )
        return str(resp["GroupId"])

    def isolation_security_group(self, ctx: StepContext) -> Outcome:
        if ctx.target.extra.get("auto_mode"):
            return Outcome(Status.NOT_PERMITTED, AUTO_MODE_REASON)
        inst = self._instance(ctx.calls, str(ctx.target.instance))
        vpc = str(inst.get("VpcId"))
        enis = {
            n["NetworkInterfaceId"]: [g["GroupId"] for g in n.get("Groups") or []]
            for n in inst.get("NetworkInterfaces") or []
        }
        if not enis:
            return Outcome(Status.NOT_APPLICABLE, "the instance has no network interfaces")
        iso_name = "podmortem-isolate-" + names.k8s_label_value(ctx.case_id)
        untrack_name = "podmortem-untrack-" + names.k8s_label_value(ctx.case_id)
        iso = self._group(ctx, iso_name, vpc)
        if iso is not None and all(g == [iso] for g in enis.values()):
            return Outcome(Status.UNCHANGED, f"every interface already in {iso}")
        if not ctx.execute:
            return Outcome(
                Status.WOULD_CHANGE, f"would move {sorted(enis)} to {iso_name} (via {untrack_name})"
            )
        created: list[str] = []
        if iso is None:
            iso = self._create_group(ctx, iso_name, vpc, f"podmortem isolation, case {ctx.case_id}")
            created.append(iso)
            # A new group allows all egress: take that away, keep the control-plane path.
            self._write(
                ctx.calls,
                "ec2",
                "revoke_security_group_egress",
                GroupId=iso,
                IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
            )
            csg = ctx.target.extra.get("cluster_security_group")
            if csg:
                pair = [{"GroupId": csg}]
                self._write(
                    ctx.calls,
                    "ec2",
                    "authorize_security_group_egress",
                    GroupId=iso,
                    IpPermissions=[
                        {
                            "IpProtocol": "tcp",
                            "FromPort": 443,
                            "ToPort": 443,
                            "UserIdGroupPairs": pair,
                        }
                    ],
                )
                self._write(
                    ctx.calls,
                    "ec2",
                    "authorize_security_group_ingress",
                    GroupId=iso,
                    IpPermissions=[
                        {
                            "IpProtocol": "tcp",
                            "FromPort": 10250,
                            "ToPort": 10250,
                            "UserIdGroupPairs": pair,
                        }
                    ],
                )
        untrack = self._group(ctx, untrack_name, vpc)
        if untrack is None:
            untrack = self._create_group(
                ctx, untrack_name, vpc, f"podmortem untrack step, case {ctx.case_id}"
            )
            created.append(untrack)
            # Allow-all both ways makes every flow untracked; the next swap then cuts them.
            self._write(
                ctx.calls,
                "ec2",
                "authorize_security_group_ingress",
                GroupId=untrack,
                IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
            )
        for eni in enis:
            for group in (untrack, iso):
                self._write(
                    ctx.calls,
                    "ec2",
                    "modify_network_interface_attribute",
                    NetworkInterfaceId=eni,
                    Groups=[group],
                )
        return Outcome(
            Status.CHANGED,
            f"{len(enis)} interface(s) isolated in {iso}",
            undo={"interfaces": enis, "created_groups": created},
            result={"isolation_group": iso},
        )

    def undo_isolation_security_group(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        for eni, groups in (saved.get("interfaces") or {}).items():
            self._write(
                ctx.calls,
                "ec2",
                "modify_network_interface_attribute",
                NetworkInterfaceId=eni,
                Groups=list(groups),
            )
        return Outcome(Status.CHANGED, "original security groups restored (isolation groups kept)")

    # -------------------------------------------------------------------- IAM

    def _role(self, ctx: StepContext) -> str | None:
        inst = self._instance(ctx.calls, str(ctx.target.instance))
        arn = (inst.get("IamInstanceProfile") or {}).get("Arn")
        if not arn:
            return None
        prof = self._read(
            ctx.calls,
            "iam",
            "get_instance_profile",
            InstanceProfileName=str(arn).rsplit("/", 1)[-1],
        )
        roles = (prof.get("InstanceProfile") or {}).get("Roles") or []
        return str(roles[0]["RoleName"]) if roles else None

    def revoke_role_sessions(self, ctx: StepContext) -> Outcome:
        if ctx.target.extra.get("auto_mode"):
            return Outcome(Status.NOT_PERMITTED, AUTO_MODE_REASON)
        role = self._role(ctx)
        if role is None:
            return Outcome(Status.NOT_APPLICABLE, "the instance has no instance profile role")
        name = ("podmortem-revoke-" + names.k8s_label_value(ctx.case_id))[:128]
        try:
            self._read(ctx.calls, "iam", "get_role_policy", RoleName=role, PolicyName=name)
            return Outcome(Status.UNCHANGED, f"{role} already carries {name}")
        except ProviderRefused:
            raise
        except Exception as exc:
            if _code(exc) != "NoSuchEntity":
                raise
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would deny sessions of {role} issued before now")
        self._write(
            ctx.calls,
            "iam",
            "put_role_policy",
            RoleName=role,
            PolicyName=name,
            PolicyDocument=json.dumps(revoke_policy(ctx.now)),
        )
        return Outcome(
            Status.CHANGED,
            f"sessions of {role} issued before {ctx.now.isoformat()} revoked",
            undo={"role": role, "policy": name},
        )

    def undo_revoke_role_sessions(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        self._write(
            ctx.calls,
            "iam",
            "delete_role_policy",
            RoleName=str(saved["role"]),
            PolicyName=str(saved["policy"]),
        )
        return Outcome(Status.CHANGED, "revocation policy removed")

    # ------------------------------------------------------------------- logs

    def audit_log_pages(
        self, calls: CallLog, cluster: str, since: datetime, until: datetime, page_size: int = 1000
    ) -> Iterator[dict[str, Any]]:
        """Pages of ``filter_log_events`` on the cluster's audit streams, as returned (the
        envelope ``audit analyze`` reads as ``eks-filter-log-events``)."""
        kwargs: dict[str, Any] = {
            "logGroupName": f"/aws/eks/{cluster}/cluster",
            "logStreamNamePrefix": "kube-apiserver-audit",
            "startTime": int(since.timestamp() * 1000),
            "endTime": int(until.timestamp() * 1000),
            "limit": page_size,
        }
        seen: set[str] = set()
        while True:
            page = self._read(calls, "logs", "filter_log_events", **kwargs)
            page.pop("ResponseMetadata", None)
            yield page
            token = page.get("nextToken")
            # CloudWatch may hand back the same token at the end of the data: stop on repeats.
            if not token or token in seen:
                return
            seen.add(token)
            kwargs["nextToken"] = token


def enabled_log_types(cluster: Mapping[str, Any]) -> set[str]:
    out: set[str] = set()
    for entry in (cluster.get("logging") or {}).get("clusterLogging") or []:
        if entry.get("enabled"):
            out.update(entry.get("types") or [])
    return out


def revoke_policy(now: datetime) -> dict[str, Any]:
    """The policy the AWS console's "Revoke active sessions" writes."""
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Action": ["*"],
                "Resource": ["*"],
                "Condition": {"DateLessThan": {"aws:TokenIssueTime": stamp}},
            }
        ],
    }


def readiness_facts(
    steps: EksSteps, calls: CallLog, cluster: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The facts the readiness checks read, and a note for each fact left unknown."""
    facts: dict[str, Any] = {}
    notes: dict[str, str] = {}
    c = steps.cluster(calls, cluster)
    types = enabled_log_types(c)
    facts["audit_logging"] = "audit" in types
    facts["authenticator_logging"] = "authenticator" in types
    facts["kubernetes_minor"] = kubernetes_minor(c.get("version"))
    auto = bool((c.get("computeConfig") or {}).get("enabled"))
    facts["containment_permitted"] = not auto
    if auto:
        notes["containment_permitted"] = AUTO_MODE_REASON
    group = f"/aws/eks/{cluster}/cluster"
    try:
        resp = steps._read(calls, "logs", "describe_log_groups", logGroupNamePrefix=group)
        found = [g for g in resp.get("logGroups") or [] if g.get("logGroupName") == group]
        if not found:
            facts["log_retention_days"] = 0
            notes["log_retention_days"] = f"log group {group} does not exist (nothing logged)"
        else:
            # No retentionInDays means the group never expires.
            facts["log_retention_days"] = int(found[0].get("retentionInDays") or 36500)
    except Exception as exc:
        notes["log_retention_days"] = f"could not read the log group: {_code(exc) or exc}"
    try:
        addon = steps._read(
            calls, "eks", "describe_addon", clusterName=cluster, addonName="vpc-cni"
        )["addon"]
        conf = addon.get("configurationValues") or ""
        facts["network_policy_enforced"] = _enable_network_policy(conf)
    except Exception as exc:
        notes["network_policy_enforced"] = (
            f"vpc-cni add-on not readable ({_code(exc) or type(exc).__name__}); "
            "a self-managed CNI (Calico, Cilium) must be checked by hand"
        )
    try:
        resp = steps._read(
            calls,
            "ec2",
            "describe_instances",
            Filters=[
                {"Name": "tag:eks:cluster-name", "Values": [cluster]},
                {"Name": "instance-state-name", "Values": ["running"]},
            ],
            MaxResults=5,
        )
        ids = [
            i["InstanceId"]
            for r in resp.get("Reservations") or []
            for i in r.get("Instances") or []
        ]
        if not ids:
            notes["snapshot_permitted"] = "no running instance tagged with the cluster to test"
        else:
            try:
                steps._read(
                    calls,
                    "ec2",
                    "create_snapshots",
                    DryRun=True,
                    InstanceSpecification={"InstanceId": ids[0]},
                )
                facts["snapshot_permitted"] = True  # an endpoint ignoring DryRun: it worked
            except ProviderRefused:
                facts["snapshot_permitted"] = False
            except Exception as exc:
                if _code(exc) != "DryRunOperation":
                    raise
                facts["snapshot_permitted"] = True
    except Exception as exc:
        notes["snapshot_permitted"] = f"could not test: {_code(exc) or exc}"
    return facts, notes


def _enable_network_policy(conf: str) -> bool:
    """``configurationValues`` is JSON or YAML; ``enableNetworkPolicy: "true"`` turns the
    VPC CNI's network policy agent on."""
    import yaml

    try:
        doc = yaml.safe_load(conf) if conf else {}
    except yaml.YAMLError:
        return False
    return isinstance(doc, dict) and str(doc.get("enableNetworkPolicy", "")).lower() == "true"
