"""The committed WorkflowTemplates, read back as YAML: the gate, the contract, least privilege.

These tests walk manifests/*.yaml (what a cluster installs), never the Hera objects.
"""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from steps.contract import STEPS, BuildRequest, PushRequest
from workflows import names
from workflows.config import RenderConfig

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
GATE = "'{{tasks.approve.outputs.parameters.decision}}' == 'approve'"
_TASK_REF = re.compile(r"tasks(?:\.|\[')([a-z0-9-]+)'?\]?\.outputs\.parameters(?:\.|\[')([A-Za-z0-9_-]+)")
_GLOBAL_REF = re.compile(r"workflow\.outputs\??\.parameters\??\.([A-Za-z0-9_]+)")
_DEPENDS_NAME = re.compile(r"\b([a-z][a-z0-9-]*)(?:\.[A-Z][a-zA-Z]+)?\b")


def _template(name: str) -> dict:
    return yaml.safe_load((MANIFESTS / f"{name}.yaml").read_text())


TEMPLATES = {name: _template(name) for name in (names.IMAGE_BUILD, names.IMAGE_PUSH)}


def _by_name(wt: dict) -> dict[str, dict]:
    return {t["name"]: t for t in wt["spec"]["templates"]}


def _dag(wt: dict) -> dict[str, dict]:
    main = _by_name(wt)[wt["spec"]["entrypoint"]]
    return {t["name"]: t for t in main["dag"]["tasks"]}


