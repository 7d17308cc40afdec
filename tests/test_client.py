"""The Python client against FAKES of the Kubernetes API and the Argo Server (tests/fake_cluster.py).

The fakes serve real HTTP on 127.0.0.1, so kubeconfig loading, the kubernetes package's
REST and watch code, and the client's error mapping all run for real. The fake controller
moves each run along; nothing here is a real Argo.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_cluster import DISCONNECT, schema_errors, started

from steps.contract import BuildRequest, BuildResult, Classification, Decision, FailureClass, PushSkippedReason, Status
from workflows import names, rbac
from workflows.client import ACCESS, Client, ClusterConfig, dns_friendly
from workflows.errors import (
    ClientError,
    ForbiddenError,
    NotFoundError,
    NotWaitingError,
    RejectedError,
    RequestError,
    ResultParseError,
    WaitTimeoutError,
)

ROOT = Path(__file__).resolve().parent.parent
NS = "imagegate"
REQUEST = BuildRequest(context="app", destination="registry.example.com/team/app:1.0")
DIGEST = "sha256:" + "ab" * 32
SUCCEEDED = BuildResult(status=Status.SUCCEEDED, builder="buildah", image=REQUEST.destination, digest=DIGEST)
FAILED = BuildResult(
    status=Status.FAILED,
    builder="buildah",
    push_skipped_reason=PushSkippedReason.FAILED,
    classification=Classification(class_=FailureClass.BUILD_ERROR, fallback_allowed=False, signature="exit-code"),
)


@pytest.fixture
def cluster(tmp_path):
    with started(tmp_path) as fake:
        yield fake


@pytest.fixture
def as_user(cluster, tmp_path):
    """A client for one of the fake's users, through the kubeconfig context named after them."""
    clients = []

    def make(user: str, **config) -> Client:
        client = Client(ClusterConfig(kubeconfig=str(tmp_path / "kubeconfig"), context=user, **config))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def waiting_run(cluster, as_user):
    """GIVEN alice submitted REQUEST and the fake controller suspended it at the approval gate."""
    name = as_user("alice").submit(REQUEST)
    cluster.controller.reach_approval(NS, name)
    return name


def _gate(cluster, name):
    (node,) = [n for n in cluster.workflows[(NS, name)]["status"]["nodes"].values() if n["displayName"] == "approve"]
    return node


def _outputs(node):
    return {p["name"]: p.get("value") for p in node["outputs"]["parameters"]}


def _globals(cluster, name):
    status = cluster.workflows[(NS, name)]["status"]
    return {p["name"]: p.get("value") for p in status.get("outputs", {}).get("parameters", [])}


def _finish_after_approval(cluster, name, result, phase="Succeeded"):
    cluster.watch_script[:] = [
        lambda: cluster.controller.build(NS, name),
        lambda: cluster.controller.finish(NS, name, result.to_json(), phase),
    ]


# -- submit --------------------------------------------------------------------------------------


def test_submit_creates_a_workflow_from_the_template_with_the_request_as_arguments(cluster, as_user):
    name = as_user("alice").submit(REQUEST, labels={"team": "payments"})

    wf = cluster.workflows[(NS, name)]
    assert wf["spec"]["workflowTemplateRef"] == {"name": names.IMAGE_BUILD}
    assert {p["name"]: p["value"] for p in wf["spec"]["arguments"]["parameters"]} == REQUEST.to_parameters()
    assert wf["metadata"]["labels"][names.LABEL_SUBMITTER] == "alice"
    assert wf["metadata"]["labels"]["team"] == "payments"
    assert wf["metadata"]["labels"][names.LABEL_REQUEST_ID]
    assert schema_errors(wf) == []


def test_duplicate_submit_returns_the_existing_run(cluster, as_user):
    alice = as_user("alice")
    first = alice.submit(REQUEST)
    second = alice.submit(REQUEST)

    assert first == second
    assert len(cluster.workflows) == 1


def test_a_new_request_id_makes_a_new_run_of_the_same_request(cluster, as_user):
    alice = as_user("alice")
    first = alice.submit(REQUEST, request_id="ci-1001")
    second = alice.submit(REQUEST, request_id="ci-1002")

    assert first != second
    assert cluster.workflows[(NS, second)]["metadata"]["labels"][names.LABEL_REQUEST_ID] == "ci-1002"


