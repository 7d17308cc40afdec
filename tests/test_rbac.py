"""RBAC and namespace: least privilege, nothing cluster-wide, valid against the Kubernetes schema."""

import kubernetes_validate
import pytest

from steps.contract import Mode, Policy
from workflows import names, rbac

K8S_VERSION = "1.30.0"  # the oldest release with admissionregistration.k8s.io/v1 VAPs and appArmorProfile

OBJECTS = rbac.manifests()
NAMESPACED_KINDS = {"ServiceAccount", "Secret", "Role", "RoleBinding"}


def _by(kind: str, name: str) -> dict:
    (obj,) = [o for o in OBJECTS if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def _rules(role: str) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in _by("Role", role)["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_every_object_validates_against_the_kubernetes_schema(obj):
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_nothing_is_cluster_wide():
    kinds = {o["kind"] for o in OBJECTS}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    assert kinds - {"Namespace"} <= NAMESPACED_KINDS
    assert all(o["metadata"]["namespace"] == rbac.NAMESPACE for o in OBJECTS if o["kind"] != "Namespace")


def test_executor_role_is_exactly_workflowtaskresults_create_and_patch():
    assert _rules(rbac.EXECUTOR_ROLE) == {
        ("argoproj.io", "workflowtaskresults", "create"),
        ("argoproj.io", "workflowtaskresults", "patch"),
    }


def test_executor_role_is_bound_to_the_workflow_service_account_only():
    binding = _by("RoleBinding", rbac.EXECUTOR_ROLE)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": rbac.EXECUTOR_ROLE}
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": names.SERVICE_ACCOUNT, "namespace": rbac.NAMESPACE}
    ]


def test_workflow_service_account_does_not_mount_its_token_into_main_containers():
    assert _by("ServiceAccount", names.SERVICE_ACCOUNT)["automountServiceAccountToken"] is False


def test_executor_token_secret_is_discoverable_by_argo():
    # docs/service-account-secrets.md option 1: `<sa>.service-account-token`, annotated with the SA.
    secret = _by("Secret", f"{names.SERVICE_ACCOUNT}.service-account-token")
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"] == {"kubernetes.io/service-account.name": names.SERVICE_ACCOUNT}


def test_approver_can_set_and_resume_the_gate_and_nothing_else():
    assert _rules(rbac.APPROVER_ROLE) == {
        ("argoproj.io", "workflows", verb) for verb in ("get", "list", "watch", "update", "patch")
    } | {("", "configmaps", "get")}


@pytest.mark.parametrize("role", [rbac.APPROVER_ROLE, rbac.SUBMITTER_ROLE])
def test_people_read_the_policy_configmap_by_name_only(role):
    (rule,) = [r for r in _by("Role", role)["rules"] if r["resources"] == ["configmaps"]]
    assert rule == {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": [Policy.CONFIGMAP_NAME],
        "verbs": ["get"],
    }


def test_submitter_cannot_resume_its_own_gate():
    rules = _rules(rbac.SUBMITTER_ROLE)
    assert ("argoproj.io", "workflows", "create") in rules
    assert ("argoproj.io", "workflowtemplates", "get") in rules
    assert not {verb for _, resource, verb in rules if resource == "workflows"} & {"update", "patch", "delete"}
    assert not {resource for _, resource, _ in rules} - {"workflows", "workflowtemplates", "configmaps"}


def test_no_role_grants_wildcards_secrets_or_pods():
    for role in (o for o in OBJECTS if o["kind"] == "Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], role["metadata"]["name"]
            assert not {"secrets", "pods", "pods/exec"} & set(rule["resources"]), role["metadata"]["name"]


@pytest.mark.parametrize(
    ("modes", "enforce"),
    [
        ([*Mode], "privileged"),
        ([Mode.BUILDKIT], "privileged"),
        ([Mode.KANIKO], "baseline"),
        ([Mode.KANIKO, Mode.SYNTHETIC], "baseline"),
        ([Mode.SYNTHETIC], "restricted"),
    ],
    ids=["all-modes", "buildkit", "kaniko", "kaniko-synthetic", "synthetic-only"],
)
def test_namespace_enforces_the_level_the_allowed_modes_need(modes, enforce):
    labels = rbac.namespace_labels(Policy(allowed_modes=modes))
    assert labels["pod-security.kubernetes.io/enforce"] == enforce
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"


def test_rendered_namespace_carries_the_default_policy_labels():
    namespace = _by("Namespace", rbac.NAMESPACE)
    assert rbac.namespace_labels(Policy()).items() <= namespace["metadata"]["labels"].items()
