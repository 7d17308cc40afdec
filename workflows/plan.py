"""What a rendered Workflow/WorkflowTemplate does, decided without a cluster.

`plan(doc, params, outcomes, outputs)` walks the entrypoint as the Argo controller would and
returns a `Plan`: every node's phase (Succeeded, Failed, Error, Skipped, Omitted), the order
nodes start, how many pods the run creates, the workflow phase, and the workflow's `result`
output when it can be computed. Each leaf ends with the phase and outputs you give it
(default: Succeeded, the declared defaults).

`Evaluator` is the engine underneath: it calls a function for each leaf it reaches (a
container, script or suspend node, the onExit handler included) with the inputs and the
template already substituted, and continues with the `LeafOutcome` that function returns.
`plan` passes a function that looks outcomes up; `run --local` passes one that runs the step.

Argo semantics followed (argoproj/argo-workflows v4.1.2):
- DAG tasks run in dependency order; `depends`/`dependencies` false -> Omitted, `when` false ->
  Skipped, an expression that fails -> Error (workflow/controller/dag.go executeDAGTask).
- A DAG's phase comes from its target (leaf) tasks: a Skipped or Omitted target inherits the
  phase of the branch that led to it, preferring Failed/Error, unless the target has
  `continueOn` for that phase (dag.go assessDAGPhase). A failed DAG exports no outputs.
- A step group fails when a child fails without `continueOn`; later groups do not start
  (workflow/controller/steps.go).
- Outputs of a Skipped/Omitted producer resolve to its `valueFrom.default`, otherwise they are
  absent and a consumer's input default applies (docs/variables.md, "v3.7.16, v4.0.7 and after").
- A suspend node's supplied outputs default to the input of the same name's default
  (operator.go addRawOutputFields); a timeout therefore yields that default.
- The onExit handler runs after the entrypoint with `workflow.status` (Skipped/Omitted map to
  Succeeded) and `workflow.failures`; if it fails after a successful entrypoint the workflow
  fails (operator.go:447-479, 551-561).
- withItems/withParam/withSequence fan out into `name(i:item)` children under a task-group node
  whose outputs are the JSON lists of the children's (dag.go expandTask).
Not modelled: retries (a retried leaf counts one pod), daemons, templateRef to other templates
(one pod, no outputs); each shows in `notes`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from workflows.errors import ExpressionError, RequestError, TemplateError, UnresolvedReferenceError
from workflows.expressions import (
    dependencies_as_depends,
    depends_tasks,
    eval_expr,
    evaluate_depends,
    evaluate_when,
    find_tags,
    nest_scope,
    substitute,
)
from workflows.manifest import Manifest

__all__ = [
    "DEFAULT_TEMPLATE",
    "Evaluator",
    "LeafCall",
    "LeafOutcome",
    "Node",
    "Phase",
    "Plan",
    "parse_outcomes",
    "parse_outputs",
    "plan",
    "render",
]

# The rendered image-build template, beside the package (what `imagegate plan` reads by default).
DEFAULT_TEMPLATE = Path(__file__).resolve().parent.parent / "manifests" / "image-build.yaml"

# Leaf templates that run as a pod of their own (http and plugin share the agent pod).
POD_KINDS = ("container", "script", "resource", "containerSet", "data")
LEAF_KINDS = (*POD_KINDS, "suspend", "http", "plugin")
KINDS = (*LEAF_KINDS, "dag", "steps")
# Tags the controller fills in at pod creation; a leaf keeps them for the executor.
_RUNTIME_PREFIXES = ("pod.", "node.", "outputs.", "retries", "lastRetry.", "inputs.artifacts.", "workflow.outputs.")


class Phase(StrEnum):
    """A node's phase as Argo records it."""

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ERROR = "Error"
    SKIPPED = "Skipped"
    OMITTED = "Omitted"

    @classmethod
    def parse(cls, text: str) -> Phase:
        """How a leaf can end, from user input (`Errored`, as `depends` spells it, means Error)."""
        aliases = {p.value.lower(): p for p in (cls.SUCCEEDED, cls.FAILED, cls.ERROR)} | {"errored": cls.ERROR}
        try:
            return aliases[text.strip().lower()]
        except KeyError:
            raise RequestError(
                f"{text!r} is not an outcome a task can be given",
                hint="use Succeeded, Failed or Error (Skipped/Omitted follow from when/depends)",
            ) from None


_FAILED = (Phase.FAILED, Phase.ERROR)


class LeafCall(BaseModel):
    """A leaf the evaluator reached: what `run --local` executes and `plan` looks up."""

    name: str = Field(
        description="Node name: the task or step name, `parent.child` when nested, the onExit template's name."
    )
    task: str = Field(description="The task/step name alone (the key of --outcome/--output).")
    template_name: str
    kind: str = Field(description="container, script, resource, containerSet, data, suspend, http or plugin.")
    template: dict[str, Any] = Field(description="The template with inputs and workflow variables substituted.")
    inputs: dict[str, str]
    exit_handler: bool = False


class LeafOutcome(BaseModel):
    """How a leaf ended: its phase and the outputs it wrote (missing ones get their defaults)."""

    phase: Phase = Phase.SUCCEEDED
    outputs: dict[str, str] = Field(default_factory=dict, description="Output parameter -> value.")
    result: str | None = Field(None, description="outputs.result (a script's or container's stdout).")
    message: str = ""