def test_a_request_id_reused_for_another_request_is_refused(as_user):
    alice = as_user("alice")
    alice.submit(REQUEST, request_id="ci-1001")
    other = REQUEST.model_copy(update={"destination": "registry.example.com/team/other:1.0"})

    with pytest.raises(ClientError, match="other parameters"):
        alice.submit(other, request_id="ci-1001")


def test_an_invalid_request_never_reaches_the_cluster(cluster, as_user):
    bad = BuildRequest.model_construct(**{**dict(REQUEST), "destination": "no-registry-here"})

    with pytest.raises(RequestError, match="destination"):
        as_user("alice").submit(bad)
    assert not [c for c in cluster.calls if c.verb == "create" and c.resource == "workflows"]


def test_reserved_labels_cannot_be_overridden(as_user):
    with pytest.raises(RequestError, match=names.LABEL_SUBMITTER):
        as_user("alice").submit(REQUEST, labels={names.LABEL_SUBMITTER: "someone-else"})


# -- approve / reject ----------------------------------------------------------------------------


def test_approve_sets_the_gate_outputs_and_resumes_it(cluster, as_user, waiting_run):
    approval = as_user("bob").approve(waiting_run, reason="reviewed the Dockerfile")

    gate = _gate(cluster, waiting_run)
    labels = cluster.workflows[(NS, waiting_run)]["metadata"]["labels"]
    assert gate["phase"] == "Succeeded"
    assert _outputs(gate) == {names.DECISION: "approve", names.REASON: "reviewed the Dockerfile"}
    assert "Resumed by: map[User:bob]" in gate["message"]
    assert labels[names.ARGO_ACTOR_LABEL] == "bob"
    assert labels["workflows.argoproj.io/action"] == "Resume"
    assert (approval.decision, approval.approver) == (Decision.APPROVE, "bob")
    assert _globals(cluster, waiting_run)[names.DECISION] == "approve"  # the outputs' globalName copies


def test_reject_resumes_the_gate_with_reject(cluster, as_user, waiting_run):
    as_user("bob").reject(waiting_run, reason="pushes to prod")

    gate = _gate(cluster, waiting_run)
    assert gate["phase"] == "Succeeded"
    assert _outputs(gate)[names.DECISION] == "reject"


def test_approve_works_on_compressed_node_status(cluster, as_user):
    name = as_user("alice").submit(REQUEST)
    cluster.controller.reach_approval(NS, name, compressed=True)

    as_user("bob").approve(name)

    run = as_user("bob").status(name)
    assert not run.waiting_for_approval
    assert run.approval.decision is Decision.APPROVE


def test_nodes_offloaded_to_argos_database_need_the_argo_server(cluster, as_user, waiting_run):
    def offload(wf):
        del wf["status"]["nodes"]
        wf["status"]["offloadNodeStatusVersion"] = "fnv:1234"

    cluster.update(NS, waiting_run, offload)

    with pytest.raises(ClientError, match="Argo's database") as raised:
        as_user("bob").approve(waiting_run)
    assert "ARGO_SERVER" in raised.value.hint


def test_approve_retries_when_the_workflow_changed_underneath(cluster, as_user, waiting_run):
    bob = as_user("bob")
    stale = bob.get(waiting_run)
    cluster.update(NS, waiting_run, lambda wf: wf["metadata"]["labels"].update(touched="by-controller"))
    original_get, gets = bob.get, [stale]
    bob.get = lambda *a: gets.pop() if gets else original_get(*a)  # first read is stale: a 409 on update

    bob.approve(waiting_run)

    assert [c.verb for c in cluster.calls if c.verb == "update"] == ["update", "update"]
    assert _gate(cluster, waiting_run)["phase"] == "Succeeded"


@pytest.mark.parametrize(
    "label", [names.LABEL_SUBMITTER, names.ARGO_CREATOR_LABEL], ids=["imagegate-submitter", "argo-creator"]
)
def test_approve_by_the_submitter_is_refused(cluster, as_user, label):
    name = as_user("bob").submit(REQUEST, submitter="carol")
    cluster.update(NS, name, lambda wf: wf["metadata"]["labels"].update({label: "alice"}))
    cluster.controller.reach_approval(NS, name)

    with pytest.raises(RejectedError, match="four eyes"):
        as_user("alice").approve(name)
    assert _gate(cluster, name)["phase"] == "Running"
    assert not [c for c in cluster.calls if c.verb == "update"]


