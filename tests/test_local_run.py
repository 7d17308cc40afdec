"""`imagegate run --local` end to end, for real: the rendered template, real steps, buildah, skopeo, registry.

Every run here reads the committed `manifests/image-build.yaml` (what the cluster receives)
and builds `examples/hello`. Root runs use the embedded registry, which the test then serves
again from the same data dir to ask for the manifest; unprivileged runs go through
tests/faults.py, which makes unshare/clone(CLONE_NEWUSER) fail (seccomp) or leaves no user
namespaces (max_user_namespaces=0), as a locked-down node would.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from faults import fault_command
from realworld import ROOT, BuilderUser, Registry, builder_user, registry, require_root, require_tools

from steps.contract import Builder, BuildResult, Decision, FailureClass, Policy, PushSkippedReason, Status
from workflows import local, manifest, names, plan, status_codes
from workflows.cli import main
from workflows.errors import LocalRunError, RequestError
from workflows.local_progress import ApprovalInput, LineDisplay, NodeStatus, State, TreeDisplay, terminal_prompt
from workflows.registry import EmbeddedRegistry

pytestmark = pytest.mark.real
__all__ = ["builder_user", "registry"]  # fixtures used by name

HELLO = ROOT / "examples" / "hello"
TEMPLATE = local.DEFAULT_TEMPLATE
PUSH_TEMPLATE = TEMPLATE.with_name("image-push.yaml")
APPROVE = ApprovalInput(decision=Decision.APPROVE, approver="alice", reason="ship it")


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private XDG cache for a run (the embedded registry's data, the run dirs), once the tools are there."""
    if not TEMPLATE.is_file():
        pytest.skip(f"{TEMPLATE} is not rendered yet: run `imagegate render`")
    require_tools("buildah", "skopeo", "docker-registry")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "imagegate"


def served_digest(data_dir: Path, image: str) -> str | None:
    """Serve `data_dir` again and ask the registry for the manifest of `image` (host:port/repo:tag)."""
    repo, tag = image.split("/", 1)[1].rsplit(":", 1)
    with EmbeddedRegistry.start(data_dir=data_dir) as reg:
        req = urllib.request.Request(f"{reg.url}/v2/{repo}/manifests/{tag}", method="HEAD")
        req.add_header("Accept", "application/vnd.oci.image.manifest.v1+json")
        try:
            with urllib.request.urlopen(req, timeout=5) as response:
                return response.headers["Docker-Content-Digest"]
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
            return None


def catalog(data_dir: Path) -> list[str]:
    """The repositories the registry at `data_dir` holds."""
    with EmbeddedRegistry.start(data_dir=data_dir) as reg:
        with urllib.request.urlopen(f"{reg.url}/v2/_catalog", timeout=5) as response:
            return json.loads(response.read())["repositories"]


def phases(outcome: local.LocalRun) -> dict[str, State]:
    return {n.name: n.state for n in outcome.nodes}


# -- as root ----------------------------------------------------------------------------------


def test_approved_run_pushes_to_the_embedded_registry_which_serves_that_digest(cache: Path) -> None:
    require_root()
    outcome = local.run(HELLO, {"mode": "runner"}, approval=APPROVE)
    result = outcome.result
    assert result.status is Status.SUCCEEDED
    assert result.builder is Builder.BUILDAH and not result.simulated
    assert result.image == f"{outcome.registry}/hello:local"
    assert result.approval is not None and result.approval.decision is Decision.APPROVE
    assert (result.approval.approver, result.approval.reason) == ("alice", "ship it")
    assert result.approval.at is not None
    seen = phases(outcome)
    assert seen["build-runner"] is State.SUCCEEDED and seen["push"] is State.SUCCEEDED
    assert seen.get("synthetic", State.OMITTED) in (State.SKIPPED, State.OMITTED)
    # The registry itself confirms the digest, after the run's own registry process is gone.
    assert served_digest(cache / "registry", result.image) == result.digest
    assert not (outcome.run_dir / "buildah").exists(), "the private buildah store is removed after the run"


