"""Four eyes at admission: the submitter of a run cannot approve it, whatever tool writes the approval.

The samples are UPDATEs of a Workflow waiting at its approve gate, written as Argo writes
them (argoproj/argo-workflows v4.1.2): `argo node set` (workflow/util/util.go
updateSuspendedNode: the output's value set, its `valueFrom` dropped, the global copied,
the actor labelled from the caller's claims) and the controller's status updates. Those
writers are the fakes here; the policy is the rendered one, evaluated by both CEL engines
through `test_admission_cel` (which must agree), with `request.userInfo.username` set to
the caller as the API server authenticated them.

The creator labels are written with `dns_friendly` (workflows.client), imagegate's port of
Argo's `dnsFriendly` (workflow/creator/creator.go); the CEL never sees that function, it
reimplements the comparison, and the tests pin it on hand-written label values too.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import test_admission_cel as cel_tests
import yaml
from test_admission_cel import POLICY, CelCpp, CelPython, EvalError, workflow

from steps.contract import Decision
from workflows import admission, names
from workflows.client import ACTOR_LABELS, CREATOR_LABELS, _resume_node, dns_friendly

CONTROLLER = "system:serviceaccount:argo:argo"
ARGO_SERVER = "system:serviceaccount:argo:argo-server"
SUBMITTER = "alice@example.com"
GATE_ID = "image-build-abc12-1733301234"
SELF_APPROVAL = POLICY.model_copy(update={"allow_self_approval": True})

admit = cel_tests.admit  # the fixture: both engines' verdict, after they agreed


def _params(**values: str) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in values.items()]


def _claims_labels(prefix: str, user: str, email: str = "", preferred: str = "") -> dict[str, str]:
    """Argo's creator.Label: one label per non-empty claim, DNS-friendly."""
    keys = CREATOR_LABELS if prefix == "creator" else ACTOR_LABELS
    values = (user, email.replace("@", ".at.", 1), preferred)
    return {k: dns_friendly(v) for k, v in zip(keys, values, strict=True) if v}


def waiting(template: str = names.IMAGE_BUILD, **labels: str) -> dict:
    """A run at its approve gate, as the controller left it: validate done, approve Running."""
    params = (
        {"context": "src", "destination": "registry.example.com/team/app:1.0"}
        if template == names.IMAGE_BUILD
        else {"source": "docker://registry.example.com/a:1", "destination": "ghcr.io/acme/a:1"}
    )
    wf = workflow(template, params)
    wf["metadata"] = {"name": "image-build-abc12", "namespace": "imagegate", "labels": dict(labels)}
    decision_output = {
        "name": names.DECISION,
        "globalName": names.DECISION,
        "valueFrom": {"supplied": {}, "default": Decision.REJECT.value},
    }
    reason_output = {"name": names.REASON, "globalName": names.REASON, "valueFrom": {"supplied": {}, "default": ""}}
    wf["status"] = {
        "phase": "Running",
        "nodes": {
            "image-build-abc12": {
                "id": "image-build-abc12",
                "name": "image-build-abc12",
                "displayName": "image-build-abc12",
                "type": "DAG",
                "phase": "Running",
            },
            "image-build-abc12-1500": {
                "id": "image-build-abc12-1500",
                "name": "image-build-abc12.validate",
                "displayName": names.VALIDATE,
                "templateName": names.VALIDATE,
                "type": "Pod",
                "phase": "Succeeded",
                "outputs": {"parameters": [{"name": "fallback", "value": "allowed"}]},
            },
            GATE_ID: {
                "id": GATE_ID,
                "name": "image-build-abc12.approve",
                "displayName": names.APPROVE,
                "templateName": names.APPROVE,
                "type": "Suspend",
                "phase": "Running",
                "startedAt": "2026-12-04T10:00:00Z",
                "inputs": {
                    "parameters": [{"name": names.DECISION, "default": "reject", "enum": ["approve", "reject"]}]
                },
                "outputs": {"parameters": [decision_output, reason_output]},
            },
        },
    }
    return wf


def argo_node_set(wf: dict, outputs: dict[str, str], *, actor: str | None = None) -> dict:
    """A fake of `argo node set -p ...` (util.go updateSuspendedNode): the update it sends.

    The actor labels come from the caller's claims (creator.LabelActor); None: no claims.
    """
    new = copy.deepcopy(wf)
    gate = new["status"]["nodes"][GATE_ID]
    for param in gate["outputs"]["parameters"]:
        if param["name"] in outputs:
            param["value"] = outputs[param["name"]]
            del param["valueFrom"]
            globals_ = new["status"].setdefault("outputs", {}).setdefault("parameters", [])
            globals_.append({"name": param["globalName"], "value": param["value"]})
    labels = {k: v for k, v in new["metadata"]["labels"].items() if k not in ACTOR_LABELS}
    if actor is not None:
        labels |= _claims_labels("actor", actor)
    new["metadata"]["labels"] = labels
    return new


