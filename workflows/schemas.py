"""Validate rendered objects against the official schemas; findings, never exceptions.

- Argo kinds (Workflow, WorkflowTemplate, ClusterWorkflowTemplate, CronWorkflow) against
  Argo's JSON schema (`argo/api/jsonschema/schema.json`) and against the full CRD's
  `openAPIV3Schema` (`argo/manifests/base/crds/full/`), both v4.1.2 in ../shared. The
  CRD check is strict like `argo lint`: a field the schema does not declare is a finding
  (argo lint decodes with UnmarshalStrict; the API server would silently prune it).
- Kubernetes kinds with kubernetes-validate, strict (unknown fields are errors), for
  `KUBERNETES_VERSION`.

`validate_object(obj)` is what render's tests and lint's schema rule both call.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import jsonschema
import kubernetes_validate
import yaml
from pydantic import BaseModel

from workflows.cache import cache_dir
from workflows.errors import TemplateError

__all__ = ["ARGO_KINDS", "KUBERNETES_VERSION", "SchemaFinding", "shared_dir", "validate_object", "validate_objects"]

ARGO_KINDS = {
    "Workflow": "workflows",
    "WorkflowTemplate": "workflowtemplates",
    "ClusterWorkflowTemplate": "clusterworkflowtemplates",
    "CronWorkflow": "cronworkflows",
}
# The newest Kubernetes whose schemas kubernetes-validate ships (ValidatingAdmissionPolicy is GA since 1.30).
KUBERNETES_VERSION = "1.33.0"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 2.7 MB each


class SchemaFinding(BaseModel):
    """One place where an object breaks a schema."""

    kind: str
    name: str
    schema_: Literal["argo-jsonschema", "argo-crd", "kubernetes"]
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} {self.path or '<root>'}: {self.message} ({self.schema_})"


def shared_dir() -> Path:
    """The read-only ../shared directory ($IMAGEGATE_SHARED overrides)."""
    return Path(os.environ.get("IMAGEGATE_SHARED") or Path(__file__).resolve().parents[2] / "shared")


def _read(path: Path) -> Any:
    """A schema file's data; a YAML one is parsed once per content and kept as JSON in the user cache.

    Even libyaml needs ~0.25 s for a 2.7 MB CRD, json ~0.01 s: lint runs on every commit. The cache
    entry is named by the file's SHA-256, so an edited schema is parsed again; a cache that cannot be
    read or written is only slower.
    """
    if not path.is_file():
        raise TemplateError(f"schema {path} not found", hint="set IMAGEGATE_SHARED to the directory holding argo/")
    raw = path.read_bytes()
    if path.suffix == ".json":
        return json.loads(raw)
    cached = cache_dir() / "schemas" / f"{path.stem}-{hashlib.sha256(raw).hexdigest()[:32]}.json"
    try:
        return json.loads(cached.read_bytes())
    except (OSError, ValueError):
        pass  # not cached yet, or unreadable: parse the YAML
    data = yaml.load(raw, Loader=_YAML_LOADER)
    try:
        text = json.dumps(data, separators=(",", ":"))
        if json.loads(text) == data:  # JSON would turn an int key into a string: keep only exact copies
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(text)
            partial.replace(cached)  # atomic: a concurrent lint reads the old entry or the whole new one
    except (OSError, TypeError, ValueError):
        pass  # a read-only home, or data JSON cannot hold: the next run parses again
    return data


@functools.cache
def _argo_validator(shared: Path, kind: str) -> jsonschema.Draft202012Validator:
    schema = _read(shared / "argo/api/jsonschema/schema.json")
    root = {"$ref": f"#/definitions/io.argoproj.workflow.v1alpha1.{kind}", "definitions": schema["definitions"]}
    return jsonschema.Draft202012Validator(root)


@functools.cache
def _crd_schema(shared: Path, kind: str) -> dict[str, Any]:
    crd = _read(shared / f"argo/manifests/base/crds/full/argoproj.io_{ARGO_KINDS[kind]}.yaml")
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return version["schema"]["openAPIV3Schema"]


def _path(parts: Any) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def _unknown_fields(value: Any, schema: Mapping[str, Any], at: tuple[Any, ...]) -> Iterator[tuple[str, str]]:
    """Fields the structural schema does not declare, as argo lint's strict decoding reports them."""
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                yield from _unknown_fields(item, props[key], (*at, key))
            elif isinstance(extra, dict):
                yield from _unknown_fields(item, extra, (*at, key))
            elif props is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                yield _path((*at, key)), f"unknown field {key!r}"
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from _unknown_fields(item, schema["items"], (*at, i))


def _argo(obj: dict[str, Any], kind: str, name: str, shared: Path) -> list[SchemaFinding]:
    out = [
        SchemaFinding(kind=kind, name=name, schema_="argo-jsonschema", path=_path(e.absolute_path), message=e.message)
        for e in _argo_validator(shared, kind).iter_errors(obj)
    ]
    crd = _crd_schema(shared, kind)
    out += [
        SchemaFinding(kind=kind, name=name, schema_="argo-crd", path=_path(e.absolute_path), message=e.message)
        for e in jsonschema.Draft7Validator(crd).iter_errors(obj)
    ]
    out += [
        SchemaFinding(kind=kind, name=name, schema_="argo-crd", path=p, message=msg)
        for p, msg in _unknown_fields(obj, crd, ())
    ]
    return out


def _kubernetes(obj: dict[str, Any], kind: str, name: str) -> list[SchemaFinding]:
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [SchemaFinding(kind=kind, name=name, schema_="kubernetes", path=_path(exc.path), message=exc.message)]
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
        return [SchemaFinding(kind=kind, name=name, schema_="kubernetes", path="apiVersion", message=str(exc))]
    return []


def validate_object(obj: Mapping[str, Any], *, shared: Path | None = None) -> list[SchemaFinding]:
    """Every schema finding for one object (empty when it validates).

    Args:
        obj: A Kubernetes object as plain data (what PyYAML reads from a manifest).
        shared: The directory holding `argo/`; default `shared_dir()`.

    Raises:
        TemplateError: The Argo schema files are missing.
    """
    data = dict(obj)
    kind = str(data.get("kind", ""))
    name = str((data.get("metadata") or {}).get("name") or (data.get("metadata") or {}).get("generateName") or "")
    if kind in ARGO_KINDS:
        return _argo(data, kind, name, (shared or shared_dir()).resolve())
    return _kubernetes(data, kind, name)


def validate_objects(objects: list[Mapping[str, Any]], *, shared: Path | None = None) -> list[SchemaFinding]:
    """`validate_object` over many objects, findings in order."""
    return [f for obj in objects for f in validate_object(obj, shared=shared)]
