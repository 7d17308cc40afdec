"""validate: bad requests end before approval, each problem naming its field and the fix."""

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from steps.contract import STEPS, BuildRequest, Mode, Policy, PushRequest
from steps.validate import registry_allowed, validate

ROOT = Path(__file__).resolve().parent.parent
POLICY = Policy(
    allowed_registries=["registry.example.com/team", "127.0.0.1:5000"],
    insecure_registries=["127.0.0.1:5000"],
    allowed_namespaces=["ci", "builds"],
)
GOOD = {"context": "app", "destination": "registry.example.com/team/app:1.0"}


def check(params=None, policy=POLICY, namespace="ci", service_account="imagegate-workflow", **kwargs):
    return validate({**GOOD, **(params or {})}, policy, namespace=namespace, service_account=service_account, **kwargs)


def only_error(verdict) -> str:
    assert not verdict.ok and verdict.request is None
    assert len(verdict.errors) == 1, verdict.errors
    return verdict.errors[0]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "app").mkdir(parents=True)
    (ws / "app" / "Dockerfile").write_text("FROM scratch\n")
    return ws


def run_validate(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "steps.validate", "--out", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    outputs = {name: (out / name).read_text() for name in STEPS["validate"].outputs if (out / name).exists()}
    return proc, outputs


def write_policy(directory: Path, policy: Policy) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for key, value in policy.to_configmap_data().items():
        (directory / key).write_text(value)
    return directory


def test_valid_request_becomes_the_canonical_request():
    verdict = check()
    assert verdict.ok and verdict.errors == []
    assert verdict.request == BuildRequest.from_parameters(GOOD)
    assert (verdict.fallback, verdict.insecure) == ("allowed", False)


@pytest.mark.parametrize(
    ("entry", "destination", "allowed"),
    [
        pytest.param("registry.example.com", "registry.example.com/team/app:1", True, id="host-exact"),
        pytest.param("Registry.Example.COM", "REGISTRY.example.com/team/app:1", True, id="host-case-insensitive"),
        pytest.param(
            "registry.example.com", "registry.example.com.evil.io/team/app:1", False, id="host-suffix-is-another-host"
        ),
        pytest.param(
            "registry.example.com", "evil.registry.example.com/team/app:1", False, id="subdomain-is-another-host"
        ),
        pytest.param(
            "registry.example.com", "registry.example.com:5000/team/app:1", False, id="other-port-is-another-host"
        ),
        pytest.param(
            "registry.example.com/team", "registry.example.com/team-evil/app:1", False, id="prefix-on-slash-boundary"
        ),
        pytest.param(
            "registry.example.com/team", "registry.example.com/teamapp:1", False, id="prefix-is-not-a-string-prefix"
        ),
        pytest.param(
            "registry.example.com/team", "registry.example.com/team/sub/app:1", True, id="prefix-admits-nested-paths"
        ),
        pytest.param(
            "registry.example.com/team/app", "registry.example.com/team/app:1", True, id="prefix-is-the-repository"
        ),
        pytest.param("registry.example.com/team/", "registry.example.com/team/app:1", True, id="prefix-trailing-slash"),
        pytest.param("registry.example.com/team", "evil.io/team/app:1", False, id="same-path-other-host"),
    ],
)
def test_registry_allowlist_by_host_and_path_prefix(entry, destination, allowed):
    policy = Policy(allowed_registries=[entry])
    verdict = check({"destination": destination}, policy=policy)
    assert verdict.ok is allowed, verdict.errors
    if not allowed:
        assert only_error(verdict).startswith("destination: ") and "allowedRegistries" in verdict.errors[0]


def test_registry_allowed_matches_on_boundaries():
    assert registry_allowed("r.io/a", "r.io", "a")
    assert not registry_allowed("r.io/a", "r.io", "ab")


def test_empty_allowlist_allows_no_destination():
    error = only_error(check(policy=Policy()))
    assert "(none)" in error and "ask the platform team" in error


@pytest.mark.parametrize(
    ("destination", "require_tag", "forbid_latest", "problem"),
    [
        pytest.param("127.0.0.1:5000/app", True, True, "has no tag", id="tagless-rejected"),
        pytest.param("127.0.0.1:5000/app:latest", True, True, "latest", id="latest-rejected"),
        pytest.param("127.0.0.1:5000/app", False, True, "latest", id="tagless-is-implicit-latest"),
        pytest.param("127.0.0.1:5000/app", False, False, None, id="tagless-allowed-when-policy-says-so"),
        pytest.param("127.0.0.1:5000/app:latest", True, False, None, id="latest-allowed-when-policy-says-so"),
        pytest.param("127.0.0.1:5000/app@sha256:" + "a" * 64, True, True, None, id="digest-pinned-allowed"),
        pytest.param("127.0.0.1:5000/app:1.0@sha256:" + "b" * 64, True, True, None, id="tag-and-digest-allowed"),
    ],
)
def test_tag_policy(destination, require_tag, forbid_latest, problem):
    policy = POLICY.model_copy(update={"require_tag": require_tag, "forbid_latest": forbid_latest})
    verdict = check({"destination": destination}, policy=policy)
    if problem is None:
        assert verdict.ok, verdict.errors
    else:
        error = only_error(verdict)
        assert error.startswith("destination: ") and problem in error


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"destination": "app:1"}, "destination", id="not-fully-qualified"),
        pytest.param({"destination": "registry.example.com/Team/App:1"}, "destination", id="uppercase-path"),
        pytest.param({"context": "../other"}, "context", id="context-dotdot"),
        pytest.param({"context": "/etc"}, "context", id="context-absolute"),
        pytest.param({"context": "/workspace/../etc"}, "context", id="context-workspace-dotdot"),
        pytest.param({"dockerfile": "../Dockerfile"}, "dockerfile", id="dockerfile-dotdot"),
        pytest.param({"dockerfile": "/etc/passwd"}, "dockerfile", id="dockerfile-absolute"),
        pytest.param({"build-args": "not json"}, "build-args", id="build-args-not-json"),
        pytest.param({"build-args": '["a"]'}, "build-args", id="build-args-array"),
        pytest.param({"build-args": '{"N": 1}'}, "build-args", id="build-args-number-value"),
        pytest.param({"build-args": '{"A": {"B": "c"}}'}, "build-args", id="build-args-nested"),
        pytest.param({"build-args": '{"bad key": "v"}'}, "build-args", id="build-args-bad-key"),
        pytest.param({"labels": '{"a": true}'}, "labels", id="labels-bool-value"),
        pytest.param({"build-args": json.dumps({"BIG": "x" * 5000})}, "build-args", id="oversized-value"),
        pytest.param({"destination": "registry.example.com/team/app:1\x1b[2J"}, "destination", id="control-char"),
        pytest.param({"context": "app\nrm -rf /"}, "context", id="newline-in-context"),
        pytest.param({"build-args": json.dumps({"A": "x\x00y"})}, "build-args", id="nul-in-build-arg"),
        pytest.param({"strict": "maybe"}, "strict", id="strict-not-a-bool"),
        pytest.param({"mode": "docker"}, "mode", id="mode-unknown"),
        pytest.param({"approval-timeout": "soon"}, "approval-timeout", id="timeout-not-a-duration"),
        pytest.param({"context": ""}, "context", id="context-empty"),
    ],
)
def test_malformed_request_is_rejected_naming_the_field(params, field):
    error = only_error(check(params))
    assert error.startswith(f"{field}"), error
    assert ": " in error and len(error.split(": ", 1)[1]) > 10  # says what is wrong and how to fix it


