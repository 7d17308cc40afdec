"""`imagegate lint`: the checks `argo lint` makes, plus the ones it lets through.

`lint(paths)` reads rendered YAML (any Workflow, WorkflowTemplate, ClusterWorkflowTemplate or
CronWorkflow; other kinds are skipped) and returns a `LintReport` of `LintFinding`s, each
with a kebab-case rule id, a severity, a one-line message, a hint and the `file:line` it is
about. Each rule is one small function registered with `@_rule`; `RULES` lists them. The
validator behaviour they follow is summarised, with source references, in
shared/research/argo.md section 1 (argoproj/argo-workflows v4.1.2 workflow/validate/validate.go).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Generator, Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, computed_field

from steps.contract import Decision
from workflows import names
from workflows.errors import ExpressionError, RequestError, TemplateError
from workflows.expressions import (
    depends_tasks,
    evaluate_depends,
    find_tags,
    parse_expr,
    parse_when,
    when_outcomes,
)
from workflows.manifest import Location, Manifest, load_paths

__all__ = ["RULES", "LintFinding", "LintReport", "Rule", "Severity", "lint", "lint_manifests"]


class Severity(StrEnum):
    """How bad a finding is: errors fail `imagegate lint`, warnings do not."""

    ERROR = "error"
    WARNING = "warning"


class LintFinding(BaseModel):
    """One problem at one place."""

    file: str
    line: int
    rule: str = Field(description="Kebab-case rule id, e.g. param-in-script-source.")
    severity: Severity
    message: str
    hint: str
    object: str = Field(description="Kind/name of the object it is in.")

    def format(self) -> str:
        """`file:line: rule-id: message` (warnings say so)."""
        tag = "" if self.severity is Severity.ERROR else " (warning)"
        return f"{self.file}:{self.line}: {self.rule}: {self.message}{tag}"


class LintReport(BaseModel):
    """Every finding over every object linted."""

    files: list[str]
    objects: int
    findings: list[LintFinding]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def errors(self) -> int:
        """How many findings are errors."""
        return sum(f.severity is Severity.ERROR for f in self.findings)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """True when no finding is an error."""
        return self.errors == 0

    def summary(self) -> str:
        """One line per finding, then a count."""
        lines = [f.format() for f in self.findings]
        warnings = len(self.findings) - self.errors
        lines.append(
            f"{self.objects} object(s) in {len(self.files)} file(s): {self.errors} error(s), {warnings} warning(s)"
        )
        return "\n".join(lines)


class Rule(BaseModel):
    """A registered rule: its id, default severity and hint."""

    id: str
    severity: Severity
    hint: str
    doc: str


# ---------------------------------------------------------------------------------------------
# the object being linted
# ---------------------------------------------------------------------------------------------

# validate.go:1350-1396, 1691-1727 (names), :101-105 (object name length).
NAME_RE = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]*$")
PARAM_NAME_RE = re.compile(r"^[-a-zA-Z0-9_]+$")
MAX_NAME = 128
MAX_OBJECT_NAME = {"CronWorkflow": 52}
# Kubernetes object names are DNS-1123 subdomains (k8s.io/apimachinery validation.IsDNS1123Subdomain).
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SHELLS = {"sh", "bash", "ash", "dash", "zsh", "ksh", "busybox"}
LEAF_POD_KINDS = ("container", "script", "containerSet")
TEMPLATE_KINDS = (
    "container",
    "containerSet",
    "steps",
    "script",
    "resource",
    "dag",
    "suspend",
    "data",
    "http",
    "plugin",
)
# The validator registers these node fields for a completed task/step (validate.go:1186-1242).
NODE_FIELDS = {"status", "id", "startedAt", "finishedAt", "hostNodeName", "ip", "exitCode", "name"}


class Doc:
    """One Argo object and the facts rules share about it."""

    def __init__(self, manifest: Manifest, others: Mapping[str, Manifest]) -> None:
        self.m = manifest
        self.spec = manifest.spec
        self.base: Location = manifest.spec_location
        self.templates: dict[str, tuple[int, dict[str, Any]]] = {}
        for i, t in manifest.templates():
            self.templates.setdefault(str(t.get("name")), (i, t))
        self.others = others
        self.params = {p.get("name") for p in (self.spec.get("arguments") or {}).get("parameters") or []}
        self.object = f"{manifest.kind}/{manifest.name}"

    def loc(self, *parts: str | int) -> Location:
        """A location under the spec."""
        return (*self.base, *parts)

    def tloc(self, index: int, *parts: str | int) -> Location:
        """A location under template `index`."""
        return self.loc("templates", index, *parts)

    def template(self, name: str) -> dict[str, Any] | None:
        """The template called `name` in this object."""
        found = self.templates.get(name)
        return found[1] if found else None

    def strings(self) -> Iterator[tuple[int, dict[str, Any], Location, str]]:
        """Every string in every template: (template index, template, location, text)."""
        for i, t in self.m.templates():
            for rel, text in _walk_strings(t, ()):
                yield i, t, rel, text


def _walk_strings(value: Any, loc: Location) -> Iterator[tuple[Location, str]]:
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _walk_strings(v, (*loc, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk_strings(v, (*loc, i))


def _kind(template: Mapping[str, Any]) -> str:
    return next((k for k in TEMPLATE_KINDS if template.get(k) is not None), "")


def _tasks(template: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((template.get("dag") or {}).get("tasks") or [])


def _calls(template: Mapping[str, Any]) -> list[tuple[Location, dict[str, Any]]]:
    """Each DAG task or step of a template, with its location inside the template."""
    calls: list[tuple[Location, dict[str, Any]]] = [(("dag", "tasks", j), x) for j, x in enumerate(_tasks(template))]
    for g, group in enumerate(template.get("steps") or []):
        calls.extend((("steps", g, k), x) for k, x in enumerate(group or []))
    return calls


def _depends(task: Mapping[str, Any]) -> str:
    if task.get("depends"):
        return str(task["depends"])
    return " && ".join(task.get("dependencies") or [])


def _direct_deps(task: Mapping[str, Any]) -> list[str]:
    try:
        return list(depends_tasks(_depends(task)))
    except ExpressionError:
        return list(task.get("dependencies") or [])


def _ancestors(tasks: list[dict[str, Any]]) -> dict[str, set[str]]:
    direct = {t.get("name"): set(_direct_deps(t)) for t in tasks}
    out: dict[str, set[str]] = {}

    def visit(name: str, trail: tuple[str, ...]) -> set[str]:
        if name in out:
            return out[name]
        found: set[str] = set()
        for d in direct.get(name, ()):
            if d in direct and d not in trail:
                found |= {d} | visit(d, (*trail, d))
        out[name] = found
        return found

    for name in direct:
        visit(name, (name,))
    return out


_BRACKET = re.compile(r"\[\s*['\"]([^'\"]+)['\"]\s*\]")


_STRING_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`")


def _expr_text(text: str) -> str:
    """An expression with `x['a-b']` and `x?.y` written as `x.a-b` and `x.y`, string literals blanked.

    So one regex reads every form of a variable path, and a quoted word is never taken for one.
    """
    return _STRING_LITERAL.sub("''", _BRACKET.sub(lambda m: "." + m.group(1), text).replace("?.", "."))


def _references(text: str, location: Location) -> Iterator[tuple[str, bool]]:
    """Each variable a string refers to, and whether it sits in an expression (not validated by Argo)."""
    is_expression_field = location[-2:] == ("valueFrom", "expression")
    if is_expression_field:
        for ref in re.findall(r"[A-Za-z_][\w.-]*", _expr_text(text)):
            yield ref, True
        return
    for tag in find_tags(text):
        if tag.startswith("="):
            for ref in re.findall(r"[A-Za-z_][\w.-]*", _expr_text(tag[1:])):
                yield ref, True
        else:
            yield tag, False


# ---------------------------------------------------------------------------------------------
# rules
# ---------------------------------------------------------------------------------------------

Finding = tuple[Location, str]  # where, message
RuleFn = Callable[[Doc], Iterator[Finding | tuple[Location, str, Severity]]]
RULES: dict[str, Rule] = {}
_FUNCTIONS: dict[str, RuleFn] = {}


def _rule(rule_id: str, severity: Severity, hint: str) -> Callable[[RuleFn], RuleFn]:
    def register(fn: RuleFn) -> RuleFn:
        RULES[rule_id] = Rule(id=rule_id, severity=severity, hint=hint, doc=(fn.__doc__ or "").strip())
        _FUNCTIONS[rule_id] = fn
        return fn

    return register


_PATH_PART = re.compile(r"\[(\d+)\]|\.?([^.\[]+)")


def _location(path: str) -> Location:
    """`spec.templates[0].container` as a location (keys holding dots resolve to their parent)."""
    return tuple(int(i) if i else k for i, k in _PATH_PART.findall(path))


@_rule("schema", Severity.ERROR, "fix the field to match the Argo v4.1.2 schema and CRD (shared/argo/)")
def _schema_rule(doc: Doc) -> Iterator[Finding | tuple[Location, str, Severity]]:
    """The object validates against the official Argo JSON schema and CRD, with no unknown fields.

    The CRD check is strict like `argo lint` (workflow/common/parse.go:84-110); both come from
    `workflows.schemas`, which render's tests use too.
    """
    from workflows import schemas

    try:
        found = schemas.validate_object(doc.m.data)
    except TemplateError as exc:
        yield (), f"schema not checked: {exc}", Severity.WARNING
        return
    seen: set[tuple[str, str]] = set()
    for finding in found:
        if (finding.path, finding.message) not in seen:  # the JSON schema and the CRD often agree
            seen.add((finding.path, finding.message))
            yield _location(finding.path), f"{finding.message[:200]} ({finding.schema_})"


def _template_refs(doc: Doc) -> Iterator[tuple[Location, str, bool]]:
    """(location, template name, is an exit/hook reference) for every reference in the spec."""
    if doc.spec.get("entrypoint"):
        yield doc.loc("entrypoint"), str(doc.spec["entrypoint"]), False
    if doc.spec.get("onExit"):
        yield doc.loc("onExit"), str(doc.spec["onExit"]), True
    for hook, body in (doc.spec.get("hooks") or {}).items():
        if isinstance(body, dict) and body.get("template"):
            yield doc.loc("hooks", hook, "template"), str(body["template"]), True
    for i, t in doc.m.templates():
        for rel, call in _calls(t):
            if call.get("template"):
                yield doc.tloc(i, *rel, "template"), str(call["template"]), False
            if call.get("onExit"):
                yield doc.tloc(i, *rel, "onExit"), str(call["onExit"]), True
            for hook, body in (call.get("hooks") or {}).items():
                if isinstance(body, dict) and body.get("template"):
                    yield doc.tloc(i, *rel, "hooks", hook, "template"), str(body["template"]), True


@_rule("template-not-found", Severity.ERROR, "define the template in spec.templates or fix the name")
def _template_not_found(doc: Doc) -> Iterator[Finding]:
    """Every `template:` (and the entrypoint) names a template of this object (validate.go:659-667)."""
    for loc, name, is_exit in _template_refs(doc):
        if not is_exit and "{{" not in name and name not in doc.templates:
            yield loc, f"template name '{name}' undefined"
    for i, t in doc.m.templates():
        for rel, call in _calls(t):
            ref = call.get("templateRef") or {}
            other = doc.others.get(str(ref.get("name")))
            if ref and other is not None and other.template(str(ref.get("template"))) is None:
                where = doc.tloc(i, *rel, "templateRef")
                yield where, f"template reference {ref.get('name')}.{ref.get('template')} not found"


@_rule("exit-template-not-found", Severity.ERROR, "point onExit/hooks at a template defined in spec.templates")
def _exit_template_not_found(doc: Doc) -> Iterator[Finding]:
    """Exit handlers and lifecycle-hook templates exist (validate.go:284-332, 143-151)."""
    for loc, name, is_exit in _template_refs(doc):
        if is_exit and "{{" not in name and name not in doc.templates:
            yield loc, f"exit/hook template '{name}' undefined"


@_rule("input-not-declared", Severity.ERROR, "declare it under the template's inputs.parameters (or fix the name)")
def _input_not_declared(doc: Doc) -> Iterator[Finding | tuple[Location, str, Severity]]:
    """`inputs.parameters.X` / `inputs.artifacts.X` are declared by the template using them (validate.go:739-754)."""
    for i, t, rel, text in doc.strings():
        inputs = t.get("inputs") or {}
        declared = {
            "parameters": {p.get("name") for p in inputs.get("parameters") or []},
            "artifacts": {a.get("name") for a in inputs.get("artifacts") or []},
        }
        for ref, in_expr in _references(text, rel):
            m = re.fullmatch(r"inputs\.(parameters|artifacts)\.([-\w]+)(?:\..*)?", ref)
            if m and m.group(2) not in declared[m.group(1)]:
                message = f"{{{{inputs.{m.group(1)}.{m.group(2)}}}}} is not declared by template {t.get('name')}"
                if in_expr:
                    yield doc.tloc(i, *rel), message + " (in an expression: nil at runtime)", Severity.WARNING
                else:
                    yield doc.tloc(i, *rel), message


def _node_ref(ref: str) -> tuple[str, str, str] | None:
    """(tasks|steps, name, rest) of a node reference, e.g. ('tasks', 'build', 'outputs.parameters.digest')."""
    m = re.fullmatch(r"(tasks|steps)\.([a-zA-Z0-9][-a-zA-Z0-9]*)\.(.+)", ref)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def _scopes(t: Mapping[str, Any], rel: Location) -> tuple[str | None, set[str] | None, set[str]]:
    """For a string at `rel` in template `t`: (its task/step, nodes it may read, all nodes).

    DAG outputs may read any task; a task its ancestors (and itself, in its hooks); a step the
    steps of earlier groups (validate.go:1062-1137, 1489-1566).
    """
    if t.get("dag") is not None:
        tasks = _tasks(t)
        every = {str(x.get("name")) for x in tasks}
        if rel[:2] == ("dag", "tasks") and len(rel) > 2:
            task = tasks[int(rel[2])]
            name = str(task.get("name"))
            allowed = set(_ancestors(tasks).get(name, set()))
            if len(rel) > 3 and rel[3] == "hooks":
                allowed.add(name)
            return name, allowed, every
        return None, None, every
    if t.get("steps") is not None:
        groups = t.get("steps") or []
        every = {str(s.get("name")) for g in groups for s in g or []}
        if rel[:1] == ("steps",) and len(rel) > 2:
            g, s = int(rel[1]), int(rel[2])
            name = str(groups[g][s].get("name"))
            allowed = {str(x.get("name")) for grp in groups[:g] for x in grp or []}
            if len(rel) > 3 and rel[3] == "hooks":
                allowed.add(name)
            return name, allowed, every
        return None, None, every
    return None, None, set()


def _callee(doc: Doc, t: Mapping[str, Any], kind: str, name: str) -> dict[str, Any] | None:
    calls = _tasks(t) if kind == "tasks" else [s for g in t.get("steps") or [] for s in g or []]
    call = next((c for c in calls if c.get("name") == name), None)
    if call is None or not call.get("template"):
        return None
    return doc.template(str(call["template"]))


@_rule(
    "task-output-unresolved",
    Severity.ERROR,
    "depend on the producer (or read it from a later step group) and use an output it declares",
)
def _task_output_unresolved(doc: Doc) -> Iterator[Finding | tuple[Location, str, Severity]]:
    """`tasks.X`/`steps.X` name an ancestor X whose template declares the output (validate.go:1062-1137, 1489-1566)."""
    for i, t, rel, text in doc.strings():
        _, allowed, every = _scopes(t, rel)
        for ref, in_expr in _references(text, rel):
            parsed = _node_ref(ref)
            if parsed is None:
                continue
            kind, name, rest = parsed
            where = doc.tloc(i, *rel)
            severity = Severity.WARNING if in_expr else Severity.ERROR
            if not every:
                message = f"{{{{{ref}}}}} is out of scope in {_kind(t) or 'this'} template {t.get('name')}"
                yield where, message + ": pass it in as an argument from the DAG task or step", severity
                continue
            if name not in every:
                yield where, f"{kind}.{name} is not a {kind[:-1]} of template {t.get('name')}", severity
                continue
            if allowed is not None and name not in allowed:
                yield where, f"{kind}.{name} is read before it has run: it is not an ancestor here", severity
                continue
            callee = _callee(doc, t, kind, name)
            m = re.fullmatch(r"outputs\.(parameters|artifacts)\.([-\w]+)(?:\..*)?", rest)
            if callee is not None and m:
                declared = {p.get("name") for p in (callee.get("outputs") or {}).get(m.group(1)) or []}
                if m.group(2) not in declared:
                    yield (
                        where,
                        f"template {callee.get('name')} ({kind}.{name}) has no output {m.group(1)[:-1]} {m.group(2)}",
                        severity,
                    )
            elif (
                callee is not None
                and rest == "outputs.result"
                and _kind(callee) not in ("script", "container", "containerSet")
            ):
                yield where, f"{kind}.{name} runs a {_kind(callee)} template, which has no outputs.result", severity


@_rule(
    "workflow-parameter-not-declared",
    Severity.ERROR,
    "declare it in spec.arguments.parameters (argo lint does not check this for WorkflowTemplates)",
)
def _workflow_parameter(doc: Doc) -> Iterator[Finding | tuple[Location, str, Severity]]:
    """`workflow.parameters.X` is declared in spec.arguments (validate.go:210-223, 828)."""
    for i, _, rel, text in doc.strings():
        for ref, in_expr in _references(text, rel):
            m = re.fullmatch(r"workflow\.parameters\.([-\w]+)", ref)
            if m and m.group(1) not in doc.params:
                message = f"{{{{workflow.parameters.{m.group(1)}}}}} is not in spec.arguments.parameters"
                if in_expr:
                    yield doc.tloc(i, *rel), message + " (in an expression: nil at runtime)", Severity.WARNING
                else:
                    yield doc.tloc(i, *rel), message


@_rule(
    "workflow-failures-without-onexit",
    Severity.ERROR,
    "set spec.onExit (spec.hooks.exit does not make workflow.failures available)",
)
def _workflow_failures(doc: Doc) -> Iterator[Finding]:
    """`{{workflow.failures}}` needs spec.onExit (validate.go:284-296)."""
    if doc.spec.get("onExit"):
        return
    for i, _, rel, text in doc.strings():
        if any(ref == "workflow.failures" for ref, _ in _references(text, rel)):
            yield doc.tloc(i, *rel), "{{workflow.failures}} is only available when spec.onExit is set"


@_rule("dag-unknown-dependency", Severity.ERROR, "depend on a task of the same DAG")
def _dag_unknown_dependency(doc: Doc) -> Iterator[Finding]:
    """Every dependency names a task of the DAG (validate.go:1496-1501)."""
    for i, t in doc.m.templates():
        tasks = _tasks(t)
        known = {x.get("name") for x in tasks}
        for j, task in enumerate(tasks):
            for dep in _direct_deps(task):
                if dep not in known:
                    field = "depends" if task.get("depends") else "dependencies"
                    yield (
                        doc.tloc(i, "dag", "tasks", j, field),
                        f"dependency '{dep}' not defined (task {task.get('name')})",
                    )
        if t.get("dag") is not None and (target := (t.get("dag") or {}).get("target")):
            for name in str(target).split():
                if name not in known:
                    yield doc.tloc(i, "dag", "target"), f"target '{name}' is not a task of this DAG"


@_rule("dag-cycle", Severity.ERROR, "break the cycle: a task cannot (transitively) depend on itself")
def _dag_cycle(doc: Doc) -> Iterator[Finding]:
    """The DAG has no dependency cycle (validate.go:1625-1659)."""
    for i, t in doc.m.templates():
        tasks = _tasks(t)
        deps = {x.get("name"): [d for d in _direct_deps(x) if d] for x in tasks}
        index = {x.get("name"): j for j, x in enumerate(tasks)}
        reported: set[frozenset[str]] = set()
        for start in deps:
            stack = [(start, (start,))]
            while stack:
                node, path = stack.pop()
                for d in deps.get(node, []):
                    if d == start:
                        cycle = frozenset(path)
                        if cycle not in reported:
                            reported.add(cycle)
                            chain = "->".join((*path, start))
                            yield doc.tloc(i, "dag", "tasks", index[start]), f"dependency cycle detected: {chain}"
                    elif d in deps and d not in path:
                        stack.append((d, (*path, d)))


@_rule(
    "dag-depends-mixed",
    Severity.ERROR,
    "use `depends` everywhere in this DAG (it can express every `dependencies` list)",
)
def _dag_depends_mixed(doc: Doc) -> Iterator[Finding]:
    """`depends` and `dependencies` are not mixed in one DAG (validate.go:1472-1474)."""
    for i, t in doc.m.templates():
        tasks = _tasks(t)
        if any(x.get("depends") for x in tasks) and any(x.get("dependencies") for x in tasks):
            j = next(j for j, x in enumerate(tasks) if x.get("dependencies"))
            yield (
                doc.tloc(i, "dag", "tasks", j, "dependencies"),
                f"template {t.get('name')} mixes depends and dependencies",
            )


@_rule("dag-continue-on-with-depends", Severity.ERROR, "drop continueOn and depend on `X.Failed`/`X.Errored` instead")
def _dag_continue_on(doc: Doc) -> Iterator[Finding]:
    """A DAG that uses `depends` has no continueOn (validate.go:1476-1478)."""
    for i, t in doc.m.templates():
        tasks = _tasks(t)
        if any(x.get("depends") for x in tasks):
            for j, task in enumerate(tasks):
                if task.get("continueOn"):
                    yield (
                        doc.tloc(i, "dag", "tasks", j, "continueOn"),
                        f"task {task.get('name')} uses continueOn in a DAG that uses depends",
                    )


@_rule(
    "depends-syntax",
    Severity.ERROR,
    "write `A`, `A.Succeeded`, `A.Failed`... joined with &&, || and !, with balanced parentheses",
)
def _depends_syntax(doc: Doc) -> Iterator[Finding]:
    """`depends` parses and names only results Argo knows (ancestry.go:90-107; dag.go evaluates it as expr)."""
    for i, t in doc.m.templates():
        tasks = _tasks(t)
        for j, task in enumerate(tasks):
            depends = task.get("depends")
            if not depends:
                continue
            try:
                names_in = depends_tasks(str(depends))
                evaluate_depends(str(depends), dict.fromkeys(names_in, "Succeeded"))
            except ExpressionError as exc:
                yield (
                    doc.tloc(i, "dag", "tasks", j, "depends"),
                    f"depends {depends!r} of task {task.get('name')}: {exc}",
                )


def _when_placeholder(when: str) -> str:
    # Tags become one bare word, as a simple value substitutes; expression tags must parse as expr.
    def replace(m: re.Match[str]) -> str:
        tag = m.group(1).strip()
        if tag.startswith("="):
            parse_expr(tag[1:])
            return "true"
        return "placeholder"

    return re.sub(r"\{\{(.*?)\}\}", replace, when, flags=re.DOTALL)


@_rule("when-syntax", Severity.ERROR, "quote string operands ('{{...}}' == 'x') and use govaluate operators")
def _when_syntax(doc: Doc) -> Iterator[Finding]:
    """`when` parses as govaluate after substitution (workflow/controller/steps.go:384-419)."""
    for i, t in doc.m.templates():
        for rel, call in _calls(t):
            when = call.get("when")
            if not when:
                continue
            try:
                parse_when(_when_placeholder(str(when)))
            except ExpressionError as exc:
                yield doc.tloc(i, *rel, "when"), f"when of {call.get('name')}: {exc}"


# Values govaluate reads as one token when bare (a word or a number); anything else must be quoted.
_BARE_SAFE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_]*|-?[0-9]+(?:\.[0-9]+)?)$")
# Tags whose values are always one bare word: node phases and the workflow status.
_SAFE_TAG = re.compile(r"^(?:(?:tasks|steps)\.[-a-zA-Z0-9]+\.status|workflow\.status|tasks\.name|steps\.name)$")


def _enum_of(doc: Doc, template: Mapping[str, Any], tag: str) -> list[str] | None:
    """The declared enum of a workflow or input parameter tag, if it has one."""
    m = re.fullmatch(r"(workflow|inputs)\.parameters\.([-\w]+)", tag)
    if not m:
        return None
    params = (doc.spec.get("arguments") or {}).get("parameters") if m.group(1) == "workflow" else None
    params = params if params is not None else (template.get("inputs") or {}).get("parameters")
    found = next((p for p in params or [] if p.get("name") == m.group(2)), None)
    return [str(v) for v in found["enum"]] if found and found.get("enum") else None


@_rule("when-unquoted-value", Severity.WARNING, "quote the operand: '{{...}}' == 'value'")
def _when_unquoted_value(doc: Doc) -> Iterator[Finding]:
    """A `when` operand that is substituted bare breaks govaluate when its value holds a space, '-', '.', ':'.

    Bare words become strings, so `{{x}} == yes` works until x is `registry.example.com/app:1`
    (shared/research/argo.md section 1 rule 18). Phases and enum values of single words are safe.
    """
    for i, t in doc.m.templates():
        for rel, call in _calls(t):
            when = str(call.get("when") or "")
            reported: set[str] = set()
            for m in re.finditer(r"\{\{(.*?)\}\}", when, flags=re.DOTALL):
                tag = m.group(1).strip()
                before, after = when[m.start() - 1 : m.start()], when[m.end() : m.end() + 1]
                quoted = before in ("'", '"') and after == before
                if tag in reported or tag.startswith("=") or quoted or _SAFE_TAG.match(tag):
                    continue
                reported.add(tag)
                enum = _enum_of(doc, t, tag)
                if enum is not None and all(_BARE_SAFE.match(v) for v in enum):
                    continue
                yield doc.tloc(i, *rel, "when"), f"when of {call.get('name')}: {{{{{tag}}}}} is substituted unquoted"


@_rule(
    "param-in-script-source", Severity.ERROR, "pass the value as an argument or environment variable and read it there"
)
def _param_in_script_source(doc: Doc) -> Iterator[Finding | tuple[Location, str, Severity]]:
    """No `{{...}}` inside script source: Argo pastes values in textually, so a value can inject code (DESIGN.md).

    An error for shell scripts (the shell-injection case); a warning for other interpreters, whose
    source is just as injectable but which Argo's own examples use (exit-handler-with-param.yaml).
    """
    for i, t in doc.m.templates():
        script = t.get("script") or {}
        source = script.get("source")
        if not isinstance(source, str) or not find_tags(source):
            continue
        command = [str(c) for c in script.get("command") or []]
        shell = bool(command) and Path(command[0]).name in SHELLS
        message = f"template {t.get('name')} pastes {{{{{find_tags(source)[0]}}}}} into its script source"
        yield doc.tloc(i, "script", "source"), message, Severity.ERROR if shell else Severity.WARNING


def _may_run_after_failure(tasks: list[dict[str, Any]], producer: str, consumer: str) -> bool:
    """Whether `consumer` can run in a run where `producer` ended Failed or Error.

    Each task's depends is checked over every phase its dependencies can have: the producer
    Failed/Error, tasks that cannot run after that failure Omitted, every other task anything.
    Correlations between tasks are ignored, so this errs towards "may".
    """
    by_name = {str(t.get("name")): t for t in tasks}
    ancestors = _ancestors(tasks)
    continue_on = {str(t.get("name")): t.get("continueOn") or {} for t in tasks}
    can_run: dict[str, bool] = {}

    def phases_of(dep: str) -> list[str]:
        if dep == producer:
            return ["Failed", "Error"]
        if producer in ancestors.get(dep, set()):
            return ["Succeeded", "Failed", "Error", "Skipped", "Omitted"] if runs(dep) else ["Omitted"]
        return ["Succeeded", "Failed", "Error", "Skipped", "Omitted"]

    def runs(name: str) -> bool:
        if name in can_run:
            return can_run[name]
        can_run[name] = False  # cycles (reported elsewhere) never run
        task = by_name[name]
        deps = [d for d in _direct_deps(task) if d in by_name]
        logic = _depends(task)
        choices = [phases_of(d) for d in deps]
        result = False
        for combo in itertools.islice(itertools.product(*choices), 4096):
            try:
                if evaluate_depends(logic, dict(zip(deps, combo, strict=True)), continue_on):
                    result = True
                    break
            except ExpressionError:
                result = True  # unparseable: reported by depends-syntax; assume the worst here
                break
        can_run[name] = result
        return result

    return runs(consumer)


def _output_default(template: Mapping[str, Any] | None, output: str) -> bool:
    for p in ((template or {}).get("outputs") or {}).get("parameters") or []:
        if p.get("name") == output:
            vf = p.get("valueFrom") or {}
            return vf.get("default") is not None or p.get("value") is not None or vf.get("supplied") is not None
    return True  # undeclared: task-output-unresolved reports it


@_rule("output-without-default", Severity.ERROR, "give the output valueFrom.default: a failed step may not write it")
def _output_without_default(doc: Doc) -> Iterator[Finding | tuple[Location, str, Severity]]:
    """Outputs read after a step that may fail declare a default (workflow/executor/executor.go:738-786)."""
    globals_without_default: dict[str, str] = {}
    for _, t in doc.m.templates():
        if _kind(t) in LEAF_POD_KINDS:
            for p in (t.get("outputs") or {}).get("parameters") or []:
                if p.get("globalName") and not _output_default(t, str(p.get("name"))):
                    globals_without_default[str(p["globalName"])] = str(t.get("name"))
    exit_templates = _exit_tree(doc)
    for i, t, rel, text in doc.strings():
        consumer, _, _ = _scopes(t, rel)
        for ref, _ in _references(text, rel):
            g = re.fullmatch(r"workflow\.outputs\.parameters\.([-\w]+)", ref)
            if g and g.group(1) in globals_without_default and t.get("name") in exit_templates:
                producer = globals_without_default[g.group(1)]
                message = f"exit handler reads {ref}, which template {producer} exports without a default"
                yield doc.tloc(i, *rel), message, Severity.WARNING  # official examples do this (global-outputs.yaml)
                continue
            parsed = _node_ref(ref)
            if parsed is None or consumer is None:
                continue
            kind, name, rest = parsed
            m = re.fullmatch(r"outputs\.parameters\.([-\w]+)", rest)
            callee = _callee(doc, t, kind, name)
            if not m or callee is None or _kind(callee) not in LEAF_POD_KINDS or _output_default(callee, m.group(1)):
                continue
            if _producer_may_fail_before(t, kind, name, consumer, rel):
                yield (
                    doc.tloc(i, *rel),
                    f"{consumer} reads {ref} after {name} may have failed, and the output has no default",
                )


def _producer_may_fail_before(t: Mapping[str, Any], kind: str, producer: str, consumer: str, rel: Location) -> bool:
    in_hook = len(rel) > 3 and rel[3] == "hooks"
    if in_hook and producer == consumer:
        return True  # an exit hook runs however its task ended
    if kind == "tasks":
        return _may_run_after_failure(_tasks(t), producer, consumer)
    step = next((s for g in t.get("steps") or [] for s in g or [] if s.get("name") == producer), {})
    flags = step.get("continueOn") or {}
    return bool(flags.get("failed") or flags.get("error"))


def _exit_tree(doc: Doc) -> set[str]:
    """Names of the templates the workflow's exit handler runs (itself and what it calls)."""
    root = doc.spec.get("onExit") or ((doc.spec.get("hooks") or {}).get("exit") or {}).get("template")
    seen: set[str] = set()
    todo = [str(root)] if root else []
    while todo:
        name = todo.pop()
        if name in seen or doc.template(name) is None:
            continue
        seen.add(name)
        t = doc.template(name) or {}
        todo.extend(str(c.get("template")) for c in _tasks(t) if c.get("template"))
        todo.extend(str(s.get("template")) for g in t.get("steps") or [] for s in g or [] if s.get("template"))
    return seen


