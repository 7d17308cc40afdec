"""FAKES of the Kubernetes API and of the Argo Server, served over real HTTP on 127.0.0.1.

Neither is the real thing; they answer exactly the calls imagegate's client makes, so the
client's real HTTP, kubeconfig and watch code runs against them:

- Kubernetes API (`FakeCluster`): Workflows (create, get, list with label/field selectors,
  update with resourceVersion conflicts, chunked watch from a resourceVersion with
  bookmarks-free events and 410 after `compact()`), the policy ConfigMap, SelfSubjectReview,
  bearer-token users with per-verb RBAC answering 403 Status objects as the API server does.
- Argo Server: GET workflow, PUT set and resume (updateSuspendedNode's rules: active suspend
  node, supplied outputs; the actor labelled from the token), GET userinfo.
- `FakeController` stands in for Argo's workflow controller: the test moves a run along.

Every Workflow stored or served, and every set/resume body, is checked against the official
schema in ../shared/argo/api/jsonschema/schema.json, so the shapes are Argo's, not invented.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import gzip
import json
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from workflows import schemas

ALL_VERBS = frozenset({"create", "get", "list", "watch", "update", "patch", "delete"})
DISCONNECT = object()  # a watch script step: drop the connection mid-stream


def schema_errors(obj: Any, definition: str = "Workflow") -> list[str]:
    """Where `obj` breaks the official Argo schema (empty when it conforms).

    A Workflow is checked as render's tests check manifests (JSON schema and the full CRD,
    strict); other definitions, such as the Argo Server's request bodies, against the JSON schema.
    """
    if definition == "Workflow":
        return [str(f) for f in schemas.validate_object(obj)]
    validator = schemas._argo_validator(schemas.shared_dir().resolve(), definition)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


@contextlib.contextmanager
def started(tmp_path: Path, namespace: str = "imagegate") -> Iterator[FakeCluster]:
    """A running fake with users alice and bob (all verbs) and viewer (read only), and a kubeconfig
    at `tmp_path/kubeconfig` with one context per user."""
    fake = FakeCluster()
    fake.add_user("alice")
    fake.add_user("bob")
    fake.add_user("viewer", {("workflows", "get"), ("workflows", "list"), ("workflows", "watch")})
    fake.kubeconfig(tmp_path / "kubeconfig", namespace)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class User:
    """A bearer token's identity and what RBAC lets it do: {(resource, verb)}; None is everything."""

    name: str
    allowed: frozenset[tuple[str, str]] | None = None

    def may(self, resource: str, verb: str) -> bool:
        return self.allowed is None or (resource, verb) in self.allowed


@dataclass
class Call:
    """One request the fake answered, as RBAC sees it."""

    user: str
    group: str
    resource: str
    verb: str
    path: str
    query: dict[str, str] = field(default_factory=dict)


