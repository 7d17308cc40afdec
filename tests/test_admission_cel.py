"""The admission policy's CEL, evaluated with two real CEL implementations.

Every variable and validation of the rendered ValidatingAdmissionPolicy is compiled and
evaluated as the API server does: variables in order (exposed as `variables.*`), then each
validation, with `object`, `oldObject`, `request` and `params` (the policy ConfigMap)
bound. A validation that does not return true denies, and its messageExpression is the
message. Every sample is evaluated by both engines, which must agree:

- cel-python (`celpy`, pure Python). It implements core CEL only; the policy also uses
  six functions of the Kubernetes CEL string library (cel-go `ext.Strings`, listed at
  https://kubernetes.io/docs/reference/using-api/cel/#kubernetes-cel-libraries), so this
  file registers them, written to that library's documented behaviour:
  - `<string>.split(<string>) -> list<string>`: Go `strings.Split` (an empty separator
    splits into characters; `''.split(',')` is `['']`).
  - `<string>.trim() -> string`: strips leading and trailing Unicode White_Space.
  - `<string>.lowerAscii() -> string`: lowercases ASCII letters only.
  - `<list<string>>.join([<string>]) -> string`: joins with the separator (default '').
  - `<string>.substring(<int>[, <int>]) -> string`: code points from start to end
    (default the size); an index below 0, past the size, or end before start is an error.
  - `<string>.replace(<string>, <string>[, <int>]) -> string`: replaces every occurrence,
    or only the first n when a non-negative n is given.
  `matches` is core CEL; cel-python evaluates it with RE2, as Kubernetes does.
- cel-expr-python (`cel_expr_python`, Google's wrapper of cel-cpp) with its own strings
  extension (`ExtStrings`), so the six functions above are the CEL project's, not ours.

The API server is the one fake here: nothing runs a kube-apiserver, so its type-check
against the Workflow CRD is approximated by checking every `object.spec.<field>` the
expressions read exists in Argo's CRD (shared/argo).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import kubernetes_validate
import pytest
import yaml
from cel_expr_python import cel
from cel_expr_python.ext import ext_strings
from celpy import celtypes
from pydantic import TypeAdapter, ValidationError

from steps.contract import Mode, Policy
from steps.validate import validate
from workflows import admission, names, rbac

DIGEST = "sha256:" + "a" * 64
# Unicode White_Space (what cel-go's trim strips, via unicode.IsSpace).
WHITE_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
BINDINGS = ("object", "oldObject", "request", "params", "variables")


def _split(text: celtypes.StringType, sep: celtypes.StringType) -> celtypes.ListType:
    parts = list(str(text)) if str(sep) == "" else str(text).split(str(sep))
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


def _trim(text: celtypes.StringType) -> celtypes.StringType:
    return celtypes.StringType(str(text).strip(WHITE_SPACE))


def _lower_ascii(text: celtypes.StringType) -> celtypes.StringType:
    return celtypes.StringType("".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in str(text)))


def _join(items: celtypes.ListType, sep: str = "") -> celtypes.StringType:
    return celtypes.StringType(str(sep).join(str(i) for i in items))


def _substring(text: celtypes.StringType, start: int, end: int | None = None) -> celtypes.StringType:
    end = len(text) if end is None else int(end)
    if not 0 <= int(start) <= end <= len(text):
        raise ValueError(f"substring({start}, {end}) out of range for a string of size {len(text)}")
    return celtypes.StringType(str(text)[int(start) : end])


def _replace(text: celtypes.StringType, old: str, new: str, count: int = -1) -> celtypes.StringType:
    return celtypes.StringType(str(text).replace(str(old), str(new), int(count)))


KUBERNETES_STRING_EXTENSIONS = {
    "split": _split,
    "trim": _trim,
    "lowerAscii": _lower_ascii,
    "join": _join,
    "substring": _substring,
    "replace": _replace,
}
CELPY = celpy.Environment()
CELCPP = cel.NewEnv(variables=dict.fromkeys(BINDINGS, cel.Type.DYN), extensions=[ext_strings.ExtStrings()])


class EvalError(Exception):
    """An expression evaluated to a CEL error (the API server would deny: failurePolicy Fail)."""


@cache
def _celpy_program(expression: str) -> celpy.Runner:
    return CELPY.program(CELPY.compile(expression), functions=KUBERNETES_STRING_EXTENSIONS)


@cache
def _celcpp_program(expression: str) -> Any:
    return CELCPP.compile(expression)


class CelPython:
    """cel-python, with the Kubernetes string functions registered above."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.activation = {k: celpy.json_to_cel(v) for k, v in data.items()}
        self.variables: dict[celtypes.StringType, Any] = {}

    def eval(self, expression: str) -> Any:
        self.activation["variables"] = celtypes.MapType(self.variables)
        try:
            value = _celpy_program(expression).evaluate(self.activation)
        except celpy.CELEvalError as exc:
            raise EvalError(str(exc)) from None
        if isinstance(value, celpy.CELEvalError):
            raise EvalError(str(value))
        return value

    def bind(self, name: str, value: Any) -> None:
        self.variables[celtypes.StringType(name)] = value


