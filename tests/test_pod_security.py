"""Pod security: the PSS checker itself, then every rendered pod template in manifests/ against it.

Rules per template kind (issue 7, docs/security.md):
- steps pods (validate, classify, synthetic, report) and push: PSS restricted plus a
  read-only root filesystem, no finding at all.
- Kaniko: root, every capability dropped and exactly Shipwright's seven added back
  (CHOWN DAC_OVERRIDE FOWNER SETGID SETUID SETFCAP KILL), RuntimeDefault seccomp, no
  privilege escalation: baseline.
- BuildKit rootless: non-root, read-only root filesystem; only its documented exceptions
  (seccomp and AppArmor Unconfined, allowPrivilegeEscalation for the setuid newuidmap,
  SETUID/SETGID for it).
- runner (rootless buildah) and probe: the BuildKit profile and nothing more (the probe
  must see what a rootless build would, DESIGN.md "probe").
"""

from pathlib import Path

import pytest
import yaml

from steps.contract import Mode, Policy
from workflows import names, rbac
from workflows.pod_security import (
    BUILDER_LEVELS,
    Finding,
    Level,
    PodView,
    check_pod,
    check_view,
    level_of,
    template_pods,
)

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
KANIKO_CAPS = {"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID", "SETFCAP", "KILL"}

RESTRICTED_CONTAINER = {
    "name": "main",
    "image": "steps@sha256:" + "0" * 64,
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}


def _rules(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.level.value, f.rule) for f in findings}


def _with(container_sc: dict | None = None, **pod: object) -> list[Finding]:
    container = {
        **RESTRICTED_CONTAINER,
        "securityContext": {**RESTRICTED_CONTAINER["securityContext"], **(container_sc or {})},
    }
    return check_pod(pod, [("container", container)])


# --- the checker ----------------------------------------------------------------------------


def test_a_restricted_container_has_no_findings():
    assert _with() == []
    assert level_of(_with()) is Level.RESTRICTED