@_rule(
    "suspend-without-duration",
    Severity.WARNING,
    'set suspend.duration (e.g. "24h") so an unanswered gate resumes with its defaults',
)
def _suspend_without_duration(doc: Doc) -> Iterator[Finding]:
    """A suspend waits forever without `duration` (operator.go:3998-4013)."""
    for i, t in doc.m.templates():
        if t.get("suspend") is not None and not (t.get("suspend") or {}).get("duration"):
            yield doc.tloc(i, "suspend"), f"suspend template {t.get('name')} has no duration: it waits forever"


@_rule(
    "invalid-name",
    Severity.ERROR,
    "use letters, digits and '-' (parameters may also use '_'), within Argo's length limits",
)
def _invalid_name(doc: Doc) -> Iterator[Finding]:
    """Names Argo (or Kubernetes) rejects (validate.go:101-105, 1350-1396, 1691-1739)."""
    meta = doc.m.data.get("metadata") or {}
    for field in ("name", "generateName"):
        value = meta.get(field)
        if not value:
            continue
        limit = MAX_OBJECT_NAME.get(doc.m.kind, 63)
        check = str(value).rstrip("-") if field == "generateName" else str(value)
        if field == "name" and len(check) > limit:
            yield ("metadata", field), f"{doc.m.kind} name {value!r} is longer than {limit} characters"
        if check and not DNS1123.match(check):
            yield ("metadata", field), f"{doc.m.kind} {field} {value!r} is not a lowercase DNS-1123 name"
    seen: set[str] = set()
    for i, t in doc.m.templates():
        name = str(t.get("name") or "")
        yield from _check_name(doc.tloc(i, "name"), "template", name, seen)
        for kind in ("parameters", "artifacts"):
            for side in ("inputs", "outputs"):
                for j, p in enumerate((t.get(side) or {}).get(kind) or []):
                    pname = str(p.get("name") or "")
                    if not PARAM_NAME_RE.match(pname):
                        yield (
                            doc.tloc(i, side, kind, j, "name"),
                            f"{side} {kind[:-1]} name {pname!r} must match {PARAM_NAME_RE.pattern}",
                        )
        task_names: set[str] = set()
        uses_depends = any(x.get("depends") or x.get("dependencies") for x in _tasks(t))
        for j, task in enumerate(_tasks(t)):
            tname = str(task.get("name") or "")
            yield from _check_name(doc.tloc(i, "dag", "tasks", j, "name"), "task", tname, task_names)
            if uses_depends and tname[:1].isdigit():
                yield (
                    doc.tloc(i, "dag", "tasks", j, "name"),
                    f"task name {tname!r} starts with a digit, which depends cannot use",
                )
        step_names: set[str] = set()  # unique across the whole steps template (validate.go:1071-1081)
        for g, group in enumerate(t.get("steps") or []):
            for s, step in enumerate(group or []):
                yield from _check_name(
                    doc.tloc(i, "steps", g, s, "name"), "step", str(step.get("name") or ""), step_names
                )
    for j, p in enumerate((doc.spec.get("arguments") or {}).get("parameters") or []):
        pname = str(p.get("name") or "")
        if not PARAM_NAME_RE.match(pname):
            yield (
                doc.loc("arguments", "parameters", j, "name"),
                f"parameter name {pname!r} must match {PARAM_NAME_RE.pattern}",
            )