def test_a_submitter_cannot_approve_by_naming_someone_else(cluster, as_user, waiting_run):
    with pytest.raises(RejectedError, match="alice submitted"):
        as_user("alice").approve(waiting_run, approver="mallory")  # the caller is checked too
    assert _gate(cluster, waiting_run)["phase"] == "Running"


def test_a_platform_may_approve_for_a_user_on_a_run_it_submitted_for_another(cluster, as_user):
    platform = as_user("bob")  # a service account acting for users
    name = platform.submit(REQUEST, submitter="ada@example.com")
    cluster.controller.reach_approval(NS, name)

    platform.approve(name, approver="grace@example.com")
    with pytest.raises(NotWaitingError):
        platform.approve(name, approver="grace@example.com")

    labels = cluster.workflows[(NS, name)]["metadata"]["labels"]
    assert (labels[names.LABEL_SUBMITTER], labels[names.ARGO_ACTOR_LABEL]) == ("ada-example.com", "grace-example.com")


def test_the_submitter_may_reject_their_own_run(cluster, as_user, waiting_run):
    as_user("alice").reject(waiting_run, reason="wrong tag")

    assert _outputs(_gate(cluster, waiting_run))[names.DECISION] == "reject"


def test_policy_can_allow_self_approval(cluster, as_user, waiting_run):
    cluster.set_policy(NS, {"allowSelfApproval": "true"})

    as_user("alice").approve(waiting_run)

    assert _outputs(_gate(cluster, waiting_run))[names.DECISION] == "approve"


def test_approve_refuses_a_run_that_has_not_reached_its_gate(as_user):
    name = as_user("alice").submit(REQUEST)

    with pytest.raises(NotWaitingError, match="has not reached"):
        as_user("bob").approve(name)


def test_approve_refuses_a_gate_that_was_already_decided(as_user, waiting_run):
    as_user("bob").reject(waiting_run)

    with pytest.raises(NotWaitingError, match="Succeeded"):
        as_user("bob").approve(waiting_run)


def test_approve_goes_through_the_argo_server_when_configured(cluster, as_user, waiting_run):
    bob = as_user("bob", argo_server=cluster.url, argo_token="bob-token")

    bob.approve(waiting_run, reason="ok")

    server_calls = [c.verb for c in cluster.calls if c.group == "argo-server" and c.resource == "workflows"]
    assert server_calls == ["get", "set", "resume"]
    assert not [c for c in cluster.calls if c.verb == "update"]
    wf = cluster.workflows[(NS, waiting_run)]
    assert wf["metadata"]["labels"][names.ARGO_ACTOR_LABEL] == "bob"  # labelled by the server, from the token
    assert _outputs(_gate(cluster, waiting_run)) == {names.DECISION: "approve", names.REASON: "ok"}
    assert _globals(cluster, waiting_run) == {names.DECISION: "approve", names.REASON: "ok"}


def test_the_argo_server_path_also_refuses_self_approval(cluster, as_user, waiting_run):
    alice = as_user("alice", argo_server=cluster.url, argo_token="alice-token")

    with pytest.raises(RejectedError):
        alice.approve(waiting_run)  # the approver defaults to the token's identity


# -- wait and result -----------------------------------------------------------------------------


def test_wait_follows_the_run_through_running_to_succeeded(cluster, as_user, waiting_run):
    bob = as_user("bob")
    bob.approve(waiting_run, reason="lgtm")
    _finish_after_approval(cluster, waiting_run, SUCCEEDED)
    seen = []

    result = bob.wait(waiting_run, timeout=60, on_progress=lambda run: seen.append(run.phase))

    assert result.status is Status.SUCCEEDED
    assert result.digest == DIGEST
    assert (result.approval.decision, result.approval.approver, result.approval.reason) == (
        Decision.APPROVE,
        "bob",
        "lgtm",
    )
    assert result.approval.at is not None
    assert seen[0] == "Running" and seen[-1] == "Succeeded"