def approve(wf: dict, decision: str = Decision.APPROVE.value, **kwargs: Any) -> dict:
    return argo_node_set(wf, {names.DECISION: decision, names.REASON: "looks fine"}, **kwargs)


def update(engine_admit, new: dict, old: dict, user: str, policy=POLICY):
    return engine_admit(new, policy=policy, operation="UPDATE", old=old, user=user)


SUBMITTED_BY_ALICE = _claims_labels("creator", SUBMITTER)


# --- the four cases ---------------------------------------------------------------------


def test_submitter_approving_with_argo_node_set_is_denied_naming_approver_submitter_and_fix(admit):
    old = waiting(**SUBMITTED_BY_ALICE)
    verdict = update(admit, approve(old, actor=SUBMITTER), old, SUBMITTER)
    assert not verdict.errors, verdict.errors
    assert verdict.messages == [
        "alice@example.com (Argo actor alice-example.com) cannot set the approve gate of imagegate/image-build-abc12"
        " to approve: they submitted it (workflows.argoproj.io/creator=alice-example.com). Four eyes:"
        " another person must approve it, or the policy (ConfigMap imagegate/imagegate-policy) must set"
        ' allowSelfApproval: "true"; the submitter may still reject'
    ]


def test_another_user_approving_is_allowed(admit):
    old = waiting(**SUBMITTED_BY_ALICE)
    assert update(admit, approve(old, actor="bob@example.com"), old, "bob@example.com").allowed


def test_submitter_rejecting_is_allowed(admit):
    old = waiting(**SUBMITTED_BY_ALICE)
    assert update(admit, approve(old, Decision.REJECT.value, actor=SUBMITTER), old, SUBMITTER).allowed


def test_self_approval_is_allowed_when_the_policy_allows_it(admit):
    old = waiting(**SUBMITTED_BY_ALICE)
    assert update(admit, approve(old, actor=SUBMITTER), old, SUBMITTER, policy=SELF_APPROVAL).allowed


@pytest.mark.parametrize(("value", "denied"), [("maybe", True), ("YES", False)], ids=["garbage", "YES"])
def test_an_unparseable_allow_self_approval_reads_as_false(admit, value, denied):
    old = waiting(**SUBMITTED_BY_ALICE)
    data = {**POLICY.to_configmap_data(), "allowSelfApproval": value}
    verdict = admit(approve(old), data=data, operation="UPDATE", old=old, user=SUBMITTER)
    assert not verdict.errors and verdict.allowed is not denied, verdict


# --- the controller and other writers ------------------------------------------------------


def _controller_moves_on(wf: dict) -> dict:
    """A fake of the controller's next status update: the gate Succeeded, probe Pending."""
    new = copy.deepcopy(wf)
    new["status"]["nodes"][GATE_ID]["phase"] = "Succeeded"
    new["status"]["nodes"]["image-build-abc12-2000"] = {
        "id": "image-build-abc12-2000",
        "name": "image-build-abc12.probe",
        "displayName": names.PROBE,
        "templateName": names.PROBE,
        "type": "Pod",
        "phase": "Pending",
    }
    return new


def test_controller_status_updates_that_do_not_change_the_decision_are_allowed(admit):
    approved = approve(waiting(**SUBMITTED_BY_ALICE), actor="bob@example.com")
    assert update(admit, _controller_moves_on(approved), approved, CONTROLLER).allowed


def test_controller_status_updates_pass_even_when_the_submitter_is_the_last_actor(admit):
    # The controller's updates carry the labels as they are; they set no decision.
    old = approve(waiting(**SUBMITTED_BY_ALICE), Decision.REJECT.value, actor=SUBMITTER)
    assert update(admit, _controller_moves_on(old), old, CONTROLLER).allowed


def test_the_controller_applying_the_timeout_default_is_allowed(admit):
    old = waiting(**SUBMITTED_BY_ALICE)
    timed_out = argo_node_set(old, {names.DECISION: Decision.REJECT.value})
    assert update(admit, timed_out, old, CONTROLLER).allowed