def _check_name(loc: Location, what: str, name: str, seen: set[str]) -> Iterator[Finding]:
    if not name:
        yield loc, f"{what} has no name"
        return
    if "{{" not in name and not NAME_RE.match(name):
        yield loc, f"{what} name {name!r} must match {NAME_RE.pattern} (no '_' or '.')"
    if len(name) > MAX_NAME:
        yield loc, f"{what} name {name!r} is longer than {MAX_NAME} characters"
    if name in seen:
        yield loc, f"{what} name {name!r} is not unique"
    seen.add(name)


@_rule(
    "approval-not-dominating",
    Severity.ERROR,
    "make every gated task depend on the gate and check its decision in `when`",
)
def _approval_not_dominating(doc: Doc) -> Iterator[Finding]:
    """With `imagegate.dev/approval-gate: TASK`, no gated task runs unless the gate approved (DESIGN.md).

    Gated tasks are `imagegate.dev/gated-tasks` (comma-separated), else every task downstream
    of the gate. A gated task must not run in any run in which the gate resumes with anything
    but `approve` (each enum value, the default a timeout applies, or the gate failing). Most are
    proven so without running anything (`_blocked_without_approval`: its `when` is false under
    every refusal, or its `depends` needs a blocked task to have run); for the rest the plan
    evaluator explores every such run and every outcome of the other tasks, and names one in
    which the task runs.
    """
    gate = doc.m.annotations.get(names.GATE_ANNOTATION)
    if not gate:
        return
    yield from _gate_violations(doc, gate.strip(), doc.m.annotations.get(names.GATED_ANNOTATION))


