"""`imagegate submit | approve | reject | wait | status | approvals` against FAKES of the cluster.

The commands run in-process (`main(argv)`), over real HTTP to the fake Kubernetes API and
Argo Server of tests/fake_cluster.py; the fake controller moves the runs along.
"""

import json
import subprocess
import sys

import pytest
import yaml
from fake_cluster import schema_errors, started

from steps.contract import BuildResult, Classification, FailureClass, PushSkippedReason, Status
from workflows import names, status_codes
from workflows.cli import main
from workflows.client import Client, ClusterConfig

NS = "imagegate"
PARAMS = ["-p", "context=app", "-p", "destination=registry.example.com/team/app:1.0"]
DIGEST = "sha256:" + "cd" * 32
RUNTIME = Classification(class_=FailureClass.BUILDER_RUNTIME_UNAVAILABLE, fallback_allowed=True, signature="unshare")
RESULTS = {
    Status.SUCCEEDED: BuildResult(status=Status.SUCCEEDED, builder="buildah", digest=DIGEST),
    Status.SYNTHETIC: BuildResult(
        status=Status.SYNTHETIC,
        builder="synthetic",
        simulated=True,
        digest=DIGEST,
        push_skipped_reason=PushSkippedReason.BUILDER_RUNTIME_UNAVAILABLE,
        classification=RUNTIME,
    ),
    Status.REJECTED: BuildResult(status=Status.REJECTED, push_skipped_reason=PushSkippedReason.REJECTED),
    Status.FAILED: BuildResult(
        status=Status.FAILED,
        builder="buildah",
        push_skipped_reason=PushSkippedReason.FAILED,
        classification=Classification(class_=FailureClass.BUILD_ERROR, fallback_allowed=False),
    ),
}


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    with started(tmp_path, NS) as fake:
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))  # current context: alice
        yield fake


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _submitted(cluster, capsys, *extra):
    code, out, err = _run(capsys, "submit", *PARAMS, *extra)
    assert code == 0, err
    return out.strip()


def _arguments(cluster, name):
    return {p["name"]: p["value"] for p in cluster.workflows[(NS, name)]["spec"]["arguments"]["parameters"]}


def test_submit_dry_run_prints_a_workflow_valid_against_the_official_schema(cluster, capsys):
    code, out, _ = _run(capsys, "submit", "--dry-run", "-o", "yaml", "-n", NS, *PARAMS)

    wf = yaml.safe_load(out)
    assert code == 0
    assert schema_errors(wf) == []
    assert wf["spec"]["workflowTemplateRef"] == {"name": names.IMAGE_BUILD}
    assert cluster.calls == []  # a dry run reads nothing from the cluster


@pytest.mark.parametrize(
    ("env", "policy", "flag", "expected"),
    [
        ("runner", "kaniko", None, "runner"),
        (None, "kaniko", None, "kaniko"),
        ("runner", "kaniko", "buildkit", "buildkit"),
        (None, None, None, "auto"),
    ],
    ids=["env-beats-policy", "policy-default", "flag-beats-env", "neither"],
)
def test_submit_takes_the_default_mode_from_the_env_then_the_policy(
    cluster, capsys, monkeypatch, env, policy, flag, expected
):
    if env:
        monkeypatch.setenv("WORKSPACE_IMAGE_BUILD_MODE", env)
    if policy:
        cluster.set_policy(NS, {"defaultMode": policy})

    name = _submitted(cluster, capsys, *(["-p", f"mode={flag}"] if flag else []))

    assert _arguments(cluster, name)["mode"] == expected


def test_a_bad_mode_in_the_env_names_the_variable(cluster, capsys, monkeypatch):
    monkeypatch.setenv("WORKSPACE_IMAGE_BUILD_MODE", "docker")

    code, _, err = _run(capsys, "submit", *PARAMS)

    assert code == status_codes.ERROR
    assert "WORKSPACE_IMAGE_BUILD_MODE='docker' is not a mode" in err


def test_a_bad_parameter_names_the_field_and_creates_nothing(cluster, capsys):
    code, _, err = _run(capsys, "submit", "-p", "context=app", "-p", "destination=not-a-reference")

    assert code == status_codes.ERROR
    assert err.startswith("RequestError: destination:")
    assert cluster.workflows == {}


def test_a_bad_wait_timeout_is_refused_before_anything_is_submitted(cluster, capsys):
    code, _, err = _run(capsys, "submit", *PARAMS, "--wait", "--timeout", "soon")

    assert code == status_codes.ERROR
    assert err.startswith("RequestError: --timeout:")
    assert cluster.workflows == {}


def test_submit_prints_the_run_name_and_a_repeat_prints_the_same(cluster, capsys):
    first = _submitted(cluster, capsys, "-l", "team=payments")
    second = _submitted(cluster, capsys, "-l", "team=payments")

    assert first == second
    assert list(cluster.workflows) == [(NS, first)]
    assert cluster.workflows[(NS, first)]["metadata"]["labels"]["team"] == "payments"


@pytest.mark.parametrize("command", ["approve", "reject"])
def test_approve_and_reject_resume_the_gate_as_the_approver(cluster, capsys, command):
    name = _submitted(cluster, capsys)
    cluster.controller.reach_approval(NS, name)

    code, out, _ = _run(capsys, command, name, "--context", "bob", "--reason", "checked")

    assert code == 0
    assert out.strip() == f"{name}: {command} by bob"
    assert cluster.workflows[(NS, name)]["metadata"]["labels"][names.ARGO_ACTOR_LABEL] == "bob"