def test_auto_mode_resolves_through_the_real_probe(cache: Path) -> None:
    require_root()
    outcome = local.run(HELLO, {"mode": "auto"}, approval=APPROVE)
    assert phases(outcome)["probe"] is State.SUCCEEDED
    assert outcome.result.status is Status.SUCCEEDED
    assert outcome.result.builder is Builder.BUILDAH
    assert served_digest(cache / "registry", outcome.result.image or "") == outcome.result.digest


@pytest.mark.parametrize("decision", [Decision.APPROVE, Decision.REJECT], ids=["approved-auto", "rejected"])
def test_local_run_takes_the_path_plan_predicts_for_the_same_outcomes(decision: Decision, cache: Path) -> None:
    # GIVEN a real run
    require_root()
    outcome = local.run(HELLO, {"mode": "auto"}, approval=ApprovalInput(decision=decision, approver="alice"))
    # WHEN plan is asked about the same template with the outcomes and outputs each leaf really had
    ran = [n for n in outcome.nodes if n.state not in (State.SKIPPED, State.OMITTED)]
    predicted = plan.plan(
        manifest.load_template(TEMPLATE), outcome.parameters,
        outcomes={n.name: n.state.value for n in ran},
        outputs={n.name: n.outputs for n in ran},
    )  # fmt: skip
    # THEN every node has the phase plan gives it, and the result's status is plan's
    assert {n.name: n.state.value for n in outcome.nodes} == {
        n.name: n.phase.value for n in predicted.nodes if n.kind not in ("dag", "steps")
    }
    assert predicted.result_status == outcome.result.status.value
    assert predicted.phase.value == outcome.phase


def test_reject_never_builds_or_pushes(cache: Path) -> None:
    outcome = local.run(HELLO, {}, approval=ApprovalInput(decision=Decision.REJECT, approver="bob", reason="no"))
    assert outcome.result.status is Status.REJECTED
    assert outcome.result.push_skipped_reason is PushSkippedReason.REJECTED
    assert outcome.result.approval is not None and outcome.result.approval.approver == "bob"
    seen = phases(outcome)
    assert all(seen.get(task, State.OMITTED) in (State.SKIPPED, State.OMITTED) for task in names.GATED_TASKS), seen
    assert not any(outcome.run_dir.rglob("*.oci.tar")), "no archive was written"
    assert catalog(cache / "registry") == []


def test_push_false_builds_the_archive_and_pushes_nothing(cache: Path) -> None:
    require_root()
    outcome = local.run(HELLO, {"mode": "runner", "push": "false"}, approval=APPROVE)
    assert outcome.result.status is Status.SUCCEEDED
    assert outcome.result.push_skipped_reason is PushSkippedReason.NO_PUSH_REQUESTED
    assert outcome.result.digest is not None
    assert phases(outcome)["push"] is State.SKIPPED
    assert (outcome.run_dir / "volumes" / "workspace" / "image.oci.tar").is_file()
    assert catalog(cache / "registry") == []


def test_image_push_copies_an_earlier_runs_archive(cache: Path) -> None:
    # GIVEN a build that kept its archive (push=false)
    require_root()
    built = local.run(HELLO, {"mode": "runner", "push": "false"}, approval=APPROVE)
    workspace = built.run_dir / "volumes" / "workspace"
    # WHEN image-push runs on that workspace, seeded as its own
    source = {"source": "oci-archive:/workspace/workspace/image.oci.tar", "source-result": built.result.to_json()}
    pushed = local.run(workspace, source, approval=APPROVE, template=PUSH_TEMPLATE)
    # THEN the same image is in the registry
    assert pushed.result.status is Status.SUCCEEDED
    assert pushed.result.digest == built.result.digest
    assert served_digest(cache / "registry", pushed.result.image or "") == built.result.digest


