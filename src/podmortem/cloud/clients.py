"""Building the step sets a :class:`~podmortem.cloud.executor.Procedure` runs, configured the
way each SDK's users expect: the Kubernetes client from in-cluster config or a kubeconfig,
boto3 from profiles and regions, Azure ``DefaultAzureCredential``, Google Application
Default Credentials. The ``cloud`` and ``watch`` commands both build through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podmortem.cloud.model import Provider
from podmortem.errors import InputError

if TYPE_CHECKING:
    from podmortem.cloud.kubernetes import KubernetesContainment


@dataclass(frozen=True, slots=True)
class CloudConfig:
    """How to reach one provider; ``None`` means the SDK's own default lookup."""

    region: str | None = None
    profile: str | None = None
    subscription: str | None = None
    resource_group: str | None = None
    project: str | None = None
    location: str | None = None


def kubernetes_steps(
    kubeconfig: str | Path | None = None, context: str | None = None
) -> KubernetesContainment:
    """The ``k8s.*`` steps through the official client: in-cluster configuration when
    running in a pod and nothing else was asked for, else the kubeconfig (``$KUBECONFIG``
    or ``~/.kube/config`` unless given). Raises CapabilityUnavailable when neither works."""
    from kubernetes import client

    from podmortem.acquire.runtimes.kubernetes import api_client
    from podmortem.cloud.kubernetes import KubernetesContainment

    api = api_client(context=context, kubeconfig=str(kubeconfig) if kubeconfig else None)
    return KubernetesContainment(
        client.CoreV1Api(api), client.AppsV1Api(api), client.NetworkingV1Api(api)
    )


def provider_steps(provider: Provider, config: CloudConfig) -> Any:
    """The provider's step set (``EksSteps``, ``AksSteps`` or ``GkeSteps``)."""
    if provider == "eks":
        from podmortem.cloud.providers import aws

        return aws.EksSteps(aws.session_factory(config.profile, config.region))
    if provider == "aks":
        from podmortem.cloud.providers import azure

        if not config.subscription:
            raise InputError("AKS needs --subscription (or AZURE_SUBSCRIPTION_ID)")
        return azure.AksSteps(
            azure.default_clients(config.subscription), resource_group=config.resource_group
        )
    from podmortem.cloud.providers import gcp

    return gcp.GkeSteps(
        gcp.default_clients(config.project), project=config.project, location=config.location
    )