def test_missing_destination_says_how_to_pass_it():
    verdict = validate({"context": "app"}, POLICY, namespace="ci", service_account="imagegate-workflow")
    assert (
        only_error(verdict)
        == "destination: Field required: pass it as --param NAME=VALUE (imagegate submit -p NAME=VALUE)"
    )


def test_unknown_parameter_is_rejected_listing_the_known_ones():
    error = only_error(check({"dockerfle": "Dockerfile"}))
    assert "dockerfle" in error and "dockerfile" in error


@pytest.mark.parametrize(
    ("namespace", "service_account", "policy", "field"),
    [
        pytest.param("prod", "imagegate-workflow", POLICY, "namespace", id="namespace-not-allowed"),
        pytest.param("Bad_NS", "imagegate-workflow", POLICY, "namespace", id="namespace-not-a-name"),
        pytest.param("ci", "default", POLICY, "service-account", id="service-account-not-allowed"),
        pytest.param("ci", "x;y", POLICY, "service-account", id="service-account-not-a-name"),
        pytest.param(
            "ci",
            "imagegate-workflow",
            POLICY.model_copy(update={"allowed_service_accounts": []}),
            "service-account",
            id="empty-service-account-list-allows-none",
        ),
    ],
)
def test_namespace_and_service_account_allowlists(namespace, service_account, policy, field):
    error = only_error(check(policy=policy, namespace=namespace, service_account=service_account))
    assert error.startswith(f"{field}: ")