def test_image_push_never_pushes_a_synthetic_source(cache: Path) -> None:
    synthetic = local.run(HELLO, {"mode": "synthetic"}, approval=APPROVE)
    assert synthetic.result.status is Status.SYNTHETIC
    pushed = local.run(
        HELLO, {"source": "oci-archive:/workspace/hello/image.oci.tar", "source-result": synthetic.result.to_json()},
        approval=APPROVE, template=PUSH_TEMPLATE,
    )  # fmt: skip
    assert phases(pushed)["push"] is State.SKIPPED
    assert catalog(cache / "registry") == [], "a synthetic source is never pushed"
    assert pushed.result.status is Status.SYNTHETIC
    assert pushed.result.push_skipped_reason is PushSkippedReason.BUILDER_RUNTIME_UNAVAILABLE


def test_approval_timeout_applies_the_gate_default_reject(cache: Path) -> None:
    # GIVEN a terminal where nobody answers, and a gate that waits one second
    read_end, write_end = os.pipe()
    with os.fdopen(read_end) as stdin, open(os.devnull, "w") as sink:
        outcome = local.run(HELLO, {"approval-timeout": "1s"}, prompt=terminal_prompt(stdin, sink))
    os.close(write_end)
    # THEN the gate resumes with its default, as Argo's suspend timeout does, and nothing builds
    assert outcome.result.status is Status.REJECTED
    assert outcome.result.approval is not None and outcome.result.approval.decision is Decision.REJECT
    assert outcome.result.approval.approver is None, "nobody resumed the gate"
    gate = next(n for n in outcome.nodes if n.name == "approve")
    assert gate.state is State.SUCCEEDED and gate.outputs == {}
    assert phases(outcome).get("build-runner", State.OMITTED) in (State.SKIPPED, State.OMITTED)


