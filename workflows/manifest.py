"""Rendered YAML read back with line numbers, for lint findings and plan.

`load(path)` returns every Argo object (Workflow, WorkflowTemplate, ClusterWorkflowTemplate,
CronWorkflow) in a file as a `Manifest`: the plain data PyYAML builds plus the line of every
mapping key and sequence item, so a finding can point at `file:line`. Other kinds (RBAC,
ConfigMaps) are skipped, as `argo lint` skips kinds it does not know
(argoproj/argo-workflows cmd/argo/lint/lint.go:144-225).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from workflows.errors import TemplateError

# libyaml's loader composes the same nodes, line marks included, about ten times faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

__all__ = ["ARGO_KINDS", "Manifest", "load", "load_paths", "load_template"]

ARGO_KINDS = ("Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate", "CronWorkflow")
# A location inside a document: mapping keys and sequence indexes from the root.
Location = tuple[str | int, ...]


class Manifest(BaseModel):
    """One Argo object from a YAML file, with the line of each key."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: str = Field(description="The file it was read from, as given.")
    index: int = Field(description="Position of the document in the file, from 0.")
    data: dict[str, Any]
    lines: dict[Location, int] = Field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        """The object's kind, e.g. WorkflowTemplate."""
        return str(self.data.get("kind", ""))

    @property
    def name(self) -> str:
        """metadata.name, or generateName for Workflows that only have that."""
        meta = self.data.get("metadata") or {}
        return str(meta.get("name") or meta.get("generateName") or "")

    @property
    def spec(self) -> dict[str, Any]:
        """The workflow spec (a CronWorkflow's is under spec.workflowSpec)."""
        spec = self.data.get("spec") or {}
        return (spec.get("workflowSpec") or {}) if self.kind == "CronWorkflow" else spec

    @property
    def spec_location(self) -> Location:
        """Where `spec` lives in the document."""
        return ("spec", "workflowSpec") if self.kind == "CronWorkflow" else ("spec",)

    @property
    def annotations(self) -> dict[str, str]:
        """metadata.annotations (empty when absent)."""
        return dict((self.data.get("metadata") or {}).get("annotations") or {})

    def templates(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Each template of the spec with its index."""
        for i, tmpl in enumerate(self.spec.get("templates") or []):
            if isinstance(tmpl, dict):
                yield i, tmpl

    def template(self, name: str) -> dict[str, Any] | None:
        """The template called `name`, or None."""
        return next((t for _, t in self.templates() if t.get("name") == name), None)

    def line(self, location: Location) -> int:
        """The line of `location`, or of its nearest ancestor that has one (1 for the document)."""
        loc = tuple(location)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)


def _record_lines(node: yaml.Node, loc: Location, lines: dict[Location, int]) -> None:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*loc, key.value)
            _record_lines(value, child, lines)
            lines[child] = key.start_mark.line + 1  # point at the key, not its value
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(item, (*loc, i), lines)


def _documents(path: Path) -> Iterator[tuple[int, Any, dict[Location, int]]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise TemplateError(
            f"{path}: cannot read ({exc.strerror})", hint="give the path of a rendered YAML file"
        ) from None
    try:
        nodes = list(yaml.compose_all(text, Loader=_LOADER))
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: not valid YAML: {exc}", hint="fix the YAML syntax at the line shown") from None
    for index, node in enumerate(nodes):
        if node is None:
            continue
        constructor = _LOADER("")
        data = constructor.construct_document(node)
        lines: dict[Location, int] = {}
        _record_lines(node, (), lines)
        yield index, data, lines


def load(path: str | Path) -> list[Manifest]:
    """Every Argo object in the YAML file at `path`, in file order."""
    p = Path(path)
    out = []
    for index, data, lines in _documents(p):
        if isinstance(data, dict) and data.get("kind") in ARGO_KINDS:
            out.append(Manifest(path=str(path), index=index, data=data, lines=lines))
    return out


def load_paths(paths: list[str | Path]) -> list[Manifest]:
    """Argo objects from files and directories (every *.yaml / *.yml below a directory)."""
    out: list[Manifest] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted([*p.rglob("*.yaml"), *p.rglob("*.yml")])
            for f in files:
                out.extend(load(f))
        elif p.exists():
            out.extend(load(p))
        else:
            raise TemplateError(
                f"{p}: no such file or directory", hint="give a rendered YAML file or a directory of them"
            )
    return out


def load_template(path: str | Path, name: str | None = None) -> Manifest:
    """The one Workflow/WorkflowTemplate in `path` (or the one called `name`)."""
    found = load(path)
    if name is not None:
        found = [m for m in found if m.name == name]
    if len(found) != 1:
        names = ", ".join(m.name for m in load(path)) or "none"
        raise TemplateError(
            f"{path}: expected one Argo Workflow or WorkflowTemplate{f' named {name}' if name else ''}, found {names}",
            hint="point at a single rendered template, e.g. manifests/image-build.yaml",
        )
    return found[0]
