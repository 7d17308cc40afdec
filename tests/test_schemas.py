"""Every rendered object validates against the official schemas, and the validator catches real mistakes."""

import copy
from pathlib import Path

import pytest
import yaml

from workflows import names
from workflows.schemas import validate_object

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"


def _rendered():
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] != "Kustomization":  # a kustomize build file, never sent to the API server
                yield pytest.param(doc, id=f"{path.name}:{doc['kind']}/{doc['metadata']['name']}")


def _template(name: str) -> dict:
    return yaml.safe_load((MANIFESTS / f"{name}.yaml").read_text())


@pytest.mark.parametrize("obj", list(_rendered()))
def test_every_rendered_object_validates(obj, shared):
    assert validate_object(obj, shared=shared) == []


def _official_examples():
    examples = ROOT.parent / "shared" / "argo" / "examples"
    for path in sorted(examples.rglob("*.yaml")):
        yield pytest.param(path, id=str(path.relative_to(examples)))


@pytest.mark.parametrize("path", list(_official_examples()))
def test_argo_official_examples_validate(path, shared):
    # The validator is not stricter than Argo itself: upstream's own examples pass.
    for doc in yaml.safe_load_all(path.read_text()):
        assert validate_object(doc, shared=shared) == []


def test_an_unknown_template_field_is_a_crd_finding(shared):
    wt = _template(names.IMAGE_BUILD)
    bad = copy.deepcopy(wt)
    validate = next(t for t in bad["spec"]["templates"] if t["name"] == names.VALIDATE)
    validate["container"]["imagePullPolicyy"] = "Always"
    findings = validate_object(bad, shared=shared)
    assert [(f.schema_, f.message) for f in findings] == [("argo-crd", "unknown field 'imagePullPolicyy'")]
    assert findings[0].path.endswith("container.imagePullPolicyy")


def test_a_wrongly_typed_field_is_an_argo_schema_finding(shared):
    bad = _template(names.IMAGE_BUILD)
    bad["spec"]["arguments"]["parameters"] = {"name": "context"}
    schemas = {f.schema_ for f in validate_object(bad, shared=shared)}
    assert schemas == {"argo-jsonschema", "argo-crd"}


def test_a_kubernetes_object_with_an_unknown_field_is_a_finding():
    policy = yaml.safe_load((MANIFESTS / "policy.yaml").read_text())
    policy["spec"] = {"allowSynthetic": "true"}
    (finding,) = validate_object(policy)
    assert finding.schema_ == "kubernetes" and "spec" in finding.message


def test_an_unknown_api_version_is_a_finding():
    (finding,) = validate_object({"apiVersion": "example.com/v9", "kind": "Gadget", "metadata": {"name": "x"}})
    assert finding.schema_ == "kubernetes" and finding.kind == "Gadget"