def test_the_imagegate_client_kube_mode_update_by_the_submitter_is_denied(admit):
    # The client refuses this itself; an old or modified client still meets admission.
    old = waiting(**SUBMITTED_BY_ALICE)
    new = copy.deepcopy(old)
    _resume_node(new, GATE_ID, {names.DECISION: Decision.APPROVE.value, names.REASON: ""}, SUBMITTER)
    verdict = update(admit, new, old, SUBMITTER)
    assert len(verdict.messages) == 1 and "cannot set the approve gate" in verdict.messages[0], verdict
    by_bob = copy.deepcopy(old)
    _resume_node(by_bob, GATE_ID, {names.DECISION: Decision.APPROVE.value, names.REASON: ""}, "bob@example.com")
    assert update(admit, by_bob, old, "bob@example.com").allowed


# --- who counts as the submitter -----------------------------------------------------------

# Kubernetes username -> the labels Argo or imagegate wrote at submit time (hand-written).
SAME_PERSON = {
    "service-account": (
        "system:serviceaccount:ci:builder",
        {names.ARGO_CREATOR_LABEL: "system-serviceaccount-ci-builder"},
    ),
    "email-creator": ("alice@example.com", {names.ARGO_CREATOR_LABEL: "alice-example.com"}),
    "email-label": ("alice@example.com", {CREATOR_LABELS[1]: "alice.at.example.com"}),
    "imagegate-submitter-label": ("alice@example.com", {names.LABEL_SUBMITTER: "alice-example.com"}),
    "unicode-runes": ("jürgen", {names.ARGO_CREATOR_LABEL: "j-rgen"}),
    "trimmed-ends": ("-bob.", {names.ARGO_CREATOR_LABEL: "bob"}),
    "case-insensitive": ("Alice", {names.ARGO_CREATOR_LABEL: "alice"}),
    "last-63-of-a-long-oidc-subject": (
        "https://login.example.com/realms/corporate#0b0e6c9e-7d3e-4f6a-9b1a-2f0c5d7e8a91-extra",
        # 85 runes: the last 63 start at ".com-realms", and the leading '.' is trimmed.
        {names.ARGO_CREATOR_LABEL: "com-realms-corporate-0b0e6c9e-7d3e-4f6a-9b1a-2f0c5d7e8a91-extra"},
    ),
    "oidc-prefix": ("oidc:alice", {CREATOR_LABELS[2]: "alice"}),
    "oidc-prefix-email": ("oidc:alice@example.com", {CREATOR_LABELS[1]: "alice.at.example.com"}),
    "issuer-prefix": ("https://issuer.example.com#alice", {names.ARGO_CREATOR_LABEL: "alice"}),
}
OTHER_PERSON = {
    "longer-name": ("alice2@example.com", {names.ARGO_CREATOR_LABEL: "alice-example.com"}),
    "label-is-a-suffix-only": ("malice@example.com", {names.ARGO_CREATOR_LABEL: "alice-example.com"}),
    "other-service-account": (
        "system:serviceaccount:ci:deployer",
        {names.ARGO_CREATOR_LABEL: "system-serviceaccount-ci-builder"},
    ),
    "dot-is-not-a-wildcard": ("alicexexample.com", {CREATOR_LABELS[1]: "alice.at.example.com"}),
    "no-labels": ("alice@example.com", {}),
}


@pytest.mark.parametrize(("user", "labels"), SAME_PERSON.values(), ids=SAME_PERSON.keys())
def test_the_submitter_is_recognised_through_argo_s_dns_friendly_labels(admit, user, labels):
    old = waiting(**labels)
    verdict = update(admit, approve(old), old, user)
    assert not verdict.errors, verdict.errors
    assert len(verdict.messages) == 1 and verdict.messages[0].startswith(f"{user} cannot set the approve gate")


@pytest.mark.parametrize(("user", "labels"), OTHER_PERSON.values(), ids=OTHER_PERSON.keys())
def test_other_people_are_not_mistaken_for_the_submitter(admit, user, labels):
    old = waiting(**labels)
    verdict = update(admit, approve(old), old, user)
    assert verdict.allowed, verdict


USERNAMES = [
    "system:serviceaccount:imagegate:ci",
    "alice@example.com",
    "a" * 70 + "@example.com",
    "x" * 62 + "é",
    "__init__",
    "..a..",
    "ünïcödé-üser",
    "kubernetes-admin",
    "CN=Jane Doe,O=Example",
]


