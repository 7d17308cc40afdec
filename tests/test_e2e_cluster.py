"""The whole flow against a real cluster with Argo Workflows: submit, four eyes, approve/reject, wait.

Runs when KUBECONFIG points at a cluster with Argo installed
(`kubectl apply -f ../shared/argo/manifests/quick-start-minimal.yaml`) and imagegate's
manifests applied (`kubectl apply -f manifests/`); skips otherwise, saying why.
KUBECONFIG is read when this module is imported, because tests/conftest.py unsets it for
every test so that no other test can reach a developer's cluster by accident.

Environment: IMAGEGATE_E2E_NAMESPACE (default imagegate), IMAGEGATE_E2E_DESTINATION (an
allowlisted image reference; default the in-cluster registry name below), IMAGEGATE_E2E_TIMEOUT
(seconds per run, default 600).
"""

import os
import uuid

import pytest

from steps.contract import BuildRequest, Decision, Status
from workflows import names
from workflows.client import GROUP, PLURAL, VERSION, Client, ClusterConfig, Run
from workflows.errors import ImagegateError, RejectedError

KUBECONFIG = os.environ.get("KUBECONFIG")
NAMESPACE = os.environ.get("IMAGEGATE_E2E_NAMESPACE", "imagegate")
DESTINATION = os.environ.get("IMAGEGATE_E2E_DESTINATION", "registry.imagegate.svc.cluster.local:5000/e2e/app:1.0")
# One kubeconfig plays both roles: it submits on behalf of SUBMITTER and approves as APPROVER.
SUBMITTER, APPROVER = "imagegate-e2e-submitter", "imagegate-e2e-approver"
TIMEOUT = float(os.environ.get("IMAGEGATE_E2E_TIMEOUT", "600"))
REASON = (
    "needs KUBECONFIG pointing at a cluster with Argo Workflows installed "
    "(kubectl apply -f ../shared/argo/manifests/quick-start-minimal.yaml)"
)

pytestmark = pytest.mark.cluster


class _AtGate(Exception):
    """Stops a wait once the run is waiting at its approval gate."""


@pytest.fixture(scope="module")
def client():
    if not KUBECONFIG:
        pytest.skip(REASON)
    client = Client(ClusterConfig(kubeconfig=KUBECONFIG, namespace=NAMESPACE))
    try:
        client.pending_approvals()  # the Workflow CRD answers
    except ImagegateError:  # no usable kubeconfig, no cluster, or no Workflow CRD
        pytest.skip(REASON)
    try:
        client._custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "workflowtemplates", names.IMAGE_BUILD)
    except Exception:  # noqa: BLE001 - any failure here means the template is not usable
        pytest.skip(f"WorkflowTemplate {names.IMAGE_BUILD} is not in {NAMESPACE}: kubectl apply -f manifests/")
    yield client
    client.close()


@pytest.fixture
def run_at_gate(client):
    """GIVEN a fresh run (its own request id) waiting at its approval gate; deleted afterwards."""
    request = BuildRequest(context="e2e", destination=DESTINATION, mode="synthetic")
    name = client.submit(request, request_id=f"e2e-{uuid.uuid4().hex[:12]}", submitter=SUBMITTER)

    def stop_at_gate(run: Run) -> None:
        if run.waiting_for_approval:
            raise _AtGate

    try:
        result = client.wait(name, timeout=TIMEOUT, on_progress=stop_at_gate)
        pytest.fail(f"{name} ended {result.status.value} before its approval gate: {result.message}")
    except _AtGate:
        pass
    yield name
    client._custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)


def test_the_submitter_cannot_approve_their_own_run(client, run_at_gate):
    if client.policy().allow_self_approval:
        pytest.skip(f"the policy in {NAMESPACE} allows self-approval")
    with pytest.raises(RejectedError):
        client.approve(run_at_gate, approver=SUBMITTER)


def test_reject_on_a_real_cluster_ends_rejected_with_the_record(client, run_at_gate):
    client.reject(run_at_gate, approver=APPROVER, reason="e2e says no")

    result = client.wait(run_at_gate, timeout=TIMEOUT)

    assert result.status is Status.REJECTED
    assert result.approval.decision is Decision.REJECT
    assert result.approval.approver == APPROVER


def test_approve_on_a_real_cluster_ends_with_a_parsed_result_and_the_record(client, run_at_gate):
    client.approve(run_at_gate, approver=APPROVER, reason="e2e says yes")

    result = client.wait(run_at_gate, timeout=TIMEOUT)

    assert result.status is not Status.REJECTED
    assert (result.approval.decision, result.approval.approver) == (Decision.APPROVE, APPROVER)
    assert result.approval.at is not None
