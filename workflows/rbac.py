"""Least-privilege RBAC and the namespace for imagegate: everything namespaced, nothing cluster-wide.

What each object is for (https://argo-workflows.readthedocs.io/en/latest/workflow-rbac/,
shared/research/argo.md sections 2 and 4):

- Namespace `imagegate`, labelled for Pod Security Admission at the level the allowed
  build modes need (`workflows.pod_security.BUILDER_LEVELS`), with `restricted` warned and
  audited so every pod that needs more shows up in the audit log.
- ServiceAccount `imagegate-workflow` for every workflow pod, with
  `automountServiceAccountToken: false`: main containers (where a Dockerfile's RUN steps
  execute) get no token. Argo mounts the executor's token into its own wait/init containers
  when a workflow names `executor.serviceAccountName`; since Kubernetes 1.24 that needs the
  token Secret `<sa>.service-account-token`
  (https://argo-workflows.readthedocs.io/en/latest/service-account-secrets/).
- Role `imagegate-executor`: `workflowtaskresults` create/patch, all the v3.4+ executor
  needs to report outputs; bound to the workflow ServiceAccount.
- Role `imagegate-approver`: get/list/watch workflows to find the gate, update/patch to
  `argo node set` its decision and `argo resume` it (both write the Workflow object).
- Role `imagegate-submitter`: create/get/list/watch workflows, get/list workflowtemplates,
  which `argo submit --from workflowtemplate/image-build --watch` needs. No update or
  patch, so a submitter cannot resume their own gate.
- Both may `get` the policy ConfigMap, by name: the imagegate client reads it (the default
  mode on submit, `allowSelfApproval` on approve).

The approver and submitter Roles are bound to groups (`APPROVERS_GROUP`,
`SUBMITTERS_GROUP`); map your identity provider's groups onto them, or patch the subjects.
"""

from __future__ import annotations

from typing import Any

from steps.contract import Policy
from workflows import names
from workflows.pod_security import Level, required_level

__all__ = [
    "APPROVER_ROLE",
    "APPROVERS_GROUP",
    "EXECUTOR_ROLE",
    "NAMESPACE",
    "SUBMITTER_ROLE",
    "SUBMITTERS_GROUP",
    "TOKEN_SECRET",
    "manifests",
    "namespace_labels",
]

NAMESPACE = "imagegate"
EXECUTOR_ROLE = "imagegate-executor"
APPROVER_ROLE = "imagegate-approver"
SUBMITTER_ROLE = "imagegate-submitter"
APPROVERS_GROUP = "imagegate:approvers"
SUBMITTERS_GROUP = "imagegate:submitters"
# Argo finds an executor token Secret by this name (docs/service-account-secrets.md, option 1).
TOKEN_SECRET = f"{names.SERVICE_ACCOUNT}.service-account-token"

_ARGO = "argoproj.io"
_RBAC = "rbac.authorization.k8s.io"
_PSA = "pod-security.kubernetes.io/"


def namespace_labels(policy: Policy) -> dict[str, str]:
    """Pod Security Admission labels: enforce what the allowed modes need, warn and audit restricted."""
    enforce = required_level(policy.allowed_modes)
    return {
        _PSA + "enforce": enforce.value,
        _PSA + "enforce-version": "latest",
        _PSA + "warn": Level.RESTRICTED.value,
        _PSA + "warn-version": "latest",
        _PSA + "audit": Level.RESTRICTED.value,
        _PSA + "audit-version": "latest",
    }


# Plain dicts, not the kubernetes package's models: importing it costs every `imagegate render`
# about 0.1 s, and tests/test_rbac.py validates every object with kubernetes-validate.
Obj = dict[str, Any]


def _meta(name: str, **extra: Any) -> Obj:
    return {"name": name, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "imagegate"}, **extra}


def _rule(group: str, resource: str, *verbs: str, names_: list[str] | None = None) -> Obj:
    rule: Obj = {"apiGroups": [group], "resources": [resource], "verbs": list(verbs)}
    if names_:
        rule["resourceNames"] = names_
    return rule


def _role(name: str, rules: list[Obj]) -> Obj:
    return {"apiVersion": f"{_RBAC}/v1", "kind": "Role", "metadata": _meta(name), "rules": rules}


def _binding(role: str, subject: Obj) -> Obj:
    return {
        "apiVersion": f"{_RBAC}/v1",
        "kind": "RoleBinding",
        "metadata": _meta(role),
        "roleRef": {"apiGroup": _RBAC, "kind": "Role", "name": role},
        "subjects": [subject],
    }


def _group(name: str) -> Obj:
    return {"apiGroup": _RBAC, "kind": "Group", "name": name}


def _workflows(*verbs: str) -> Obj:
    return _rule(_ARGO, "workflows", *verbs)


def _read_policy() -> Obj:
    # The imagegate client reads the policy ConfigMap (default mode on submit, allowSelfApproval
    # on approve); by name only, so no other ConfigMap in the namespace is readable.
    return _rule("", "configmaps", "get", names_=[Policy.CONFIGMAP_NAME])


def manifests(policy: Policy | None = None) -> list[dict[str, Any]]:
    """The Namespace, ServiceAccount, token Secret, Roles and RoleBindings, as plain dicts.

    Args:
        policy: The cluster policy; its allowed modes decide the namespace's enforce level.
            Defaults to `Policy()`, which allows every mode.
    """
    policy = policy or Policy()
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": NAMESPACE,
                "labels": {"app.kubernetes.io/part-of": "imagegate", **namespace_labels(policy)},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(names.SERVICE_ACCOUNT),
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": _meta(TOKEN_SECRET, annotations={"kubernetes.io/service-account.name": names.SERVICE_ACCOUNT}),
        },
        _role(EXECUTOR_ROLE, [_rule(_ARGO, "workflowtaskresults", "create", "patch")]),
        _binding(EXECUTOR_ROLE, {"kind": "ServiceAccount", "name": names.SERVICE_ACCOUNT, "namespace": NAMESPACE}),
        _role(APPROVER_ROLE, [_workflows("get", "list", "watch", "update", "patch"), _read_policy()]),
        _binding(APPROVER_ROLE, _group(APPROVERS_GROUP)),
        _role(
            SUBMITTER_ROLE,
            [
                _workflows("create", "get", "list", "watch"),
                _rule(_ARGO, "workflowtemplates", "get", "list"),
                _read_policy(),
            ],
        ),
        _binding(SUBMITTER_ROLE, _group(SUBMITTERS_GROUP)),
    ]