def test_empty_namespace_list_allows_any_namespace():
    assert check(policy=POLICY.model_copy(update={"allowed_namespaces": []}), namespace="anything").ok


@pytest.mark.parametrize(
    ("mode", "strict", "allow_synthetic", "allowed_modes", "problem"),
    [
        pytest.param("kaniko", "false", True, [Mode.RUNNER], "allowedModes", id="mode-not-in-allowed-modes"),
        pytest.param("synthetic", "true", True, list(Mode), "strict", id="synthetic-with-strict-refused"),
        pytest.param("synthetic", "false", False, list(Mode), "allowSynthetic", id="synthetic-forbidden-by-policy"),
        pytest.param("synthetic", "false", True, list(Mode), None, id="synthetic-allowed"),
        pytest.param("runner", "true", False, list(Mode), None, id="strict-real-build-allowed"),
    ],
)
def test_mode_policy(mode, strict, allow_synthetic, allowed_modes, problem):
    policy = POLICY.model_copy(update={"allow_synthetic": allow_synthetic, "allowed_modes": allowed_modes})
    verdict = check({"mode": mode, "strict": strict}, policy=policy)
    if problem is None:
        assert verdict.ok, verdict.errors
    else:
        error = only_error(verdict)
        assert error.startswith("mode: ") and problem in error


@pytest.mark.parametrize(
    ("strict", "allow_synthetic", "fallback"),
    [
        pytest.param("false", True, "allowed", id="non-strict-and-policy-allows"),
        pytest.param("true", True, "forbidden", id="strict"),
        pytest.param("false", False, "forbidden", id="policy-forbids-wins-over-non-strict"),
        pytest.param("true", False, "forbidden", id="both-forbid"),
    ],
)
def test_fallback_output(strict, allow_synthetic, fallback):
    verdict = check({"strict": strict}, policy=POLICY.model_copy(update={"allow_synthetic": allow_synthetic}))
    assert verdict.ok and verdict.fallback == fallback


def test_request_without_mode_gets_the_policys_default_mode():
    verdict = check(policy=POLICY.model_copy(update={"default_mode": Mode.KANIKO}))
    assert verdict.request.mode is Mode.KANIKO


def test_insecure_only_for_hosts_the_policy_lists():
    assert check({"destination": "127.0.0.1:5000/app:1"}).insecure is True
    assert check().insecure is False


def test_several_problems_are_all_reported():
    verdict = check({"destination": "registry.example.com/other/app:latest"}, namespace="prod")
    assert [e.split(":")[0] for e in verdict.errors] == ["namespace", "destination", "destination"]


def test_submitter_with_a_control_character_is_rejected():
    assert only_error(check(submitter="alice\x07")).startswith("submitter: ")


@pytest.mark.parametrize(
    ("arrange", "params", "field"),
    [
        pytest.param(lambda ws, out: None, {"context": "missing"}, "context", id="context-missing"),
        pytest.param(lambda ws, out: (ws / "app" / "Dockerfile").unlink(), {}, "dockerfile", id="dockerfile-missing"),
        pytest.param(
            lambda ws, out: (ws / "link").symlink_to(out),
            {"context": "link"},
            "context",
            id="context-symlink-out-of-workspace",
        ),
        pytest.param(
            lambda ws, out: (ws / "app" / "Dockerfile.out").symlink_to(out / "Dockerfile"),
            {"dockerfile": "Dockerfile.out"},
            "dockerfile",
            id="dockerfile-symlink-out-of-context",
        ),
        pytest.param(
            lambda ws, out: (ws / "app" / "sub").symlink_to(ws),
            {"dockerfile": "sub/other/Dockerfile"},
            "dockerfile",
            id="dockerfile-via-dir-symlink-out-of-context",
        ),
        pytest.param(
            lambda ws, out: (ws / "notes.txt").write_text("x"),
            {"context": "notes.txt"},
            "context",
            id="context-file-not-a-tar",
        ),
    ],
)
def test_local_context_must_stay_inside_the_workspace(workspace, tmp_path, arrange, params, field):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Dockerfile").write_text("FROM scratch\n")
    (workspace / "other").mkdir()
    (workspace / "other" / "Dockerfile").write_text("FROM scratch\n")
    arrange(workspace, outside)
    error = only_error(check(params, workspace=workspace))
    assert error.startswith(f"{field}: ")