@pytest.mark.parametrize(
    ("container_sc", "pod", "expected"),
    [
        ({"privileged": True}, {}, ("baseline", "privileged")),
        ({"seccompProfile": {"type": "Unconfined"}}, {}, ("baseline", "seccomp")),
        ({"appArmorProfile": {"type": "Unconfined"}}, {}, ("baseline", "apparmor")),
        ({"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}, {}, ("baseline", "capabilities")),
        ({"procMount": "Unmasked"}, {}, ("baseline", "proc-mount")),
        ({}, {"hostNetwork": True}, ("baseline", "host-namespaces")),
        ({}, {"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}, ("baseline", "host-path-volumes")),
        ({}, {"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}}, ("baseline", "sysctls")),
        ({"allowPrivilegeEscalation": True}, {}, ("restricted", "privilege-escalation")),
        ({"runAsNonRoot": False}, {}, ("restricted", "run-as-non-root")),
        ({"runAsUser": 0}, {}, ("restricted", "run-as-user")),
        ({"capabilities": {"drop": ["NET_RAW"]}}, {}, ("restricted", "capabilities")),
        ({"capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}, {}, ("restricted", "capabilities")),
        ({"seccompProfile": None}, {}, ("restricted", "seccomp")),
        ({}, {"volumes": [{"name": "n", "nfs": {"server": "x", "path": "/"}}]}, ("restricted", "volume-types")),
    ],
    ids=[
        "privileged",
        "seccomp-unconfined",
        "apparmor-unconfined",
        "sys-admin",
        "proc-mount",
        "host-network",
        "host-path",
        "unsafe-sysctl",
        "privilege-escalation",
        "root-allowed",
        "uid-0",
        "no-drop-all",
        "adds-chown",
        "no-seccomp",
        "nfs-volume",
    ],
)
def test_each_pss_rule_is_reported_at_its_level(container_sc, pod, expected):
    assert expected in _rules(_with(container_sc, **pod))


def test_apparmor_annotation_unconfined_breaks_baseline():
    findings = check_pod(
        {}, [("container", RESTRICTED_CONTAINER)], {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}
    )
    assert _rules(findings) == {("baseline", "apparmor")}


def test_pod_level_non_root_and_seccomp_satisfy_restricted_for_containers():
    sc = {
        k: v for k, v in RESTRICTED_CONTAINER["securityContext"].items() if k not in ("runAsNonRoot", "seccompProfile")
    }
    pod = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}}
    assert check_pod(pod, [("container", {**RESTRICTED_CONTAINER, "securityContext": sc})]) == []


def test_read_only_root_filesystem_is_an_imagegate_rule_not_pss():
    (finding,) = _with({"readOnlyRootFilesystem": False})
    assert finding.standard == "imagegate" and finding.rule == "read-only-root-filesystem"
    assert level_of([finding]) is Level.RESTRICTED


def test_template_pods_apply_argo_defaults_and_skip_podless_templates():
    wft = {
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "podMetadata": {"annotations": {"a": "1"}},
            "templateDefaults": {"container": {"securityContext": {"privileged": True}}},
            "templates": [
                {"name": "gate", "suspend": {}},
                {"name": "flow", "dag": {"tasks": []}},
                {"name": "step", "container": {"name": "main", "securityContext": {"readOnlyRootFilesystem": True}}},
                {"name": "patched", "podSpecPatch": "{}", "script": {"source": "true"}},
            ],
        }
    }
    views = {v.template: v for v in template_pods(wft)}
    assert set(views) == {"step", "patched"}
    step = views["step"]
    assert step.pod["securityContext"]["runAsNonRoot"] is True and step.annotations == {"a": "1"}
    assert step.containers[0][1]["securityContext"] == {"privileged": True, "readOnlyRootFilesystem": True}
    assert ("baseline", "pod-spec-patch") in _rules(check_view(views["patched"]))


# --- rendered templates ---------------------------------------------------------------------


def _rendered() -> dict[str, PodView]:
    files = sorted(MANIFESTS.glob("*.yaml"))
    if not (MANIFESTS / f"{names.IMAGE_BUILD}.yaml").is_file():
        pytest.skip(f"manifests/{names.IMAGE_BUILD}.yaml is not rendered yet (run `imagegate render`)")
    views: dict[str, PodView] = {}
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in ("WorkflowTemplate", "ClusterWorkflowTemplate"):
                for view in template_pods(doc):
                    views[f"{doc['metadata']['name']}/{view.template}"] = view
    return views


def _templates(*template_names: str) -> list[str]:
    found = [key for key in _rendered() if key.split("/", 1)[1] in template_names]
    assert found, f"no rendered template named {template_names}"
    return found


def _findings(key: str) -> list[Finding]:
    return check_view(_rendered()[key])


def _main_sc(key: str) -> dict:
    view = _rendered()[key]
    return view.containers[0][1].get("securityContext") or {}


STEP_TEMPLATES = (names.VALIDATE, names.CLASSIFY, names.SYNTHETIC, names.REPORT, names.PUSH)
# What rootless BuildKit is documented to need beyond restricted, and nothing else
# (shared/research/builders.md 1.1 and 5; moby/buildkit docs/rootless.md).
ROOTLESS_EXCEPTIONS = {
    ("baseline", "seccomp"),
    ("restricted", "seccomp"),
    ("baseline", "apparmor"),
    ("restricted", "privilege-escalation"),
    ("restricted", "capabilities"),
}


def _rootless_extra(key: str) -> set[tuple[str, str]]:
    extra = _rules(_findings(key)) - ROOTLESS_EXCEPTIONS
    added = set((_main_sc(key).get("capabilities") or {}).get("add") or [])
    if added - {"SETUID", "SETGID"}:
        extra.add(("restricted", f"capabilities add {sorted(added - {'SETUID', 'SETGID'})}"))
    return extra


@pytest.mark.parametrize("template", STEP_TEMPLATES)
def test_steps_pods_and_push_meet_restricted_with_a_read_only_root(template):
    for key in _templates(template):
        assert _findings(key) == [], key


def test_kaniko_runs_as_root_with_exactly_shipwrights_capabilities():
    for key in _templates(names.BUILD_KANIKO):
        sc = _main_sc(key)
        assert sc["capabilities"]["drop"] == ["ALL"], key
        assert set(sc["capabilities"]["add"]) == KANIKO_CAPS, key
        assert sc.get("allowPrivilegeEscalation") is False, key
        assert level_of(_findings(key)) is Level.BASELINE, key
        assert not {f.rule for f in _findings(key)} - {
            "run-as-non-root",
            "run-as-user",
            "capabilities",
            "read-only-root-filesystem",  # Kaniko unpacks the base image over its own root
        }, key


def test_buildkit_gets_only_its_documented_exceptions():
    for key in _templates(names.BUILD_BUILDKIT):
        assert _rootless_extra(key) == set(), key


@pytest.mark.parametrize("template", [names.BUILD_RUNNER, names.PROBE])
def test_runner_and_probe_take_the_rootless_profile_and_no_more(template):
    for key in _templates(template):
        # Their root filesystem stays writable (workflows/pods.py; the table in docs/security.md).
        assert _rootless_extra(key) - {("restricted", "read-only-root-filesystem")} == set(), key


@pytest.mark.parametrize("template", [names.BUILD_BUILDKIT, names.BUILD_RUNNER, names.PROBE])
def test_rootless_pods_drop_every_capability_but_setuid_and_setgid(template):
    # Kubernetes drops before it adds, so SETUID/SETGID stay in the bounding set for the setuid
    # newuidmap; without drop ALL a setuid binary would get the runtime's whole default set.
    for key in _templates(template):
        assert (_main_sc(key).get("capabilities") or {}).get("drop") == ["ALL"], key


@pytest.mark.parametrize(
    ("template", "mode"),
    [(names.BUILD_KANIKO, Mode.KANIKO), (names.BUILD_BUILDKIT, Mode.BUILDKIT), (names.BUILD_RUNNER, Mode.RUNNER)],
    ids=["kaniko", "buildkit", "runner"],
)
def test_builder_levels_table_matches_the_rendered_build_pods(template, mode):
    for key in _templates(template):
        assert level_of(_findings(key)) is BUILDER_LEVELS[mode], key


def test_the_namespace_enforce_level_admits_every_rendered_pod():
    enforce = Level(rbac.namespace_labels(Policy())["pod-security.kubernetes.io/enforce"])
    order = [Level.PRIVILEGED, Level.BASELINE, Level.RESTRICTED]
    for key in _rendered():
        assert order.index(level_of(_findings(key))) >= order.index(enforce), key


def test_no_template_uses_pod_spec_patch_host_network_or_privileged():
    for key, view in _rendered().items():
        assert not view.pod_spec_patch, key
        rules = {f.rule for f in check_view(view)}
        assert not rules & {"privileged", "host-namespaces", "host-path-volumes", "proc-mount"}, key


def test_only_push_mounts_the_registry_secret():
    mounting = set()
    for key, view in _rendered().items():
        secret_volumes = {
            v["name"] for v in view.pod["volumes"] if (v.get("secret") or {}).get("secretName") == names.REGISTRY_SECRET
        }
        mounted = {m["name"] for _, c in view.containers for m in c.get("volumeMounts") or []}
        if secret_volumes & mounted:
            mounting.add(key)
        if key.split("/", 1)[1] != names.PUSH:
            assert not any(
                (e.get("valueFrom") or {}).get("secretKeyRef", {}).get("name") == names.REGISTRY_SECRET
                for _, c in view.containers
                for e in c.get("env") or []
            ), key
    assert mounting == {f"{names.IMAGE_BUILD}/{names.PUSH}", f"{names.IMAGE_PUSH}/{names.PUSH}"}


def test_main_containers_get_no_service_account_token():
    for key, view in _rendered().items():
        assert view.pod["automountServiceAccountToken"] is False, key


def _workflow_templates() -> list[dict]:
    _rendered()  # skips until render has run
    return [
        doc
        for path in sorted(MANIFESTS.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "WorkflowTemplate"
    ]


def test_the_executor_token_comes_from_the_secret_rbac_provides():
    secrets = {o["metadata"]["name"] for o in rbac.manifests() if o["kind"] == "Secret"}
    for wft in _workflow_templates():
        executor = wft["spec"]["executor"]["serviceAccountName"]
        assert f"{executor}.service-account-token" in secrets, wft["metadata"]["name"]


def test_templates_run_as_a_service_account_the_default_policy_allows():
    for wft in _workflow_templates():
        assert wft["spec"]["serviceAccountName"] in Policy().allowed_service_accounts, wft["metadata"]["name"]
        assert wft["metadata"].get("namespace", rbac.NAMESPACE) == rbac.NAMESPACE
