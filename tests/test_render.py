"""`imagegate render`: deterministic output, drift detection, configuration errors that name the field.

Tests render into tmp directories; the committed manifests/ are only read.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from steps.contract import BuildRequest, BuildResult, PushRequest
from workflows import cli, names, status_codes
from workflows.config import UNRELEASED_DIGEST
from workflows.render import HEADER, render
from workflows.schemas import validate_object

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
EMPTY = '""'  # how the docs write an empty default
PINNED = "registry.example.com/imagegate/steps:1.0@sha256:" + "a" * 64


def _copy_committed(tmp_path: Path) -> Path:
    """A copy of manifests/ and the result schema, laid out as in the repository."""
    out = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, out)
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "result-schema.json", tmp_path / "docs")
    return out


def _tree(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_committed_manifests_are_current():
    report = render(out=MANIFESTS, check=True)
    assert report.ok, report.summary()


def test_render_is_byte_identical_run_to_run(tmp_path):
    # Separate interpreters with different hash seeds: no set or dict order may leak into the output.
    for run, seed in (("a", "1"), ("b", "2")):
        subprocess.run([sys.executable, "-m", "workflows.cli", "render", "--out", str(tmp_path / run / "manifests")],
                       cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": seed}, check=True, capture_output=True)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    again = render(out=tmp_path / "a" / "manifests")
    assert {f.state for f in again.files} == {"unchanged"}


def test_check_catches_a_hand_edit_and_writes_nothing(tmp_path, capsys):
    out = _copy_committed(tmp_path)
    edited = out / "image-build.yaml"
    text = edited.read_text().replace("activeDeadlineSeconds: '3600'", "activeDeadlineSeconds: '99999'", 1)
    edited.write_text(text)

    rc = cli.main(["render", "--out", str(out), "--check"])

    assert rc == status_codes.FAILED
    printed = capsys.readouterr().out
    assert "image-build.yaml stale" in printed
    assert "-  - activeDeadlineSeconds: '99999'" in printed and "+  - activeDeadlineSeconds: '3600'" in printed
    assert edited.read_text() == text, "--check never writes"


def test_check_reports_a_missing_file_without_creating_it(tmp_path):
    out = _copy_committed(tmp_path)
    (out / "policy.yaml").unlink()
    report = render(out=out, check=True)
    assert not report.ok
    assert [f.state for f in report.files if f.path.endswith("policy.yaml")] == ["missing"]
    assert not (out / "policy.yaml").exists()


def test_check_flags_a_generated_file_render_no_longer_produces(tmp_path):
    out = _copy_committed(tmp_path)
    (out / "old-template.yaml").write_text(HEADER + "kind: WorkflowTemplate\n")
    report = render(out=out, check=True)
    assert [f.state for f in report.files if f.path.endswith("old-template.yaml")] == ["orphaned"]
    assert not report.ok


def test_every_file_carries_the_header_and_kustomize_lists_every_manifest():
    files = sorted(p.name for p in MANIFESTS.glob("*.yaml"))
    for name in files:
        assert (MANIFESTS / name).read_text().startswith(HEADER), name
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(set(files) - {"kustomization.yaml"})
    assert kustomization["resources"][0] == "rbac.yaml", "the Namespace is created first"


def test_manifests_hold_templates_rbac_policy_and_admission():
    kinds = {
        (doc["kind"], doc["metadata"]["name"])
        for p in MANIFESTS.glob("*.yaml")
        for doc in yaml.safe_load_all(p.read_text())
        if doc["kind"] != "Kustomization"
    }
    assert {("WorkflowTemplate", names.IMAGE_BUILD), ("WorkflowTemplate", names.IMAGE_PUSH),
            ("ServiceAccount", names.SERVICE_ACCOUNT), ("ConfigMap", "imagegate-policy")} <= kinds
    policies = {"Role", "RoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    assert policies <= {k for k, _ in kinds}


def test_result_schema_in_docs_is_the_contract():
    assert json.loads((ROOT / "docs" / "result-schema.json").read_text()) == BuildResult.model_json_schema()


def test_policy_configmap_has_safe_defaults():
    data = yaml.safe_load((MANIFESTS / "policy.yaml").read_text().removeprefix(HEADER))["data"]
    assert data["allowedRegistries"] == "", "no destination is allowed until the platform team lists one"
    assert data["allowSelfApproval"] == "false"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        pytest.param({"images": {"kaniko": "ghcr.io/osscontainertools/kaniko:v1.28.5-debug"}}, "images.kaniko",
                     id="unpinned-image"),
        pytest.param({"images": {"steps": "ghcr.io/imagegate/steps@sha256:abc"}}, "images.steps", id="short-digest"),
        pytest.param({"policy": {"defaultMode": "docker"}}, "policy.defaultMode", id="unknown-mode"),
        pytest.param({"policy": {"allowedModes": ["kaniko", "podman"]}}, "policy.allowedModes",
                     id="unknown-allowed-mode"),
        pytest.param({"deadlines": {"build": -5}}, "deadlines.build", id="negative-deadline"),
        pytest.param({"ttl": {"seconds_after_success": -1}}, "ttl.seconds_after_success", id="negative-ttl"),
        pytest.param({"resources": {"build": {"cpu_request": "lots"}}}, "resources.build", id="bad-quantity"),
        pytest.param({"imagez": {}}, "imagez", id="unknown-key"),
        pytest.param({"cache": {"runner_claim": "Team_Cache"}}, "cache.runner_claim", id="bad-cache-claim"),
    ],
)
def test_bad_config_fails_render_naming_the_field(tmp_path, capsys, config, field):
    path = tmp_path / "render.yaml"
    path.write_text(yaml.safe_dump(config))

    rc = cli.main(["render", "--out", str(tmp_path / "manifests"), "--config", str(path)])

    assert rc == status_codes.ERROR
    err = capsys.readouterr().err
    assert err.startswith("ConfigError:") and f"{field}" in err, err
    assert not (tmp_path / "manifests").exists()


def test_config_overrides_reach_the_rendered_templates(tmp_path):
    path = tmp_path / "render.yaml"
    path.write_text(yaml.safe_dump({
        "images": {"steps": PINNED},
        "registry_secret": "team-push-creds",
        "cache": {"kaniko_repo": "cache.example.com/kaniko"},
        "workspace": {"claim_name": "team-workspace"},
    }))
    report = render(out=tmp_path / "manifests", config_path=path)

    build = yaml.safe_load((tmp_path / "manifests" / "image-build.yaml").read_text())
    templates = {t["name"]: t for t in build["spec"]["templates"]}
    assert templates[names.VALIDATE]["container"]["image"] == PINNED
    assert [v["secret"]["secretName"] for v in templates[names.PUSH]["volumes"] if "secret" in v] == ["team-push-creds"]
    assert "--cache-repo=cache.example.com/kaniko" in templates[names.BUILD_KANIKO]["container"]["args"]
    assert "volumeClaimTemplates" not in build["spec"]
    assert build["spec"]["volumes"] == [{"name": "workspace", "persistentVolumeClaim": {"claimName": "team-workspace"}}]
    assert not any("images.steps" in n for n in report.notes)
    assert any("images.runner" in n for n in report.notes), "the other unreleased image is still reported"


def test_runner_cache_claim_reaches_only_build_runner_as_its_buildah_store(tmp_path, shared):
    path = tmp_path / "render.yaml"
    path.write_text(yaml.safe_dump({"cache": {"runner_claim": "imagegate-runner-cache"}}))
    render(out=tmp_path / "manifests", config_path=path)

    build = yaml.safe_load((tmp_path / "manifests" / "image-build.yaml").read_text().removeprefix(HEADER))
    assert validate_object(build, shared=shared) == []
    templates = {t["name"]: t for t in build["spec"]["templates"]}
    runner = templates[names.BUILD_RUNNER]
    args = runner["container"]["args"]
    assert args[args.index("--cache-dir") + 1] == "/var/cache/imagegate"
    assert {"name": "runner-cache", "mountPath": "/var/cache/imagegate"} in runner["container"]["volumeMounts"]
    claim = {"name": "runner-cache", "persistentVolumeClaim": {"claimName": "imagegate-runner-cache"}}
    assert claim in runner["volumes"]
    others = [t for name, t in templates.items() if name != names.BUILD_RUNNER]
    assert not any(v.get("name") == "runner-cache" for t in others for v in t.get("volumes", []))


def test_caches_are_off_by_default():
    build = yaml.safe_load((MANIFESTS / "image-build.yaml").read_text())
    args = [a for t in build["spec"]["templates"] for a in t.get("container", {}).get("args", [])]
    assert not any(a.startswith(("--cache", "--export-cache", "--import-cache")) for a in args)


def test_unreleased_images_are_named_in_the_summary(capsys):
    assert cli.main(["render", "--out", str(MANIFESTS), "--check"]) == status_codes.SUCCESS
    printed = capsys.readouterr().out
    assert "images.steps uses the unreleased placeholder digest" in printed
    build = (MANIFESTS / "image-build.yaml").read_text()
    assert UNRELEASED_DIGEST in build


@pytest.mark.parametrize("model", [BuildRequest, PushRequest], ids=["image-build", "image-push"])
def test_templates_doc_parameter_table_is_the_contract(model):
    doc = (ROOT / "docs" / "templates.md").read_text()
    for spec in model.parameter_specs():
        default = "*required*" if spec.required else f"`{spec.default or EMPTY}`"
        row = f"| `{spec.name}` | {default} | {', '.join(spec.enum or [])} | {spec.description} |"
        assert row in doc, f"docs/templates.md lacks or misstates the row for {spec.name}:\n{row}"