class Node(BaseModel):
    """One node of the run: a DAG task, a step, or an exit handler."""

    name: str
    template: str
    kind: str
    phase: Phase
    reason: str = Field(description="Why it has this phase (the depends/when that decided, or the outcome).")
    pods: int = Field(description="Pods this node itself creates (suspend, DAG and steps nodes create none).")
    when: str | None = Field(None, description="The `when` after substitution, when there is one.")
    inputs: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict, description="Output parameters.")
    result: str | None = Field(None, description="outputs.result, when given.")
    children: list[Phase] = Field(default_factory=list, description="A task group's item phases (withItems...).")
    exit_handler: bool = False


class Plan(BaseModel):
    """What the run does with these parameters and outcomes."""

    template: str
    entrypoint: str
    parameters: dict[str, str]
    nodes: list[Node] = Field(description="Every node, in the order the controller decides them.")
    order: list[str] = Field(description="Nodes that ran (created a pod or suspended), in start order.")
    pods: int = Field(description="Pods created, exit handlers included.")
    exit_handler_pods: int = Field(description="How many of `pods` the exit handlers created.")
    phase: Phase = Field(description="The workflow's phase.")
    outputs: dict[str, str] = Field(description="Workflow outputs (globalName exports and the entrypoint's outputs).")
    result: str | None = Field(None, description="The workflow output `result`, when it could be computed.")
    result_status: str | None = Field(
        None, description="`status` of `result` when it is a BuildResult-like JSON object."
    )
    notes: list[str] = Field(default_factory=list)

    def node(self, name: str) -> Node:
        """The node called `name`; KeyError if there is none."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def phase_of(self, name: str) -> Phase:
        """The phase of node `name` (Omitted when it was never reached)."""
        try:
            return self.node(name).phase
        except KeyError:
            return Phase.OMITTED

    def ran(self, name: str) -> bool:
        """Whether node `name` ran (a pod or a suspend), whatever its outcome."""
        return name in self.order

    def summary(self) -> str:
        """Human-readable lines: one per node, then totals."""
        width = max((len(n.name) for n in self.nodes), default=4)
        lines = [f"{self.template} (entrypoint {self.entrypoint})"]
        for n in self.nodes:
            pods = f"{n.pods} pod" + ("s" if n.pods != 1 else "")
            tag = " [exit handler]" if n.exit_handler else ""
            lines.append(f"  {n.name:<{width}}  {n.phase.value:<9}  {pods:<6}  {n.reason}{tag}")
        lines.append(f"order: {' -> '.join(self.order) or '(nothing ran)'}")
        lines.append(f"pods: {self.pods} (exit handler: {self.exit_handler_pods})")
        lines.append(f"workflow phase: {self.phase.value}")
        if self.result is not None:
            lines.append(f"result status: {self.result_status or 'unknown'}")
        else:
            lines.append("result: not computable here (a step writes it at run time; --output TASK.result=V)")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def render(value: Any, scope: Mapping[str, Any], *, allow_unresolved: bool = True) -> Any:
    """Substitute `{{...}}` in every string of a template (mapping keys are left alone)."""
    if isinstance(value, str):
        return substitute(value, scope, allow_unresolved=allow_unresolved)
    if isinstance(value, list):
        return [render(v, scope, allow_unresolved=allow_unresolved) for v in value]
    if isinstance(value, dict):
        return {k: render(v, scope, allow_unresolved=allow_unresolved) for k, v in value.items()}
    return value


def template_kind(template: Mapping[str, Any]) -> str:
    """Which of Argo's template types this template is ('' when none)."""
    return next((k for k in KINDS if template.get(k) is not None), "")


_ITEM_KEYS = ("withItems", "withParam", "withSequence")


def _items(task: Mapping[str, Any], scope: Mapping[str, Any]) -> list[Any]:
    """The items a task fans out over (workflow/controller/dag.go expandTask; withSequence as in expandSequence)."""
    if task.get("withItems") is not None:
        return list(task["withItems"])
    if task.get("withParam") is not None:
        value = json.loads(substitute(str(task["withParam"]), scope))
        if not isinstance(value, list):
            raise ValueError(f"withParam is not a JSON list: {value!r}")
        return value
    seq = task["withSequence"]
    start = int(substitute(str(seq.get("start", 0)), scope))
    if seq.get("count") is not None:
        end = start + int(substitute(str(seq["count"]), scope)) - 1
    else:
        end = int(substitute(str(seq.get("end", 0)), scope))
    step = 1 if end >= start else -1
    fmt = seq.get("format")
    return [(fmt % n if fmt else str(n)) for n in range(start, end + step, step)]


def _template_of(task: Mapping[str, Any]) -> str:
    return str(task.get("template") or (task.get("templateRef") or {}).get("template", ""))


def _continues_on(task: Mapping[str, Any], phase: Phase) -> bool:
    # workflow_types.go ContinuesOn: continueOn.failed covers Failed, continueOn.error covers Error.
    flags = task.get("continueOn") or {}
    return bool((phase is Phase.FAILED and flags.get("failed")) or (phase is Phase.ERROR and flags.get("error")))


