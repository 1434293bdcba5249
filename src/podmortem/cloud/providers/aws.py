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
from podmortem.errors import CapabilityUnavailable, InputError

ClientFactory = Callable[[str], Any]
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
            "eks.scale-in-protection": self.scale_in_protection,
            "eks.suspend-replacement": self.suspend_replacement,
            "eks.snapshot-volumes": self.snapshot_volumes,
            "eks.lock-snapshots": self.lock_snapshots,
            "eks.enable-audit-logs": self.enable_audit_logs,
            "eks.scaling-standby": self.scaling_standby,
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

    # ------------------------------------------------------------------ resolve

    def resolve(self, target: Target, calls: CallLog) -> None:
        eks = self.client("eks")
        try:
            cluster = calls.read(
                "eks", "describe_cluster", eks.describe_cluster, name=target.cluster
            )["cluster"]
        except ProviderRefused as exc:
            # Not fatal: the steps then do not know about Auto Mode or the cluster security
            # group (the API refuses what Auto Mode forbids anyway). The instance's cluster
            # tag below is still checked before anything is touched.
            target.extra["cluster_unreadable"] = str(exc)[:300]
            cluster = {}
        except Exception as exc:
            if _code(exc) == "ResourceNotFoundException":
                raise InputError(f"EKS cluster {target.cluster!r} not found") from exc
            raise
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

    def _instance(self, calls: CallLog, instance_id: str) -> dict[str, Any]:
        ec2 = self.client("ec2")
        resp = calls.read(
            "ec2", "describe_instances", ec2.describe_instances, InstanceIds=[instance_id]
        )
        for r in resp.get("Reservations") or []:
            for inst in r.get("Instances") or []:
                if inst.get("InstanceId") == instance_id:
                    return dict(inst)
        raise InputError(f"EC2 instance {instance_id} not found")

    # ---------------------------------------------------------- instance flags

    def _attribute(self, ctx: StepContext, attribute: str, key: str) -> Any:
        ec2 = self.client("ec2")
        resp = ctx.calls.read(
            "ec2",
            "describe_instance_attribute",
            ec2.describe_instance_attribute,
            InstanceId=ctx.target.instance,
            Attribute=attribute,
        )
        return (resp.get(key) or {}).get("Value")

    def termination_protection(self, ctx: StepContext) -> Outcome:
        have = self._attribute(ctx, "disableApiTermination", "DisableApiTermination")
        if have is True:
            return Outcome(Status.UNCHANGED, "termination protection already on")
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, "would set DisableApiTermination=true")
        self._set_termination(ctx, True)
        return Outcome(Status.CHANGED, "termination protection on", undo={"value": bool(have)})

    def _set_termination(self, ctx: StepContext, value: bool) -> None:
        ec2 = self.client("ec2")
        ctx.calls.write(
            "ec2",
            "modify_instance_attribute",
            ec2.modify_instance_attribute,
            InstanceId=ctx.target.instance,
            DisableApiTermination={"Value": value},
        )

    def undo_termination_protection(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        self._set_termination(ctx, bool(saved.get("value")))
        return Outcome(Status.CHANGED, f"DisableApiTermination={bool(saved.get('value'))}")

    def stop_on_shutdown(self, ctx: StepContext) -> Outcome:
        have = self._attribute(
            ctx, "instanceInitiatedShutdownBehavior", "InstanceInitiatedShutdownBehavior"
        )
        if have == "stop":
            return Outcome(Status.UNCHANGED, "shutdown already stops the instance")
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would change shutdown behaviour {have} -> stop")
        self._set_shutdown(ctx, "stop")
        return Outcome(Status.CHANGED, "shutdown now stops", undo={"value": have or "stop"})

    def _set_shutdown(self, ctx: StepContext, value: str) -> None:
        ec2 = self.client("ec2")
        ctx.calls.write(
            "ec2",
            "modify_instance_attribute",
            ec2.modify_instance_attribute,
            InstanceId=ctx.target.instance,
            InstanceInitiatedShutdownBehavior={"Value": value},
        )

    def undo_stop_on_shutdown(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        value = str(saved.get("value") or "stop")
        if value not in ("stop", "terminate"):
            raise InputError(f"recorded shutdown behaviour {value!r} is not stop/terminate")
        self._set_shutdown(ctx, value)
        return Outcome(Status.CHANGED, f"shutdown behaviour {value}")

    # ------------------------------------------------------------ Auto Scaling

    def _asg_instance(self, ctx: StepContext) -> dict[str, Any] | None:
        asg = self.client("autoscaling")
        resp = ctx.calls.read(
            "autoscaling",
            "describe_auto_scaling_instances",
            asg.describe_auto_scaling_instances,
            InstanceIds=[ctx.target.instance],
        )
        items = resp.get("AutoScalingInstances") or []
        return dict(items[0]) if items else None

    def scale_in_protection(self, ctx: StepContext) -> Outcome:
        inst = self._asg_instance(ctx)
        if inst is None:
            return Outcome(Status.NOT_APPLICABLE, "the instance is in no Auto Scaling group")
        group = inst["AutoScalingGroupName"]
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
        asg = self.client("autoscaling")
        ctx.calls.write(
            "autoscaling",
            "set_instance_protection",
            asg.set_instance_protection,
            InstanceIds=[ctx.target.instance],
            AutoScalingGroupName=group,
            ProtectedFromScaleIn=value,
        )

    def undo_scale_in_protection(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        self._protect(ctx, str(saved["group"]), bool(saved.get("value")))
        return Outcome(Status.CHANGED, "scale-in protection restored")

    def suspend_replacement(self, ctx: StepContext) -> Outcome:
        inst = self._asg_instance(ctx)
        if inst is None:
            return Outcome(Status.NOT_APPLICABLE, "the instance is in no Auto Scaling group")
        group = inst["AutoScalingGroupName"]
        asg = self.client("autoscaling")
        resp = ctx.calls.read(
            "autoscaling",
            "describe_auto_scaling_groups",
            asg.describe_auto_scaling_groups,
            AutoScalingGroupNames=[group],
        )
        groups = resp.get("AutoScalingGroups") or [{}]
        suspended = {p.get("ProcessName") for p in groups[0].get("SuspendedProcesses") or []}
        missing = [p for p in SUSPEND if p not in suspended]
        if not missing:
            return Outcome(Status.UNCHANGED, f"{', '.join(SUSPEND)} already suspended")
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would suspend {missing} on {group}")
        ctx.calls.write(
            "autoscaling",
            "suspend_processes",
            asg.suspend_processes,
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
        asg = self.client("autoscaling")
        ctx.calls.write(
            "autoscaling",
            "resume_processes",
            asg.resume_processes,
            AutoScalingGroupName=str(saved["group"]),
            ScalingProcesses=procs,
        )
        return Outcome(Status.CHANGED, f"resumed {procs}")

    def scaling_standby(self, ctx: StepContext) -> Outcome:
        inst = self._asg_instance(ctx)
        if inst is None:
            return Outcome(Status.NOT_APPLICABLE, "the instance is in no Auto Scaling group")
        group, state = inst["AutoScalingGroupName"], inst.get("LifecycleState")
        if state in ("Standby", "Pending:Wait", "EnteringStandby"):
            return Outcome(Status.UNCHANGED, f"already {state} in {group}")
        if state != "InService":
            return Outcome(Status.NOT_APPLICABLE, f"lifecycle state {state}: cannot enter standby")
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would move to Standby in {group}")
        asg = self.client("autoscaling")
        ctx.calls.write(
            "autoscaling",
            "enter_standby",
            asg.enter_standby,
            InstanceIds=[ctx.target.instance],
            AutoScalingGroupName=group,
            ShouldDecrementDesiredCapacity=True,
        )
        return Outcome(Status.CHANGED, f"Standby in {group}", undo={"group": group})

    def undo_scaling_standby(self, ctx: StepContext, saved: Mapping[str, Any]) -> Outcome:
        asg = self.client("autoscaling")
        ctx.calls.write(
            "autoscaling",
            "exit_standby",
            asg.exit_standby,
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
        ec2 = self.client("ec2")
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"OwnerIds": ["self"], "Filters": self._case_filters(ctx)}
        while True:
            resp = ctx.calls.read("ec2", "describe_snapshots", ec2.describe_snapshots, **kwargs)
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
        ec2 = self.client("ec2")
        desc = f"podmortem case {ctx.case_id} instance {ctx.target.instance}"[:255]
        made: dict[str, str] = {}
        if len(missing) == len(volumes):
            # One multi-volume call: the snapshots are crash-consistent with each other.
            resp = ctx.calls.write(
                "ec2",
                "create_snapshots",
                ec2.create_snapshots,
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
                resp = ctx.calls.write(
                    "ec2",
                    "create_snapshot",
                    ec2.create_snapshot,
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
        ec2 = self.client("ec2")
        resp = ctx.calls.read(
            "ec2", "describe_locked_snapshots", ec2.describe_locked_snapshots, SnapshotIds=snaps
        )
        locked = {s.get("SnapshotId") for s in resp.get("Snapshots") or []}
        todo = [s for s in snaps if s not in locked]
        if not todo:
            return Outcome(Status.UNCHANGED, f"{len(snaps)} snapshot(s) already locked")
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would lock {todo} ({self.lock_mode})")
        for sid in todo:
            ctx.calls.write(
                "ec2",
                "lock_snapshot",
                ec2.lock_snapshot,
                SnapshotId=sid,
                LockMode=self.lock_mode,
                LockDuration=self.lock_days,
            )
        return Outcome(Status.CHANGED, f"locked {todo} for {self.lock_days} days")

    # ------------------------------------------------------------- audit logs

    def enable_audit_logs(self, ctx: StepContext) -> Outcome:
        eks = self.client("eks")
        cluster = ctx.calls.read(
            "eks", "describe_cluster", eks.describe_cluster, name=ctx.target.cluster
        )["cluster"]
        enabled = enabled_log_types(cluster)
        want = ["audit", "authenticator"]
        missing = [t for t in want if t not in enabled]
        if not missing:
            return Outcome(Status.UNCHANGED, "audit and authenticator logs already on")
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would enable {missing}")
        ctx.calls.write(
            "eks",
            "update_cluster_config",
            eks.update_cluster_config,
            name=ctx.target.cluster,
            logging={"clusterLogging": [{"types": missing, "enabled": True}]},
        )
        return Outcome(Status.CHANGED, f"enabled {missing}")

    # ---------------------------------------------------------------- network

    def _group(self, ctx: StepContext, name: str, vpc: str) -> str | None:
        ec2 = self.client("ec2")
        resp = ctx.calls.read(
            "ec2",
            "describe_security_groups",
            ec2.describe_security_groups,
            Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc]}],
        )
        groups = resp.get("SecurityGroups") or []
        return str(groups[0]["GroupId"]) if groups else None

    def _create_group(self, ctx: StepContext, name: str, vpc: str, why: str) -> str:
        ec2 = self.client("ec2")
        resp = ctx.calls.write(
            "ec2",
            "create_security_group",
            ec2.create_security_group,
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
        ec2 = self.client("ec2")
        created: list[str] = []
        if iso is None:
            iso = self._create_group(ctx, iso_name, vpc, f"podmortem isolation, case {ctx.case_id}")
            created.append(iso)
            # A new group allows all egress: take that away, keep the control-plane path.
            ctx.calls.write(
                "ec2",
                "revoke_security_group_egress",
                ec2.revoke_security_group_egress,
                GroupId=iso,
                IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
            )
            csg = ctx.target.extra.get("cluster_security_group")
            if csg:
                pair = [{"GroupId": csg}]
                ctx.calls.write(
                    "ec2",
                    "authorize_security_group_egress",
                    ec2.authorize_security_group_egress,
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
                ctx.calls.write(
                    "ec2",
                    "authorize_security_group_ingress",
                    ec2.authorize_security_group_ingress,
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
            ctx.calls.write(
                "ec2",
                "authorize_security_group_ingress",
                ec2.authorize_security_group_ingress,
                GroupId=untrack,
                IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
            )
        for eni in enis:
            for group in (untrack, iso):
                ctx.calls.write(
                    "ec2",
                    "modify_network_interface_attribute",
                    ec2.modify_network_interface_attribute,
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
        ec2 = self.client("ec2")
        for eni, groups in (saved.get("interfaces") or {}).items():
            ctx.calls.write(
                "ec2",
                "modify_network_interface_attribute",
                ec2.modify_network_interface_attribute,
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
        iam = self.client("iam")
        prof = ctx.calls.read(
            "iam",
            "get_instance_profile",
            iam.get_instance_profile,
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
        iam = self.client("iam")
        name = ("podmortem-revoke-" + names.k8s_label_value(ctx.case_id))[:128]
        try:
            ctx.calls.read(
                "iam", "get_role_policy", iam.get_role_policy, RoleName=role, PolicyName=name
            )
            return Outcome(Status.UNCHANGED, f"{role} already carries {name}")
        except ProviderRefused:
            raise
        except Exception as exc:
            if _code(exc) != "NoSuchEntity":
                raise
        if not ctx.execute:
            return Outcome(Status.WOULD_CHANGE, f"would deny sessions of {role} issued before now")
        ctx.calls.write(
            "iam",
            "put_role_policy",
            iam.put_role_policy,
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
        iam = self.client("iam")
        ctx.calls.write(
            "iam",
            "delete_role_policy",
            iam.delete_role_policy,
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
        logs = self.client("logs")
        kwargs: dict[str, Any] = {
            "logGroupName": f"/aws/eks/{cluster}/cluster",
            "logStreamNamePrefix": "kube-apiserver-audit",
            "startTime": int(since.timestamp() * 1000),
            "endTime": int(until.timestamp() * 1000),
            "limit": page_size,
        }
        seen: set[str] = set()
        while True:
            page = calls.read("logs", "filter_log_events", logs.filter_log_events, **kwargs)
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


def _minor(version: str | None) -> int | None:
    parts = (version or "").split(".")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def readiness_facts(
    steps: EksSteps, calls: CallLog, cluster: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The facts the readiness checks read, and a note for each fact left unknown."""
    facts: dict[str, Any] = {}
    notes: dict[str, str] = {}
    eks, logs, ec2 = steps.client("eks"), steps.client("logs"), steps.client("ec2")
    try:
        c = calls.read("eks", "describe_cluster", eks.describe_cluster, name=cluster)["cluster"]
    except Exception as exc:
        if _code(exc) == "ResourceNotFoundException":
            raise InputError(f"EKS cluster {cluster!r} not found") from exc
        raise
    types = enabled_log_types(c)
    facts["audit_logging"] = "audit" in types
    facts["authenticator_logging"] = "authenticator" in types
    facts["kubernetes_minor"] = _minor(c.get("version"))
    auto = bool((c.get("computeConfig") or {}).get("enabled"))
    facts["containment_permitted"] = not auto
    if auto:
        notes["containment_permitted"] = AUTO_MODE_REASON
    group = f"/aws/eks/{cluster}/cluster"
    try:
        resp = calls.read(
            "logs", "describe_log_groups", logs.describe_log_groups, logGroupNamePrefix=group
        )
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
        addon = calls.read(
            "eks", "describe_addon", eks.describe_addon, clusterName=cluster, addonName="vpc-cni"
        )["addon"]
        conf = addon.get("configurationValues") or ""
        facts["network_policy_enforced"] = _enable_network_policy(conf)
    except Exception as exc:
        notes["network_policy_enforced"] = (
            f"vpc-cni add-on not readable ({_code(exc) or type(exc).__name__}); "
            "a self-managed CNI (Calico, Cilium) must be checked by hand"
        )
    try:
        resp = calls.read(
            "ec2",
            "describe_instances",
            ec2.describe_instances,
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
                calls.read(
                    "ec2",
                    "create_snapshots",
                    ec2.create_snapshots,
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