# Bounds the exploration of approval-not-dominating; past it the rule says it stopped.
MAX_RUNS = 20000


def _when_literals(doc: Doc) -> tuple[set[str], set[str]]:
    """Every literal a `when` compares against, and every output name a `when` reads."""
    literals: set[str] = set()
    outputs: set[str] = set()
    for _, t in doc.m.templates():
        calls = [call for _, call in _calls(t)]
        for call in calls:
            when = str(call.get("when") or "")
            for tag in find_tags(when):
                outputs.update(re.findall(r"outputs\.parameters\.([-\w]+)", _expr_text(tag)))
                literals.update(a or b for a, b in re.findall(r"'([^']*)'|\"([^\"]*)\"", tag))
            bare = re.sub(r"\{\{.*?\}\}", " ", when)
            literals.update(a or b for a, b in re.findall(r"'([^']*)'|\"([^\"]*)\"", bare))
            literals.update(
                w
                for w in re.findall(r"(?<!['\"\w.-])[A-Za-z0-9_][\w.-]*", re.sub(r"'[^']*'|\"[^\"]*\"", " ", bare))
                if w not in ("true", "false")
            )
    return literals, outputs


def _gate_violations(doc: Doc, gate: str, gated_csv: str | None) -> Iterator[Finding]:
    entry = doc.template(str(doc.spec.get("entrypoint") or "")) or {}
    tasks = _tasks(entry)
    index = {str(t.get("name")): j for j, t in enumerate(tasks)}
    entry_loc = doc.tloc(doc.templates.get(str(doc.spec.get("entrypoint")), (0, {}))[0])
    if gate not in index:
        yield ("metadata", "annotations"), f"approval gate {gate!r} is not a task of the entrypoint DAG"
        return
    if gated_csv:
        gated = [g.strip() for g in gated_csv.split(",") if g.strip()]
        for g in gated:
            if g not in index:
                yield ("metadata", "annotations"), f"gated task {g!r} is not a task of the entrypoint DAG"
        gated = [g for g in gated if g in index]
    else:
        gated = sorted(n for n, anc in _ancestors(tasks).items() if gate in anc)
    gate_template = doc.template(str(tasks[index[gate]].get("template"))) or {}
    supplied = [
        p
        for p in (gate_template.get("outputs") or {}).get("parameters") or []
        if "supplied" in (p.get("valueFrom") or {})
    ]
    decision = next(
        (p["name"] for p in supplied if p.get("name") == names.DECISION), supplied[0]["name"] if supplied else None
    )
    if gate_template.get("suspend") is None or decision is None:
        yield (
            entry_loc + ("dag", "tasks", index[gate]),
            f"approval gate {gate} is not a suspend template with a supplied decision output",
        )
        return
    literals, read = _when_literals(doc)
    inputs = {p.get("name"): p for p in (gate_template.get("inputs") or {}).get("parameters") or []}
    values = set(literals) | {str(v) for v in (inputs.get(decision) or {}).get("enum") or []} | {""}
    default = (inputs.get(decision) or {}).get("default")
    if default is not None:
        values.add(str(default))
    refusals = sorted(values - {Decision.APPROVE.value})
    # What the gate's decision can hold in a run without approval: a refusal, or the default a
    # timeout, a failed gate or a gate that never ran leaves (which may itself be `approve`).
    output = next(p for p in supplied if p.get("name") == decision)
    leftovers = [(output.get("valueFrom") or {}).get("default"), output.get("value"), default]
    unapproved = set(refusals) | {str(v) for v in leftovers if v is not None}
    blocked = _blocked_without_approval(doc, entry, f"tasks.{gate}.outputs.parameters.{decision}", gate, unapproved)
    gated = [g for g in gated if g not in blocked]
    if not gated:
        return
    from workflows.plan import LeafCall, LeafOutcome, Phase  # only now: importing it costs 10 ms

    def options(call: LeafCall) -> list[LeafOutcome]:
        if call.exit_handler:
            return [LeafOutcome()]
        if call.task == gate:
            return [LeafOutcome(outputs={decision: v}) for v in refusals] + [LeafOutcome(phase=Phase.FAILED)]
        declared = [p for p in (call.template.get("outputs") or {}).get("parameters") or [] if p.get("name") in read]
        per_output = []
        for p in declared:
            own = (p.get("valueFrom") or {}).get("default")
            per_output.append([(p["name"], v) for v in sorted(literals | ({str(own)} if own is not None else set()))])
        combos = [dict(c) for c in itertools.product(*per_output)] or [{}]
        return [LeafOutcome(phase=ph, outputs=c) for ph in (Phase.SUCCEEDED, Phase.FAILED) for c in combos]

    # Every combination of the enum-valued workflow parameters (mode, strict, push...), each explored.
    declared = (doc.spec.get("arguments") or {}).get("parameters") or []
    enums = [[(str(p["name"]), str(v)) for v in p["enum"]] for p in declared if p.get("enum")]
    found: dict[str, tuple[str, dict[str, str]]] = {}
    runs = 0
    for combo in itertools.product(*enums):
        params = dict(combo)
        try:
            runs = yield from _explore(doc, params, gate, gated, decision, options, found, runs)
        except (ExpressionError, TemplateError, RequestError) as exc:
            yield entry_loc, f"approval check could not evaluate the template: {exc}"
            return
        if len(found) == len(gated) or runs >= MAX_RUNS:
            break
    for g, scenario in sorted(found.items()):
        where = ", ".join(f"{k}={v}" for k, v in scenario[1].items()) or "defaults"
        message = (
            f"gated task {g} can run although {scenario[0]} ({where}): only {gate} resuming with approve may start it"
        )
        yield entry_loc + ("dag", "tasks", index[g]), message