def _explain(exc: ExpressionError) -> str:
    # Plan cannot know a leaf's real outputs: an unresolved one usually means "give it".
    if isinstance(exc, UnresolvedReferenceError):
        return f"{exc} (no value: give it with --output TASK.PARAM=VALUE, or declare a default)"
    return str(exc)


class _NodeFailure(Exception):
    """A node ends in Error before anything runs (a reference or expression that fails)."""


Execute = Callable[[LeafCall], LeafOutcome]


class Evaluator:
    """Walks a Workflow/WorkflowTemplate as the controller would, calling `execute` per leaf."""

    def __init__(
        self,
        doc: Manifest | Mapping[str, Any],
        params: Mapping[str, str] | None = None,
        *,
        fill_missing: str | None = None,
        render_leaves: bool = True,
    ) -> None:
        """Prepare a run of `doc` with `params`.

        Args:
            doc: the rendered Workflow/WorkflowTemplate.
            params: workflow parameters; the others take their declared values.
            fill_missing: stands in for parameters with no value (lint explores templates unsubmitted).
            render_leaves: substitute each leaf's template for `LeafCall.template`; lint, which only
                routes, turns it off and a leaf then gets its template as written.
        """
        self.render_leaves = render_leaves
        self.doc = doc if isinstance(doc, Manifest) else Manifest(path="<memory>", index=0, data=dict(doc))
        self.spec = self.doc.spec
        self.templates = {t.get("name"): t for _, t in self.doc.templates()}
        self.fill_missing = fill_missing
        self.parameters = self._parameters(params or {})
        self.globals: dict[str, Any] = self._globals()
        self.nodes: list[Node] = []
        self.order: list[str] = []
        self.notes: list[str] = []
        self.workflow_outputs: dict[str, str] = {}
        # Globals whose value plan knows: given by the leaf, or computed; not a default standing in for
        # an output a successful leaf really writes. `result` is read from these.
        self.known_outputs: dict[str, str] = {}
        self._group_phases: dict[str, list[Phase]] = {}
        self._execute: Execute = lambda call: LeafOutcome()

    # -- setup -----------------------------------------------------------------------------

    def _parameters(self, given: Mapping[str, str]) -> dict[str, str]:
        declared = (self.spec.get("arguments") or {}).get("parameters") or []
        names = [p.get("name") for p in declared]
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise RequestError(
                f"unknown parameter(s) {', '.join(unknown)}", hint=f"{self.doc.name} takes {', '.join(names) or 'none'}"
            )
        values: dict[str, str] = {}
        for p in declared:
            name = p.get("name")
            if name in given:
                value = given[name]
            elif p.get("value") is not None:
                value = str(p["value"])
            elif p.get("default") is not None:
                value = str(p["default"])
            elif self.fill_missing is not None:
                value = self.fill_missing
            else:
                raise RequestError(f"parameter {name} has no value", hint=f"give it with -p {name}=VALUE")
            enum = p.get("enum")
            if enum and value not in [str(e) for e in enum]:
                raise RequestError(
                    f"parameter {name}={value!r} is not one of {', '.join(map(str, enum))}", hint=f"-p {name}={enum[0]}"
                )
            values[name] = value
        return values

    def _globals(self) -> dict[str, Any]:
        meta = self.doc.data.get("metadata") or {}
        name = (meta.get("name") or meta.get("generateName") or "workflow").rstrip("-")
        scope: dict[str, Any] = {
            "workflow.name": f"{name}-plan",
            "workflow.namespace": meta.get("namespace") or "default",
            "workflow.uid": "00000000-0000-0000-0000-000000000000",
            "workflow.serviceAccountName": self.spec.get("serviceAccountName") or "default",
            "workflow.mainEntrypoint": self.spec.get("entrypoint") or "",
            "workflow.creationTimestamp": "1970-01-01T00:00:00Z",
            "workflow.duration": "0",
            "workflow.parameters": json.dumps([{"name": k, "value": v} for k, v in self.parameters.items()]),
        }
        for key, value in self.parameters.items():
            scope[f"workflow.parameters.{key}"] = value
        for key, value in (meta.get("annotations") or {}).items():
            scope[f"workflow.annotations.{key}"] = str(value)
        for key, value in (meta.get("labels") or {}).items():
            scope[f"workflow.labels.{key}"] = str(value)
        return scope

    # -- running ---------------------------------------------------------------------------

    def run(self, execute: Execute) -> Plan:
        """Evaluate the whole workflow, calling `execute` for each leaf; returns the Plan."""
        self._execute = execute
        entry = self.spec.get("entrypoint")
        if not entry or entry not in self.templates:
            raise TemplateError(
                f"{self.doc.name}: entrypoint {entry!r} is not a template of this document",
                hint="plan needs spec.entrypoint naming one of spec.templates",
            )
        args = {p["name"]: str(p.get("value", "")) for p in (self.spec.get("arguments") or {}).get("parameters") or []}
        args.update(self.parameters)
        main = self._call(entry, entry, entry, args, {}, exit_handler=False)
        main_phase = main.phase
        outputs = dict(self.workflow_outputs)
        outputs.update({k: v for k, v in main.outputs.items() if k not in outputs})
        phase = main_phase if main_phase in _FAILED else Phase.SUCCEEDED
        exit_name = self.spec.get("onExit") or ((self.spec.get("hooks") or {}).get("exit") or {}).get("template")
        if exit_name:
            self.globals["workflow.status"] = phase.value
            self.globals["workflow.failures"] = self._failures()
            exit_node = self._call(exit_name, exit_name, exit_name, dict(self.parameters), {}, exit_handler=True)
            if exit_node.phase in _FAILED and phase is Phase.SUCCEEDED:
                phase = exit_node.phase  # operator.go:551-561: a failing exit handler fails the workflow
            outputs.update(self.workflow_outputs)
        result = self.known_outputs.get("result") or None
        if not result and "result" in outputs and "result" not in self.known_outputs:
            self.notes.append("the step exporting `result` was not given it: add --output TASK.result=VALUE")
        status = None
        if result:
            try:
                parsed = json.loads(result)
                status = parsed.get("status") if isinstance(parsed, dict) else None
            except json.JSONDecodeError:
                self.notes.append("the `result` output is not JSON")
        pods = sum(n.pods for n in self.nodes)
        return Plan(
            template=self.doc.name,
            entrypoint=entry,
            parameters=self.parameters,
            nodes=self.nodes,
            order=self.order,
            pods=pods,
            exit_handler_pods=sum(n.pods for n in self.nodes if n.exit_handler),
            phase=phase,
            outputs=outputs,
            result=result,
            result_status=status,
            notes=self.notes,
        )

    def _failures(self) -> str:
        failed = [
            {"displayName": n.name.rsplit(".", 1)[-1], "message": n.reason, "templateName": n.template,
             "phase": n.phase.value, "podName": n.name if n.pods else "", "finishedAt": "1970-01-01T00:00:00Z"}
            for n in self.nodes if n.phase in _FAILED
        ]  # fmt: skip
        return json.dumps(failed, separators=(",", ":"))

    def _resolve_inputs(self, template: Mapping[str, Any], args: Mapping[str, str]) -> dict[str, str]:
        inputs: dict[str, str] = {}
        for p in (template.get("inputs") or {}).get("parameters") or []:
            name = p.get("name")
            if name in args:
                inputs[name] = args[name]
            elif p.get("value") is not None:
                inputs[name] = substitute(str(p["value"]), self.globals, allow_unresolved=True)
            elif p.get("default") is not None:
                inputs[name] = str(p["default"])
            else:
                # workflow/common/util.go:290-292
                raise _NodeFailure(f"inputs.parameters.{name} had no value")
        return inputs

    def _call(
        self,
        name: str,
        task: str,
        template_name: str,
        args: Mapping[str, str],
        meta: Mapping[str, Any],
        *,
        exit_handler: bool,
    ) -> Node:
        """Invoke `template_name` as node `name`; records and returns the node."""
        template = self.templates.get(template_name)
        if template is None:
            reason = f"template {template_name!r} not found"
            node = Node(name=name, template=template_name, kind="", phase=Phase.ERROR, reason=reason, pods=0)
            return self._record(node)
        kind = template_kind(template)
        try:
            inputs = self._resolve_inputs(template, args)
        except _NodeFailure as exc:
            return self._record(Node(name=name, template=template_name, kind=kind, phase=Phase.ERROR, reason=str(exc),
                                     pods=0, exit_handler=exit_handler))  # fmt: skip
        scope = dict(self.globals)
        for key, value in inputs.items():
            scope[f"inputs.parameters.{key}"] = value
        scope["inputs.parameters"] = json.dumps([{"name": k, "value": v} for k, v in inputs.items()])
        if kind == "dag":
            return self._dag(name, template_name, template, scope, inputs, exit_handler)
        if kind == "steps":
            return self._steps(name, template_name, template, scope, inputs, exit_handler)
        return self._leaf(name, task, template_name, template, kind, scope, inputs, exit_handler, meta)

    def _record(self, node: Node) -> Node:
        self.nodes.append(node)
        return node

    def _leaf(
        self, name: str, task: str, template_name: str, template: Mapping[str, Any], kind: str,
        scope: Mapping[str, Any], inputs: dict[str, str], exit_handler: bool, meta: Mapping[str, Any],
    ) -> Node:  # fmt: skip
        rendered = render(dict(template), scope) if self.render_leaves else dict(template)
        tags = find_tags(json.dumps(rendered)) if self.render_leaves else []
        left = {t for t in tags if not t.startswith("=") and not t.startswith(_RUNTIME_PREFIXES)}
        if left:
            return self._record(Node(name=name, template=template_name, kind=kind, phase=Phase.ERROR, pods=0,
                                     reason=f"failed to resolve {{{{{sorted(left)[0]}}}}}", inputs=inputs,
                                     exit_handler=exit_handler))  # fmt: skip
        if template.get("retryStrategy") and "retries" not in " ".join(self.notes):
            self.notes.append("retries are not modelled: a leaf with retryStrategy counts one pod")
        call = LeafCall(name=name, task=task, template_name=template_name, kind=kind, template=rendered,
                        inputs=inputs, exit_handler=exit_handler)  # fmt: skip
        outcome = self._execute(call)
        outputs = self._leaf_outputs(template, kind, inputs, outcome)
        self._export_globals(
            template, outputs, known=set(outcome.outputs) if outcome.phase is Phase.SUCCEEDED else set(outputs)
        )
        self.order.append(name)
        pods = 1 if kind in POD_KINDS else 0
        if kind in ("http", "plugin") and "agent pod" not in " ".join(self.notes):
            self.notes.append("http/plugin templates run in the workflow's agent pod, counted as none here")
        reason = outcome.message or (
            "ran" if outcome.phase is Phase.SUCCEEDED else f"ran and ended {outcome.phase.value}"
        )
        return self._record(Node(name=name, template=template_name, kind=kind, phase=outcome.phase, reason=reason,
                                 pods=pods, inputs=inputs, outputs=outputs, result=outcome.result,
                                 exit_handler=exit_handler, when=meta.get("when")))  # fmt: skip

    def _leaf_outputs(
        self, template: Mapping[str, Any], kind: str, inputs: Mapping[str, str], outcome: LeafOutcome
    ) -> dict[str, str]:
        declared = (template.get("outputs") or {}).get("parameters") or []
        names = {p.get("name") for p in declared}
        unknown = sorted(set(outcome.outputs) - names)
        if unknown:
            raise RequestError(
                f"template {template.get('name')} has no output(s) {', '.join(unknown)}",
                hint=f"its outputs are {', '.join(sorted(n for n in names if n)) or 'none'} (and result)",
            )
        input_defaults = {
            p.get("name"): p.get("default") for p in (template.get("inputs") or {}).get("parameters") or []
        }
        # The template is substituted with its inputs before it runs, defaults included.
        local = {**self.globals, **{f"inputs.parameters.{k}": v for k, v in inputs.items()}}
        values: dict[str, str] = {}
        for p in declared:
            pname = p.get("name")
            vf = p.get("valueFrom") or {}
            if pname in outcome.outputs:
                values[pname] = outcome.outputs[pname]
            elif vf.get("default") is not None:
                values[pname] = substitute(str(vf["default"]), local, allow_unresolved=True)
            elif kind == "suspend" and "supplied" in vf and input_defaults.get(pname) is not None:
                values[pname] = str(input_defaults[pname])  # operator.go addRawOutputFields
            elif p.get("value") is not None:
                values[pname] = substitute(str(p["value"]), local, allow_unresolved=True)
        return values

    def _export_globals(self, template: Mapping[str, Any], outputs: Mapping[str, str], known: set[str]) -> None:
        for p in (template.get("outputs") or {}).get("parameters") or []:
            global_name = p.get("globalName")
            if global_name and p.get("name") in outputs:
                self.workflow_outputs[global_name] = outputs[p["name"]]
                self.globals[f"workflow.outputs.parameters.{global_name}"] = outputs[p["name"]]
                if p["name"] in known:
                    self.known_outputs[global_name] = outputs[p["name"]]

    # -- DAG ---------------------------------------------------------------------------------

    def _dag(self, name: str, template_name: str, template: Mapping[str, Any], scope: dict[str, Any],
             inputs: dict[str, str], exit_handler: bool) -> Node:  # fmt: skip
        dag = template.get("dag") or {}
        tasks = {t["name"]: t for t in dag.get("tasks") or []}
        logic = {t: self._depends_of(task) for t, task in tasks.items()}
        try:
            deps = {t: list(depends_tasks(logic[t])) for t in tasks}
        except ExpressionError as exc:
            return self._record(Node(name=name, template=template_name, kind="dag", phase=Phase.ERROR, pods=0,
                                     reason=str(exc), exit_handler=exit_handler))  # fmt: skip
        continue_on = {t: task.get("continueOn") or {} for t, task in tasks.items()}
        phases: dict[str, Phase] = {}
        prefix = "" if name == self.spec.get("entrypoint") else f"{name}."
        for task_name in self._topological(tasks, deps):
            task = tasks[task_name]
            node_name = prefix + task_name
            phase, node = self._dag_task(
                node_name, task, logic[task_name], deps[task_name], phases, continue_on, scope, exit_handler
            )
            phases[task_name] = phase
            if node is not None and node.kind == "taskGroup":
                self._group_phases[task_name] = node.children
            self._add_task_scope(scope, "tasks", task_name, node)
            if node is not None and node.phase in (*_FAILED, Phase.SUCCEEDED):
                self._task_exit_hook(node_name, task, scope, node, exit_handler)
        dag_phase = self._assess_dag(dag, tasks, deps, phases, continue_on)
        outputs = self._template_outputs(template, scope) if dag_phase is Phase.SUCCEEDED else {}
        return self._record(Node(name=name, template=template_name, kind="dag", phase=dag_phase, pods=0,
                                 reason="from its target tasks", inputs=inputs, outputs=outputs,
                                 exit_handler=exit_handler))  # fmt: skip

    @staticmethod
    def _depends_of(task: Mapping[str, Any]) -> str:
        if task.get("depends"):
            return str(task["depends"])
        return dependencies_as_depends(list(task.get("dependencies") or []))

    @staticmethod
    def _topological(tasks: Mapping[str, Any], deps: Mapping[str, list[str]]) -> list[str]:
        order: list[str] = []
        done: set[str] = set()
        pending = list(tasks)
        while pending:
            ready = [t for t in pending if all(d in done or d not in tasks for d in deps[t])]
            if not ready:
                raise TemplateError(
                    f"dependency cycle among {', '.join(pending)}", hint="run `imagegate lint` on the template"
                )
            for t in ready:  # ties keep declaration order, as the tasks list reads
                order.append(t)
                done.add(t)
            pending = [t for t in pending if t not in done]
        return order

    def _dag_task(
        self, node_name: str, task: Mapping[str, Any], logic: str, deps: list[str], phases: Mapping[str, Phase],
        continue_on: Mapping[str, Mapping[str, bool]], scope: Mapping[str, Any], exit_handler: bool,
    ) -> tuple[Phase, Node | None]:  # fmt: skip
        template_name = _template_of(task)
        if logic:
            try:
                groups = {d: [p.value for p in self._group_phases.get(d, [])] for d in deps}
                known = {d: phases[d].value for d in deps if d in phases}
                runs = evaluate_depends(logic, known, continue_on, groups={d: g for d, g in groups.items() if g})
            except ExpressionError as exc:
                return self._stop(
                    node_name, template_name, Phase.ERROR, f"depends {logic!r}: {exc}", None, exit_handler
                )
            if not runs:
                return self._stop(
                    node_name, template_name, Phase.OMITTED, f'depends "{logic}" is false', None, exit_handler
                )
        return self._run_task(node_name, task, scope, exit_handler)

    def _stop(self, node_name: str, template_name: str, phase: Phase, reason: str, when: str | None,
              exit_handler: bool) -> tuple[Phase, Node]:  # fmt: skip
        """Record a node that ends without running (Omitted, Skipped, or Error before it starts)."""
        node = Node(name=node_name, template=template_name, kind=template_kind(self.templates.get(template_name) or {}),
                    phase=phase, reason=reason, pods=0, when=when, outputs=self._skipped_outputs(template_name),
                    exit_handler=exit_handler)  # fmt: skip
        return phase, self._record(node)

    def _run_task(self, node_name: str, task: Mapping[str, Any], scope: Mapping[str, Any],
                  exit_handler: bool) -> tuple[Phase, Node]:  # fmt: skip
        template_name = _template_of(task)

        def stop(phase: Phase, reason: str, when: str | None = None) -> tuple[Phase, Node]:
            return self._stop(node_name, template_name, phase, reason, when, exit_handler)

        if any(task.get(key) is not None for key in _ITEM_KEYS):
            try:
                items = _items(task, scope)
            except (ExpressionError, ValueError) as exc:
                return stop(Phase.ERROR, f"cannot expand the items: {exc}")
            return self._fan_out(node_name, task, items, scope, exit_handler)
        when = task.get("when")
        substituted = None
        if when:
            try:
                substituted = substitute(str(when), scope)
                if not evaluate_when(substituted):
                    return stop(Phase.SKIPPED, f'when "{substituted}" evaluated false', substituted)
            except ExpressionError as exc:
                return stop(Phase.ERROR, _explain(exc), substituted)
        if task.get("templateRef"):
            self.notes.append(f"{node_name}: templateRef is not followed (counted as one pod, no outputs)")
            self.order.append(node_name)
            return Phase.SUCCEEDED, self._record(Node(name=node_name, template=template_name, kind="templateRef",
                                                      phase=Phase.SUCCEEDED, reason="templateRef not followed", pods=1,
                                                      when=substituted, exit_handler=exit_handler))  # fmt: skip
        try:
            args = self._arguments(task, template_name, scope)
        except _NodeFailure as exc:
            return stop(Phase.ERROR, str(exc), substituted)
        task_name = str(task.get("name") or node_name.rsplit(".", 1)[-1])
        node = self._call(node_name, task_name, template_name, args, {"when": substituted}, exit_handler=exit_handler)
        if substituted and node.when is None:
            node.when = substituted
        return node.phase, node

    def _fan_out(self, node_name: str, task: Mapping[str, Any], items: list[Any], scope: Mapping[str, Any],
                 exit_handler: bool) -> tuple[Phase, Node]:  # fmt: skip
        """One child node per item, `name(i:item)`, under a task-group node (dag.go expandTask, processItem)."""
        plain = {k: v for k, v in task.items() if k not in _ITEM_KEYS}
        children: list[Node] = []
        for i, item in enumerate(items):
            label = item if isinstance(item, str) else json.dumps(item, separators=(",", ":"))
            item_scope = {**scope, "item": label}
            if isinstance(item, dict):
                item_scope.update({f"item.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in item.items()})
            _, child = self._run_task(f"{node_name}({i}:{label})", render(plain, item_scope), item_scope, exit_handler)
            children.append(child)
        failed = next((c.phase for c in children if c.phase in _FAILED and not _continues_on(task, c.phase)), None)
        declared = (self.templates.get(_template_of(task)) or {}).get("outputs") or {}
        outputs = {
            p["name"]: json.dumps(
                [c.outputs[p["name"]] for c in children if p["name"] in c.outputs], separators=(",", ":")
            )
            for p in declared.get("parameters") or []
        }
        results = [c.result for c in children if c.result is not None]
        result = json.dumps(results, separators=(",", ":")) if results else None
        node = Node(name=node_name, template=_template_of(task), kind="taskGroup", phase=failed or Phase.SUCCEEDED,
                    reason=f"{len(children)} item(s)", pods=0, outputs=outputs, exit_handler=exit_handler,
                    result=result, children=[c.phase for c in children])  # fmt: skip
        return node.phase, self._record(node)

    def _arguments(self, task: Mapping[str, Any], template_name: str, scope: Mapping[str, Any]) -> dict[str, str]:
        template = self.templates.get(template_name) or {}
        input_defaults = {
            p.get("name"): p.get("default") for p in (template.get("inputs") or {}).get("parameters") or []
        }
        args: dict[str, str] = {}
        for p in (task.get("arguments") or {}).get("parameters") or []:
            raw = str(p.get("value", ""))
            try:
                args[p["name"]] = substitute(raw, scope)
            except ExpressionError as exc:
                # An absent output of a skipped producer falls back to the input's default.
                if input_defaults.get(p["name"]) is not None:
                    args[p["name"]] = str(input_defaults[p["name"]])
                else:
                    raise _NodeFailure(f"argument {p['name']}: {_explain(exc)}") from None
        return args

    def _skipped_outputs(self, template_name: str) -> dict[str, str]:
        """Outputs of a node that did not run: only those with a valueFrom.default exist."""
        template = self.templates.get(template_name) or {}
        return {
            p["name"]: str(p["valueFrom"]["default"])
            for p in (template.get("outputs") or {}).get("parameters") or []
            if (p.get("valueFrom") or {}).get("default") is not None
        }

    @staticmethod
    def _add_task_scope(scope: dict[str, Any], kind: str, task_name: str, node: Node | None) -> None:
        if node is None:
            return
        base = f"{kind}.{task_name}"
        scope[f"{base}.status"] = node.phase.value
        for key, value in node.outputs.items():
            scope[f"{base}.outputs.parameters.{key}"] = value
        if node.outputs:
            scope[f"{base}.outputs.parameters"] = json.dumps([{"name": k, "value": v} for k, v in node.outputs.items()])
        if node.result is not None:
            scope[f"{base}.outputs.result"] = node.result

    def _task_exit_hook(self, node_name: str, task: Mapping[str, Any], scope: Mapping[str, Any], node: Node,
                        exit_handler: bool) -> None:  # fmt: skip
        hook = (task.get("hooks") or {}).get("exit") or ({"template": task["onExit"]} if task.get("onExit") else None)
        if not hook:
            return
        local = {**scope, "tasks.status": node.phase.value, "steps.status": node.phase.value}
        args = {}
        for p in (hook.get("arguments") or {}).get("parameters") or []:
            args[p["name"]] = substitute(str(p.get("value", "")), local, allow_unresolved=True)
        self._call(f"{node_name}.onExit", f"{node_name}.onExit", hook["template"], args, {}, exit_handler=True)

    def _assess_dag(self, dag: Mapping[str, Any], tasks: Mapping[str, Any], deps: Mapping[str, list[str]],
                    phases: Mapping[str, Phase], continue_on: Mapping[str, Mapping[str, bool]]) -> Phase:  # fmt: skip
        dependants = {t: [c for c in tasks if t in deps[c]] for t in tasks}
        if dag.get("target"):
            targets = str(dag["target"]).split()
        else:
            targets = [t for t in tasks if not dependants[t]]
        # BFS from the roots carrying the last completed phase along each branch (dag.go assessDAGPhase).
        target_phase: dict[str, Phase | None] = {t: None for t in targets}
        queue = [(t, Phase.SUCCEEDED) for t in tasks if not [d for d in deps[t] if d in tasks]]
        seen: set[tuple[str, Phase]] = set()
        while queue:
            task, branch = queue.pop(0)
            if (task, branch) in seen:
                continue
            seen.add((task, branch))
            phase = phases.get(task, Phase.OMITTED)
            if phase in (*_FAILED, Phase.SUCCEEDED):
                branch = phase
            if task in target_phase and target_phase[task] not in _FAILED:
                target_phase[task] = branch
            queue.extend((child, branch) for child in dependants[task])
        fail_fast = dag.get("failFast", True) is not False
        result = Phase.SUCCEEDED
        for target in targets:
            branch = target_phase.get(target)
            if branch in _FAILED:
                if _continues_on(tasks[target], branch):
                    continue
                result = branch
                if fail_fast:
                    break
        return result

    def _template_outputs(self, template: Mapping[str, Any], scope: Mapping[str, Any]) -> dict[str, str]:
        """A DAG's or steps template's own outputs (valueFrom.parameter or .expression)."""
        outputs: dict[str, str] = {}
        env = None
        for p in (template.get("outputs") or {}).get("parameters") or []:
            vf = p.get("valueFrom") or {}
            try:
                if vf.get("parameter") is not None:
                    outputs[p["name"]] = substitute(str(vf["parameter"]), scope)
                elif vf.get("expression") is not None:
                    env = env if env is not None else nest_scope(scope)
                    value = eval_expr(str(vf["expression"]), env)
                    if value is None:
                        raise ExpressionError(f"expression {vf['expression']!r} is nil")
                    outputs[p["name"]] = value if isinstance(value, str) else json.dumps(value)
            except ExpressionError as exc:
                if vf.get("default") is not None:
                    outputs[p["name"]] = str(vf["default"])
                else:
                    self.notes.append(f"output {p['name']} of {template.get('name')}: {exc}")
        self._export_globals(template, outputs, known=set(outputs))
        return outputs

    # -- steps -------------------------------------------------------------------------------

    def _steps(self, name: str, template_name: str, template: Mapping[str, Any], scope: dict[str, Any],
               inputs: dict[str, str], exit_handler: bool) -> Node:  # fmt: skip
        prefix = "" if name == self.spec.get("entrypoint") else f"{name}."
        failed: Phase | None = None
        for group in template.get("steps") or []:
            group_nodes: list[tuple[Mapping[str, Any], Node]] = []
            for step in group or []:
                node_name = prefix + step["name"]
                if failed is not None:
                    reason = "an earlier step group failed: never started"
                    self._stop(node_name, _template_of(step), Phase.OMITTED, reason, None, exit_handler)
                    continue
                _, node = self._run_task(node_name, step, scope, exit_handler)
                group_nodes.append((step, node))
            for step, node in group_nodes:
                self._add_task_scope(scope, "steps", step["name"], node)
                if node.phase in (*_FAILED, Phase.SUCCEEDED):
                    self._task_exit_hook(node.name, step, scope, node, exit_handler)
                if node.phase in _FAILED and not _continues_on(step, node.phase) and failed is None:
                    failed = Phase.FAILED
        phase = failed or Phase.SUCCEEDED
        outputs = self._template_outputs(template, scope) if phase is Phase.SUCCEEDED else {}
        return self._record(Node(name=name, template=template_name, kind="steps", phase=phase, pods=0,
                                 reason="from its step groups", inputs=inputs, outputs=outputs,
                                 exit_handler=exit_handler))  # fmt: skip


def plan(
    template_doc: Manifest | Mapping[str, Any],
    params: Mapping[str, str] | None = None,
    outcomes: Mapping[str, str | Phase] | None = None,
    outputs: Mapping[str, Mapping[str, str]] | None = None,
) -> Plan:
    """What the workflow does when each leaf ends as given.

    Args:
        template_doc: the rendered Workflow/WorkflowTemplate (a `Manifest` or its plain dict).
        params: workflow parameters (`-p NAME=VALUE`); the others take their declared values.
        outcomes: node (task) name -> phase (Succeeded, Failed, Error); default Succeeded.
        outputs: node name -> {output parameter -> value} (`result` for outputs.result); outputs
            not given take their declared defaults (a suspend's: its input default, i.e. a timeout).

    Raises:
        RequestError: a parameter, node or output named here does not exist.
        TemplateError: the document has no usable entrypoint, or its DAG has a cycle.
    """
    evaluator = Evaluator(template_doc, params)
    wanted = {k: Phase.parse(v) if isinstance(v, str) else v for k, v in (outcomes or {}).items()}
    given = {k: dict(v) for k, v in (outputs or {}).items()}
    seen: set[str] = set()

    def execute(call: LeafCall) -> LeafOutcome:
        key = call.task if call.task in wanted or call.task in given else call.name
        seen.add(key)
        values = dict(given.get(key, {}))
        declared = {p.get("name") for p in (call.template.get("outputs") or {}).get("parameters") or []}
        # `TASK.result` is outputs.result unless the template declares an output parameter `result`.
        result = values.pop("result") if "result" in values and "result" not in declared else None
        return LeafOutcome(phase=wanted.get(key, Phase.SUCCEEDED), outputs=values, result=result)

    result = evaluator.run(execute)
    known = {n.name for n in result.nodes} | {n.name.rsplit(".", 1)[-1] for n in result.nodes}
    unknown = sorted((set(wanted) | set(given)) - known)
    if unknown:
        raise RequestError(
            f"no task named {', '.join(unknown)} in {result.template}",
            hint=f"tasks are {', '.join(n.name for n in result.nodes)}",
        )
    unreached = sorted((set(wanted) | set(given)) - seen)
    if unreached:
        result.notes.append(f"given but never run: {', '.join(unreached)}")
    return result


def parse_outcomes(pairs: list[str] | None) -> dict[str, Phase]:
    """`--outcome TASK=PHASE` pairs into a dict."""
    out: dict[str, Phase] = {}
    for pair in pairs or ():
        task, sep, phase = pair.partition("=")
        if not sep or not task:
            raise RequestError(f"--outcome {pair!r} is not TASK=PHASE", hint="write e.g. --outcome build-runner=Failed")
        out[task] = Phase.parse(phase)
    return out


def parse_outputs(pairs: list[str] | None) -> dict[str, dict[str, str]]:
    """`--output TASK.PARAM=VALUE` pairs into {task: {param: value}} (task names have no dots)."""
    out: dict[str, dict[str, str]] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        task, dot, param = key.partition(".")
        if not sep or not dot or not task or not param:
            raise RequestError(
                f"--output {pair!r} is not TASK.PARAM=VALUE", hint="write e.g. --output approve.decision=approve"
            )
        out.setdefault(task, {})[param] = value
    return out