def test_approving_your_own_run_exits_with_an_error(cluster, capsys):
    name = _submitted(cluster, capsys)
    cluster.controller.reach_approval(NS, name)

    code, _, err = _run(capsys, "approve", name)

    assert code == status_codes.ERROR
    assert err.startswith("RejectedError: alice submitted")
    assert "hint: ask another approver" in err


def test_forbidden_exits_with_an_error_and_a_hint(cluster, capsys):
    name = _submitted(cluster, capsys)
    cluster.controller.reach_approval(NS, name)

    code, _, err = _run(capsys, "approve", name, "--context", "viewer")

    assert code == status_codes.ERROR
    assert err.startswith("ForbiddenError:")


def test_status_of_a_missing_run_exits_with_not_found(cluster, capsys):
    code, _, err = _run(capsys, "status", "image-build-nope")

    assert code == status_codes.ERROR
    assert err.startswith("NotFoundError:")


@pytest.mark.parametrize(
    ("status", "exit_code"),
    [
        (Status.SUCCEEDED, status_codes.SUCCESS),
        (Status.SYNTHETIC, status_codes.SYNTHETIC),
        (Status.REJECTED, status_codes.REJECTED),
        (Status.FAILED, status_codes.FAILED),
    ],
    ids=lambda v: str(v),
)
def test_wait_exits_with_the_code_of_the_outcome(cluster, capsys, status, exit_code):
    name = _submitted(cluster, capsys)
    cluster.controller.reach_approval(NS, name)
    _run(capsys, "reject" if status is Status.REJECTED else "approve", name, "--context", "bob")
    phase = "Failed" if status is Status.FAILED else "Succeeded"
    cluster.watch_script[:] = [lambda: cluster.controller.finish(NS, name, RESULTS[status].to_json(), phase)]

    code, out, _ = _run(capsys, "wait", name, "-o", "json")

    assert code == exit_code
    assert json.loads(out)["status"] == status.value


def test_wait_draws_the_tree_with_the_pending_approval_and_the_ui_link(cluster, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("ARGO_UI_URL", "https://argo.example.com")
    name = _submitted(cluster, capsys)
    cluster.controller.reach_approval(NS, name)
    bob = Client(ClusterConfig(kubeconfig=str(tmp_path / "kubeconfig"), context="bob"))
    cluster.watch_script[:] = [
        lambda: bob.approve(name, reason="fine"),
        lambda: cluster.controller.build(NS, name),
        lambda: cluster.controller.finish(NS, name, RESULTS[Status.SUCCEEDED].to_json()),
    ]

    code, out, err = _run(capsys, "wait", name)

    bob.close()
    assert code == 0
    assert f"https://argo.example.com/workflows/{NS}/{name}" in err
    assert f"waiting for approval: imagegate approve {name} -n {NS}" in err
    assert "build-runner" in err
    assert out.strip() == f"succeeded {DIGEST} (approve by bob)"


def test_submit_wait_runs_the_whole_flow(cluster, capsys, tmp_path):
    bob = Client(ClusterConfig(kubeconfig=str(tmp_path / "kubeconfig"), context="bob"))

    def gate():
        ((_, created),) = cluster.workflows
        cluster.controller.reach_approval(NS, created)
        bob.approve(created)

    cluster.watch_script[:] = [
        gate,
        lambda: cluster.controller.finish(NS, next(iter(cluster.workflows))[1], RESULTS[Status.SUCCEEDED].to_json()),
    ]

    code, out, err = _run(capsys, "submit", *PARAMS, "--wait")

    bob.close()
    assert code == 0
    assert err.splitlines()[0].startswith(f"{names.IMAGE_BUILD}-")
    assert out.startswith("succeeded")


def test_status_prints_the_tree_and_json(cluster, capsys):
    name = _submitted(cluster, capsys)
    cluster.controller.reach_approval(NS, name)

    _, tree, _ = _run(capsys, "status", name)
    _, raw, _ = _run(capsys, "status", name, "-o", "json")

    assert "◷ approve" in tree and "✔ validate" in tree
    assert json.loads(raw)["waiting_for_approval"] is True


def test_status_wide_adds_the_approval_record(cluster, capsys):
    name = _submitted(cluster, capsys, "--request-id", "ci-77")
    cluster.controller.reach_approval(NS, name)
    _run(capsys, "reject", name, "--context", "bob", "--reason", "not today")

    _, wide, _ = _run(capsys, "status", name, "-o", "wide")

    assert "request id: ci-77  submitter: alice" in wide
    (approval,) = [line for line in wide.splitlines() if line.startswith("approval:")]
    assert approval.startswith("approval: reject by bob at ") and approval.endswith(": not today")


def test_approvals_lists_the_runs_waiting_for_a_decision(cluster, capsys):
    name = _submitted(cluster, capsys)
    cluster.controller.reach_approval(NS, name)

    _, table, _ = _run(capsys, "approvals", "--context", "bob")
    _, raw, _ = _run(capsys, "approvals", "-o", "yaml")

    header, row = table.splitlines()
    assert header.split() == ["NAME", "SUBMITTER", "DESTINATION", "WAITING_SINCE"]
    assert row.split()[:3] == [name, "alice", "registry.example.com/team/app:1.0"]
    assert [p["name"] for p in yaml.safe_load(raw)] == [name]


def test_the_cli_does_not_import_kubernetes_until_a_cluster_command_runs():
    code = "import sys, workflows.cli as c; c.build_parser(); print('kubernetes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    assert out.strip() == "False"