def _ancestors(tasks: dict[str, dict], name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        deps = {d for d in _DEPENDS_NAME.findall(tasks[todo.pop()].get("depends", "")) if d in tasks}
        todo += deps - seen
        seen |= deps
    return seen


def _containers(wt: dict):
    return [t for t in wt["spec"]["templates"] if "container" in t]


@pytest.mark.parametrize("name", TEMPLATES)
def test_approve_precedes_every_gated_task(name):
    wt = TEMPLATES[name]
    tasks = _dag(wt)
    gated = wt["metadata"]["annotations"][names.GATED_ANNOTATION].split(",")
    assert wt["metadata"]["annotations"][names.GATE_ANNOTATION] == names.APPROVE
    assert set(gated) == set(tasks) & set(names.GATED_TASKS), "the annotation lists exactly the gated tasks present"
    for task in gated:
        assert names.APPROVE in _ancestors(tasks, task), f"{task} does not depend on approve"
        assert tasks[task]["when"].startswith(GATE), f"{task} runs without checking the decision: {tasks[task]}"


def test_the_gate_rejects_by_default_and_asks_with_a_form():
    approve = _by_name(TEMPLATES[names.IMAGE_BUILD])[names.APPROVE]
    inputs = {p["name"]: p for p in approve["inputs"]["parameters"]}
    outputs = {p["name"]: p for p in approve["outputs"]["parameters"]}
    assert set(inputs) == set(outputs) == {names.DECISION, names.REASON}
    assert inputs[names.DECISION]["enum"] == ["approve", "reject"]
    assert inputs[names.DECISION]["default"] == outputs[names.DECISION]["valueFrom"]["default"] == "reject"
    assert all(p.get("description") for p in inputs.values())
    assert all("supplied" in p["valueFrom"] for p in outputs.values())
    assert approve["suspend"]["duration"] == "{{workflow.parameters.approval-timeout}}"


@pytest.mark.parametrize("name", TEMPLATES)
def test_no_parameter_in_any_script_source(name):
    for t in TEMPLATES[name]["spec"]["templates"]:
        assert "{{" not in t.get("script", {}).get("source", ""), t["name"]
        command = t.get("container", {}).get("command", [])
        if len(command) > 2 and command[0].endswith("sh") and command[1] == "-c":
            assert "{{" not in command[2], f"{t['name']}: a parameter pasted into the shell script"


@pytest.mark.parametrize("name", TEMPLATES)
def test_only_push_mounts_the_registry_credentials(name):
    secret = RenderConfig().registry_secret
    mounting = {
        t["name"]
        for t in TEMPLATES[name]["spec"]["templates"]
        for v in t.get("volumes", [])
        if v.get("secret", {}).get("secretName") == secret
    }
    assert mounting == {names.PUSH}
    assert TEMPLATES[name]["metadata"]["annotations"][names.CREDENTIALS_ANNOTATION] == names.PUSH
    for t in _containers(TEMPLATES[name]):
        env = {e["name"] for e in t["container"].get("env", [])}
        assert ("REGISTRY_AUTH_FILE" in env) == (t["name"] == names.PUSH), t["name"]


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_output_read_by_a_later_task_has_a_default(name):
    wt = TEMPLATES[name]
    templates, tasks = _by_name(wt), _dag(wt)
    outputs = {
        (task, p["name"]): p for task, spec in tasks.items()
        for p in templates[spec["template"]].get("outputs", {}).get("parameters", [])
    }
    globals_ = {p["globalName"]: p for t in wt["spec"]["templates"]
                for p in t.get("outputs", {}).get("parameters", []) if "globalName" in p}
    text = json.dumps(wt)
    read = set(_TASK_REF.findall(text))
    assert read, "the template reads task outputs"
    for ref in read:
        assert ref in outputs, f"{ref} is read but not declared"
        assert "default" in outputs[ref]["valueFrom"], f"output {ref} has no default"
    report_args = " ".join(templates[names.REPORT]["container"]["args"])
    for global_name in _GLOBAL_REF.findall(report_args):
        assert global_name in globals_, f"report reads workflow.outputs.parameters.{global_name}, never exported"
        assert "default" in globals_[global_name]["valueFrom"]


@pytest.mark.parametrize(("name", "model"), [(names.IMAGE_BUILD, BuildRequest), (names.IMAGE_PUSH, PushRequest)])
def test_workflow_parameters_are_the_request_contract(name, model):
    declared = TEMPLATES[name]["spec"]["arguments"]["parameters"]
    expected = [
        {k: v for k, v in {"name": s.name, "value": s.default, "enum": s.enum, "description": s.description}.items()
         if v is not None}
        for s in model.parameter_specs()
    ]
    assert declared == expected


@pytest.mark.parametrize("name", TEMPLATES)
def test_step_outputs_are_the_contract_steps(name):
    for t in _containers(TEMPLATES[name]):
        step = names.BUILD_RUNNER if t["name"] in names.BUILD_TASKS else t["name"]
        declared = {p["name"]: p["valueFrom"]["default"] for p in t.get("outputs", {}).get("parameters", [])}
        assert declared == STEPS[step].outputs, t["name"]


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_pod_has_security_context_resources_and_deadline(name):
    for t in _containers(TEMPLATES[name]):
        c = t["container"]
        assert t["securityContext"] and c["securityContext"], t["name"]
        assert set(c["resources"]) == {"requests", "limits"}, t["name"]
        assert int(t["activeDeadlineSeconds"]) > 0, t["name"]
        assert re.search(r"@sha256:[0-9a-f]{64}$", c["image"]), f"{t['name']} image not pinned: {c['image']}"
    spec = TEMPLATES[name]["spec"]
    assert spec["serviceAccountName"] == names.SERVICE_ACCOUNT
    assert spec["automountServiceAccountToken"] is False
    assert spec["ttlStrategy"] and spec["onExit"] == names.REPORT
    annotations = TEMPLATES[name]["metadata"]["annotations"]
    assert {"workflows.argoproj.io/title", "workflows.argoproj.io/description"} <= set(annotations)


def test_buildkit_runs_rootless_with_what_it_really_needs():
    t = _by_name(TEMPLATES[names.IMAGE_BUILD])[names.BUILD_BUILDKIT]
    sc, env = t["container"]["securityContext"], {e["name"]: e["value"] for e in t["container"]["env"]}
    assert sc["seccompProfile"]["type"] == sc["appArmorProfile"]["type"] == "Unconfined"
    assert env["BUILDKITD_FLAGS"] == "--oci-worker-no-process-sandbox"
    assert t["securityContext"]["runAsUser"] == 1000
    mounts = {m["mountPath"] for m in t["container"]["volumeMounts"]}
    assert {"/home/user/.local/share/buildkit", "/home/user/.local/tmp"} <= mounts
    assert "buildctl-daemonless.sh" in t["container"]["command"][2]


def test_kaniko_is_the_maintained_fork_debug_image():
    t = _by_name(TEMPLATES[names.IMAGE_BUILD])[names.BUILD_KANIKO]
    assert t["container"]["image"].startswith("ghcr.io/osscontainertools/kaniko:")
    assert "-debug@" in t["container"]["image"], "the wrapper needs the debug image's busybox sh"
    assert t["container"]["command"][0] == "/busybox/sh"


def test_each_build_runs_only_for_its_mode():
    tasks = _dag(TEMPLATES[names.IMAGE_BUILD])
    builds = (("kaniko", names.BUILD_KANIKO), ("buildkit", names.BUILD_BUILDKIT), ("runner", names.BUILD_RUNNER))
    for mode, task in builds:
        assert f"'{{{{workflow.parameters.mode}}}}' == '{mode}'" in tasks[task]["when"]
        assert f"'{{{{tasks.probe.outputs.parameters.mode}}}}' == '{mode}'" in tasks[task]["when"]
    assert "'{{workflow.parameters.mode}}' == 'auto'" in tasks[names.PROBE]["when"]


def test_synthetic_needs_the_runtime_class_and_a_fallback_validate_allows():
    when = _dag(TEMPLATES[names.IMAGE_BUILD])[names.SYNTHETIC]["when"]
    assert "'{{tasks.validate.outputs.parameters.fallback}}' == 'allowed'" in when
    assert "'{{tasks.classify.outputs.parameters.fallback-allowed}}' == 'true'" in when


def test_a_synthetic_source_is_never_pushed():
    push = _dag(TEMPLATES[names.IMAGE_PUSH])[names.PUSH]
    assert "'{{tasks.validate.outputs.parameters.source-simulated}}' == 'false'" in push["when"]
    assert STEPS[names.VALIDATE].outputs["source-simulated"] == "true", "the default must keep push from running"


def test_the_result_is_a_global_output_without_an_extra_pod():
    wt = TEMPLATES[names.IMAGE_BUILD]
    main = _by_name(wt)["main"]
    (result,) = main["outputs"]["parameters"]
    assert result["globalName"] == "result" and "expression" in result["valueFrom"]
    report = _by_name(wt)[names.REPORT]
    assert report["outputs"]["parameters"][0]["globalName"] == "result"
    assert "{{workflow.failures}}" in report["container"]["args"]


# The wrapper scripts run under busybox, as in the Kaniko debug and BuildKit images.
BUSYBOX = "/bin/busybox"


def _script(name: str) -> str:
    command = _by_name(TEMPLATES[names.IMAGE_BUILD])[name]["container"]["command"]
    return command[2]


@pytest.fixture
def busybox_bin(tmp_path):
    """A PATH with busybox's applets and nothing else: no kaniko, no buildctl."""
    if not Path(BUSYBOX).exists():
        pytest.skip("busybox-static is not installed (scripts/setup installs it)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for applet in ("awk", "basename", "cat", "dirname", "head", "mkdir", "rm", "sed", "tail", "tar", "tee", "tr"):
        (bin_dir / applet).symlink_to(BUSYBOX)
    return str(bin_dir)


@pytest.mark.skipif(not Path(BUSYBOX).exists(), reason="busybox-static is not installed (scripts/setup installs it)")
def test_wrapper_turns_build_args_json_into_one_argument_each(tmp_path):
    script = _script(names.BUILD_BUILDKIT)
    decoder = script.split("decoder='", 1)[1].split("'\n", 1)[0]
    value = '{"A":"x y","B":"two\\nlines \\"q\\" \\u00e9 \\ud83d\\ude00","C":"$(touch pwned) *"}'
    out = subprocess.run([BUSYBOX, "awk", "-v", "what=build-args", "-v", "prefix=--build-arg=", decoder],
                         input=value.encode(), capture_output=True, cwd=tmp_path, check=True).stdout
    assert out.decode().split("\x1f")[:-1] == ["--build-arg=A=x y", '--build-arg=B=two\nlines "q" é 😀',
                                               "--build-arg=C=$(touch pwned) *"]
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("task", [names.BUILD_KANIKO, names.BUILD_BUILDKIT])
def test_wrapper_records_exit_code_and_log_when_the_builder_is_missing(tmp_path, busybox_bin, task):
    # No kaniko or buildctl on this machine: the shell's own "not found" is the build failure.
    out, log = tmp_path / "out", tmp_path / "build.log"
    argv = [str(out), str(log), str(tmp_path / "image.oci.tar"), str(tmp_path), "app", "Dockerfile",
            "registry.example.com/app:1", '{"V":"1"}', "{}"]
    rc = subprocess.run([BUSYBOX, "sh", "-c", _script(task), "imagegate-build", *argv],
                        env={"PATH": busybox_bin}, capture_output=True).returncode
    assert rc == 127
    assert (out / "exit-code").read_text() == "127"
    assert "not found" in (out / "log-tail").read_text()
    assert (out / "log-tail").read_text() == log.read_text(), "a short log is its own tail"
    assert not (out / "archive").exists()


def test_wrapper_refuses_build_args_that_are_not_an_object(tmp_path, busybox_bin):
    out, log = tmp_path / "out", tmp_path / "build.log"
    argv = [str(out), str(log), str(tmp_path / "a.tar"), str(tmp_path), "app", "Dockerfile", "r.example.com/a:1",
            '["not", "an", "object"]', "{}"]
    proc = subprocess.run([BUSYBOX, "sh", "-c", _script(names.BUILD_KANIKO), "imagegate-build", *argv],
                          env={"PATH": busybox_bin}, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "build-args: expected a JSON object" in proc.stderr
    assert (out / "exit-code").read_text() == "2"