def test_cli_json_prints_only_the_result_and_exits_by_status(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_root()
    code = main(
        ["run", "--local", str(HELLO), "-p", "mode=runner", "--approve", "--approver", "alice", "--format", "json"]
    )
    out, err = capsys.readouterr()
    result = BuildResult.model_validate_json(out)
    assert code == status_codes.SUCCESS and result.status is Status.SUCCEEDED
    assert err == "", "with --format json nothing but the result is printed"


def test_cli_text_shows_each_task_as_it_runs(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--local", str(HELLO), "--reject", "--approver", "bob"])
    out, err = capsys.readouterr()
    assert code == status_codes.REJECTED
    assert out.startswith("rejected: ")
    lines = err.splitlines()
    assert "approve: Suspended  waiting for approval (rejects by default after 24h)" in lines
    assert any(line.startswith("approve: Succeeded") and "reject by bob" in line for line in lines)
    assert any(line.startswith("report (onExit): ") for line in lines), "the exit handler ran"


def test_user_destination_and_policy_push_to_that_registry(registry: Registry, cache: Path, tmp_path: Path) -> None:
    require_root()
    policy = tmp_path / "policy"
    policy.mkdir()
    data = Policy(allowed_registries=[registry.host], insecure_registries=[registry.host], allow_self_approval=True)
    for key, value in data.to_configmap_data().items():
        (policy / key).write_text(value)
    destination = registry.ref("local-run/hello", "1")
    outcome = local.run(HELLO, {"destination": destination, "mode": "runner"}, approval=APPROVE, policy_dir=policy)
    assert outcome.registry is None, "no embedded registry when the request names a destination"
    assert outcome.result.status is Status.SUCCEEDED
    assert registry.manifest_digest("local-run/hello", "1") == outcome.result.digest


def test_a_destination_outside_the_policy_fails_in_validate(registry: Registry, cache: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "allowedRegistries").write_text("registry.example.com")
    outcome = local.run(HELLO, {"destination": registry.ref("x", "1")}, approval=APPROVE, policy_dir=policy)
    assert outcome.result.status is Status.FAILED
    assert outcome.result.classification is not None
    assert outcome.result.classification.class_ is FailureClass.CONFIG_ERROR
    assert phases(outcome)["validate"] is State.FAILED
    assert phases(outcome).get("build-runner", State.OMITTED) in (State.SKIPPED, State.OMITTED)


# -- refused before anything runs ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["kaniko", "buildkit"])
def test_cluster_only_builders_are_refused(mode: str, cache: Path) -> None:
    with pytest.raises(LocalRunError, match="cannot run outside a cluster") as info:
        local.run(HELLO, {"mode": mode}, approval=APPROVE)
    assert "mode=runner" in (info.value.hint or "")
    assert not (cache / "runs").exists(), "nothing ran"


KANIKO_WORKFLOW = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: kaniko-only-}
spec:
  entrypoint: main
  volumeClaimTemplates:
  - metadata: {name: workspace}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
  templates:
  - name: main
    dag:
      tasks:
      - {name: build, template: kaniko}
  - name: kaniko
    container:
      image: ghcr.io/osscontainertools/kaniko:v1.25.0
      command: [/kaniko/executor]
      args: [--context=dir:///workspace, --no-push]
      volumeMounts: [{name: workspace, mountPath: /workspace}]
"""


def test_a_container_that_is_not_a_step_is_refused_when_reached(cache: Path, tmp_path: Path) -> None:
    template = tmp_path / "kaniko.yaml"
    template.write_text(KANIKO_WORKFLOW)
    with pytest.raises(
        LocalRunError, match=r"build runs ghcr.io/osscontainertools/kaniko.*cannot run outside a cluster"
    ):
        local.run(HELLO, {}, approval=APPROVE, template=template)


def test_without_a_terminal_or_a_decision_nothing_starts(cache: Path) -> None:
    with pytest.raises(LocalRunError, match="nobody can decide the approval"):
        local.run(HELLO, {})
    assert not (cache / "runs").exists()


def test_unknown_parameter_names_the_known_ones(cache: Path) -> None:
    with pytest.raises(RequestError, match="unknown parameter") as info:
        local.run(HELLO, {"destinaton": "x"}, approval=APPROVE)
    assert "destination" in (info.value.hint or "")


def test_cli_approve_needs_an_approver(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--local", str(HELLO), "--approve"]) == status_codes.ERROR
    assert "--approve needs --approver NAME" in capsys.readouterr().err


def test_terminal_prompt_reads_decision_and_reason() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"approve\nlooks good\n")
    with os.fdopen(read_end) as stdin, open(os.devnull, "w") as sink:
        answer = terminal_prompt(stdin, sink)("approve", {"destination": "r/x:1"}, None)
    os.close(write_end)
    assert answer == ApprovalInput(decision=Decision.APPROVE, approver=answer.approver, reason="looks good")


def test_terminal_prompt_timeout_decides_nothing() -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(read_end) as stdin, open(os.devnull, "w") as sink:
        assert terminal_prompt(stdin, sink)("approve", {}, 0.05) is None
    os.close(write_end)


def test_tree_redraws_the_running_row_in_place_but_never_over_a_prompt() -> None:
    screen = io.StringIO()
    tree = TreeDisplay(screen, color=False)
    tree.update(NodeStatus(name="build-runner", template="build-runner", state=State.RUNNING))
    tree.update(NodeStatus(name="build-runner", template="build-runner", state=State.SUCCEEDED))
    tree.update(NodeStatus(name="approve", template="approve", state=State.SUSPENDED))
    tree.interrupted()  # the prompt wrote its questions below the row
    tree.update(NodeStatus(name="approve", template="approve", state=State.SUCCEEDED, message="approve by alice"))
    rows = screen.getvalue().split("\n")
    assert rows[0] == " ├─● build-runner       Running"
    assert rows[1] == "\x1b[1A\x1b[2K ├─✔ build-runner       Succeeded", "the running row is replaced"
    assert rows[3] == " ├─✔ approve            Succeeded  approve by alice", "no redraw over the prompt"


def test_plain_lines_name_the_exit_handler() -> None:
    out = io.StringIO()
    LineDisplay(out).update(
        NodeStatus(
            name="report", template="report", state=State.FAILED, exit_handler=True, message="Error (exit code 1)"
        )
    )
    assert out.getvalue() == "report (onExit): Failed  Error (exit code 1)\n"


# -- as an unprivileged user ----------------------------------------------------------------------

# (fault, strict) -> expected status; the faults are those of shared/research/machine.md section 5.
UNPRIVILEGED = {
    "no-fault-rootless-buildah": ({}, False, Status.SUCCEEDED),
    "seccomp-enosys-non-strict": ({"errno_name": "ENOSYS"}, False, Status.SYNTHETIC),
    "seccomp-eperm-strict": ({"errno_name": "EPERM"}, True, Status.FAILED),
    "max-user-namespaces-0-non-strict": ({"max_user_namespaces": 0}, False, Status.SYNTHETIC),
    "max-user-namespaces-0-strict": ({"max_user_namespaces": 0}, True, Status.FAILED),
}


def user_install(user: BuilderUser) -> tuple[Path, Path, Path]:
    """What the user runs, copied where it can read it: (PYTHONPATH entry, template, context).

    The builder fixture gives the user steps/ and pydantic (`user.pylib`); the local runner
    also needs workflows/ and PyYAML, and the template and the context to read.
    """
    home = user.mkdtemp("local-run-")
    lib = home / "lib"
    shutil.copytree(ROOT / "workflows", lib / "workflows", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(Path(yaml.__file__).parent, lib / "yaml", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(HELLO, home / "hello")
    shutil.copy(TEMPLATE, home / "image-build.yaml")
    user.chown(home)
    return lib, home / "image-build.yaml", home / "hello"


def run_as(user: BuilderUser, fault: dict, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`imagegate run --local` as the builder user (under `fault`); the process and the user's cache."""
    lib, template, context = user_install(user)
    cache = user.mkdtemp("local-run-cache-")
    cmd = [user.python, "-m", "workflows.cli", "run", "--local", str(context), "--template", str(template),
           "--format", "json", *args]  # fmt: skip
    env = user.env(XDG_CACHE_HOME=str(cache), PYTHONPATH=f"{lib}:{user.pylib}")
    if fault:
        prefix = fault_command([], user=f"{user.uid}:{user.gid}", **fault)
        proc = subprocess.run([*prefix, *cmd], env=env, cwd=user.scratch, capture_output=True, text=True, timeout=600)
    else:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **user.popen_kwargs() | {"env": env})
    return proc, cache / "imagegate"


@pytest.mark.parametrize(("fault", "strict", "expected"), UNPRIVILEGED.values(), ids=UNPRIVILEGED.keys())
def test_unprivileged_user_gets_what_the_cluster_would(
    builder_user: BuilderUser, cache: Path, fault: dict, strict: bool, expected: Status
) -> None:
    proc, cache = run_as(
        builder_user, fault, "-p", "mode=runner", "-p", f"strict={str(strict).lower()}",
        "--approve", "--approver", "alice",
    )  # fmt: skip
    assert proc.returncode == status_codes.for_status(expected), proc.stderr
    result = BuildResult.model_validate_json(proc.stdout)
    assert result.status is expected
    if expected is Status.SUCCEEDED:
        assert result.builder is Builder.BUILDAH
        assert served_digest(cache / "registry", result.image or "") == result.digest
        return
    assert result.classification is not None
    assert result.classification.class_ is FailureClass.BUILDER_RUNTIME_UNAVAILABLE
    assert "unshare(CLONE_NEWUSER)" in result.classification.message
    if expected is Status.SYNTHETIC:
        assert result.simulated and result.builder is Builder.SYNTHETIC
        assert result.push_skipped_reason is PushSkippedReason.BUILDER_RUNTIME_UNAVAILABLE
    assert catalog(cache / "registry") == [], "nothing was pushed"
