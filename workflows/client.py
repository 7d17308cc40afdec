"""The Python client for image-build runs: submit, approve or reject, wait, read the result.

CI and the workspace platform use this (and `imagegate submit | approve | reject | wait |
status | approvals`, which only prints what it returns). It talks to the Kubernetes API
with the `kubernetes` package, imported lazily so `imagegate --help` stays fast.

- `submit` creates a Workflow with `workflowTemplateRef: image-build` and the request's
  parameters, validated by the contract first. Its name derives from the request id, so a
  second submit of the same request id returns the existing run (the API's AlreadyExists
  makes that atomic, no list-then-create race).
- `approve` / `reject` set the `approve` node's outputs and resume it, as the Argo UI does
  (`set` then `resume`, https://argo-workflows.readthedocs.io/en/latest/intermediate-inputs/).
  With an Argo Server configured (`ARGO_SERVER`, `ARGO_TOKEN`) they call its API, which
  labels the actor from the token. Otherwise they update the Workflow through the
  Kubernetes API as the argo CLI does in kubernetes mode (argoproj/argo-workflows
  workflow/util/util.go updateSuspendedNode): only an active suspend node, only outputs
  still `supplied`, a global copy for outputs with a `globalName`, phase Succeeded,
  `Resumed by:` message, actor labels; retried on a write conflict.
- Four eyes: an approval by the submitter (Argo's `creator` labels or imagegate's
  submitter label) is refused unless the namespace's policy has `allowSelfApproval`.
- `wait` follows one watch, resumed from the last resourceVersion when it disconnects.

`ACCESS` lists every Kubernetes verb the client uses; the RBAC Roles must grant them.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import gzip
import hashlib
import json
import math
import os
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from steps.contract import Approval, BuildRequest, BuildResult, Decision, Mode, Policy, describe_errors
from workflows import names
from workflows.errors import (
    ClientError,
    ConfigError,
    ForbiddenError,
    NotFoundError,
    NotWaitingError,
    RejectedError,
    RequestError,
    ResultParseError,
    WaitTimeoutError,
)

__all__ = [
    "ACCESS",
    "Client",
    "ClusterConfig",
    "MODE_ENV",
    "PendingApproval",
    "RESULT_PARAMETER",
    "Run",
    "TaskState",
    "default_mode",
    "dns_friendly",
]

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "workflows"
# The workflow's global output parameter holding the BuildResult JSON (DESIGN.md, "The contract").
RESULT_PARAMETER = "result"
# The old tool's variable; it sets the default mode of `imagegate submit`.
MODE_ENV = "WORKSPACE_IMAGE_BUILD_MODE"

# Every API call the client makes, as RBAC rules: (apiGroup, resource, verbs).
# Approving needs get + update on workflows (both argo CLI kube mode and the Argo Server write
# the Workflow object). The policy read is optional: without it the defaults apply, which
# refuse self-approval. selfsubjectreviews is granted to every authenticated user by default.
ACCESS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (GROUP, "workflows", ("create", "get", "list", "watch", "update")),
    ("", "configmaps", ("get",)),
    ("authentication.k8s.io", "selfsubjectreviews", ("create",)),
)

_ARGO_LABEL = names.ARGO_LABEL_PREFIX
CREATOR_LABELS = names.CREATOR_LABELS
ACTOR_LABELS = names.ACTOR_LABELS
_ACTION_LABEL = _ARGO_LABEL + "action"
_COMPLETED_LABEL = _ARGO_LABEL + "completed"
_DONE_PHASES = frozenset({"Succeeded", "Failed", "Error"})
# A label value: at most 63 characters, alphanumeric at both ends.
_LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
# How long one watch request lasts before it is renewed from its resourceVersion; bounded so a
# connection that died silently (a NAT timeout) costs minutes, not the whole wait (client-go uses 5-10 min).
_WATCH_SECONDS = 300
# Attempts at a read-modify-write of the Workflow before giving up on conflicts (argo retries likewise).
_CONFLICT_RETRIES = 5


def dns_friendly(value: str) -> str:
    """A label value as Argo writes one for a user (workflow/creator/creator.go dnsFriendly).

    Characters outside `[-_.a-zA-Z0-9]` become `-`, the last 63 are kept, and
    non-alphanumerics are trimmed from both ends.
    """
    value = re.sub(r"[^-_.a-zA-Z0-9]", "-", value)[-63:]
    return re.sub(r"[^a-zA-Z0-9]*$", "", re.sub(r"^[^a-zA-Z0-9]*", "", value))


def default_mode(policy: Policy) -> Mode:
    """The mode a request gets when it names none: `WORKSPACE_IMAGE_BUILD_MODE`, else the policy's."""
    raw = os.environ.get(MODE_ENV, "").strip()
    if not raw:
        return policy.default_mode
    try:
        return Mode(raw)
    except ValueError:
        raise RequestError(
            f"{MODE_ENV}={raw!r} is not a mode", hint=f"use one of {', '.join(m.value for m in Mode)}, or unset it"
        ) from None