@pytest.mark.parametrize(
    "context",
    [pytest.param("app", id="relative"), pytest.param("/workspace/app", id="absolute-under-workspace")],
)
def test_local_context_inside_the_workspace_is_accepted(workspace, context):
    assert check({"context": context}, workspace=workspace).ok


def test_tar_context_and_remote_context_pass_the_workspace_check(workspace):
    _tar(workspace / "ctx.tar", {"./Dockerfile": b"FROM scratch\n", "./src/a": b"a"})
    assert check({"context": "ctx.tar"}, workspace=workspace).ok
    assert check({"context": "git://example.com/repo.git#main"}, workspace=workspace).ok


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith("gz") else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    ("members", "field", "problem"),
    [
        pytest.param({"../evil": b"x", "Dockerfile": b"FROM scratch"}, "context", "escapes", id="member-dotdot"),
        pytest.param({"/etc/evil": b"x", "Dockerfile": b"FROM scratch"}, "context", "escapes", id="member-absolute"),
        pytest.param({"src/app.py": b"x"}, "dockerfile", "not in the archive", id="dockerfile-missing"),
    ],
)
def test_tar_context_members_stay_inside_and_hold_the_dockerfile(workspace, members, field, problem):
    _tar(workspace / "ctx.tar.gz", members)
    error = only_error(check({"context": "ctx.tar.gz"}, workspace=workspace))
    assert error.startswith(f"{field}: ") and problem in error


def test_unreadable_tar_context_is_rejected(workspace):
    (workspace / "ctx.tar").write_bytes(b"not a tar")
    assert "not a readable tar archive" in only_error(check({"context": "ctx.tar"}, workspace=workspace))