@pytest.mark.parametrize("user", USERNAMES)
def test_the_cel_comparison_agrees_with_dns_friendly_for_every_creator_label(admit, user):
    for key, value in _claims_labels("creator", user, email=user).items():
        old = waiting(**{key: value})
        assert not update(admit, approve(old), old, user).allowed, (key, value)
        near_miss = waiting(**{key: value + "0"})
        assert update(admit, approve(near_miss), near_miss, user).allowed, (key, value + "0")


# --- approvals in other shapes -------------------------------------------------------------


@pytest.mark.parametrize(
    "decision",
    ["APPROVE", "approve ", "x' == 'x' || 'a", ""],
    ids=["uppercase", "trailing-space", "when-injection", "empty"],
)
def test_the_submitter_may_set_no_decision_but_reject(admit, decision):
    old = waiting(**SUBMITTED_BY_ALICE)
    verdict = update(admit, approve(old, decision), old, SUBMITTER)
    assert len(verdict.messages) == 1 and f"to {decision}:" in verdict.messages[0], verdict


def test_changing_the_default_a_timeout_would_apply_is_denied(admit):
    old = waiting(**SUBMITTED_BY_ALICE)
    new = copy.deepcopy(old)
    new["status"]["nodes"][GATE_ID]["outputs"]["parameters"][0]["valueFrom"]["default"] = "approve"
    verdict = update(admit, new, old, SUBMITTER)
    assert len(verdict.messages) == 1 and "to (unset, default changed):" in verdict.messages[0], verdict


def test_a_decision_changed_after_someone_else_rejected_is_denied(admit):
    rejected = approve(waiting(**SUBMITTED_BY_ALICE), Decision.REJECT.value, actor="bob@example.com")
    flipped = copy.deepcopy(rejected)
    flipped["status"]["nodes"][GATE_ID]["outputs"]["parameters"][0]["value"] = "approve"
    assert not update(admit, flipped, rejected, SUBMITTER).allowed


def test_renaming_the_gate_node_in_the_same_update_does_not_hide_it(admit):
    old = waiting(**SUBMITTED_BY_ALICE)
    new = approve(old)
    new["status"]["nodes"][GATE_ID] |= {"displayName": "x", "templateName": "x"}
    assert not update(admit, new, old, SUBMITTER).allowed


def test_a_gate_node_written_under_a_new_id_is_seen(admit):
    old = waiting(**SUBMITTED_BY_ALICE)
    new = approve(old)
    new["status"]["nodes"]["forged"] = new["status"]["nodes"].pop(GATE_ID)
    assert not update(admit, new, old, SUBMITTER).allowed


def test_setting_only_the_decision_global_is_denied(admit):
    old = waiting(**SUBMITTED_BY_ALICE)
    new = copy.deepcopy(old)
    new["status"]["outputs"] = {"parameters": _params(decision="approve")}
    verdict = update(admit, new, old, SUBMITTER)
    assert len(verdict.messages) == 1 and "to approve:" in verdict.messages[0], verdict


def test_the_submitter_cannot_write_nodes_admission_cannot_read(admit):
    old = waiting(**SUBMITTED_BY_ALICE)
    new = copy.deepcopy(old)
    del new["status"]["nodes"]
    new["status"]["compressedNodes"] = "H4sIAAAAAAAA/6uuBQBDv6ajAgAAAA=="  # gzip+base64, unreadable to CEL
    verdict = update(admit, new, old, SUBMITTER)
    assert verdict.messages == [
        "alice@example.com cannot change status.compressedNodes or status.offloadNodeStatusVersion of"
        " imagegate/image-build-abc12: they submitted it (workflows.argoproj.io/creator=alice-example.com) and"
        " admission cannot read those nodes to tell an approval from a rejection. Another person must decide, or"
        ' the policy (ConfigMap imagegate/imagegate-policy) must set allowSelfApproval: "true"'
    ]
    assert update(admit, new, old, "bob@example.com").allowed
    assert update(admit, new, old, CONTROLLER).allowed


@pytest.mark.parametrize("key", admission.IDENTITY_LABELS)
def test_the_labels_naming_the_submitter_cannot_change(admit, key):
    old = waiting(**{key: "alice-example.com"})
    new = copy.deepcopy(old)
    del new["metadata"]["labels"][key]
    verdict = update(admit, new, old, "bob@example.com")
    assert verdict.messages == [
        f"metadata.labels {key} cannot change after creation: they record who submitted the run, which the"
        " four-eyes check reads"
    ]