def test_wait_returns_a_failed_run_with_its_classification(cluster, as_user, waiting_run):
    bob = as_user("bob")
    bob.approve(waiting_run)
    _finish_after_approval(cluster, waiting_run, FAILED, phase="Failed")

    result = bob.wait(waiting_run, timeout=60)

    assert result.status is Status.FAILED
    assert result.classification.class_ is FailureClass.BUILD_ERROR


def test_wait_resumes_a_dropped_watch_from_the_last_resource_version(cluster, as_user, waiting_run):
    bob = as_user("bob")
    bob.approve(waiting_run)
    cluster.watch_script[:] = [
        lambda: cluster.controller.build(NS, waiting_run),
        DISCONNECT,
        lambda: cluster.controller.finish(NS, waiting_run, SUCCEEDED.to_json()),
    ]
    gets_before = len([c for c in cluster.calls if c.verb == "get"])

    result = bob.wait(waiting_run, timeout=60)

    watches = [c for c in cluster.calls if c.verb == "watch"]
    building = [rv for rv, _, _, obj in cluster.events if "build-runner" in str(obj.get("status", {}).get("nodes"))]
    assert result.status is Status.SUCCEEDED
    assert len(watches) == 2
    assert watches[1].query["resourceVersion"] == str(building[0])  # resumed where the first stream broke off
    assert len([c for c in cluster.calls if c.verb == "get"]) == gets_before + 1  # no relist, one initial get


def test_wait_relists_when_its_resource_version_expired(cluster, as_user, waiting_run):
    bob = as_user("bob")
    bob.approve(waiting_run)
    cluster.watch_script[:] = [
        lambda: cluster.controller.build(NS, waiting_run),
        cluster.compact,
        DISCONNECT,
        lambda: cluster.controller.finish(NS, waiting_run, SUCCEEDED.to_json()),
    ]

    result = bob.wait(waiting_run, timeout=60)

    assert result.status is Status.SUCCEEDED
    assert [c.verb for c in cluster.calls][-4:] == ["watch", "watch", "list", "watch"]


def test_wait_times_out_with_a_typed_error(as_user, waiting_run):
    with pytest.raises(WaitTimeoutError):
        as_user("bob").wait(waiting_run, timeout=1)


def test_a_timed_out_gate_is_a_rejection_with_no_approver(cluster, as_user, waiting_run):
    cluster.controller.time_out_approval(NS, waiting_run)
    rejected = BuildResult(status=Status.REJECTED, push_skipped_reason=PushSkippedReason.REJECTED)
    cluster.controller.finish(NS, waiting_run, rejected.to_json())

    result = as_user("bob").result(waiting_run)

    assert result.status is Status.REJECTED
    assert (result.approval.decision, result.approval.approver) == (Decision.REJECT, None)


@pytest.mark.parametrize(
    "raw",
    ["not json at all", json.dumps({"status": "succeeded"}), json.dumps({"status": "exploded"})],
    ids=["not-json", "succeeded-without-digest", "unknown-status"],
)
def test_a_result_that_does_not_parse_is_a_typed_error(cluster, as_user, waiting_run, raw):
    cluster.controller.finish(NS, waiting_run, raw)

    with pytest.raises(ResultParseError, match="not a BuildResult"):
        as_user("bob").result(waiting_run)


def test_result_of_an_unfinished_run_is_a_typed_error(as_user, waiting_run):
    with pytest.raises(ResultParseError, match="no `result` output"):
        as_user("bob").result(waiting_run)


# -- listing, errors, access ---------------------------------------------------------------------


def test_pending_approvals_lists_only_runs_waiting_at_the_gate(cluster, as_user, waiting_run):
    alice = as_user("alice")
    not_yet = alice.submit(REQUEST, request_id="not-at-gate-yet")
    decided = alice.submit(REQUEST, request_id="already-decided")
    cluster.controller.reach_approval(NS, decided)
    as_user("bob").reject(decided)

    pending = as_user("bob").pending_approvals()

    assert [p.name for p in pending] == [waiting_run]
    assert (pending[0].submitter, pending[0].destination) == ("alice", REQUEST.destination)
    assert not_yet not in [p.name for p in pending]