def test_step_writes_outputs_for_a_valid_request(tmp_path, workspace):
    policy_dir = write_policy(tmp_path / "policy", POLICY)
    proc, out = run_validate(
        tmp_path,
        "--param", "context=app", "--param", "destination=127.0.0.1:5000/demo:1", "--param", "strict=true",
        "--policy-dir", str(policy_dir), "--namespace", "ci", "--service-account", "imagegate-workflow",
        "--submitter", "alice@example.com", "--workspace", str(workspace),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    request = BuildRequest.model_validate_json(out["request"])
    assert request.destination == "127.0.0.1:5000/demo:1" and request.strict is True
    assert out == {
        "request": request.to_json(),
        "fallback": "forbidden",
        "insecure": "true",
        "submitter": "alice@example.com",
        "error": "",
    }


def test_step_rejects_with_exit_1_error_lines_and_stderr(tmp_path):
    policy_dir = write_policy(tmp_path / "policy", POLICY)
    proc, out = run_validate(
        tmp_path,
        "--param", "context=../up", "--param", "destination=registry.example.com.evil.io/team/app:1",
        "--policy-dir", str(policy_dir), "--namespace", "ci", "--service-account", "imagegate-workflow",
    )  # fmt: skip
    assert proc.returncode == 1
    assert out["request"] == "" and out["fallback"] == "forbidden" and out["insecure"] == "false"
    assert out["error"].splitlines() == proc.stderr.splitlines()
    assert [line.split(":")[0] for line in out["error"].splitlines()] == ["context", "destination"]


def test_step_reports_a_malformed_policy_and_a_malformed_param(tmp_path):
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    (policy_dir / "allowedRegistrys").write_text("x")
    proc, out = run_validate(
        tmp_path, "--param", "context", "--policy-dir", str(policy_dir), "--namespace", "ci",
        "--service-account", "imagegate-workflow",
    )  # fmt: skip
    assert proc.returncode == 1
    assert [line.split(":")[0] for line in out["error"].splitlines()] == ["param", "policy"]
    assert "allowedRegistrys" in out["error"]


def test_step_without_a_mounted_policy_uses_safe_defaults(tmp_path):
    proc, out = run_validate(
        tmp_path, "--param", "context=app", "--param", "destination=registry.example.com/team/app:1",
        "--policy-dir", str(tmp_path / "absent"), "--namespace", "ci", "--service-account", "imagegate-workflow",
    )  # fmt: skip
    assert proc.returncode == 1 and "allowedRegistries (none)" in out["error"]


def test_step_help_works():
    proc = subprocess.run([sys.executable, "-m", "steps.validate", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "--service-account" in proc.stdout and "--submitter" in proc.stdout


def test_bad_json_and_a_malformed_destination_report_the_json_first():
    error = only_error(check({"build-args": "{", "destination": "nope"}))
    assert error.startswith("build-args: not valid JSON")


SYNTHETIC_RESULT = (
    '{"status":"synthetic","builder":"synthetic","simulated":true,"image":"127.0.0.1:5000/demo:1",'
    '"digest":"sha256:' + "c" * 64 + '","push_skipped_reason":"builder_runtime_unavailable",'
    '"classification":{"class":"builder_runtime_unavailable","fallback_allowed":true}}'
)
BUILT_RESULT = '{"status":"succeeded","builder":"buildah","image":"127.0.0.1:5000/demo:1","digest":"sha256:%s"}' % (
    "d" * 64
)


@pytest.mark.parametrize(
    ("source_result", "simulated", "ok"),
    [
        pytest.param("", "false", True, id="no-earlier-result"),
        pytest.param(BUILT_RESULT, "false", True, id="real-earlier-build"),
        pytest.param(SYNTHETIC_RESULT, "true", True, id="synthetic-earlier-result-is-never-pushed"),
        pytest.param("{not json", "true", False, id="malformed-result-fails-safe"),
    ],
)
def test_push_request_reports_whether_its_source_is_simulated(tmp_path, source_result, simulated, ok):
    policy_dir = write_policy(tmp_path / "policy", POLICY)
    proc, out = run_validate(
        tmp_path,
        "--param", "source=docker://127.0.0.1:5000/demo:1", "--param", f"source-result={source_result}",
        "--param", "destination=registry.example.com/team/demo:1",
        "--policy-dir", str(policy_dir), "--namespace", "ci", "--service-account", "imagegate-workflow",
    )  # fmt: skip
    assert (proc.returncode == 0) is ok, proc.stderr
    assert out["source-simulated"] == simulated
    # image-push follows image-build's fallback rule: non-strict under a permissive policy may end
    # synthetic (nothing pushed); a malformed request decides nothing.
    assert out["fallback"] == ("allowed" if ok else "forbidden")
    if not ok:
        assert out["error"].startswith("source-result: ")


@pytest.mark.parametrize(
    ("strict", "allow_synthetic", "fallback"),
    [("false", True, "allowed"), ("true", True, "forbidden"), ("false", False, "forbidden")],
    ids=["non-strict", "strict", "policy-forbids-synthetic"],
)
def test_push_request_fallback_follows_strict_and_policy(strict, allow_synthetic, fallback):
    verdict = validate(
        {"source": "docker://127.0.0.1:5000/demo:1", "source-result": SYNTHETIC_RESULT,
         "destination": "registry.example.com/team/demo:1", "strict": strict},
        POLICY.model_copy(update={"allow_synthetic": allow_synthetic}),
        namespace="ci", service_account="imagegate-workflow", kind=PushRequest,
    )  # fmt: skip
    assert verdict.errors == []
    assert verdict.fallback == fallback


def test_push_request_destination_is_held_to_the_same_allowlist():
    verdict = validate(
        {"source": "oci-archive:/workspace/image.oci.tar", "destination": "evil.io/team/app:1"},
        POLICY,
        namespace="ci",
        service_account="imagegate-workflow",
        kind=PushRequest,
    )
    assert only_error(verdict).startswith("destination: ")
