"""`imagegate run --local`: a rendered Workflow(Template) run on this machine, step by step.

The runner reads the RENDERED YAML (what the cluster receives; default
`manifests/image-build.yaml`) and is driven by the same evaluation as `imagegate plan`:
`workflows.plan.Evaluator` walks the DAG (`depends` -> Omitted, `when` -> Skipped, the DAG's
phase from its targets, the onExit handler with `{{workflow.status}}` and
`{{workflow.failures}}`, the workflow outputs) and calls back here for each leaf with the
template already substituted. A leaf that is a steps-image container (`python -m steps.NAME
...`) runs as that process with exactly the command, args and env the template declares
(only the image's `python` is this interpreter, and PATH, HOME and the like come from this
machine, as a pod's come from its image); what the pod would mount is mapped to per-run
directories:

    <cache>/imagegate/runs/<workflow name>/
        volumes/<name>/           PVCs and volumeClaimTemplates, shared by every node (the workspace)
        nodes/<node>/root/...     the pod's own paths that steps write, e.g. /tmp/outputs/<output>
        nodes/<node>/volumes/...  the pod's emptyDirs
        nodes/<node>/log          the step's stdout and stderr
        configmaps/<name>/        ConfigMap volumes (the policy), one file per key
        secrets/<name>/           Secret volumes (registry credentials)
        buildah/                  a private buildah store (vfs); removed after the run

Outputs come from the mapped `valueFrom.path` files with one trailing newline trimmed; a
missing file takes `valueFrom.default` (the evaluator applies it), and without a default
the node errors, as Argo's executor does (workflow/executor/executor.go, SaveParameters).
The approval suspend asks on a terminal or takes `--approve --approver NAME` / `--reject`;
kaniko and buildkit only exist as cluster images and are refused; `push` runs real skopeo,
into the embedded registry (`workflows.registry`) when the request names no destination.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from steps._io import load_policy
from steps.contract import (
    OUTPUT_DIR,
    WORKSPACE_DIR,
    Approval,
    BuildResult,
    Decision,
    Mode,
    Policy,
    Status,
    parse_duration,
    parse_reference,
)
from steps.errors import StepError
from workflows import manifest, names, registry
from workflows.cache import cache_dir
from workflows.errors import LocalRunError, RequestError, TemplateError
from workflows.local_progress import ApprovalInput, Display, NodeStatus, Prompt, State
from workflows.plan import DEFAULT_TEMPLATE, Evaluator, LeafCall, LeafOutcome, Phase
from workflows.registry import RegistryInfo

__all__ = ["DEFAULT_TEMPLATE", "LocalRun", "run", "summary"]

# Builders that only exist as cluster images: the local runner cannot start them.
CLUSTER_ONLY_MODES = (Mode.KANIKO.value, Mode.BUILDKIT.value)
LOCAL_TAG = "local"
# What a step inherits from this machine (a pod gets PATH and HOME from its image); everything
# else it sees comes from the template.
_PASSTHROUGH_ENV = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH",
    "XDG_CONFIG_HOME", "XDG_DATA_HOME", "NO_COLOR",
)  # fmt: skip
# steps.build_runner's storage variables: when the user sets any, they replace the private store.
_STORAGE_ENV = ("STORAGE_DRIVER", "IMAGEGATE_STORAGE_ROOT", "IMAGEGATE_STORAGE_RUNROOT")
_STEPS_MODULE = re.compile(r"^steps\.[a-z_]+$")
# containers-transports(5) that name a local path: `oci-archive:/workspace/image.oci.tar`.
_TRANSPORT = re.compile(r"^(?:oci-archive|oci|dir|docker-archive):/")
# Filled in by the controller when it creates the pod; the evaluator leaves them for us.
_POD_TAGS = re.compile(r"\{\{\s*(?:pod|node)\.name\s*\}\}")


class LocalRun(BaseModel):
    """What `run --local` did: the result, every node, and where its files are."""

    workflow: str
    phase: str = Field(description="The workflow's phase: Succeeded, Failed or Error.")
    parameters: dict[str, str] = Field(description="The workflow parameters the run used, defaults applied.")
    run_dir: Path
    registry: str | None = Field(None, description="host:port of the embedded registry, when the run pushed there.")
    nodes: list[NodeStatus]
    result: BuildResult


def run(
    context: Path,
    params: Mapping[str, str] | None = None,
    *,
    approval: ApprovalInput | None = None,
    template: Path = DEFAULT_TEMPLATE,
    policy_dir: Path | None = None,
    work_dir: Path | None = None,
    display: Display | None = None,
    prompt: Prompt | None = None,
) -> LocalRun:
    """Run the rendered template on this machine for the build context `context`.

    Args:
        context: the build context directory; it is copied into the run's workspace volume.
        params: workflow parameters (`-p NAME=VALUE`), except `context`.
        approval: the approval gate's decision; None asks through `prompt`.
        template: the rendered YAML holding one Workflow or WorkflowTemplate.
        policy_dir: a policy ConfigMap as mounted (one file per key). None: the contract's
            defaults, allowing the destination's registry and self-approval (one person runs it).
        work_dir: where run directories go; `<cache>/imagegate/runs` when None.
        display: the progress display; None shows nothing.
        prompt: asks a person when `approval` is None.

    Raises:
        RequestError: a parameter or the context is wrong.
        TemplateError: the template cannot be read, or a reference in it does not resolve.
        LocalRunError: a task cannot run on this machine, or nobody can decide the approval.
    """
    params = dict(params or {})
    context = Path(context)
    if "context" in params:
        raise RequestError("-p context=... is not used by run --local", hint="give the context directory as CONTEXT")
    if not context.is_dir():
        raise RequestError(f"context {str(context)!r} is not a directory", hint="give the build context directory")
    if params.get("mode") in CLUSTER_ONLY_MODES:
        raise LocalRunError(
            f"mode {params['mode']} cannot run outside a cluster: its builder exists only as a container image there",
            hint="use -p mode=runner (buildah on this machine) or -p mode=auto",
        )
    if approval is None and prompt is None:
        raise LocalRunError(
            "nobody can decide the approval: there is no terminal to ask",
            hint="pass --approve --approver NAME, or --reject",
        )
    doc = manifest.load_template(template)
    declared = {p.get("name") for p in (doc.spec.get("arguments") or {}).get("parameters") or []}
    if "context" in declared:  # image-build: the copy in the workspace is the context
        params["context"] = _context_name(context)
    if "dockerfile" in declared and "dockerfile" not in params and not (context / "Dockerfile").exists():
        if (context / "Containerfile").exists():
            params["dockerfile"] = "Containerfile"  # what buildah and podman pick when there is no Dockerfile
    display = display or Display()
    with ExitStack() as stack:
        embedded = None
        if "destination" in declared and "destination" not in params:
            embedded = stack.enter_context(registry.EmbeddedRegistry.start())
            params["destination"] = f"{embedded.host}/{_repository(context)}:{LOCAL_TAG}"
        runner = _Runner(
            doc, params, context=context, approval=approval, prompt=prompt, display=display,
            work_dir=work_dir or cache_dir() / "runs", policy_dir=policy_dir,
            loopback=embedded.host if embedded else None,
        )  # fmt: skip
        stack.callback(runner.cleanup)
        try:
            return runner.run(embedded.info if embedded else None)
        except KeyboardInterrupt:  # Ctrl-C ends the run like `argo terminate`: no exit handler, no result
            raise LocalRunError(f"{runner.name} was interrupted", hint=f"its files are in {runner.dir}") from None


def summary(outcome: LocalRun) -> str:
    """The result in a few lines for people: status, image and digest, and how to pull it."""
    r = outcome.result
    if r.simulated:  # nothing exists at that reference: say so before anyone pulls it
        lines = [f"{r.status.value}: {r.image or '-'} (simulated digest {r.digest}, nothing pushed)"]
    else:
        lines = [f"{r.status.value}: {r.image or '-'}" + (f"@{r.digest}" if r.digest else "")]
    details = [f"builder {r.builder.value}" if r.builder else ""]
    if r.approval:
        details.append(r.approval.decision.value + (f" by {r.approval.approver}" if r.approval.approver else ""))
    if r.push_skipped_reason:
        details.append(f"push skipped: {r.push_skipped_reason.value}")
    if r.classification:
        details.append(f"class {r.classification.class_.value}")
    lines.append("  " + ", ".join(d for d in details if d))
    if r.message:
        lines.append(f"  {r.message}")
    if outcome.registry and r.status is Status.SUCCEEDED and r.push_skipped_reason is None and r.image:
        port = outcome.registry.rsplit(":", 1)[1]
        lines.append(
            f"  pull it later: imagegate registry serve --port {port}, then "
            f"skopeo inspect --tls-verify=false docker://{r.image}"
        )
    lines.append(f"  run files: {outcome.run_dir}")
    return "\n".join(lines)


def _context_name(context: Path) -> str:
    return context.resolve().name or "context"


def _repository(context: Path) -> str:
    """A registry path component from the context's directory name (lowercase [a-z0-9-])."""
    return re.sub(r"[^a-z0-9]+", "-", _context_name(context).lower()).strip("-") or "image"


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Runner:
    """One local run: the evaluator's leaf callback, and the directories that stand for the pods' mounts."""

    def __init__(
        self,
        doc: Any,
        params: dict[str, str],
        *,
        context: Path,
        approval: ApprovalInput | None,
        prompt: Prompt | None,
        display: Display,
        work_dir: Path,
        policy_dir: Path | None,
        loopback: str | None,
    ) -> None:
        self.evaluator = Evaluator(doc, params)  # checks the parameters against the template
        self.spec = doc.spec
        self.name = f"{(doc.name or 'workflow').rstrip('-')}-local-{_suffix()}"
        self.dir = (work_dir / self.name).resolve()
        self.context = context
        self.approval = approval
        self.prompt = prompt
        self.display = display
        self.nodes: dict[str, NodeStatus] = {}
        self.started = _now()
        self.submitter = getpass.getuser()
        self.labels: dict[str, str] = {names.ARGO_CREATOR_LABEL: _label_value(self.submitter)}
        self.approver: str | None = None  # who resumed the gate; None until someone does
        self.dir.mkdir(parents=True)
        self.policy_dir = self._write_policy(policy_dir, loopback)
        self.storage = self.dir / "buildah"
        # This run's identity replaces plan's placeholders (workflow.name is `<template>-plan` there).
        self.evaluator.globals.update(
            {
                "workflow.name": self.name,
                "workflow.uid": str(uuid.uuid4()),
                "workflow.creationTimestamp": _rfc3339(self.started),
            }
        )
        self._publish_labels()

    @property
    def params(self) -> dict[str, str]:
        """The workflow parameters with defaults applied."""
        return self.evaluator.parameters

    def run(self, embedded: RegistryInfo | None) -> LocalRun:
        """Evaluate the workflow, running each leaf here; the run with its result."""
        self.display.begin(self.name, self.dir)
        if embedded:
            self.display.note(f"destination: the embedded registry {embedded.url} (data in {embedded.data_dir})")
        self._prepare_workspace()
        plan = self.evaluator.run(self._execute)
        self._show_decided()
        if not plan.result:
            failed = next((n for n in self.nodes.values() if n.state in (State.FAILED, State.ERROR)), None)
            where = f": {failed.name} ended {failed.state.value} ({failed.message})" if failed else ""
            raise LocalRunError(f"the run ended without a result{where}", hint=f"the run's files are in {self.dir}")
        try:
            result = self._with_approval(BuildResult.model_validate_json(plan.result))
        except ValidationError as exc:
            raise LocalRunError(f"the workflow's result is not a BuildResult: {exc.errors()[0]['msg']}") from None
        return LocalRun(
            workflow=self.name, phase=plan.phase.value, parameters=self.params, run_dir=self.dir,
            registry=embedded.host if embedded else None, nodes=list(self.nodes.values()), result=result,
        )  # fmt: skip

    def _with_approval(self, result: BuildResult) -> BuildResult:
        """The result with the gate's record completed, as the client completes it from the cluster.

        Decision and reason come from the gate's outputs, the approver from who resumed it (Argo's
        actor label; nobody on a timeout), the time from when it ended (workflows/client.py).
        """
        gate = self.evaluator.doc.annotations.get(names.GATE_ANNOTATION)
        node = next((n for n in self.evaluator.nodes if n.name == gate and n.kind == "suspend"), None)
        if node is None or node.phase.value != State.SUCCEEDED.value:
            return result
        decision = node.outputs.get(names.DECISION)
        approval = Approval(
            decision=Decision.APPROVE if decision == Decision.APPROVE.value else Decision.REJECT,
            approver=self.approver,
            reason=node.outputs.get(names.REASON) or "",
            at=self.nodes[gate].finished_at,
        )
        return result.model_copy(update={"approval": approval})

    # -- the leaf callback ------------------------------------------------------------------

    def _execute(self, call: LeafCall) -> LeafOutcome:
        self._show_decided()
        node = self.nodes[call.name] = NodeStatus(
            name=call.name, template=call.template_name, state=State.RUNNING, exit_handler=call.exit_handler,
            started_at=_now(),
        )  # fmt: skip
        template = _fill_pod_tags(call.template, call.name)
        if call.kind == "suspend":
            outputs, message = self._suspend(node, template)
            phase = Phase.SUCCEEDED
        elif call.kind == "container":
            phase, outputs, message = self._container(node, template)
        else:
            raise LocalRunError(
                f"{call.name}: template {call.template_name} is a {call.kind} template, which run --local does not run",
                hint="run --local runs steps-image containers and approval suspends",
            )
        node.state, node.message, node.finished_at, node.outputs = State(phase.value), message, _now(), outputs
        self.display.update(node)
        return LeafOutcome(phase=phase, outputs=outputs, message=message)

    def _show_decided(self) -> None:
        """Show the nodes the evaluator decided without running them (Skipped, Omitted, Error)."""
        for n in self.evaluator.nodes:
            if n.name in self.nodes or n.kind in ("dag", "steps"):
                continue
            self.nodes[n.name] = NodeStatus(
                name=n.name, template=n.template, state=State(n.phase.value), message=n.reason,
                exit_handler=n.exit_handler,
            )  # fmt: skip
            self.display.update(self.nodes[n.name])

    def _suspend(self, node: NodeStatus, template: dict[str, Any]) -> tuple[dict[str, str], str]:
        """The approval gate: the decision from the command line, the terminal, or the timeout default."""
        duration = (template.get("suspend") or {}).get("duration")
        try:
            timeout = parse_duration(str(duration)) if duration else None
        except ValueError as exc:
            raise RequestError(f"{node.name}: suspend.duration: {exc}", hint="e.g. -p approval-timeout=24h") from None
        node.state = State.SUSPENDED
        node.message = "waiting for approval" + (f" (rejects by default after {duration})" if duration else "")
        self.display.update(node)
        choice = self.approval
        if choice is None and self.prompt is not None:
            choice = self.prompt(node.name, dict(self.params), timeout)
            self.display.interrupted()
        declared = {p["name"] for p in (template.get("outputs") or {}).get("parameters") or []}
        if choice is None:  # a timeout: the evaluator applies the outputs' defaults (the input default, reject)
            return {}, "no decision (timed out, or the input ended): the default applies"
        if choice.approver:  # Argo labels the workflow with who resumed it (workflow/creator/creator.go)
            self.approver = choice.approver
            self.labels[names.ARGO_ACTOR_LABEL] = _label_value(choice.approver)
            self._publish_labels()
        given = {names.DECISION: choice.decision.value, names.REASON: choice.reason}
        message = f"{choice.decision.value} by {choice.approver or 'unknown'}" + (
            f": {choice.reason}" if choice.reason else ""
        )
        return {k: v for k, v in given.items() if k in declared}, message

    def _container(self, node: NodeStatus, template: dict[str, Any]) -> tuple[Phase, dict[str, str], str]:
        container = template.get("container") or {}
        argv = [str(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
        # `<python> -m steps.NAME`: the index of the interpreter, which is the image's and is replaced.
        at = next((i - 1 for i, a in enumerate(argv[1:-1], 1) if a == "-m" and _STEPS_MODULE.match(argv[i + 1])), None)
        if at is None:
            raise LocalRunError(
                f"{node.name} runs {container.get('image', '?')} ({' '.join(argv[:2]) or 'its entrypoint'}), "
                "which cannot run outside a cluster",
                hint="run --local runs steps-image containers (python -m steps.NAME); "
                "use -p mode=runner or -p mode=auto to build with buildah here",
            )
        paths = _PathMap(self, node.name, template)
        env = self._base_env()
        for item in container.get("env") or []:
            if "value" not in item:
                raise LocalRunError(
                    f"{node.name}: env {item.get('name')} uses valueFrom, which run --local cannot read"
                )
            env[item["name"]] = paths.map(str(item["value"]))
        node_dir = self.dir / "nodes" / node.name
        node_dir.mkdir(parents=True, exist_ok=True)
        node.log = node_dir / "log"
        self.display.update(node)
        # The command runs as declared (a shell wrapper included); only the image's python is this one.
        cmd = [sys.executable if i == at else paths.map(a) for i, a in enumerate(argv)]
        deadline = template.get("activeDeadlineSeconds")
        with node.log.open("wb") as log:
            log.write(("+ " + shlex.join(cmd) + "\n").encode())
            log.flush()
            try:
                code = subprocess.run(
                    cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=node_dir,
                    timeout=float(deadline) if deadline else None, check=False,
                ).returncode  # fmt: skip
                message = "" if code == 0 else f"Error (exit code {code})"
            except subprocess.TimeoutExpired:
                code, message = -1, f"Pod was active on the node longer than the specified deadline ({deadline}s)"
        node.exit_code = code
        phase = Phase.SUCCEEDED if code == 0 else Phase.FAILED
        outputs: dict[str, str] = {}
        for p in (template.get("outputs") or {}).get("parameters") or []:
            value_from = p.get("valueFrom") or {}
            if "path" not in value_from:
                continue
            try:
                outputs[p["name"]] = Path(paths.map(value_from["path"])).read_text().removesuffix("\n")
            except OSError:
                if "default" not in value_from:  # the executor fails the node on an output it cannot read
                    phase, message = Phase.ERROR, f"open {value_from['path']}: no such file or directory"
        return phase, outputs, message

    # -- machine side -----------------------------------------------------------------------

    def _publish_labels(self) -> None:
        meta = self.evaluator.doc.data.get("metadata") or {}
        labels = {**(meta.get("labels") or {}), **self.labels}
        for key, value in labels.items():
            self.evaluator.globals[f"workflow.labels.{key}"] = str(value)
        self.evaluator.globals["workflow.labels"] = json.dumps(labels, sort_keys=True)

    def _write_policy(self, policy_dir: Path | None, loopback: str | None) -> Path:
        """The policy ConfigMap as the validate step reads it, one file per key."""
        if policy_dir is not None:
            if not Path(policy_dir).is_dir():
                raise RequestError(
                    f"--policy {policy_dir}: not a directory", hint="give a directory with one file per key"
                )
            try:
                policy = load_policy(Path(policy_dir))
            except StepError as exc:
                raise RequestError(f"--policy {policy_dir}: {exc}", hint="keys are Policy's camelCase names") from None
        else:
            host = _reference_host(self.params.get("destination", ""))
            policy = Policy(allowed_registries=[host] if host else [], allow_self_approval=True)
        if loopback:  # the embedded registry is ours, on loopback, plain HTTP: allow it, without TLS, alone
            policy = policy.model_copy(
                update={
                    "allowed_registries": sorted({*policy.allowed_registries, loopback}),
                    "insecure_registries": sorted({*policy.insecure_registries, loopback}),
                }
            )
        out = self.dir / "configmaps" / Policy.CONFIGMAP_NAME
        out.mkdir(parents=True)
        for key, value in policy.to_configmap_data().items():
            (out / key).write_text(value)
        return out

    def _prepare_workspace(self) -> None:
        """Copy the context into the workspace volume, where the cluster's workspace would hold it."""
        for name, source in self.volumes().items():
            shared = "persistentVolumeClaim" in source or "volumeClaimTemplate" in source
            mounted = any(
                m.get("name") == name and m.get("mountPath") == WORKSPACE_DIR
                for t in self.evaluator.templates.values()
                for m in (t.get("container") or {}).get("volumeMounts") or []
            )
            if shared and mounted:
                shutil.copytree(
                    self.context, self.volume_dir(name, source, "") / _context_name(self.context), symlinks=True
                )
                return
        raise TemplateError(
            f"no shared volume is mounted at {WORKSPACE_DIR}", hint="the template needs a workspace claim"
        )

    def volumes(self) -> dict[str, dict[str, Any]]:
        """Every volume the workflow declares, by name (volumeClaimTemplates as a source of their own)."""
        found: dict[str, dict[str, Any]] = {v["name"]: v for v in self.spec.get("volumes") or []}
        for claim in self.spec.get("volumeClaimTemplates") or []:
            found[claim["metadata"]["name"]] = {"volumeClaimTemplate": claim}
        for t in self.evaluator.templates.values():
            for v in t.get("volumes") or []:
                found.setdefault(v["name"], v)
        return found

    def volume_dir(self, name: str, source: dict[str, Any], node: str) -> Path:
        """The directory on this machine that stands for volume `name` in node `node`."""
        if "persistentVolumeClaim" in source or "volumeClaimTemplate" in source:
            path = self.dir / "volumes" / name
        elif "configMap" in source:
            cm = source["configMap"].get("name", name)
            path = self.policy_dir if cm == Policy.CONFIGMAP_NAME else self.dir / "configmaps" / cm
        elif "secret" in source:
            path = self._secret_dir(source["secret"])
        elif "emptyDir" in source:
            path = self.dir / "nodes" / node / "volumes" / name
        else:
            raise LocalRunError(
                f"volume {name}: run --local cannot provide a {', '.join(k for k in source if k != 'name')}"
            )
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _secret_dir(self, secret: dict[str, Any]) -> Path:
        """A Secret volume: the user's own registry credentials, if any, under every key the template reads."""
        path = self.dir / "secrets" / str(secret.get("secretName", "secret"))
        if path.is_dir():
            return path
        path.mkdir(parents=True, mode=0o700)
        keys = [i.get("path") or i["key"] for i in secret.get("items") or []] or [".dockerconfigjson", "config.json"]
        auth = _user_auth_file()
        content = auth.read_text() if auth else json.dumps({"auths": {}})
        for key in keys:
            target = path / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(0o600)
        return path

    def _base_env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ}
        env["XDG_RUNTIME_DIR"] = str(self._runtime_dir())
        if any(k in os.environ for k in _STORAGE_ENV):  # configured otherwise: the user's own store
            env.update({k: os.environ[k] for k in _STORAGE_ENV if k in os.environ})
        else:  # a private store per run, so runs (and other people's tests) never share one
            env.update(
                STORAGE_DRIVER="vfs",
                IMAGEGATE_STORAGE_ROOT=str(self.storage / "root"),
                IMAGEGATE_STORAGE_RUNROOT=str(self.storage / "run"),
            )
        return env

    def _runtime_dir(self) -> Path:
        """XDG_RUNTIME_DIR for the steps: the user's own, else one under the run dir.

        Rootless skopeo and buildah keep auth and locks there and fail on someone else's
        (shared/research/machine.md, row 4j).
        """
        current = os.environ.get("XDG_RUNTIME_DIR")
        if current and os.path.isdir(current) and os.stat(current).st_uid == os.getuid():
            return Path(current)
        path = self.dir / "runtime"
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    def cleanup(self) -> None:
        """Remove the private buildah store; the workspace keeps the archive and the build log."""
        if not self.storage.exists() or any(k in os.environ for k in _STORAGE_ENV):
            return
        shutil.rmtree(self.storage, ignore_errors=True)
        if self.storage.exists():  # rootless layers belong to subordinate uids: remove them inside the namespace
            subprocess.run(
                ["buildah", "unshare", "rm", "-rf", str(self.storage)],
                stdin=subprocess.DEVNULL, capture_output=True, check=False, env=self._base_env(),
            )  # fmt: skip


class _PathMap:
    """A node's pod paths -> directories on this machine (the longest matching path wins)."""

    def __init__(self, runner: _Runner, node: str, template: dict[str, Any]) -> None:
        volumes = runner.volumes()
        self.prefixes: list[tuple[str, Path]] = []
        for mount in (template.get("container") or {}).get("volumeMounts") or []:
            name = mount["name"]
            if name not in volumes:
                raise TemplateError(f"{node}: volume {name} is mounted but not declared", hint="declare it in volumes")
            local = runner.volume_dir(name, volumes[name], node)
            if mount.get("subPath"):
                local = local / mount["subPath"]
                local.mkdir(parents=True, exist_ok=True)
            self.prefixes.append((mount["mountPath"].rstrip("/"), local))
        # The pod's own filesystem, where steps write their output files, lives in the node's root.
        root = runner.dir / "nodes" / node / "root"
        own = {OUTPUT_DIR} | {
            os.path.dirname(p["valueFrom"]["path"])
            for p in (template.get("outputs") or {}).get("parameters") or []
            if (p.get("valueFrom") or {}).get("path")
        }
        for prefix in sorted(own):
            if not any(prefix == m or prefix.startswith(m + "/") for m, _ in self.prefixes):
                local = root / prefix.lstrip("/")
                local.mkdir(parents=True, exist_ok=True)
                self.prefixes.append((prefix.rstrip("/"), local))
        self.prefixes.sort(key=lambda item: len(item[0]), reverse=True)

    def map(self, value: str) -> str:
        """`value` with a leading pod path mapped; other text as is.

        Rewritten: an argument that is a pod path (`/workspace/x`), one after `--flag=`, and one
        after a containers transport (`oci-archive:/workspace/image.oci.tar`). A path inside a
        JSON argument (the request's context) is the pod's view and stays.
        """
        head, rest = "", value
        if value.startswith("--") and "=" in value:
            flag, _, rest = value.partition("=")
            head = flag + "="
        elif _TRANSPORT.match(value):
            transport, _, rest = value.partition(":")
            head = transport + ":"
        for prefix, local in self.prefixes:
            if rest == prefix or rest.startswith(prefix + "/"):
                return f"{head}{local}{rest[len(prefix) :]}"
        return value


def _fill_pod_tags(value: Any, name: str) -> Any:
    """Fill `{{pod.name}}` and `{{node.name}}`, which the controller sets when it creates the pod."""
    if isinstance(value, str):
        return _POD_TAGS.sub(name, value)
    if isinstance(value, list):
        return [_fill_pod_tags(v, name) for v in value]
    if isinstance(value, dict):
        return {k: _fill_pod_tags(v, name) for k, v in value.items()}
    return value


def _suffix() -> str:
    # Argo's generateName appends five random characters from this alphabet (k8s.io/apiserver names).
    return "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


def _label_value(text: str) -> str:
    """A user name as Argo writes it into a label (workflow/creator/creator.go dnsFriendly): <= 63 chars."""
    return re.sub(r"[^-A-Za-z0-9_.]", "-", text.replace("@", ".at."))[:63].strip("-_.")


def _reference_host(ref: str) -> str:
    try:
        return str(parse_reference(ref)["host"])
    except ValueError:
        return ""


def _user_auth_file() -> Path | None:
    """The registry credentials skopeo would use for this user, if there are any."""
    home = Path.home()
    candidates = [
        os.environ.get("REGISTRY_AUTH_FILE", ""),
        os.path.join(os.environ["XDG_RUNTIME_DIR"], "containers", "auth.json")
        if os.environ.get("XDG_RUNTIME_DIR")
        else "",
        str(home / ".config" / "containers" / "auth.json"),
        str(home / ".docker" / "config.json"),
    ]
    return next((Path(c) for c in candidates if c and os.path.isfile(c)), None)
