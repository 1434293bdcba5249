"""An EKS node in moto: a VPC, a cluster, a launch template and an Auto Scaling group
whose instance carries the cluster tag, an instance profile, and two EBS volumes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import boto3


@dataclass
class EksWorld:
    cluster: str
    instance: str
    group: str
    vpc: str
    role: str
    volumes: list[str]
    original_groups: list[str]
    zone: str


def build(cluster: str = "prod") -> EksWorld:
    ec2 = boto3.client("ec2")
    asg = boto3.client("autoscaling")
    eks = boto3.client("eks")
    iam = boto3.client("iam")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    sub = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone="us-east-1a")
    subnet = sub["Subnet"]["SubnetId"]
    iam.create_role(RoleName="eks-node", AssumeRolePolicyDocument="{}")
    iam.create_instance_profile(InstanceProfileName="eks-node-profile")
    iam.add_role_to_instance_profile(InstanceProfileName="eks-node-profile", RoleName="eks-node")
    ec2.create_launch_template(
        LaunchTemplateName="eks-nodes",
        LaunchTemplateData={
            "ImageId": "ami-12c6146b",
            "InstanceType": "t3.large",
            "BlockDeviceMappings": [{"DeviceName": "/dev/xvdb", "Ebs": {"VolumeSize": 20}}],
        },
    )
    asg.create_auto_scaling_group(
        AutoScalingGroupName="eks-ng-1",
        LaunchTemplate={"LaunchTemplateName": "eks-nodes"},
        MinSize=1,
        MaxSize=3,
        DesiredCapacity=1,
        VPCZoneIdentifier=subnet,
        Tags=[{"Key": "eks:cluster-name", "Value": cluster, "PropagateAtLaunch": True}],
    )
    iid = asg.describe_auto_scaling_instances()["AutoScalingInstances"][0]["InstanceId"]
    # moto does not carry the template's instance profile over; associate it as EC2 would.
    ec2.associate_iam_instance_profile(
        IamInstanceProfile={"Name": "eks-node-profile"}, InstanceId=iid
    )
    eks.create_cluster(
        name=cluster,
        roleArn="arn:aws:iam::123456789012:role/eks",
        resourcesVpcConfig={"subnetIds": [subnet]},
    )
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    return EksWorld(
        cluster=cluster,
        instance=iid,
        group="eks-ng-1",
        vpc=vpc,
        role="eks-node",
        volumes=[m["Ebs"]["VolumeId"] for m in inst["BlockDeviceMappings"]],
        original_groups=[g["GroupId"] for g in inst["NetworkInterfaces"][0]["Groups"]],
        zone="us-east-1a",
    )


def state(world: EksWorld) -> dict[str, Any]:
    """Everything the EKS steps can change, read back independently with boto3."""
    ec2 = boto3.client("ec2")
    asg = boto3.client("autoscaling")
    term = ec2.describe_instance_attribute(
        InstanceId=world.instance, Attribute="disableApiTermination"
    )
    shut = ec2.describe_instance_attribute(
        InstanceId=world.instance, Attribute="instanceInitiatedShutdownBehavior"
    )
    ai = asg.describe_auto_scaling_instances(InstanceIds=[world.instance])
    grp = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[world.group])
    # moto ships public AMI snapshots; only the ones podmortem made carry its case tag.
    snaps = ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag-key", "Values": ["podmortem:case"]}]
    )["Snapshots"]
    inst = ec2.describe_instances(InstanceIds=[world.instance])["Reservations"][0]["Instances"][0]
    return {
        "termination_protected": term["DisableApiTermination"]["Value"],
        "shutdown": shut["InstanceInitiatedShutdownBehavior"]["Value"],
        "scale_in_protected": ai["AutoScalingInstances"][0]["ProtectedFromScaleIn"],
        "lifecycle": ai["AutoScalingInstances"][0]["LifecycleState"],
        "suspended": sorted(
            p["ProcessName"] for p in grp["AutoScalingGroups"][0].get("SuspendedProcesses", [])
        ),
        "snapshots": sorted(
            (s["VolumeId"], {t["Key"]: t["Value"] for t in s.get("Tags", [])}.get("podmortem:case"))
            for s in snaps
        ),
        "groups": [[g["GroupId"] for g in n["Groups"]] for n in inst["NetworkInterfaces"]],
    }


# --------------------------------------------------------------- control-plane audit log


def audit_event(n: int, **fields: Any) -> dict[str, Any]:
    """A read of a pod, as one audit.k8s.io/v1 Event of EKS's ``kube-apiserver-audit``
    streams; ``fields`` replace the defaults."""
    return {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": f"a-{n}",
        "stage": "ResponseComplete",
        "verb": "get",
        "requestURI": f"/api/v1/namespaces/shop/pods/p{n}",
        "user": {"username": "alice"},
        "sourceIPs": ["10.0.0.1"],
        "objectRef": {"resource": "pods", "namespace": "shop", "name": f"p{n}"},
        "responseStatus": {"code": 200},
        "requestReceivedTimestamp": "2026-11-26T10:00:00.000000Z",
        "stageTimestamp": "2026-11-26T10:00:00.000100Z",
        **fields,
    }


def put_audit_log(
    messages: Iterable[dict[str, Any] | str],
    *,
    cluster: str = "prod",
    stream: str = "kube-apiserver-audit-abc",
    age_s: int = 3600,
) -> int:
    """Put ``messages`` (JSON-encoded when not text) into a stream of the cluster's log
    group, creating both as needed, one millisecond apart from ``age_s`` ago (CloudWatch and
    moto reject events older than 14 days). Returns how many were put."""
    logs = boto3.client("logs")
    group = f"/aws/eks/{cluster}/cluster"
    if not logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]:
        logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    t0 = int(time.time() * 1000) - age_s * 1000
    events = [
        {"timestamp": t0 + i, "message": m if isinstance(m, str) else json.dumps(m)}
        for i, m in enumerate(messages)
    ]
    for start in range(0, len(events), 5000):  # PutLogEvents takes 10,000 at most
        logs.put_log_events(
            logGroupName=group, logStreamName=stream, logEvents=events[start : start + 5000]
        )
    return len(events)