# Stands in for every `{{...}}` value the fast check does not know (one govaluate word).
_UNKNOWN = "imagegateunknownvalue"
# Phases a task ends with when it does not run (when false, depends false, an expression failing).
_NOT_RUN = ("Skipped", "Omitted", "Error")
_ANY_PHASE = ("Succeeded", "Failed", *_NOT_RUN)


def _blocked_without_approval(
    doc: Doc, entry: Mapping[str, Any], decision_ref: str, gate: str, unapproved: set[str]
) -> set[str]:
    """Tasks of the entrypoint DAG shown never to run in a run the gate did not approve.

    A sufficient check, so the full exploration only runs for what it cannot show: a task is
    blocked when its `when` cannot be true for any value in `unapproved` (or the decision absent,
    which fails the substitution) with every other operand unknown, or when its `depends`
    is false whatever phase its dependencies end with, those already blocked ending Skipped,
    Omitted or Error. It relies on what the exploration relies on: a value substituted into a
    quoted operand holds no quote.
    """
    tasks = {str(t.get("name")): t for t in _tasks(entry)}

    def fanned_out(task: Mapping[str, Any]) -> bool:  # withItems, withParam, withSequence
        return any(str(key).startswith("with") for key in task)

    # A fanned-out gate's decision is a JSON list of the items' decisions; a fanned-out task
    # evaluates `when` per item: the exploration decides those.
    if any("{{" in v for v in unapproved) or fanned_out(tasks[gate]):
        return set()
    continue_on = {n: t.get("continueOn") or {} for n, t in tasks.items()}
    candidates = {n: t for n, t in tasks.items() if n != gate and not fanned_out(t)}  # the gate may end any way
    blocked: set[str] = set()
    grown = True
    while grown:  # a fixpoint: blocking one task can block those depending on it
        grown = False
        for name, task in candidates.items():
            if name not in blocked and (
                _when_blocked(doc, entry, str(task.get("when") or ""), decision_ref, unapproved)
                or _depends_blocked(_depends(task), tasks, blocked, continue_on)
            ):
                blocked.add(name)
                grown = True
    return blocked