def test_pending_approvals_include_runs_submitted_with_argo_and_only_imagegate_templates(cluster, as_user):
    for name, template in [("from-argo-cli", names.IMAGE_BUILD), ("someone-elses", "deploy-gate")]:
        wf = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": name, "namespace": NS, "labels": {names.ARGO_CREATOR_LABEL: "carol"}},
            "spec": {"workflowTemplateRef": {"name": template}},
        }
        cluster.put(NS, wf, "ADDED")
        cluster.controller.reach_approval(NS, name)

    pending = as_user("bob").pending_approvals()

    assert [(p.name, p.submitter) for p in pending] == [("from-argo-cli", "carol")]


def test_forbidden_is_a_typed_error(as_user, waiting_run):
    viewer = as_user("viewer")

    with pytest.raises(ForbiddenError, match="cannot update"):
        viewer.approve(waiting_run, approver="viewer")
    with pytest.raises(ForbiddenError, match="cannot create"):
        viewer.submit(REQUEST, request_id="viewer-try")


def test_not_found_is_a_typed_error(as_user):
    bob = as_user("bob")

    with pytest.raises(NotFoundError):
        bob.status("image-build-missing")
    with pytest.raises(NotFoundError):
        bob.approve("image-build-missing")
    with pytest.raises(NotFoundError):
        bob.wait("image-build-missing", timeout=5)


def test_the_client_uses_only_the_access_it_declares(cluster, as_user, waiting_run):
    bob = as_user("bob")
    bob.pending_approvals()
    bob.approve(waiting_run)
    _finish_after_approval(cluster, waiting_run, SUCCEEDED)
    bob.wait(waiting_run, timeout=60)

    declared = {(group, resource, verb) for group, resource, verbs in ACCESS for verb in verbs}
    assert cluster.verbs() <= declared
    assert ("argoproj.io", "workflows", "update") in cluster.verbs()


@pytest.mark.parametrize(
    ("user", "label"),
    [
        ("alice", "alice"),
        ("alice@example.com", "alice-example.com"),
        ("system:serviceaccount:ci:builder", "system-serviceaccount-ci-builder"),
        ("-x" + "y" * 70 + ".", "y" * 62),
    ],
    ids=["plain", "email", "service-account", "long-and-trimmed"],
)
def test_user_names_become_label_values_as_argo_writes_them(user, label):
    assert dns_friendly(user) == label


def test_the_e2e_suite_passes_against_the_fake_controller(cluster, tmp_path):
    # The e2e suite only runs where a real cluster is; here its own code is proven against the
    # fakes, with the fake controller running each Workflow by itself.
    cluster.autopilot = True
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "kubeconfig"), "IMAGEGATE_E2E_TIMEOUT": "30"}
    suite = ROOT / "tests" / "test_e2e_cluster.py"
    cmd = [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider"]

    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_the_rendered_roles_grant_what_submitting_and_approving_need(tmp_path):
    # GIVEN fake users holding exactly the rules of workflows/rbac.py's submitter and approver Roles
    def rules(role):
        (obj,) = [o for o in rbac.manifests() if o["kind"] == "Role" and o["metadata"]["name"] == role]
        return {(res, verb) for rule in obj["rules"] for res in rule["resources"] for verb in rule["verbs"]}

    with started(tmp_path) as fake:
        fake.add_user("ci", rules(rbac.SUBMITTER_ROLE))
        fake.add_user("reviewer", rules(rbac.APPROVER_ROLE))
        fake.kubeconfig(tmp_path / "kubeconfig", NS)
        ci, reviewer = (
            Client(ClusterConfig(kubeconfig=str(tmp_path / "kubeconfig"), context=u)) for u in ("ci", "reviewer")
        )
        # WHEN CI submits, the reviewer finds and approves the run, and CI waits for it
        name = ci.submit(REQUEST)
        fake.controller.reach_approval(NS, name)
        (pending,) = reviewer.pending_approvals()
        reviewer.approve(pending.name)
        _finish_after_approval(fake, name, SUCCEEDED)
        result = ci.wait(name, timeout=60)
        # THEN nothing was refused, and the submitter's Role cannot resume a gate
        assert result.approval.approver == "reviewer"
        assert ("workflows", "update") not in rules(rbac.SUBMITTER_ROLE)
        ci.close()
        reviewer.close()