class ClusterConfig(BaseModel):
    """Where the cluster is and how to reach it; `from_env()` reads what kubectl and argo read."""

    model_config = ConfigDict(extra="forbid")

    kubeconfig: str | None = Field(None, description="Kubeconfig path(s); default $KUBECONFIG, then ~/.kube/config.")
    context: str | None = Field(None, description="Kubeconfig context; default the current one.")
    namespace: str | None = Field(None, description="Default namespace; default the context's, then imagegate's.")
    argo_server: str | None = Field(None, description="Argo Server base URL; approvals go through it when set.")
    argo_token: str | None = Field(None, description="Bearer token for the Argo Server.")
    insecure_skip_verify: bool = Field(False, description="Do not verify the Argo Server's TLS certificate.")
    ui_url: str | None = Field(None, description="Argo UI base URL for links; default the Argo Server's.")

    @classmethod
    def from_env(cls, **overrides: Any) -> ClusterConfig:
        """Read ARGO_SERVER, ARGO_SECURE, ARGO_TOKEN, ARGO_INSECURE_SKIP_VERIFY, ARGO_UI_URL; overrides win."""
        server = os.environ.get("ARGO_SERVER") or None
        if server and "://" not in server:
            # The argo CLI takes host:port and ARGO_SECURE (default true) for the scheme.
            secure = os.environ.get("ARGO_SECURE", "true").lower() != "false"
            server = ("https://" if secure else "http://") + server
        values: dict[str, Any] = {
            "kubeconfig": os.environ.get("KUBECONFIG") or None,
            "argo_server": server,
            "argo_token": os.environ.get("ARGO_TOKEN") or None,
            "insecure_skip_verify": os.environ.get("ARGO_INSECURE_SKIP_VERIFY", "").lower() == "true",
            "ui_url": os.environ.get("ARGO_UI_URL") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class TaskState(BaseModel):
    """One node of a run, as the tree shows it."""

    name: str
    phase: str
    type: str = ""
    message: str = ""
    started_at: str | None = None


class Run(BaseModel):
    """A run as the cluster reports it: phase, tasks, the pending approval, the result once done."""

    name: str
    namespace: str
    phase: str = Field(description="The Workflow's phase: Pending, Running, Succeeded, Failed or Error.")
    request_id: str | None = None
    submitter: str | None = None
    waiting_for_approval: bool = False
    tasks: list[TaskState] = Field(default_factory=list)
    approval: Approval | None = None
    result: BuildResult | None = None
    ui_url: str | None = None
    message: str = ""

    def tree(self, wide: bool = False) -> str:
        """The run as `argo get` draws it: one line per task, the approval prompt, the UI link.

        Args:
            wide: also the request id, the submitter, the approval record and the run's message.
        """
        lines = [f"{self.name} ({self.namespace}): {self.phase}" + (f"  {self.ui_url}" if self.ui_url else "")]
        if wide:
            lines.append(f"request id: {self.request_id or '-'}  submitter: {self.submitter or '-'}")
            if self.approval is not None:
                at = self.approval.at.isoformat() if self.approval.at else "-"
                by = self.approval.approver or "nobody (timed out)"
                lines.append(f"approval: {self.approval.decision.value} by {by} at {at}: {self.approval.reason}")
            if self.message:
                lines.append(f"message: {self.message}")
        for i, task in enumerate(self.tasks):
            branch = "└─" if i == len(self.tasks) - 1 else "├─"
            note = f"  {task.message}" if task.message else ""
            if task.name == names.APPROVE and self.waiting_for_approval:
                note = f"  waiting for approval: imagegate approve {self.name} -n {self.namespace}"
            lines.append(f" {branch} {_MARKS.get(task.phase, '?')} {task.name:<16} {task.phase}{note}")
        if self.result is not None:
            lines.append(f"result: {self.result.status.value}" + (f" {self.result.image}" if self.result.image else ""))
        return "\n".join(lines)


_MARKS = {"Succeeded": "✔", "Failed": "✖", "Error": "⚠", "Running": "◷", "Pending": "○", "Skipped": "○", "Omitted": "○"}


class PendingApproval(BaseModel):
    """A run waiting at its approval gate."""

    name: str
    namespace: str
    submitter: str | None = None
    destination: str | None = None
    mode: str | None = None
    waiting_since: str | None = None
    ui_url: str | None = None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Client:
    """Submit, approve, wait for and read image-build runs.

    Args:
        config: where the cluster is; default `ClusterConfig.from_env()`.
        api_client: a ready `kubernetes.client.ApiClient` (else built from the kubeconfig).
    """

    def __init__(self, config: ClusterConfig | None = None, *, api_client: Any = None) -> None:
        self.config = config or ClusterConfig.from_env()
        self._api_client = api_client
        self._server = _ArgoServer(self.config) if self.config.argo_server else None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the HTTP connections."""
        if self._api_client is not None:
            self._api_client.close()

    # -- submit ------------------------------------------------------------------------------

    def workflow(
        self,
        request: BuildRequest,
        *,
        namespace: str | None = None,
        labels: dict[str, str] | None = None,
        request_id: str | None = None,
        submitter: str | None = None,
    ) -> dict[str, Any]:
        """The Workflow `submit` creates (what `submit --dry-run` prints); contacts nothing.

        Raises:
            RequestError: the request breaks the contract, or a label is reserved or invalid.
        """
        try:
            request = BuildRequest.model_validate(request.model_dump())
        except ValidationError as exc:
            raise RequestError("; ".join(describe_errors(exc)), hint="fix the parameters named above") from None
        request_id = request_id or hashlib.sha256(request.to_json().encode()).hexdigest()[:20]
        if not _LABEL_VALUE.match(request_id):
            raise RequestError(
                f"request id {request_id!r} is not a label value",
                hint="use at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric",
            )
        all_labels = dict(labels or {})
        reserved = sorted(set(all_labels) & {names.LABEL_REQUEST_ID, names.LABEL_SUBMITTER, *CREATOR_LABELS})
        if reserved:
            raise RequestError(f"label(s) {', '.join(reserved)} are set by imagegate or Argo", hint="drop them")
        all_labels[names.LABEL_REQUEST_ID] = request_id
        if submitter:
            all_labels[names.LABEL_SUBMITTER] = dns_friendly(submitter)
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Workflow",
            "metadata": {
                # Derived from the request id, so a repeated submit meets AlreadyExists.
                "name": f"{names.IMAGE_BUILD}-{hashlib.sha256(request_id.encode()).hexdigest()[:10]}",
                "namespace": namespace or self.namespace,
                "labels": all_labels,
            },
            "spec": {
                "workflowTemplateRef": {"name": names.IMAGE_BUILD},
                "arguments": {"parameters": [{"name": k, "value": v} for k, v in request.to_parameters().items()]},
            },
        }

    def submit(
        self,
        request: BuildRequest,
        namespace: str | None = None,
        labels: dict[str, str] | None = None,
        *,
        request_id: str | None = None,
        submitter: str | None = None,
    ) -> str:
        """Create the run for `request`; the same request id returns the existing run's name.

        Args:
            request: what to build; validated by the contract before anything is sent.
            namespace: where to run; default the config's.
            labels: extra Workflow labels.
            request_id: idempotency key (e.g. the CI job id); default derived from the request.
            submitter: who asks; default the caller's identity (`whoami`).

        Raises:
            RequestError: the request breaks the contract.
            ForbiddenError: RBAC refuses creating workflows.
            ClientError: the request id was used before for other parameters.
        """
        body = self.workflow(
            request, namespace=namespace, labels=labels, request_id=request_id, submitter=submitter or self.whoami()
        )
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            with _api_errors(f"workflow {name}"):
                self._custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
        except _Conflict:
            existing = self.get(name, ns)
            request_id = body["metadata"]["labels"][names.LABEL_REQUEST_ID]
            same_id = existing["metadata"].get("labels", {}).get(names.LABEL_REQUEST_ID) == request_id
            if not same_id or _arguments(existing) != _arguments(body):
                raise ClientError(
                    f"workflow {ns}/{name} exists for request id {request_id} with other parameters",
                    hint="a request id names one request: pass a new one for a different build",
                ) from None
        return name

    # -- read --------------------------------------------------------------------------------

    def get(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The Workflow object as the API returns it.

        Raises:
            NotFoundError: there is no such workflow.
            ForbiddenError: RBAC refuses reading it.
        """
        with _api_errors(f"workflow {name}"):
            return self._custom.get_namespaced_custom_object(GROUP, VERSION, namespace or self.namespace, PLURAL, name)

    def status(self, name: str, namespace: str | None = None) -> Run:
        """The run's phase, tasks, approval and (once done) result."""
        return self._run(self.get(name, namespace))

    def result(self, name: str, namespace: str | None = None) -> BuildResult:
        """The finished run's BuildResult, with the approval record from the cluster.

        Raises:
            ResultParseError: the run has no `result` output yet, or it is not a BuildResult.
        """
        return _result(self.get(name, namespace))

    def pending_approvals(self, namespace: str | None = None) -> list[PendingApproval]:
        """Every run of imagegate's templates in the namespace whose approval gate is waiting.

        Runs submitted with `argo submit --from workflowtemplate/...` count too: they are
        found by their template reference, not by imagegate's labels.
        """
        ns = namespace or self.namespace
        with _api_errors(f"workflows in {ns}"):
            listed = self._custom.list_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, label_selector=f"{_COMPLETED_LABEL}!=true"
            )
        pending = []
        for wf in listed.get("items", []):
            ref = ((wf.get("spec") or {}).get("workflowTemplateRef") or {}).get("name")
            if ref not in (names.IMAGE_BUILD, names.IMAGE_PUSH):
                continue
            node = _approve_node(_nodes(wf))
            if node is None or not _waiting(node):
                continue
            params = _arguments(wf)
            meta = wf["metadata"]
            pending.append(
                PendingApproval(
                    name=meta["name"],
                    namespace=ns,
                    submitter=_submitter(wf),
                    destination=params.get("destination"),
                    mode=params.get("mode"),
                    waiting_since=node.get("startedAt"),
                    ui_url=self._ui_url(ns, meta["name"]),
                )
            )
        return pending

    def policy(self, namespace: str | None = None) -> Policy:
        """The namespace's policy ConfigMap; the defaults when it is absent or unreadable.

        The defaults are the safe side here: they refuse self-approval.
        """
        ns = namespace or self.namespace
        try:
            with _api_errors(f"configmap {Policy.CONFIGMAP_NAME}"):
                cm = self._core.read_namespaced_config_map(Policy.CONFIGMAP_NAME, ns)
        except (NotFoundError, ForbiddenError):
            return Policy()
        try:
            return Policy.from_configmap_data(cm.data or {})
        except (ValueError, ValidationError) as exc:
            raise ConfigError(f"configmap {ns}/{Policy.CONFIGMAP_NAME} is not a valid policy: {exc}") from None

    def whoami(self) -> str:
        """The caller's user name as the API server authenticates it (a SelfSubjectReview).

        Falls back to the kubeconfig context's user entry where the review is unavailable
        (clusters before 1.28).
        """
        if self._server is not None:
            info = self._server.userinfo()
            return info.get("name") or info.get("email") or info.get("subject") or ""
        from kubernetes import client as k8s

        try:
            with _api_errors("selfsubjectreview"):
                review = k8s.AuthenticationV1Api(self._kube).create_self_subject_review(
                    k8s.V1SelfSubjectReview(metadata=k8s.V1ObjectMeta())
                )
            return review.status.user_info.username
        except (NotFoundError, ForbiddenError):
            return (self._context() or {}).get("context", {}).get("user", "")

    # -- approve / reject ----------------------------------------------------------------------

    def approve(
        self, name: str, approver: str | None = None, reason: str = "", namespace: str | None = None
    ) -> Approval:
        """Resume the run's approval gate with `approve`; returns the approval record.

        Through the Argo Server, Argo labels the token's user as the actor, and the result's
        approval block reports that user; `approver` (default: the token's user) is checked.

        Raises:
            NotWaitingError: the gate is not waiting (not reached yet, or already decided).
            RejectedError: the approver submitted the run and the policy forbids self-approval.
            ForbiddenError: RBAC refuses updating the workflow.
        """
        return self._decide(name, Decision.APPROVE, approver, reason, namespace)

    def reject(
        self, name: str, approver: str | None = None, reason: str = "", namespace: str | None = None
    ) -> Approval:
        """Resume the run's approval gate with `reject`: nothing is built or pushed."""
        return self._decide(name, Decision.REJECT, approver, reason, namespace)

    def _decide(
        self, name: str, decision: Decision, approver: str | None, reason: str, namespace: str | None
    ) -> Approval:
        ns = namespace or self.namespace
        caller = self.whoami()
        approver = approver or caller
        if not approver:
            raise ClientError("cannot tell who is approving", hint="pass the approver's name (--approver)")
        outputs = {names.DECISION: decision.value, names.REASON: reason}
        for _ in range(_CONFLICT_RETRIES):
            wf = self._server.get(ns, name) if self._server else self.get(name, ns)
            node = _approve_node(_nodes(wf))
            if node is None or not _waiting(node):
                state = "has not reached its approval gate" if node is None else f"gate is {node.get('phase')}"
                raise NotWaitingError(f"workflow {ns}/{name} {state}", hint=f"see `imagegate status {name} -n {ns}`")
            if decision is Decision.APPROVE:
                # Both who is named and who calls: a submitter cannot approve by naming someone else.
                self._check_four_eyes(wf, {approver, caller} - {""}, ns)
            if self._server is not None:
                # What the UI does: set the outputs on the node, then resume that node.
                selector = f"id={node['id']}"
                self._server.put(ns, name, "set", nodeFieldSelector=selector, outputParameters=json.dumps(outputs))
                self._server.put(ns, name, "resume", nodeFieldSelector=selector)
                return Approval(decision=decision, approver=approver, reason=reason, at=datetime.now(UTC))
            # One update does both the set and the resume, so no reader sees outputs on a waiting node.
            _resume_node(wf, node["id"], outputs, approver)
            try:
                with _api_errors(f"workflow {name}"):
                    self._custom.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, wf)
            except _Conflict:
                continue
            return Approval(decision=decision, approver=approver, reason=reason, at=datetime.now(UTC))
        raise ClientError(f"workflow {ns}/{name} kept changing while resuming it", hint="try again")

    def _check_four_eyes(self, wf: dict[str, Any], approvers: set[str], namespace: str) -> None:
        labels = wf["metadata"].get("labels", {})
        submitters = {labels.get(k, "").casefold() for k in (*CREATOR_LABELS, names.LABEL_SUBMITTER)} - {""}
        for approver in sorted(approvers):
            # As label values: the creator labels hold dns_friendly(user), creator-email has '@' as '.at.'.
            candidates = {dns_friendly(approver).casefold(), dns_friendly(approver.replace("@", ".at.", 1)).casefold()}
            if submitters & candidates and not self.policy(namespace).allow_self_approval:
                raise RejectedError(
                    f"{approver} submitted {wf['metadata']['name']} and cannot approve it (four eyes)",
                    hint=f"ask another approver, or set allowSelfApproval in configmap {Policy.CONFIGMAP_NAME}",
                )

    # -- wait ----------------------------------------------------------------------------------

    def wait(
        self,
        name: str,
        timeout: float = 24 * 3600,
        namespace: str | None = None,
        on_progress: Callable[[Run], None] | None = None,
    ) -> BuildResult:
        """Follow the run until it finishes; returns its BuildResult.

        One watch on the Workflow; when the server closes it or the connection drops, it
        resumes from the last resourceVersion seen, and relists only when that expired (410).

        Args:
            name: the run.
            timeout: seconds to wait in total.
            namespace: default the config's.
            on_progress: called with the run at the start and on every change.

        Raises:
            WaitTimeoutError: the run did not finish within `timeout`.
            NotFoundError: the run does not exist or was deleted.
            ResultParseError: it finished without a valid `result`.
        """
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        ns = namespace or self.namespace
        deadline = time.monotonic() + timeout
        wf = self.get(name, ns)
        rv = wf["metadata"]["resourceVersion"]
        if on_progress is not None:
            on_progress(self._run(wf))
        while not _done(wf):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(f"workflow {ns}/{name} did not finish in {timeout:g}s", hint="wait again")
            stream = watch.Watch().stream(
                self._custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                ns,
                PLURAL,
                field_selector=f"metadata.name={name}",
                resource_version=rv,
                allow_watch_bookmarks=True,
                timeout_seconds=max(1, math.ceil(min(remaining, _WATCH_SECONDS))),
                _request_timeout=min(remaining, _WATCH_SECONDS) + 30,
            )
            try:
                with contextlib.closing(stream):
                    for event in stream:
                        if not event:
                            continue
                        obj = event["raw_object"]
                        rv = obj["metadata"]["resourceVersion"]
                        if event["type"] == "DELETED":
                            raise NotFoundError(f"workflow {ns}/{name} was deleted while waiting")
                        if event["type"] == "BOOKMARK":
                            continue
                        wf = obj
                        if on_progress is not None:
                            on_progress(self._run(wf))
                        if _done(wf):
                            break
            except ApiException as exc:
                if exc.status != 410:
                    with _api_errors(f"workflow {name}"):
                        raise
                # Our resourceVersion expired: relist, then watch from the list's version.
                with _api_errors(f"workflow {name}"):
                    listed = self._custom.list_namespaced_custom_object(
                        GROUP, VERSION, ns, PLURAL, field_selector=f"metadata.name={name}"
                    )
                if not listed.get("items"):
                    raise NotFoundError(f"workflow {ns}/{name} was deleted while waiting") from None
                wf, rv = listed["items"][0], listed["metadata"]["resourceVersion"]
            except HTTPError:
                pass  # the connection dropped: watch again from the last resourceVersion seen
        return _result(wf)

    # -- plumbing ------------------------------------------------------------------------------

    @functools.cached_property
    def namespace(self) -> str:
        """The default namespace: the config's, the kubeconfig context's, else imagegate's."""
        if self.config.namespace:
            return self.config.namespace
        from workflows import rbac

        context = (self._context() or {}).get("context", {}).get("namespace")
        if context is None and _in_cluster(self.config) and os.path.isfile(_POD_NAMESPACE):
            with open(_POD_NAMESPACE) as f:
                return f.read().strip()
        return context or rbac.NAMESPACE

    def _context(self) -> dict[str, Any] | None:
        from kubernetes import config
        from kubernetes.config.config_exception import ConfigException

        try:
            contexts, active = config.list_kube_config_contexts(self.config.kubeconfig)
        except (ConfigException, OSError):
            return None
        wanted = self.config.context
        return next((c for c in contexts if c["name"] == wanted), None) if wanted else active

    @property
    def _kube(self) -> Any:
        if self._api_client is None:
            from kubernetes import config
            from kubernetes.config.config_exception import ConfigException

            try:
                self._api_client = config.new_client_from_config(self.config.kubeconfig, self.config.context)
            except (ConfigException, OSError) as exc:
                if not _in_cluster(self.config):
                    raise ConfigError(
                        f"no usable kubeconfig: {exc}", hint="set KUBECONFIG or pass --context naming a cluster"
                    ) from None
                from kubernetes import client as k8s

                # A pod (the workspace platform): its ServiceAccount token, as kubectl does in-cluster.
                in_cluster = k8s.Configuration()
                config.load_incluster_config(client_configuration=in_cluster)
                self._api_client = k8s.ApiClient(in_cluster)
        return self._api_client

    @property
    def _custom(self) -> Any:
        from kubernetes import client as k8s

        return k8s.CustomObjectsApi(self._kube)

    @property
    def _core(self) -> Any:
        from kubernetes import client as k8s

        return k8s.CoreV1Api(self._kube)

    def _ui_url(self, namespace: str, name: str) -> str | None:
        base = self.config.ui_url or self.config.argo_server
        return f"{base.rstrip('/')}/workflows/{namespace}/{name}" if base else None

    def _run(self, wf: dict[str, Any]) -> Run:
        meta, status = wf["metadata"], wf.get("status") or {}
        nodes = _nodes(wf)
        gate = _approve_node(nodes)
        tasks = [
            TaskState(
                name=names.REPORT if n["name"].endswith(".onExit") else n.get("displayName", n["name"]),
                phase=n.get("phase", "Pending"),
                type=n.get("type", ""),
                message=n.get("message", ""),
                started_at=n.get("startedAt"),
            )
            for n in sorted(nodes.values(), key=lambda n: (n.get("startedAt") or "", _pipeline_index(n)))
            if n.get("type") not in ("DAG", "Steps", "StepGroup", "TaskGroup") or n["name"].endswith(".onExit")
        ]
        result = None
        if _done(wf):
            with contextlib.suppress(ResultParseError):
                result = _result(wf)
        return Run(
            name=meta["name"],
            namespace=meta.get("namespace", self.namespace),
            phase=status.get("phase") or "Pending",
            request_id=meta.get("labels", {}).get(names.LABEL_REQUEST_ID),
            submitter=_submitter(wf),
            waiting_for_approval=gate is not None and _waiting(gate),
            tasks=tasks,
            approval=_approval(wf, nodes),
            result=result,
            ui_url=self._ui_url(meta.get("namespace", self.namespace), meta["name"]),
            message=status.get("message", ""),
        )