def _when_blocked(doc: Doc, entry: Mapping[str, Any], when: str, decision_ref: str, unapproved: set[str]) -> bool:
    """Whether `when` is never true while the decision is unapproved (every other tag unknown)."""
    if not when.strip() or decision_ref not in find_tags(when):
        return False
    for m in re.finditer(r"\{\{(.*?)\}\}", when, flags=re.DOTALL):
        tag = m.group(1).strip()
        before, after = when[m.start() - 1 : m.start()], when[m.end() : m.end() + 1]
        quoted = before in ("'", '"') and after == before
        if tag == decision_ref or quoted or _SAFE_TAG.match(tag):
            continue
        # A workflow parameter's enum is enforced at submission; any other unquoted value could hold
        # several words and change how the expression parses.
        enum = _enum_of(doc, entry, tag) if tag.startswith("workflow.parameters.") else None
        if enum is None or not all(_BARE_SAFE.match(v) and v.lower() != "in" for v in enum):
            return False
    for value in unapproved:

        def fill(m: re.Match[str], value: str = value) -> str:
            return value if m.group(1).strip() == decision_ref else _UNKNOWN

        if True in when_outcomes(re.sub(r"\{\{(.*?)\}\}", fill, when, flags=re.DOTALL), _UNKNOWN):
            return False
    return True