def test_dropping_the_labels_while_approving_does_not_help(admit):
    old = waiting(**SUBMITTED_BY_ALICE)
    new = approve(old)
    new["metadata"]["labels"] = {}
    messages = update(admit, new, old, SUBMITTER).messages
    assert len(messages) == 2 and "cannot set the approve gate" in messages[0], messages
    assert messages[1].startswith(f"metadata.labels {names.ARGO_CREATOR_LABEL} cannot change")


# --- through an Argo Server ----------------------------------------------------------------


def test_sso_self_approval_is_seen_through_the_actor_labels_the_server_writes(admit):
    # SSO: the server calls the API as its own (or an RBAC-mapped) ServiceAccount, but labels
    # the actor from the verified claims in the same update as the decision.
    old = waiting(**_claims_labels("creator", "0a1b2c", email="alice@example.com"))
    verdict = update(admit, approve(old, actor="0a1b2c"), old, ARGO_SERVER)
    assert len(verdict.messages) == 1
    assert verdict.messages[0].startswith(f"{ARGO_SERVER} (Argo actor 0a1b2c) cannot set the approve gate")
    assert update(admit, approve(old, actor="9f8e7d"), old, ARGO_SERVER).allowed


def test_server_auth_mode_looks_like_self_approval_when_the_server_also_submitted(admit):
    # Server mode: every caller is the server's ServiceAccount, so no one can be told apart.
    old = waiting(**_claims_labels("creator", ARGO_SERVER))
    assert not update(admit, approve(old, actor=ARGO_SERVER), old, ARGO_SERVER).allowed
    ci = waiting(**_claims_labels("creator", "system:serviceaccount:ci:builder"))
    assert update(admit, approve(ci, actor=ARGO_SERVER), ci, ARGO_SERVER).allowed  # what stays open


# --- scope -----------------------------------------------------------------------------------


def test_image_push_has_the_same_gate_and_the_same_rule(admit):
    old = waiting(names.IMAGE_PUSH, **SUBMITTED_BY_ALICE)
    assert not update(admit, approve(old), old, SUBMITTER).allowed
    assert update(admit, approve(old), old, "bob@example.com").allowed


def test_workflows_that_are_not_ours_are_left_alone(admit):
    old = waiting(**SUBMITTED_BY_ALICE)
    old["spec"] = {"entrypoint": "main", "templates": [{"name": "main", "suspend": {}}], "serviceAccountName": "x"}
    assert update(
        admit, approve(old), old, SUBMITTER, policy=POLICY.model_copy(update={"allowed_namespaces": ["ci"]})
    ).allowed


def test_creating_a_run_is_not_a_decision(admit):
    wf = waiting(**SUBMITTED_BY_ALICE)
    del wf["status"]
    assert admit(wf, policy=POLICY, user=SUBMITTER).allowed


# --- the expressions themselves ----------------------------------------------------------------


@cache
def _status_schema(shared: Path) -> dict:
    text = (shared / "argo/manifests/base/crds/full/argoproj.io_workflows.yaml").read_text()
    crd = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]


def test_every_status_field_the_expressions_read_exists_in_the_argo_crd(shared):
    status = _status_schema(shared)
    node = status["nodes"]["additionalProperties"]["properties"]
    text = yaml.safe_dump(admission.policy())
    assert set(re.findall(r"(?:object|oldObject)\.status\.(\w+)", text)) <= set(status)
    assert set(re.findall(r"Nodes\[k\]\.(\w+)", text)) <= set(node)
    assert set(re.findall(r"status\.outputs\.(\w+)", text)) <= set(status["outputs"]["properties"])


@pytest.mark.parametrize(
    "expression",
    [
        "'abcdef'.substring(2)",
        "'abcdef'.substring(1, 3)",
        "'jürgen'.substring(1)",
        "'abc'.substring(3)",
        "'a@b@c'.replace('@', '.at.', 1)",
        "'a@b@c'.replace('@', '-')",
        "'a@b@c'.replace('@', '-', -1)",
        "'a@b'.replace('@', '-', 0)",
    ],
)
def test_the_registered_substring_and_replace_behave_as_cel_cpp_s(expression):
    assert str(CelPython({}).eval(expression)) == CelCpp({}).eval(expression)


@pytest.mark.parametrize("expression", ["'abc'.substring(4)", "'abc'.substring(2, 1)", "'abc'.substring(-1)"])
def test_substring_out_of_range_is_an_error_in_both(expression):
    for engine in (CelPython({}), CelCpp({})):
        with pytest.raises(EvalError):
            engine.eval(expression)