class CelCpp:
    """cel-expr-python (cel-cpp) with its strings extension."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = {**data, "variables": {}}

    def eval(self, expression: str) -> Any:
        value = _celcpp_program(expression).eval(data=self.data)
        if value.type().name() == "ERROR":
            raise EvalError(str(value.plain_value()))
        return value.plain_value()

    def bind(self, name: str, value: Any) -> None:
        self.data["variables"][name] = value


ENGINES: dict[str, Callable[[dict[str, Any]], CelPython | CelCpp]] = {"cel-python": CelPython, "cel-cpp": CelCpp}


@dataclass
class Verdict:
    """What the API server would answer: allowed, or the denial messages."""

    messages: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return not self.messages and not self.errors


def evaluate(
    engine: str,
    workflow: dict,
    *,
    policy: Policy | None = None,
    data: dict[str, str] | None = None,
    namespace: str = rbac.NAMESPACE,
    operation: str = "CREATE",
    old: dict | None = None,
    user: str = "kubernetes-admin",
) -> Verdict:
    spec = admission.policy()["spec"]
    params = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": Policy.CONFIGMAP_NAME}}
    params["data"] = (policy or Policy()).to_configmap_data() if data is None else data
    request = {"namespace": namespace, "operation": operation, "userInfo": {"username": user}}
    cel_env = ENGINES[engine]({"object": workflow, "oldObject": old, "request": request, "params": params})
    verdict = Verdict()
    for var in spec["variables"]:
        try:
            cel_env.bind(var["name"], cel_env.eval(var["expression"]))
        except EvalError as exc:
            verdict.errors.append(f"variables.{var['name']}: {exc}")
    for rule in spec["validations"]:
        try:
            if not cel_env.eval(rule["expression"]):
                verdict.messages.append(str(cel_env.eval(rule["messageExpression"])))
        except EvalError as exc:
            verdict.errors.append(f"{rule['expression'][:60]}: {exc}")
    return verdict


@pytest.fixture
def admit() -> Callable[..., Verdict]:
    """`admit(workflow, policy=..., ...)`: the verdict, after both engines agreed on it."""

    def run(workflow: dict, **kwargs: Any) -> Verdict:
        verdicts = {engine: evaluate(engine, workflow, **kwargs) for engine in ENGINES}
        first, *rest = verdicts.values()
        assert all(v == first for v in rest), f"the engines disagree: {verdicts}"
        return first

    return run


def workflow(template: str = names.IMAGE_BUILD, params: dict[str, str] | None = None, **spec: Any) -> dict:
    """A Workflow as `argo submit --from workflowtemplate/<template> -p ...` creates it."""
    if params is None:
        params = {"context": "src", "destination": "registry.example.com/team/app:1.0"}
    body: dict[str, Any] = {"workflowTemplateRef": {"name": template}, **spec}
    if params:
        body["arguments"] = {"parameters": [{"name": k, "value": v} for k, v in params.items()]}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": f"{template}-", "namespace": rbac.NAMESPACE},
        "spec": body,
    }


def inline(**spec: Any) -> dict:
    """A Workflow that brings its own templates."""
    templates = [{"name": "main", "container": {"image": "alpine:3.20", "command": ["sh", "-c", "cat /creds/*"]}}]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "inline-"},
        "spec": {"entrypoint": "main", "templates": templates, **spec},
    }


POLICY = Policy(
    allowed_registries=["registry.example.com", "ghcr.io/acme", "localhost:5000"],
    allowed_namespaces=[rbac.NAMESPACE, "ci"],
    allowed_modes=[Mode.AUTO, Mode.KANIKO, Mode.BUILDKIT, Mode.SYNTHETIC],
)
STRICT_POLICY = POLICY.model_copy(update={"allow_synthetic": False})


def build(destination: str, **extra: str) -> dict:
    return workflow(params={"context": "src", "destination": destination, **extra})


# --- destinations -------------------------------------------------------------------------

ALLOWED_DESTINATIONS = {
    "host-allowlisted": "registry.example.com/team/app:1.0",
    "uppercase-host": "REGISTRY.Example.COM/team/app:1.0",
    "digest-pinned": f"registry.example.com/team/app@{DIGEST}",
    "tag-and-digest": f"registry.example.com/team/app:1.0@{DIGEST}",
    "path-prefix-child": "ghcr.io/acme/app:2",
    "path-prefix-deeper": "ghcr.io/acme/tools/app:2",
    "path-prefix-exact-repo": "ghcr.io/acme:2",
    "path-prefix-exact-repo-digest": f"ghcr.io/acme@{DIGEST}",
    "uppercase-host-with-path-prefix": "GHCR.IO/acme/app:2",
    "host-with-port": "localhost:5000/app:1",
}
DENIED_DESTINATIONS = {
    "allowlisted-host-as-prefix-of-longer-host": "registry.example.com.evil.io/team/app:1.0",
    "uppercase-longer-host": "REGISTRY.EXAMPLE.COM.EVIL.IO/team/app:1.0",
    "path-prefix-without-slash-boundary": "ghcr.io/acmecorp/app:2",
    "path-prefix-without-slash-boundary-exact": "ghcr.io/acme-evil:2",
    "allowlisted-host-as-path": "evil.io/registry.example.com/app:1",
    "other-port": "registry.example.com:5000/app:1",
    "port-prefix": "localhost:50001/app:1",
    "digest-pinned-elsewhere": f"evil.io/team/app@{DIGEST}",
    "path-prefix-on-other-host": "docker.io/acme/app:2",
}


@pytest.mark.parametrize("destination", ALLOWED_DESTINATIONS.values(), ids=ALLOWED_DESTINATIONS.keys())
def test_allowlisted_destinations_are_admitted(admit, destination):
    verdict = admit(build(destination), policy=POLICY)
    assert verdict.allowed, verdict


@pytest.mark.parametrize("destination", DENIED_DESTINATIONS.values(), ids=DENIED_DESTINATIONS.keys())
def test_destinations_outside_the_allowlist_are_denied_naming_field_and_allowlist(admit, destination):
    verdict = admit(build(destination), policy=POLICY)
    assert not verdict.errors, verdict.errors
    assert verdict.messages == [
        f"spec.arguments.parameters destination {destination} is not allowed: allowedRegistries are "
        "registry.example.com, ghcr.io/acme, localhost:5000 (host, or host/path on a / boundary)"
    ]


@pytest.mark.parametrize(
    "destination",
    ["registry.example.com", f"registry.example.com@{DIGEST}", "registry.example.com/Team/app:1", "a b/c:1"],
    ids=["host-only", "host-with-digest-only", "uppercase-path", "space"],
)
def test_malformed_destinations_are_denied_by_the_contract_grammar(admit, destination):
    verdict = admit(build(destination), policy=POLICY)
    assert any("is not an image reference" in m for m in verdict.messages), verdict


def test_an_empty_allowlist_allows_no_destination(admit):
    verdict = admit(build("registry.example.com/team/app:1.0"), policy=Policy())
    assert verdict.messages == [
        "spec.arguments.parameters destination registry.example.com/team/app:1.0 is not allowed: "
        "allowedRegistries are (none) (host, or host/path on a / boundary)"
    ]


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        ("registry.example.com/team/app", "needs a tag or digest"),
        ("registry.example.com/team/app:latest", "uses the tag latest"),
    ],
    ids=["untagged", "latest"],
)
def test_tag_rules_follow_the_policy(admit, destination, message):
    denied = admit(build(destination), policy=POLICY)
    assert len(denied.messages) == 1 and message in denied.messages[0], denied
    lax = POLICY.model_copy(update={"require_tag": False, "forbid_latest": False})
    assert admit(build(destination), policy=lax).allowed


def test_an_untagged_destination_is_latest_when_only_forbid_latest_is_set(admit):
    policy = POLICY.model_copy(update={"require_tag": False})
    verdict = admit(build("registry.example.com/team/app"), policy=policy)
    assert len(verdict.messages) == 1 and "uses the tag latest (explicitly or by having no tag)" in verdict.messages[0]
    assert admit(build(f"registry.example.com/team/app@{DIGEST}"), policy=policy).allowed


def test_tags_compare_as_written(admit):
    assert admit(build("registry.example.com/team/app:LATEST"), policy=POLICY).allowed


def test_allowlist_entries_are_normalised_as_validate_reads_them(admit):
    data = {**POLICY.to_configmap_data(), "allowedRegistries": "GHCR.io/acme/,Registry.Example.com"}
    assert admit(build("ghcr.io/acme/app:1"), data=data).allowed
    assert admit(build("registry.example.com/x:1"), data=data).allowed
    assert not admit(build("ghcr.io/acmecorp/app:1"), data=data).allowed


# --- parameters ---------------------------------------------------------------------------


def test_missing_parameters_are_denied_naming_each(admit):
    verdict = admit(workflow(params={}), policy=POLICY)
    assert verdict.messages == ["spec.arguments.parameters must give context, destination for image-build"]


def test_missing_destination_is_denied(admit):
    verdict = admit(workflow(params={"context": "src"}), policy=POLICY)
    assert verdict.messages == ["spec.arguments.parameters must give destination for image-build"]


def test_destination_from_valuefrom_is_denied_because_admission_cannot_see_it(admit):
    wf = workflow(params={"context": "src"})
    wf["spec"]["arguments"]["parameters"].append(
        {"name": "destination", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "dest"}}}
    )
    verdict = admit(wf, policy=POLICY)
    assert "spec.arguments.parameters destination use valueFrom: give literal values" in verdict.messages[0]
    assert "spec.arguments.parameters must give destination for image-build" in verdict.messages


def test_a_parameter_given_twice_is_denied(admit):
    wf = build("registry.example.com/team/app:1.0")
    wf["spec"]["arguments"]["parameters"].append({"name": "destination", "value": "evil.io/x:1"})
    verdict = admit(wf, policy=POLICY)
    assert "spec.arguments.parameters names destination more than once: give each once" in verdict.messages


def test_unknown_parameters_are_denied_listing_what_the_template_takes(admit):
    verdict = admit(build("registry.example.com/team/app:1.0", registry="evil.io"), policy=POLICY)
    assert verdict.messages == [
        "spec.arguments.parameters registry unknown: image-build takes context, dockerfile, destination, "
        "build-args, labels, mode, strict, push, approval-timeout"
    ]


def test_argo_expressions_in_parameter_values_are_denied(admit):
    verdict = admit(build("registry.example.com/team/{{workflow.name}}:1"), policy=POLICY)
    assert "spec.arguments.parameters destination contain '{{'" in verdict.messages[0]


# --- mode and strict ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "kaniko", "buildkit", "synthetic"])
def test_allowed_modes_are_admitted(admit, mode):
    assert admit(build("registry.example.com/team/app:1.0", mode=mode), policy=POLICY).allowed


@pytest.mark.parametrize("mode", ["runner", "Kaniko", "podman"], ids=["not-allowlisted", "wrong-case", "unknown"])
def test_modes_outside_the_policy_are_denied_listing_the_allowed(admit, mode):
    verdict = admit(build("registry.example.com/team/app:1.0", mode=mode), policy=POLICY)
    assert verdict.messages == [
        f"spec.arguments.parameters mode {mode} is not allowed: allowedModes are auto, kaniko, buildkit, synthetic"
    ]


def test_the_default_mode_must_be_allowed_too(admit):
    policy = POLICY.model_copy(update={"allowed_modes": [Mode.KANIKO]})
    verdict = admit(build("registry.example.com/team/app:1.0"), policy=policy)
    assert verdict.messages == ["spec.arguments.parameters mode auto is not allowed: allowedModes are kaniko"]


@pytest.mark.parametrize("extra", [{"strict": "false"}, {}], ids=["strict-false", "strict-default"])
def test_non_strict_requests_are_denied_where_synthetic_results_are_forbidden(admit, extra):
    verdict = admit(build("registry.example.com/team/app:1.0", **extra), policy=STRICT_POLICY)
    assert verdict.messages == [
        "spec.arguments.parameters strict is false: the policy forbids synthetic results (allowSynthetic: false), "
        "so pass strict=true"
    ]


@pytest.mark.parametrize("value", ["maybe", "true ", ""], ids=["word", "trailing-space", "empty"])
def test_booleans_pydantic_would_not_parse_are_denied(admit, value):
    verdict = admit(build("registry.example.com/team/app:1.0", strict=value, push=value), policy=POLICY)
    assert verdict.messages == ["spec.arguments.parameters strict, push must be true or false"]


@pytest.mark.parametrize("strict", ["true", "True", "yes"])
def test_strict_requests_are_admitted_where_synthetic_results_are_forbidden(admit, strict):
    assert admit(build("registry.example.com/team/app:1.0", strict=strict), policy=STRICT_POLICY).allowed


def test_synthetic_mode_is_denied_where_synthetic_results_are_forbidden(admit):
    verdict = admit(build("registry.example.com/team/app:1.0", mode="synthetic", strict="true"), policy=STRICT_POLICY)
    assert verdict.messages == [
        "spec.arguments.parameters mode synthetic is not allowed: allowedModes are auto, kaniko, buildkit",
        "spec.arguments.parameters mode synthetic contradicts strict=true: drop strict, or ask for a real builder mode",
    ]


def test_a_request_without_mode_is_checked_with_the_policys_default_mode(admit):
    policy = POLICY.model_copy(update={"allowed_modes": [Mode.KANIKO], "default_mode": Mode.KANIKO})
    assert admit(build("registry.example.com/team/app:1.0"), policy=policy).allowed
    verdict = admit(
        build("registry.example.com/team/app:1.0"), policy=policy.model_copy(update={"default_mode": Mode.AUTO})
    )
    assert verdict.messages == ["spec.arguments.parameters mode auto is not allowed: allowedModes are kaniko"]


# --- namespace, service account, podSpecPatch, overrides -----------------------------------


def test_a_namespace_outside_the_allowlist_is_denied(admit):
    verdict = admit(build("registry.example.com/team/app:1.0"), policy=POLICY, namespace="team-x")
    assert verdict.messages == ["metadata.namespace team-x is not allowed: allowedNamespaces are imagegate, ci"]


def test_an_empty_namespace_allowlist_allows_any_namespace(admit):
    policy = POLICY.model_copy(update={"allowed_namespaces": []})
    assert admit(build("registry.example.com/team/app:1.0"), policy=policy, namespace="team-x").allowed


@pytest.mark.parametrize(
    "spec",
    [
        {"serviceAccountName": "default"},
        {"serviceAccountName": "argo-server"},
    ],
    ids=["default-sa", "privileged-sa"],
)
def test_overriding_the_service_account_is_denied(admit, spec):
    verdict = admit(workflow(**spec), policy=POLICY)
    assert verdict.messages == [
        "spec.serviceAccountName (and executor, templateDefaults, templates[] ServiceAccounts) must be one of "
        "imagegate-workflow"
    ]


def test_naming_the_allowed_service_account_is_admitted(admit):
    assert admit(workflow(serviceAccountName=names.SERVICE_ACCOUNT), policy=POLICY).allowed


def test_overriding_the_executor_service_account_is_denied(admit):
    verdict = admit(workflow(executor={"serviceAccountName": "argo-server"}), policy=POLICY)
    assert any(m.startswith("spec.serviceAccountName (and executor") for m in verdict.messages)
    assert any(m.startswith("spec.executor must not be set") for m in verdict.messages)


def test_pod_spec_patch_is_denied(admit):
    patch = '{"containers":[{"name":"main","securityContext":{"privileged":true}}]}'
    verdict = admit(workflow(podSpecPatch=patch), policy=POLICY)
    assert verdict.messages == [
        "spec.podSpecPatch, templateDefaults.podSpecPatch and templates[].podSpecPatch must not be set in "
        "imagegate: a patch can mount the registry Secret or make a pod privileged"
    ]


@cache
def _spec_schema(shared: Path) -> dict:
    """WorkflowSpec's properties in Argo's full Workflow CRD (parsed once: it is 46k lines)."""
    text = (shared / "argo/manifests/base/crds/full/argoproj.io_workflows.yaml").read_text()
    crd = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]


# A value of the right JSON type for each field, as the CRD's schema would admit it.
SAMPLE_BY_TYPE = {"array": [{"name": "x"}], "string": "x", "boolean": True, "object": {"x": "y"}}


@pytest.mark.parametrize("field", sorted(admission.OVERRIDES), ids=str)
def test_every_override_of_our_templates_is_denied_naming_the_field(admit, field, shared):
    value = SAMPLE_BY_TYPE[_spec_schema(shared)[field].get("type", "object")]
    verdict = admit(workflow(**{field: value}), policy=POLICY)
    assert not verdict.errors, verdict.errors
    assert f"spec.{field} must not be set on a Workflow that references image-build: " in " ".join(verdict.messages)


def test_entrypoint_override_that_would_skip_the_approval_is_denied(admit):
    verdict = admit(workflow(entrypoint=names.PUSH), policy=POLICY)
    assert verdict.messages == [
        "spec.entrypoint must not be set on a Workflow that references image-build: it starts at another "
        "template, e.g. push, skipping validate and approve"
    ]


def test_a_cluster_scoped_template_named_like_ours_is_denied(admit):
    wf = workflow()
    wf["spec"]["workflowTemplateRef"]["clusterScope"] = True
    verdict = admit(wf, policy=POLICY)
    assert verdict.messages == [
        "spec.workflowTemplateRef.clusterScope must be false: image-build is a namespaced WorkflowTemplate"
    ]


# --- inline workflows -----------------------------------------------------------------------


def test_inline_templates_in_an_imagegate_namespace_are_denied(admit):
    verdict = admit(inline(serviceAccountName=names.SERVICE_ACCOUNT), policy=POLICY, namespace="ci")
    assert verdict.messages == [
        "spec.workflowTemplateRef must name image-build or image-push in namespace ci: the policy "
        "(requireTemplateRef) forbids inline templates here"
    ]


def test_inline_templates_are_allowed_when_the_policy_does_not_require_references(admit):
    policy = POLICY.model_copy(update={"require_template_ref": False})
    assert admit(inline(serviceAccountName=names.SERVICE_ACCOUNT), policy=policy).allowed


def test_inline_workflows_still_may_not_patch_pods_or_change_service_account(admit):
    policy = POLICY.model_copy(update={"require_template_ref": False})
    wf = inline(serviceAccountName=names.SERVICE_ACCOUNT)
    wf["spec"]["templates"][0]["podSpecPatch"] = '{"volumes":[]}'
    wf["spec"]["templates"][0]["serviceAccountName"] = "default"
    verdict = admit(wf, policy=policy)
    assert len(verdict.messages) == 2
    assert verdict.messages[0].startswith("spec.serviceAccountName (and executor, templateDefaults, templates[]")
    assert verdict.messages[1].startswith("spec.podSpecPatch, templateDefaults.podSpecPatch and templates[]")


def test_inline_workflows_must_name_an_allowed_service_account_explicitly(admit):
    policy = POLICY.model_copy(update={"require_template_ref": False})
    verdict = admit(inline(), policy=policy)
    assert verdict.messages == [
        "spec.serviceAccountName (and executor, templateDefaults, templates[] ServiceAccounts) must be one of "
        "imagegate-workflow, set explicitly: the namespace default is not allowed"
    ]


def test_workflows_in_other_namespaces_that_do_not_use_imagegate_are_left_alone(admit):
    assert admit(inline(podSpecPatch="{}"), policy=POLICY, namespace="team-x").allowed


# --- image-push -----------------------------------------------------------------------------


def test_image_push_is_checked_with_its_own_parameters(admit):
    ok = workflow(names.IMAGE_PUSH, {"source": "docker://r.io/a:1", "destination": "ghcr.io/acme/a:1"})
    assert admit(ok, policy=POLICY).allowed
    bad = workflow(names.IMAGE_PUSH, {"source": "docker://r.io/a:1", "destination": "ghcr.io/acmex/a:1", "mode": "x"})
    messages = admit(bad, policy=POLICY).messages
    assert messages[0].startswith("spec.arguments.parameters mode unknown: image-push takes source, source-result")
    assert messages[1].startswith("spec.arguments.parameters destination ghcr.io/acmex/a:1 is not allowed")


# --- UPDATE ---------------------------------------------------------------------------------


def test_status_updates_pass_even_after_the_policy_narrowed(admit):
    old = build("registry.example.com/team/app:1.0")
    new = {**old, "status": {"phase": "Running"}}
    narrowed = POLICY.model_copy(update={"allowed_registries": ["ghcr.io/acme"]})
    assert admit(new, policy=narrowed, operation="UPDATE", old=old).allowed


def test_changing_the_destination_after_approval_is_denied(admit):
    old = build("registry.example.com/team/app:1.0")
    new = build("registry.example.com/other/app:1.0")  # argo retry -p destination=... does this
    verdict = admit(new, policy=POLICY, operation="UPDATE", old=old)
    assert verdict.messages == ["spec.arguments cannot change after creation: submit a new Workflow instead"]


def test_adding_an_override_on_update_is_denied(admit):
    old = build("registry.example.com/team/app:1.0")
    new = build("registry.example.com/team/app:1.0")
    new["spec"]["podSpecPatch"] = "{}"
    new["spec"]["serviceAccountName"] = "default"
    verdict = admit(new, policy=POLICY, operation="UPDATE", old=old)
    assert verdict.messages == [
        "spec.serviceAccountName, spec.podSpecPatch cannot change after creation: submit a new Workflow instead"
    ]


# --- the params ConfigMap ------------------------------------------------------------------


def test_missing_policy_keys_fall_back_to_the_model_defaults(admit):
    data = POLICY.to_configmap_data()
    data.pop("allowSynthetic")  # default true
    data.pop("allowedServiceAccounts")  # default imagegate-workflow
    assert admit(workflow(serviceAccountName=names.SERVICE_ACCOUNT), data=data).allowed


def test_policy_lists_tolerate_spaces_and_empty_items_as_the_model_does(admit):
    data = {**POLICY.to_configmap_data(), "allowedRegistries": " ghcr.io/acme , ,registry.example.com "}
    assert Policy.from_configmap_data(data).allowed_registries == ["ghcr.io/acme", "registry.example.com"]
    assert admit(build("registry.example.com/team/app:1.0"), data=data).allowed


@pytest.mark.parametrize(
    ("key", "value", "expect_denied"),
    [
        ("requireTemplateRef", "maybe", True),
        ("requireTemplateRef", "False", False),
        ("allowSynthetic", "maybe", True),
        ("allowSynthetic", "YES", False),
    ],
    ids=["require-garbage-is-true", "require-False", "allow-garbage-is-false", "allow-YES"],
)
def test_unparseable_policy_flags_read_as_the_safe_choice(admit, key, value, expect_denied):
    data = {**POLICY.to_configmap_data(), key: value}
    wf = inline(serviceAccountName=names.SERVICE_ACCOUNT) if key == "requireTemplateRef" else workflow()
    verdict = admit(wf, data=data)
    assert not verdict.errors
    assert verdict.allowed is not expect_denied, verdict


def test_a_configmap_without_data_denies_as_the_empty_policy_does(admit):
    verdict = admit(workflow(), data={})
    assert verdict.messages and "allowedRegistries are (none)" in verdict.messages[-1]


# --- the objects themselves ----------------------------------------------------------------


@pytest.mark.parametrize("obj", admission.manifests(), ids=lambda o: o["kind"])
def test_policy_and_binding_validate_against_the_kubernetes_schema(obj):
    kubernetes_validate.validate(obj, "1.30.0", strict=True)


def test_binding_reads_the_policy_configmap_and_fails_closed():
    spec = admission.binding()["spec"]
    assert spec["policyName"] == admission.POLICY_NAME
    assert spec["paramRef"] == {
        "name": Policy.CONFIGMAP_NAME,
        "namespace": rbac.NAMESPACE,
        "parameterNotFoundAction": "Deny",
    }
    assert "Deny" in spec["validationActions"]
    assert admission.policy()["spec"]["failurePolicy"] == "Fail"
    assert admission.policy()["spec"]["paramKind"] == {"apiVersion": "v1", "kind": "ConfigMap"}


def test_every_validation_has_a_static_message_and_a_message_expression():
    for rule in admission.policy()["spec"]["validations"]:
        assert rule["message"] and rule["messageExpression"], rule["expression"]


def test_every_spec_field_the_expressions_read_exists_in_the_argo_crd(shared):
    spec_props = _spec_schema(shared)
    template_props = spec_props["templates"]["items"]["properties"]
    parameter_props = spec_props["arguments"]["properties"]["parameters"]["items"]["properties"]
    text = yaml.safe_dump(admission.policy())
    assert set(re.findall(r"(?:object|oldObject)\.spec\.(\w+)", text)) <= set(spec_props)
    assert set(re.findall(r"\bt\.(\w+)", text)) <= set(template_props)
    assert set(re.findall(r"\bp\.(\w+)", text)) <= set(parameter_props)
    assert set(re.findall(r"workflowTemplateRef\.(\w+)", text)) <= set(spec_props["workflowTemplateRef"]["properties"])


@pytest.mark.parametrize("compile_", [_celpy_program, _celcpp_program], ids=list(ENGINES))
def test_every_expression_compiles(compile_):
    spec = admission.policy()["spec"]
    for text in [v["expression"] for v in spec["variables"]] + [
        t for rule in spec["validations"] for t in (rule["expression"], rule["messageExpression"])
    ]:
        compile_(text)


@pytest.mark.parametrize(
    "expression",
    [
        "'a,,b'.split(',')",
        "''.split(',')",
        "'abc'.split('')",
        "' \\u00a0x y\\u2003\\n'.trim()",
        "'\\u200bx'.trim()",
        "'RÉGISTRY.Example'.lowerAscii()",
        "['a', 'b'].join()",
        "['a', 'b'].join(', ')",
        "[].join(',')",
    ],
)
def test_the_registered_string_functions_behave_as_cel_cpp_s(expression):
    mine = CelPython({}).eval(expression)
    theirs = CelCpp({}).eval(expression)
    assert (list(map(str, mine)) if isinstance(mine, list) else str(mine)) == theirs


# --- admission and the validate step read the policy the same way --------------------------

DIFFERENTIAL_POLICIES = {
    "default-strictness": POLICY,
    "no-synthetic": STRICT_POLICY,
    "lax-tags": POLICY.model_copy(update={"require_tag": False, "forbid_latest": False}),
    "latest-only": POLICY.model_copy(update={"require_tag": False}),
    "kaniko-default": POLICY.model_copy(update={"allowed_modes": [Mode.KANIKO], "default_mode": Mode.KANIKO}),
    "other-sa": POLICY.model_copy(update={"allowed_service_accounts": ["builder"]}),
}
DIFFERENTIAL_REQUESTS = {
    **{f"dest-{k}": {"destination": v} for k, v in {**ALLOWED_DESTINATIONS, **DENIED_DESTINATIONS}.items()},
    "untagged": {"destination": "registry.example.com/team/app"},
    "latest": {"destination": "registry.example.com/team/app:latest"},
    "uppercase-path": {"destination": "registry.example.com/Team/app:1"},
    "mode-runner": {"mode": "runner"},
    "mode-kaniko": {"mode": "kaniko"},
    "mode-synthetic": {"mode": "synthetic"},
    "mode-synthetic-strict": {"mode": "synthetic", "strict": "true"},
    "strict-true": {"strict": "yes"},
    "strict-false": {"strict": "false"},
    "strict-garbage": {"strict": "maybe"},
}


def _strict(params: dict[str, str]) -> bool:
    try:
        return TypeAdapter(bool).validate_python(params.get("strict", "false"))
    except ValidationError:
        return False


DIFFERENTIAL_CASES = [
    pytest.param(policy, request_, rbac.NAMESPACE, None, id=f"{p_id}-{r_id}")
    for p_id, policy in DIFFERENTIAL_POLICIES.items()
    for r_id, request_ in DIFFERENTIAL_REQUESTS.items()
] + [
    pytest.param(policy, DIFFERENTIAL_REQUESTS[r_id], namespace, sa, id=f"{p_id}-{r_id}-{namespace}-{sa}")
    for p_id, policy in DIFFERENTIAL_POLICIES.items()
    for r_id in ("dest-host-allowlisted", "mode-kaniko", "strict-true")
    for namespace, sa in (("team-x", None), (rbac.NAMESPACE, "builder"))
]


@pytest.mark.parametrize(("policy", "request_", "namespace", "service_account"), DIFFERENTIAL_CASES)
def test_admission_admits_exactly_what_the_validate_step_accepts(admit, policy, request_, namespace, service_account):
    params = {"context": "src", "destination": "registry.example.com/team/app:1.0", **request_}
    wf = workflow(params=params, **({"serviceAccountName": service_account} if service_account else {}))
    in_run = validate(params, policy, namespace=namespace, service_account=service_account or names.SERVICE_ACCOUNT)
    at_admission = admit(wf, policy=policy, namespace=namespace)
    # Admission is stricter in one documented way: where synthetic results are forbidden, it
    # refuses a request that is not strict (the run would only turn strict=false into strict).
    expected = in_run.ok and (policy.allow_synthetic or _strict(params))
    assert at_admission.allowed == expected, (at_admission.messages, in_run.errors)