def _depends_blocked(
    logic: str, tasks: Mapping[str, Any], blocked: set[str], continue_on: Mapping[str, Mapping[str, bool]]
) -> bool:
    """Whether `depends` is false (or fails) for every phase its dependencies can end with."""
    if not logic.strip():
        return False
    try:
        deps = depends_tasks(logic)
    except ExpressionError:
        return False
    if any(d not in tasks or set(results) & {"AnySucceeded", "AllFailed"} for d, results in deps.items()):
        return False
    choices = [_NOT_RUN if d in blocked else _ANY_PHASE for d in deps]
    if not any(d in blocked for d in deps) or math.prod(map(len, choices)) > 4096:
        return False
    for combo in itertools.product(*choices):
        try:
            if evaluate_depends(logic, dict(zip(deps, combo, strict=True)), continue_on):
                return False
        except ExpressionError:
            continue  # the task ends Error: it does not run
    return True


def _explore(
    doc: Doc,
    params: dict[str, str],
    gate: str,
    gated: list[str],
    decision: str,
    options: Callable[[Any], list[Any]],
    found: dict[str, tuple[str, dict[str, str]]],
    runs: int,
) -> Generator[Finding, None, int]:
    """Depth-first over every leaf outcome `options` offers, recording gated tasks that ran (in `found`)."""
    from workflows.plan import Evaluator, LeafCall, LeafOutcome, Phase

    choices: list[int] = []
    while True:
        widths: list[int] = []

        def execute(call: LeafCall, widths: list[int] = widths, choices: list[int] = choices) -> LeafOutcome:
            opts = options(call)
            k = len(widths)
            widths.append(len(opts))
            return opts[choices[k] if k < len(choices) else 0]

        result = Evaluator(doc.m, params, fill_missing="placeholder", render_leaves=False).run(execute)
        runs += 1
        gate_node = next((n for n in result.nodes if n.name == gate), None)
        if gate_node is None or gate not in result.order:
            scenario = f"{gate} never ran"
        elif gate_node.phase in (Phase.FAILED, Phase.ERROR):
            scenario = f"{gate} failed"
        else:
            scenario = f"{gate} resumed with {decision}={gate_node.outputs.get(decision, '')!r}"
        for g in gated:
            if g not in found and result.ran(g):
                found[g] = (scenario, params)
        chosen = [choices[k] if k < len(choices) else 0 for k in range(len(widths))]
        k = len(chosen) - 1
        while k >= 0 and chosen[k] + 1 >= widths[k]:
            k -= 1
        if k < 0 or len(found) == len(gated):
            return runs
        if runs >= MAX_RUNS:
            yield doc.loc("entrypoint"), f"approval check stopped after {MAX_RUNS} runs: not every outcome was explored"
            return runs
        choices = chosen[:k] + [chosen[k] + 1]