class FakeCluster:
    """A fake Kubernetes API server plus a fake Argo Server on one loopback port."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.workflows: dict[tuple[str, str], dict[str, Any]] = {}
        self.configmaps: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.rv = 100
        self.oldest_rv = 0
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []  # (rv, namespace, type, object)
        self.watch_script: list[Any] = []
        # When true, the fake controller runs each Workflow by itself: created -> waiting at the
        # gate; resumed -> rejected, or synthetic when approved (what e2e needs from "a cluster").
        self.autopilot = False
        self.cond = threading.Condition()
        self.stopping = False
        self.controller = FakeController(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    # -- lifecycle and setup ---------------------------------------------------------------

    def start(self) -> FakeCluster:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_user(self, name: str, allowed: set[tuple[str, str]] | None = None) -> str:
        """Register a user; returns their bearer token."""
        token = f"{name}-token"
        self.users[token] = User(name, frozenset(allowed) if allowed is not None else None)
        return token

    def kubeconfig(self, path: Path, namespace: str) -> Path:
        """A kubeconfig with one context per user (named after the user); the first is current."""
        users = list(self.users.items())
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": u.name, "user": {"token": t}} for t, u in users],
                    "contexts": [
                        {"name": u.name, "context": {"cluster": "fake", "user": u.name, "namespace": namespace}}
                        for _, u in users
                    ],
                    "current-context": users[0][1].name,
                }
            )
        )
        return path

    def set_policy(self, namespace: str, data: dict[str, str]) -> None:
        self.configmaps[(namespace, "imagegate-policy")] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "imagegate-policy", "namespace": namespace},
            "data": data,
        }

    def verbs(self) -> set[tuple[str, str, str]]:
        """Every (group, resource, verb) the fake's Kubernetes API answered."""
        return {(c.group, c.resource, c.verb) for c in self.calls if c.group != "argo-server"}

    # -- the store -------------------------------------------------------------------------

    def put(self, ns: str, obj: dict[str, Any], event: str) -> dict[str, Any]:
        """Store a Workflow at a new resourceVersion and tell the watchers."""
        errors = schema_errors(obj)
        assert not errors, f"the fake would store a Workflow outside the official schema: {errors}"
        with self.cond:
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.workflows[(ns, obj["metadata"]["name"])] = obj
            self.events.append((self.rv, ns, event, copy.deepcopy(obj)))
            self.cond.notify_all()
        return obj

    def update(self, ns: str, name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """What the controller does: modify the stored Workflow in place and publish it."""
        obj = copy.deepcopy(self.workflows[(ns, name)])
        change(obj)
        return self.put(ns, obj, "MODIFIED")

    def compact(self) -> None:
        """Forget the event history, as etcd compaction does: older resourceVersions answer 410."""
        with self.cond:
            self.rv += 1
            self.oldest_rv = self.rv


class FakeController:
    """Stands in for Argo's workflow controller: each method is one step of a run's life."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    def _node(self, wf: dict[str, Any], task: str, phase: str, type_: str = "Pod", **extra: Any) -> dict[str, Any]:
        name = wf["metadata"]["name"]
        node_name = f"{name}.{task}" if task != name else name
        node_id = node_name if task == name else f"{name}-{zlib.crc32(task.encode())}"
        node = {
            "id": node_id,
            "name": node_name,
            "displayName": task,
            "type": type_,
            "templateName": task,
            "phase": phase,
            "startedAt": _now(),
            **extra,
        }
        if phase not in ("Running", "Pending"):
            node["finishedAt"] = _now()
        nodes = wf.setdefault("status", {}).setdefault("nodes", {})
        nodes[node_id] = node
        return node

    def _phase(self, wf: dict[str, Any], phase: str) -> None:
        status = wf.setdefault("status", {})
        status["phase"] = phase
        status.setdefault("startedAt", _now())
        wf["metadata"].setdefault("labels", {})["workflows.argoproj.io/phase"] = phase
        if phase in ("Succeeded", "Failed", "Error"):
            status["finishedAt"] = _now()
            wf["metadata"]["labels"]["workflows.argoproj.io/completed"] = "true"

    def reach_approval(self, ns: str, name: str, *, compressed: bool = False) -> None:
        """validate succeeded; the approve gate suspends with its intermediate parameters."""

        def change(wf: dict[str, Any]) -> None:
            self._phase(wf, "Running")
            self._node(wf, name, "Running", "DAG")
            self._node(wf, "validate", "Succeeded")
            self._node(
                wf,
                "approve",
                "Running",
                "Suspend",
                inputs={
                    "parameters": [
                        {"name": "decision", "value": "reject", "enum": ["approve", "reject"]},
                        {"name": "reason", "value": ""},
                    ]
                },
                outputs={
                    "parameters": [
                        {
                            "name": "decision",
                            "globalName": "decision",
                            "valueFrom": {"supplied": {}, "default": "reject"},
                        },
                        {"name": "reason", "globalName": "reason", "valueFrom": {"supplied": {}, "default": ""}},
                    ]
                },
            )
            if compressed:
                status = wf["status"]
                raw = json.dumps(status.pop("nodes")).encode()
                status["compressedNodes"] = base64.b64encode(gzip.compress(raw)).decode()

        self.cluster.update(ns, name, change)

    def time_out_approval(self, ns: str, name: str) -> None:
        """The suspend duration passed: defaults applied, node Succeeded, no one resumed it."""

        def change(wf: dict[str, Any]) -> None:
            for node in wf["status"]["nodes"].values():
                if node["displayName"] == "approve":
                    for param in node["outputs"]["parameters"]:
                        param["value"] = param.pop("valueFrom")["default"]
                    node["phase"], node["finishedAt"] = "Succeeded", _now()

        self.cluster.update(ns, name, change)

    def after_gate(self, ns: str, name: str) -> None:
        """Autopilot: once the gate was resumed, end the run as its decision says."""
        wf = self.cluster.workflows[(ns, name)]
        (gate,) = [n for n in wf["status"]["nodes"].values() if n["displayName"] == "approve"]
        if gate["phase"] != "Succeeded" or wf["status"].get("phase") != "Running":
            return
        decision = {p["name"]: p.get("value") for p in gate["outputs"]["parameters"]}["decision"]
        if decision == "approve":
            result = {
                "status": "synthetic",
                "builder": "synthetic",
                "simulated": True,
                "digest": "sha256:" + "0" * 64,
                "push_skipped_reason": "builder_runtime_unavailable",
                "classification": {"class": "builder_runtime_unavailable", "fallback_allowed": True},
            }
        else:
            result = {"status": "rejected", "push_skipped_reason": "rejected"}
        self.finish(ns, name, json.dumps(result))

    def build(self, ns: str, name: str) -> None:
        """probe succeeded; the runner build is running."""

        def change(wf: dict[str, Any]) -> None:
            self._node(wf, "probe", "Succeeded")
            self._node(wf, "build-runner", "Running")

        self.cluster.update(ns, name, change)

    def finish(self, ns: str, name: str, result: str, phase: str = "Succeeded") -> None:
        """The run ends: build and report done, `result` exported as the global output."""

        def change(wf: dict[str, Any]) -> None:
            nodes = wf["status"].setdefault("nodes", {})
            for node in nodes.values():
                if node["phase"] == "Running" and node["type"] == "Pod":
                    node["phase"], node["finishedAt"] = ("Succeeded" if phase == "Succeeded" else "Failed"), _now()
            self._node(wf, name, phase, "DAG")
            self._node(wf, f"{name}.onExit", "Succeeded", templateName="report")
            outputs = wf["status"].setdefault("outputs", {}).setdefault("parameters", [])
            outputs.append({"name": "result", "value": result})
            self._phase(wf, phase)

        self.cluster.update(ns, name, change)


def _handler(cluster: FakeCluster) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        fake = cluster

    return Handler


_KUBE_WF = re.compile(r"^/apis/argoproj\.io/v1alpha1/namespaces/([^/]+)/workflows(?:/([^/]+))?$")
_KUBE_WFT = re.compile(r"^/apis/argoproj\.io/v1alpha1/namespaces/([^/]+)/workflowtemplates/([^/]+)$")
_KUBE_CM = re.compile(r"^/api/v1/namespaces/([^/]+)/configmaps/([^/]+)$")
_SSR = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
_ARGO_WF = re.compile(r"^/api/v1/workflows/([^/]+)/([^/]+)(?:/(set|resume))?$")


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to the fake Kubernetes API or the fake Argo Server."""

    fake: FakeCluster
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    # -- plumbing --------------------------------------------------------------------------

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        self.body = json.loads(self.rfile.read(length)) if length else None
        self.user = self.fake.users.get(self.headers.get("Authorization", "").removeprefix("Bearer "))
        if self.user is None:
            return self._status(401, "Unauthorized", "Unauthorized")
        if m := _ARGO_WF.match(url.path):
            return self._argo(method, *m.groups())
        if url.path == "/api/v1/userinfo":
            self._record("argo-server", "userinfo", "get", url.path)
            return self._json(200, {"subject": self.user.name, "name": self.user.name, "issuer": "fake-argo-server"})
        if (m := _KUBE_WFT.match(url.path)) and self.fake.autopilot:
            self._record("argoproj.io", "workflowtemplates", "get", url.path)
            meta = {"name": m[2], "namespace": m[1]}
            return self._json(200, {"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate", "metadata": meta})
        if m := _KUBE_WF.match(url.path):
            return self._workflows(method, *m.groups())
        if (m := _KUBE_CM.match(url.path)) and method == "GET":
            if not self._allow("", "configmaps", "get", url.path):
                return None
            cm = self.fake.configmaps.get(m.groups())
            return self._json(200, cm) if cm else self._status(404, "NotFound", f'configmaps "{m[2]}" not found')
        if url.path == _SSR and method == "POST":
            self._record("authentication.k8s.io", "selfsubjectreviews", "create", url.path)
            return self._json(
                201,
                {
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "SelfSubjectReview",
                    "metadata": {"creationTimestamp": None},
                    "status": {"userInfo": {"username": self.user.name, "groups": ["system:authenticated"]}},
                },
            )
        return self._status(404, "NotFound", f"the fake does not serve {method} {url.path}")

    def _record(self, group: str, resource: str, verb: str, path: str) -> None:
        self.fake.calls.append(Call(self.user.name, group, resource, verb, path, dict(self.query)))

    def _allow(self, group: str, resource: str, verb: str, path: str, ns: str = "imagegate") -> bool:
        self._record(group, resource, verb, path)
        if self.user.may(resource, verb):
            return True
        kind = f"{resource}.{group}" if group else resource
        self._status(
            403,
            "Forbidden",
            f'{kind} is forbidden: User "{self.user.name}" cannot {verb} resource "{resource}" '
            f'in API group "{group}" in the namespace "{ns}"',
        )
        return False

    def _json(self, code: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
        self._json(code, {**status, "message": message, "reason": reason, "code": code})

    # -- Kubernetes API: workflows ---------------------------------------------------------

    def _workflows(self, method: str, ns: str, name: str | None) -> None:
        path, fake = self.path, self.fake
        verb = {"POST": "create", "PUT": "update", "DELETE": "delete"}.get(method) or (
            "get" if name else ("watch" if self.query.get("watch") in ("true", "1", "True") else "list")
        )
        if not self._allow("argoproj.io", "workflows", verb, path, ns):
            return None
        if verb == "create":
            errors = schema_errors(self.body)
            if errors:
                return self._status(422, "Invalid", f"Workflow is invalid: {errors}")
            new = self.body["metadata"]["name"]
            if (ns, new) in fake.workflows:
                return self._status(409, "AlreadyExists", f'workflows.argoproj.io "{new}" already exists')
            obj = copy.deepcopy(self.body)
            obj["metadata"].update(namespace=ns, uid=f"uid-{new}", creationTimestamp=_now())
            created = fake.put(ns, obj, "ADDED")
            if fake.autopilot:
                fake.controller.reach_approval(ns, new)
            return self._json(201, created)
        if verb == "get":
            obj = fake.workflows.get((ns, name))
            return (
                self._json(200, obj)
                if obj
                else self._status(404, "NotFound", f'workflows.argoproj.io "{name}" not found')
            )
        if verb == "update":
            current = fake.workflows.get((ns, name))
            if current is None:
                return self._status(404, "NotFound", f'workflows.argoproj.io "{name}" not found')
            if self.body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                return self._status(409, "Conflict", "the object has been modified; please apply your changes")
            updated = fake.put(ns, copy.deepcopy(self.body), "MODIFIED")
            if fake.autopilot:
                fake.controller.after_gate(ns, name)
            return self._json(200, updated)
        if verb == "delete":
            fake.workflows.pop((ns, name), None)
            return self._json(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
        if verb == "list":
            items = [copy.deepcopy(o) for (n, _), o in sorted(fake.workflows.items()) if n == ns and self._selects(o)]
            meta = {"resourceVersion": str(fake.rv)}
            return self._json(
                200, {"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowList", "metadata": meta, "items": items}
            )
        return self._watch(ns)

    def _selects(self, obj: dict[str, Any]) -> bool:
        labels = obj["metadata"].get("labels", {})
        for term in filter(None, self.query.get("labelSelector", "").split(",")):
            if "!=" in term:
                key, value = term.split("!=")
                if labels.get(key) == value:
                    return False
            elif "=" in term:
                key, value = term.split("=")
                if labels.get(key) != value:
                    return False
            elif term not in labels:
                return False
        field_sel = self.query.get("fieldSelector", "")
        return not field_sel or field_sel == f"metadata.name={obj['metadata']['name']}"

    def _chunk(self, event: dict[str, Any]) -> None:
        data = (json.dumps(event) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self, ns: str) -> None:
        """A chunked watch stream from resourceVersion, driven by the fake's watch script."""
        fake = self.fake
        since = int(self.query.get("resourceVersion") or fake.rv)
        deadline = time.monotonic() + int(self.query.get("timeoutSeconds") or 60)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if since < fake.oldest_rv:
            gone = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410}
            self._chunk({"type": "ERROR", "object": {**gone, "message": f"too old resource version: {since}"}})
            self.wfile.write(b"0\r\n\r\n")
            return None
        while True:
            with fake.cond:
                fresh = [e for e in fake.events if e[0] > since and e[1] == ns and self._selects(e[3])]
            for rv, _, kind, obj in fresh:
                self._chunk({"type": kind, "object": obj})
                since = rv
            with fake.cond:
                step = fake.watch_script.pop(0) if fake.watch_script else None
            if step is DISCONNECT:
                self.close_connection = True  # end mid-stream, without the last chunk
                return None
            if step is not None:
                step()
                continue
            with fake.cond:
                left = deadline - time.monotonic()
                if left <= 0 or fake.stopping:
                    break
                fake.cond.wait(min(left, 0.5))
        self.wfile.write(b"0\r\n\r\n")
        return None

    # -- Argo Server -----------------------------------------------------------------------

    def _argo(self, method: str, ns: str, name: str, action: str | None) -> None:
        fake = self.fake
        self._record("argo-server", "workflows", action or "get", self.path)
        current = fake.workflows.get((ns, name))
        if current is None:
            return self._json(404, {"code": 5, "message": f'workflows.argoproj.io "{name}" not found'})
        if action is None:
            return self._json(200, current)
        if not self.user.may("workflows", "update"):
            return self._json(403, {"code": 7, "message": f"permission denied: {self.user.name} cannot update"})
        request = "WorkflowSetRequest" if action == "set" else "WorkflowResumeRequest"
        errors = schema_errors(self.body, request)
        assert not errors, f"the client sent a {request} outside the official schema: {errors}"
        selector = dict(term.split("=", 1) for term in self.body.get("nodeFieldSelector", "").split(","))
        wf = copy.deepcopy(current)
        nodes = [
            n
            for n in wf["status"]["nodes"].values()
            if n["type"] == "Suspend" and n["phase"] == "Running" and all(n.get(k) == v for k, v in selector.items())
        ]
        if not nodes:
            return self._json(400, {"code": 3, "message": "currently, set only targets suspend nodes"})
        for node in nodes:
            if action == "set":
                for key, value in json.loads(self.body["outputParameters"]).items():
                    (param,) = [p for p in node["outputs"]["parameters"] if p["name"] == key]
                    assert "supplied" in param.get("valueFrom", {}), f"output {key} was already set"
                    param["value"] = value
                    del param["valueFrom"]
                    if param.get("globalName"):  # AddParamToGlobalScope
                        globals_ = wf["status"].setdefault("outputs", {}).setdefault("parameters", [])
                        globals_[:] = [g for g in globals_ if g["name"] != param["globalName"]]
                        globals_.append({"name": param["globalName"], "value": value})
            else:
                node["phase"], node["finishedAt"] = "Succeeded", _now()
                node["message"] = f"Resumed by: map[User:{self.user.name}]"
                labels = wf["metadata"]["labels"]
                labels["workflows.argoproj.io/actor"] = self.user.name
                labels["workflows.argoproj.io/action"] = "Resume"
        return self._json(200, fake.put(ns, wf, "MODIFIED"))