_POD_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _in_cluster(config: ClusterConfig) -> bool:
    """Running in a pod and not pointed at a kubeconfig: use the pod's ServiceAccount."""
    return not (config.kubeconfig or config.context) and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


class _Conflict(Exception):
    """The API answered 409: AlreadyExists on create, a stale resourceVersion on update."""


@contextlib.contextmanager
def _api_errors(what: str) -> Iterator[None]:
    """Turn the kubernetes package's exceptions into imagegate's typed errors."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        try:
            message = json.loads(exc.body or "{}").get("message") or exc.reason
        except (ValueError, AttributeError):
            message = exc.reason
        if exc.status == 409:
            raise _Conflict(message) from None
        if exc.status == 404:
            raise NotFoundError(f"{what} not found: {message}", hint="check the name and -n/--namespace") from None
        if exc.status in (401, 403):
            raise ForbiddenError(
                f"{what}: {message}", hint="ask for the imagegate approver or submitter Role in this namespace"
            ) from None
        raise ClientError(f"{what}: the API answered {exc.status}: {message}") from None
    except HTTPError as exc:
        raise ClientError(
            f"{what}: cannot reach the Kubernetes API: {exc}", hint="check KUBECONFIG and --context"
        ) from None


class _ArgoServer:
    """The few Argo Server endpoints approvals use (server/workflow/workflow_server.go)."""

    def __init__(self, config: ClusterConfig) -> None:
        self.base = (config.argo_server or "").rstrip("/")
        token = config.argo_token or ""
        self.token = token if token.lower().startswith("bearer ") or not token else f"Bearer {token}"
        self.ssl = ssl.create_default_context()
        if config.insecure_skip_verify:
            self.ssl.check_hostname = False
            self.ssl.verify_mode = ssl.CERT_NONE

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/workflows/{namespace}/{name}", f"workflow {name}")

    def put(self, namespace: str, name: str, action: str, **body: str) -> dict[str, Any]:
        body = {"name": name, "namespace": namespace, **body}
        return self._call("PUT", f"/api/v1/workflows/{namespace}/{name}/{action}", f"workflow {name}", body)

    def userinfo(self) -> dict[str, Any]:
        return self._call("GET", "/api/v1/userinfo", "userinfo")

    def _call(self, method: str, path: str, what: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", self.token)
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=30) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read() or b"{}").get("message", exc.reason)
            except ValueError:
                message = exc.reason
            if exc.code == 404:
                raise NotFoundError(f"{what} not found: {message}", hint="check the name and -n/--namespace") from None
            if exc.code in (401, 403):
                raise ForbiddenError(f"{what}: {message}", hint="check ARGO_TOKEN and your Role") from None
            raise ClientError(f"{what}: the Argo Server answered {exc.code}: {message}") from None
        except urllib.error.URLError as exc:
            raise ClientError(
                f"cannot reach the Argo Server at {self.base}: {exc.reason}", hint="check ARGO_SERVER"
            ) from None


# -- reading Workflow objects -------------------------------------------------------------------


def _nodes(wf: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """status.nodes, decompressing Argo's `compressedNodes` (gzip + base64 of the same map).

    Nodes offloaded to Argo's database are only there as the Argo Server returns them (hydrated).
    """
    status = wf.get("status") or {}
    if status.get("nodes"):
        return status["nodes"]
    if status.get("compressedNodes"):
        return json.loads(gzip.decompress(base64.b64decode(status["compressedNodes"])))
    if status.get("offloadNodeStatusVersion"):
        raise ClientError(
            f"workflow {wf['metadata']['name']} keeps its nodes in Argo's database",
            hint="configure the Argo Server (ARGO_SERVER, ARGO_TOKEN) to read and approve it",
        )
    return {}


def _approve_node(nodes: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    gates = [n for n in nodes.values() if n.get("displayName") == names.APPROVE and n.get("type") == "Suspend"]
    return max(gates, key=lambda n: n.get("startedAt") or "", default=None)


# Nodes starting in the same second (Argo's timestamps) are listed in pipeline order.
_PIPELINE = (
    names.VALIDATE,
    names.APPROVE,
    names.PROBE,
    *names.BUILD_TASKS,
    names.CLASSIFY,
    names.SYNTHETIC,
    names.PUSH,
)


def _pipeline_index(node: dict[str, Any]) -> int:
    name = node.get("displayName", "")
    return _PIPELINE.index(name) if name in _PIPELINE else len(_PIPELINE)


def _waiting(node: dict[str, Any]) -> bool:
    # Argo's IsActiveSuspendNode: a Suspend node still Running.
    return node.get("type") == "Suspend" and node.get("phase") == "Running"


def _done(wf: dict[str, Any]) -> bool:
    return (wf.get("status") or {}).get("phase") in _DONE_PHASES


def _arguments(wf: dict[str, Any]) -> dict[str, str]:
    params = ((wf.get("spec") or {}).get("arguments") or {}).get("parameters") or []
    return {p["name"]: p.get("value", "") for p in params}


def _submitter(wf: dict[str, Any]) -> str | None:
    labels = wf["metadata"].get("labels", {})
    return labels.get(CREATOR_LABELS[2]) or labels.get(CREATOR_LABELS[0]) or labels.get(names.LABEL_SUBMITTER)


def _approval(wf: dict[str, Any], nodes: dict[str, dict[str, Any]]) -> Approval | None:
    """The gate's record: decision and reason from its outputs, approver from Argo's actor labels.

    A gate that timed out has its default decision and no `Resumed by` message: no approver.
    """
    node = _approve_node(nodes)
    if node is None or _waiting(node) or node.get("phase") != "Succeeded":
        return None
    outputs = {p["name"]: p.get("value") for p in (node.get("outputs") or {}).get("parameters", [])}
    try:
        decision = Decision(outputs.get(names.DECISION) or Decision.REJECT)
    except ValueError:
        decision = Decision.REJECT  # the gate's `when` only passes the exact value approve
    labels = wf["metadata"].get("labels", {})
    resumed = "Resumed by" in (node.get("message") or "") and labels.get(_ACTION_LABEL) == "Resume"
    approver = (labels.get(ACTOR_LABELS[2]) or labels.get(ACTOR_LABELS[0])) if resumed else None
    at = datetime.fromisoformat(node["finishedAt"].replace("Z", "+00:00")) if node.get("finishedAt") else None
    return Approval(decision=decision, approver=approver, reason=outputs.get(names.REASON) or "", at=at)


def _result(wf: dict[str, Any]) -> BuildResult:
    name = wf["metadata"]["name"]
    params = ((wf.get("status") or {}).get("outputs") or {}).get("parameters") or []
    raw = next((p.get("value") for p in params if p["name"] == RESULT_PARAMETER), None)
    if raw is None:
        phase = (wf.get("status") or {}).get("phase") or "Pending"
        raise ResultParseError(
            f"workflow {name} ({phase}) has no `{RESULT_PARAMETER}` output",
            hint=f"see `argo get {name}`; the report step writes it when the run ends",
        )
    try:
        result = BuildResult.model_validate_json(raw)
    except ValidationError as exc:
        raise ResultParseError(
            f"workflow {name}: `{RESULT_PARAMETER}` is not a BuildResult: {'; '.join(describe_errors(exc))}",
            hint=f"see `argo logs {name}`: the report step wrote it",
        ) from None
    approval = _approval(wf, _nodes(wf))
    if approval is None:
        return result
    if approval.approver is None and result.approval is not None:
        approval = approval.model_copy(update={"approver": result.approval.approver})
    return result.model_copy(update={"approval": approval})


def _resume_node(wf: dict[str, Any], node_id: str, outputs: dict[str, str], approver: str) -> None:
    """In place: set the gate's supplied outputs and mark it Succeeded, as `argo node set` + `argo resume` do."""
    status = wf["status"]
    nodes = _nodes(wf)
    node = nodes[node_id]
    params = {p["name"]: p for p in (node.get("outputs") or {}).get("parameters", [])}
    for key, value in outputs.items():
        param = params.get(key)
        if param is None or "supplied" not in (param.get("valueFrom") or {}):
            raise ClientError(
                f"the approve node does not take output {key!r} (or it was already set)",
                hint="the installed image-build template is not imagegate's; re-apply manifests/",
            )
        param["value"] = value
        del param["valueFrom"]
        if param.get("globalName"):
            _set_global(status, param["globalName"], value)
    node["phase"] = "Succeeded"
    node["finishedAt"] = _now()
    resumed_by = f"Resumed by: map[User:{approver}]"
    node["message"] = f"{node['message']}; {resumed_by}" if node.get("message") else resumed_by
    if status.get("compressedNodes"):
        status["compressedNodes"] = base64.b64encode(gzip.compress(json.dumps(nodes).encode())).decode()
    labels = wf["metadata"].setdefault("labels", {})
    for key in ACTOR_LABELS[1:]:
        labels.pop(key, None)  # Argo drops the claims it does not have
    labels[ACTOR_LABELS[0]] = dns_friendly(approver)
    labels[_ACTION_LABEL] = "Resume"


def _set_global(status: dict[str, Any], name: str, value: str) -> None:
    params = status.setdefault("outputs", {}).setdefault("parameters", [])
    for param in params:
        if param["name"] == name:
            param["value"] = value
            return
    params.append({"name": name, "value": value})