def _secret_uses(template: Mapping[str, Any], spec_volumes: Mapping[str, Any]) -> Iterator[tuple[Location, str]]:
    volumes = {v.get("name"): v for v in spec_volumes.values()} | {
        v.get("name"): v for v in template.get("volumes") or []
    }
    local = {v.get("name") for v in template.get("volumes") or []}
    for j, v in enumerate(template.get("volumes") or []):
        if _is_secret_volume(v):
            yield ("volumes", j), f"secret volume {v.get('name')}"
    containers: list[tuple[Location, Mapping[str, Any]]] = []
    for key in ("container", "script"):
        if template.get(key):
            containers.append(((key,), template[key]))
    for j, c in enumerate((template.get("containerSet") or {}).get("containers") or []):
        containers.append((("containerSet", "containers", j), c))
    for key in ("initContainers", "sidecars"):
        for j, c in enumerate(template.get(key) or []):
            containers.append(((key, j), c))
    for loc, c in containers:
        for j, mount in enumerate(c.get("volumeMounts") or []):
            v = volumes.get(mount.get("name"))
            if v is not None and mount.get("name") not in local and _is_secret_volume(v):
                yield (*loc, "volumeMounts", j), f"workflow secret volume {mount.get('name')}"
        for j, env in enumerate(c.get("env") or []):
            if (env.get("valueFrom") or {}).get("secretKeyRef"):
                yield (*loc, "env", j), f"secret env {env.get('name')}"
        for j, env in enumerate(c.get("envFrom") or []):
            if env.get("secretRef"):
                yield (*loc, "envFrom", j), "secret envFrom"


def _is_secret_volume(volume: Mapping[str, Any]) -> bool:
    if volume.get("secret") is not None:
        return True
    return any(s.get("secret") is not None for s in (volume.get("projected") or {}).get("sources") or [])


@_rule(
    "credentials-outside-push",
    Severity.ERROR,
    "mount registry credentials only in the templates listed in imagegate.dev/credentials-templates",
)
def _credentials_outside_push(doc: Doc) -> Iterator[Finding]:
    """With `imagegate.dev/credentials-templates`, no other template mounts a Secret (DESIGN.md least privilege)."""
    listed = doc.m.annotations.get(names.CREDENTIALS_ANNOTATION)
    if listed is None:
        return
    allowed = {s.strip() for s in listed.split(",") if s.strip()}
    spec_volumes = {str(v.get("name")): v for v in doc.spec.get("volumes") or []}
    for i, t in doc.m.templates():
        if t.get("name") in allowed:
            continue
        for rel, what in _secret_uses(t, spec_volumes):
            yield (
                doc.tloc(i, *rel),
                f"template {t.get('name')} uses {what} but is not in {names.CREDENTIALS_ANNOTATION}",
            )


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------


def lint_manifests(manifests: list[Manifest], files: list[str] | None = None) -> LintReport:
    """Run every rule over already-loaded manifests."""
    by_name = {m.name: m for m in manifests if m.kind in ("WorkflowTemplate", "ClusterWorkflowTemplate")}
    findings: list[LintFinding] = []
    for manifest in manifests:
        doc = Doc(manifest, by_name)
        malformed = False  # the schema rule runs first: it says whether the object has Argo's shape
        for rule_id, fn in _FUNCTIONS.items():
            rule = RULES[rule_id]
            try:
                items = list(fn(doc))
            except (AttributeError, TypeError, KeyError, IndexError, ValueError):
                if not malformed:
                    raise  # a well-formed object that breaks a rule is a bug in the rule: keep the traceback
                items = [((), f"not checked: {doc.object} does not have the shape the schema requires")]
            for item in items:
                loc, message = item[0], item[1]
                severity = item[2] if len(item) > 2 else rule.severity  # type: ignore[misc]
                malformed = malformed or (rule_id == "schema" and severity is Severity.ERROR)
                findings.append(
                    LintFinding(
                        file=manifest.path,
                        line=manifest.line(loc),
                        rule=rule_id,
                        severity=severity,
                        message=message,
                        hint=rule.hint,
                        object=doc.object,
                    )  # fmt: skip
                )
    findings.sort(key=lambda f: (f.file, f.line, f.rule))
    return LintReport(files=files or sorted({m.path for m in manifests}), objects=len(manifests), findings=findings)


def lint(paths: list[str | Path]) -> LintReport:
    """Lint every Argo object in `paths` (files, or directories of *.yaml).

    Raises:
        TemplateError: a path does not exist or is not valid YAML, or holds no Argo object.
    """
    manifests = load_paths(paths)
    if not manifests:
        raise TemplateError(
            f"no Workflow or WorkflowTemplate in {', '.join(map(str, paths))}",
            hint="lint reads rendered YAML: run `imagegate render` first, or give a manifest file",
        )
    return lint_manifests(manifests, [str(p) for p in paths])
