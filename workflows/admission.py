"""Admission-time policy: a ValidatingAdmissionPolicy that refuses bad Workflows before they exist.

The validate step enforces the cluster policy inside a run; this policy makes the API
server refuse the same Workflows at `kubectl create` / `argo submit` time
(https://kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/).
Its params are the policy ConfigMap itself (`paramKind: ConfigMap`), so the allowlists
have one source; the defaults used for a missing key come from `Policy()`, the same model
the validate step reads.

Which Workflows it governs:
- every Workflow whose `workflowTemplateRef` names `image-build` or `image-push` ("ours"):
  namespace, ServiceAccount, destination, mode and strict are checked, and the fields a
  Workflow could use to change what our templates run are refused (see `OVERRIDES`);
- every Workflow in imagegate's namespaces (the policy's `allowedNamespaces`, plus the
  home namespace): with `requireTemplateRef` it must be one of ours, and it may never set
  `podSpecPatch` or run as a ServiceAccount outside `allowedServiceAccounts`.

CREATE is checked in full. UPDATE only checks that the fields the checks read did not
change, so a running Workflow is not stuck when the policy narrows, and no one (an
approver holds `update` on workflows) can swap the destination after the approval
(`argo retry -p` included).

Four eyes, on UPDATE of ours (`argo node set` + `argo resume`, the UI through an Argo
Server in client mode, the imagegate client, `kubectl edit`): unless the policy has
`allowSelfApproval`, the submitter may set the gate's `decision` only to `reject`.
- The decision: every node's `decision` output parameter in `status.nodes` (keyed by
  node id, so a node renamed in the same update is still seen; only the gate has that
  output), and the `decision` global in `status.outputs`. A parameter that changed and is
  not `reject` counts as approving: another value or a changed `valueFrom.default` (which
  a timeout applies) could still open a gate.
- The submitter: the old object's `imagegate.dev/submitter` and Argo's `creator` labels
  (`names.CREATOR_LABELS`). Argo writes those as `dnsFriendly(user)` (argoproj/argo-workflows
  v4.1.2 workflow/creator/creator.go: each rune outside `[-_.a-zA-Z0-9]` becomes `-`,
  the last 63 kept, non-alphanumerics trimmed from both ends; the email with its first
  `@` as `.at.`). The requester, `request.userInfo.username`, matches when its last 63
  runes, mapped the same way, equal a label up to the trimmed ends, compared ASCII
  case-insensitively. Conservatively, so do the username's part after its last `#` or
  `:` (an OIDC issuer or `oidc:` prefix), and the `actor` labels Argo writes on this
  update (`names.ACTOR_LABELS`, from the caller's claims).
- Nodes admission cannot read (`status.compressedNodes`, offloaded node status) may not
  change at the submitter's hand, and the identity labels never change after creation.
What stays open (Argo Server in server or SSO mode, forged labels at CREATE) is in
docs/security.md, "Approval bypass".

The expressions use core CEL plus the Kubernetes string extensions `split`, `trim`,
`lowerAscii`, `join`, `substring` and `replace` (available in every release that serves
admissionregistration v1).
"""

from __future__ import annotations

import json
from typing import Any

from steps.contract import REFERENCE_PATTERN, BuildRequest, Decision, Mode, Policy, PushRequest
from workflows import names
from workflows.rbac import NAMESPACE

__all__ = [
    "BINDING_NAME",
    "IDENTITY_LABELS",
    "IMMUTABLE_FIELDS",
    "OVERRIDES",
    "POLICY_NAME",
    "binding",
    "manifests",
    "policy",
]

POLICY_NAME = "imagegate-workflows"
BINDING_NAME = POLICY_NAME
_ADMISSION = "admissionregistration.k8s.io/v1"
_OURS = (names.IMAGE_BUILD, names.IMAGE_PUSH)

# WorkflowSpec fields a Workflow referencing our templates may not set, and what each would
# let a submitter do (Argo merges the Workflow's spec over the WorkflowTemplate's).
OVERRIDES: dict[str, str] = {
    "templates": "redefines our templates (Argo merges them by name)",
    "entrypoint": "starts at another template, e.g. push, skipping validate and approve",
    "onExit": "runs another template as the exit handler, outside the approval",
    "hooks": "runs templates from lifecycle hooks, outside the approval",
    "templateDefaults": "changes every template's pod (env, volumes, security context)",
    "securityContext": "replaces the pods' security context",
    "automountServiceAccountToken": "puts the ServiceAccount token into build containers",
    "executor": "swaps the executor's ServiceAccount",
    "executorPlugins": "adds executor plugins to the pods",
    "volumes": "adds volumes, e.g. the registry Secret under a name a build template mounts",
    "volumeClaimTemplates": "replaces the workspace volume the build writes its archive to",
    "podMetadata": "adds pod annotations, e.g. an Unconfined AppArmor profile",
    "hostNetwork": "puts the pods into the node's network namespace",
    "dnsPolicy": "changes name resolution, sending the registry credentials elsewhere",
    "dnsConfig": "changes name resolution, sending the registry credentials elsewhere",
    "hostAliases": "maps the registry host to another address, sending the credentials there",
    "nodeSelector": "places builds on nodes the platform did not choose",
    "tolerations": "places builds on tainted nodes, e.g. the control plane",
    "affinity": "places builds on nodes the platform did not choose",
    "schedulerName": "hands the pods to another scheduler",
    "resourceClaims": "claims node devices for the pods",
    "artifactRepositoryRef": "sends logs and artifacts to another repository",
}
# What the checks read: changing any of these after CREATE is refused.
IMMUTABLE_FIELDS = ("workflowTemplateRef", "arguments", "serviceAccountName", "podSpecPatch", *OVERRIDES)

# Labels naming who submitted a run; the four-eyes check reads them, so they cannot change.
IDENTITY_LABELS = (names.LABEL_SUBMITTER, *names.CREATOR_LABELS)
# Status fields holding nodes admission cannot read (gzip+base64, or rows in Argo's database).
_HIDDEN_NODES = ("compressedNodes", "offloadNodeStatusVersion")
# Who is asking (the API server's authenticated user).
_USER = "request.userInfo.username"
# Argo's label value: at most 63 bytes (runes: every character left is ASCII).
_LABEL_MAX = 63

# pydantic's lax bool parsing (docs.pydantic.dev "Conversion Table", str -> bool), which the
# validate step applies to the same strings; anything else is read on the safe side below.
_TRUE = ("1", "on", "t", "true", "y", "yes")
_FALSE = ("0", "f", "false", "n", "no", "off")
_BOOL_PARAMS = sorted(
    {s.name for m in (BuildRequest, PushRequest) for s in m.parameter_specs() if s.enum == ["true", "false"]}
)


def _cel(value: Any) -> str:
    """A CEL literal for a string or a list of strings (JSON string syntax is valid CEL)."""
    return json.dumps(value)


def _spec_names(model: type[BuildRequest] | type[PushRequest]) -> list[str]:
    return [s.name for s in model.parameter_specs()]


def _required(model: type[BuildRequest] | type[PushRequest]) -> list[str]:
    return [s.name for s in model.parameter_specs() if s.required]


def _default(model: type[BuildRequest], name: str) -> str:
    (spec,) = [s for s in model.parameter_specs() if s.name == name]
    return spec.default or ""


def _decision_params(node: str) -> str:
    """CEL: the node's `decision` output parameters (empty when it has none)."""
    outputs = f"{node}.outputs"
    return (
        f"(has({outputs}) && has({outputs}.parameters)"
        f" ? {outputs}.parameters.filter(p, p.name == {_cel(names.DECISION)}) : [])"
    )


def _not_reject(params: str) -> str:
    """CEL: `params` (decision parameters) would not read as exactly reject."""
    return f"!{params}.all(p, has(p.value) && p.value == {_cel(Decision.REJECT.value)})"


def _shown(params: str) -> str:
    """CEL: the decision parameters as the message shows them."""
    return f"{params}.map(p, has(p.value) ? p.value : '(unset, default changed)').join(',')"


def _label_value(name: str) -> str:
    """CEL: `name` as `dnsFriendly` leaves it before trimming: its last runes, each outside the label alphabet `-`."""
    last = f"(size({name}) > {_LABEL_MAX} ? {name}.substring(size({name}) - {_LABEL_MAX}) : {name})"
    return f"{last}.split('').map(c, c.matches('^[-_.a-zA-Z0-9]$') ? c : '-').join('').lowerAscii()"


def _after_last(text: str, sep: str) -> str:
    """CEL: `text` after the last `sep` (all of it when there is none)."""
    return f"{text}.split({_cel(sep)})[size({text}.split({_cel(sep)})) - 1]"


def _status_changed(field: str) -> str:
    """CEL: `status.<field>` differs between oldObject and object (set, unset or value)."""
    new = f"(has(object.status) && has(object.status.{field}))"
    old = f"(has(oldObject.status) && has(oldObject.status.{field}))"
    return f"({new} != {old} || {new} && object.status.{field} != oldObject.status.{field})"


def _variables() -> list[dict[str, str]]:
    defaults = Policy().to_configmap_data()

    def raw(key: str) -> str:
        return f"({_cel(key)} in variables.data ? variables.data[{_cel(key)}] : {_cel(defaults[key])})"

    def listed(key: str) -> str:
        return f"{raw(key)}.split(',').map(s, s.trim()).filter(s, s != '')"

    def flag(key: str, *, safe: bool) -> str:
        # A value pydantic would not parse is read as the safe choice (`safe`), never the lax one.
        word = f"{raw(key)}.lowerAscii()"
        return f"!({word} in {_cel(_FALSE)})" if safe else f"{word} in {_cel(_TRUE)}"

    def param(name: str, default: str) -> str:
        """The parameter's literal value, else `default` (a CEL expression)."""
        given = f"variables.args.filter(p, p.name == {_cel(name)} && has(p.value)).map(p, p.value)"
        return f"size({given}) == 1 ? {given}[0] : {default}"

    spec = "object.spec"
    ref = f"{spec}.workflowTemplateRef"
    pairs = [
        ("data", "has(params.data) ? params.data : {}"),
        # Entries lowercased and without empty path components (`host/team/` is `host/team`).
        (
            "allowedRegistries",
            listed("allowedRegistries") + ".map(e, e.lowerAscii().split('/').filter(c, c != '').join('/'))"
            ".filter(e, e != '')",
        ),
        ("allowedNamespaces", listed("allowedNamespaces")),
        ("allowedServiceAccounts", listed("allowedServiceAccounts")),
        ("allowedModes", listed("allowedModes")),
        ("allowSynthetic", flag("allowSynthetic", safe=False)),
        ("requireTag", flag("requireTag", safe=True)),
        ("forbidLatest", flag("forbidLatest", safe=True)),
        ("requireTemplateRef", flag("requireTemplateRef", safe=True)),
        # validate gives a request without `mode` the policy's defaultMode.
        ("defaultMode", raw("defaultMode")),
        ("templateName", f"has({ref}) && has({ref}.name) ? {ref}.name : ''"),
        ("isBuild", f"variables.templateName == {_cel(names.IMAGE_BUILD)}"),
        ("ours", f"variables.templateName in {_cel(list(_OURS))}"),
        (
            "homeNamespace",
            f"request.namespace == {_cel(NAMESPACE)} || request.namespace in variables.allowedNamespaces",
        ),
        ("inScope", "variables.ours || variables.homeNamespace"),
        ("create", "request.operation == 'CREATE'"),
        ("checked", "variables.create && variables.ours"),
        (
            "args",
            f"has({spec}.arguments) && has({spec}.arguments.parameters) ? {spec}.arguments.parameters : []",
        ),
        (
            "knownParams",
            f"variables.isBuild ? {_cel(_spec_names(BuildRequest))} : {_cel(_spec_names(PushRequest))}",
        ),
        (
            "requiredParams",
            f"variables.isBuild ? {_cel(_required(BuildRequest))} : {_cel(_required(PushRequest))}",
        ),
        ("destination", param("destination", "''")),
        ("mode", param("mode", "variables.defaultMode")),
        # pydantic's bool parsing is case-insensitive and does not strip.
        ("strict", f"({param('strict', _cel(_default(BuildRequest, 'strict')))}).lowerAscii()"),
        # The reference without its digest, lowercased for matching (paths are lowercase by the grammar).
        ("named", "variables.destination.lowerAscii().split('@')[0]"),
        # Its last path component, with the tag as written.
        ("lastComponent", "variables.destination.split('@')[0].split('/')[size(variables.destination.split('/')) - 1]"),
        ("untagged", "!variables.lastComponent.contains(':') && !variables.destination.contains('@')"),
        (
            "changed",
            "request.operation != 'UPDATE' ? [] : ["
            + ", ".join(
                f"has({spec}.{f}) != has(oldObject.spec.{f}) || has({spec}.{f}) && {spec}.{f} != oldObject.spec.{f}"
                f" ? {_cel(f)} : ''"
                for f in IMMUTABLE_FIELDS
            )
            + "].filter(f, f != '')",
        ),
        # --- four eyes (UPDATE of ours); oldObject is only read when it exists ---
        ("fourEyes", "request.operation == 'UPDATE' && variables.ours"),
        ("allowSelfApproval", flag("allowSelfApproval", safe=False)),
        ("oldLabels", "variables.fourEyes && has(oldObject.metadata.labels) ? oldObject.metadata.labels : {}"),
        ("newLabels", "has(object.metadata.labels) ? object.metadata.labels : {}"),
        (
            "submitterKeys",
            f"{_cel(list(IDENTITY_LABELS))}.filter(k, k in variables.oldLabels && variables.oldLabels[k] != '')",
        ),
        (
            "oldNodes",
            "variables.fourEyes && has(oldObject.status) && has(oldObject.status.nodes) ? oldObject.status.nodes : {}",
        ),
        ("newNodes", "variables.fourEyes && has(object.status) && has(object.status.nodes) ? object.status.nodes : {}"),
        # The `decision` global (the gate's output has globalName decision; the report reads it).
        *[
            (
                f"{side}GlobalDecision",
                f"variables.fourEyes && has({obj}.status) && has({obj}.status.outputs)"
                f" && has({obj}.status.outputs.parameters)"
                f" ? {obj}.status.outputs.parameters.filter(p, p.name == {_cel(names.DECISION)}) : []",
            )
            for side, obj in (("old", "oldObject"), ("new", "object"))
        ],
        # The decisions this update sets other than reject, per node id (only the gate has that output).
        (
            "nodeDecisions",
            "variables.newNodes.filter(k, "
            + _not_reject(_decision_params("variables.newNodes[k]"))
            + f" && {_decision_params('variables.newNodes[k]')} != (k in variables.oldNodes"
            f" ? {_decision_params('variables.oldNodes[k]')} : []))"
            + f".map(k, {_shown(_decision_params('variables.newNodes[k]'))})",
        ),
        # ... else the global alone (Argo copies the node's value there in the same update).
        (
            "decided",
            "size(variables.nodeDecisions) > 0 ? variables.nodeDecisions : ("
            + _not_reject("variables.newGlobalDecision")
            + " && variables.newGlobalDecision != variables.oldGlobalDecision"
            + f" ? [{_shown('variables.newGlobalDecision')}] : [])",
        ),
        # The requester's name, and (conservatively) without an OIDC issuer or `oidc:`-style prefix.
        (
            "userNames",
            f"[{_USER}, {_after_last(_USER, '#')}, {_after_last(_USER, ':')}]",
        ),
        (
            "approverValues",
            "(variables.userNames + variables.userNames.map(n, n.replace('@', '.at.', 1)))"
            f".map(n, {_label_value('n')})",
        ),
        # A submitter label equals one of those once its ends are trimmed, or this update's actor labels equal one.
        (
            "bySubmitter",
            "variables.submitterKeys.exists(k, variables.approverValues.exists(v, v.matches("
            f"'^[-_.]*' + variables.oldLabels[k].lowerAscii().replace('.', {_cel(chr(92) + '.')}) + '[-_.]*$')))"
            f" || {_cel(list(names.ACTOR_LABELS))}.exists(a, a in variables.newLabels && variables.newLabels[a] != ''"
            " && variables.submitterKeys.exists(k,"
            " variables.oldLabels[k].lowerAscii() == variables.newLabels[a].lowerAscii()))",
        ),
        ("hiddenNodesChanged", "variables.fourEyes && (" + " || ".join(map(_status_changed, _HIDDEN_NODES)) + ")"),
    ]
    return [{"name": n, "expression": e} for n, e in pairs]


def _rule(expression: str, message: str, message_expression: str) -> dict[str, str]:
    return {
        "expression": expression,
        "message": message,
        "messageExpression": message_expression,
        "reason": "Forbidden",
    }


# An allowlist entry `e` admits the named reference `r` on host and '/' boundaries: a host
# entry needs `host/` next; a host/path entry admits that repository (`:tag` next) or below it.
_MATCHES_ENTRY = (
    "e.contains('/') ? "
    "(variables.named == e || variables.named.startsWith(e + '/') || variables.named.startsWith(e + ':')) "
    ": variables.named.startsWith(e + '/')"
)


def _validations() -> list[dict[str, str]]:
    ours = " or ".join(_OURS)
    sa_fields = [
        "spec.serviceAccountName",
        "spec.executor.serviceAccountName",
        "spec.templateDefaults.serviceAccountName",
    ]
    return [
        _rule(
            "!variables.create || !variables.homeNamespace || !variables.requireTemplateRef || variables.ours",
            f"spec.workflowTemplateRef must name {ours}: the policy requires template references here",
            f"'spec.workflowTemplateRef must name {ours} in namespace ' + request.namespace"
            " + ': the policy (requireTemplateRef) forbids inline templates here'",
        ),
        _rule(
            "!variables.checked || !has(object.spec.workflowTemplateRef.clusterScope)"
            " || !object.spec.workflowTemplateRef.clusterScope",
            "spec.workflowTemplateRef.clusterScope must be false: imagegate's templates are namespaced",
            "'spec.workflowTemplateRef.clusterScope must be false: ' + variables.templateName"
            " + ' is a namespaced WorkflowTemplate'",
        ),
        _rule(
            "!variables.checked || size(variables.allowedNamespaces) == 0"
            " || request.namespace in variables.allowedNamespaces",
            "metadata.namespace is not allowed by the policy (allowedNamespaces)",
            "'metadata.namespace ' + request.namespace + ' is not allowed: allowedNamespaces are '"
            " + variables.allowedNamespaces.join(', ')",
        ),
        _rule(
            "!variables.create || !variables.inScope || ("
            "(has(object.spec.serviceAccountName) ? object.spec.serviceAccountName in variables.allowedServiceAccounts"
            f" : variables.ours && {_cel(names.SERVICE_ACCOUNT)} in variables.allowedServiceAccounts)"
            " && (!has(object.spec.executor) || !has(object.spec.executor.serviceAccountName)"
            " || object.spec.executor.serviceAccountName in variables.allowedServiceAccounts)"
            " && (!has(object.spec.templateDefaults) || !has(object.spec.templateDefaults.serviceAccountName)"
            " || object.spec.templateDefaults.serviceAccountName in variables.allowedServiceAccounts)"
            " && (!has(object.spec.templates) || object.spec.templates.all(t,"
            " (!has(t.serviceAccountName) || t.serviceAccountName in variables.allowedServiceAccounts)"
            " && (!has(t.executor) || !has(t.executor.serviceAccountName)"
            " || t.executor.serviceAccountName in variables.allowedServiceAccounts))))",
            f"{', '.join(sa_fields)} and templates[].serviceAccountName must name an allowed ServiceAccount",
            "'spec.serviceAccountName (and executor, templateDefaults, templates[] ServiceAccounts) must be one of '"
            " + variables.allowedServiceAccounts.join(', ')"
            " + (variables.ours ? '' : ', set explicitly: the namespace default is not allowed')",
        ),
        _rule(
            "!variables.create || !variables.inScope || !has(object.spec.podSpecPatch)"
            " && (!has(object.spec.templateDefaults) || !has(object.spec.templateDefaults.podSpecPatch))"
            " && (!has(object.spec.templates) || object.spec.templates.all(t, !has(t.podSpecPatch)))",
            "podSpecPatch must not be set (spec, templateDefaults or templates[]): it can rewrite any pod",
            "'spec.podSpecPatch, templateDefaults.podSpecPatch and templates[].podSpecPatch must not be set in '"
            " + request.namespace + ': a patch can mount the registry Secret or make a pod privileged'",
        ),
        *[
            _rule(
                f"!variables.checked || !has(object.spec.{field})",
                f"spec.{field} must not be set on a Workflow that references {ours}: it {why}",
                f"'spec.{field} must not be set on a Workflow that references ' + variables.templateName"
                f" + {_cel(': it ' + why)}",
            )
            for field, why in OVERRIDES.items()
        ],
        _rule(
            "!variables.checked || variables.args.all(p, p.name in variables.knownParams)",
            "spec.arguments.parameters has a parameter the template does not take",
            "'spec.arguments.parameters ' + variables.args.filter(p, !(p.name in variables.knownParams))"
            ".map(p, p.name).join(', ') + ' unknown: ' + variables.templateName + ' takes '"
            " + variables.knownParams.join(', ')",
        ),
        _rule(
            "!variables.checked || variables.knownParams.all(n, size(variables.args.filter(p, p.name == n)) <= 1)",
            "spec.arguments.parameters names a parameter twice",
            "'spec.arguments.parameters names ' + variables.knownParams.filter(n,"
            " size(variables.args.filter(p, p.name == n)) > 1).join(', ') + ' more than once: give each once'",
        ),
        _rule(
            "!variables.checked || variables.args.all(p, !has(p.valueFrom))",
            "spec.arguments.parameters must give literal values, not valueFrom",
            "'spec.arguments.parameters ' + variables.args.filter(p, has(p.valueFrom)).map(p, p.name).join(', ')"
            " + ' use valueFrom: give literal values, so admission checks what the run uses'",
        ),
        _rule(
            "!variables.checked || variables.args.all(p, !has(p.value) || !p.value.contains('{{'))",
            "spec.arguments.parameters values must not contain '{{': Argo would substitute them",
            "'spec.arguments.parameters ' + variables.args.filter(p, has(p.value) && p.value.contains('{{'))"
            ".map(p, p.name).join(', ') + \" contain '{{': Argo would substitute them; give plain values\"",
        ),
        _rule(
            "!variables.checked || variables.requiredParams.all(n, variables.args.exists(p, p.name == n"
            " && has(p.value)))",
            "spec.arguments.parameters is missing a required parameter",
            "'spec.arguments.parameters must give ' + variables.requiredParams.filter(n,"
            " !variables.args.exists(p, p.name == n && has(p.value))).join(', ') + ' for ' + variables.templateName",
        ),
        _rule(
            "!variables.checked || variables.destination == ''"
            f" || variables.destination.matches({_cel(REFERENCE_PATTERN)})",
            "destination is not an image reference: use host[:port]/path[:tag][@sha256:digest]",
            "'spec.arguments.parameters destination ' + variables.destination"
            " + ' is not an image reference: use host[:port]/path[:tag][@sha256:digest]'",
        ),
        _rule(
            "!variables.checked || variables.destination == ''"
            f" || variables.allowedRegistries.exists(e, {_MATCHES_ENTRY})",
            "destination is not in the policy's allowedRegistries",
            "'spec.arguments.parameters destination ' + variables.destination"
            " + ' is not allowed: allowedRegistries are '"
            " + (size(variables.allowedRegistries) == 0 ? '(none)' : variables.allowedRegistries.join(', '))"
            " + ' (host, or host/path on a / boundary)'",
        ),
        _rule(
            "!variables.checked || variables.destination == '' || !variables.requireTag || !variables.untagged",
            "destination needs a tag or digest: the policy (requireTag) forbids the implicit latest",
            "'spec.arguments.parameters destination ' + variables.destination"
            " + ' needs a tag or digest: the policy (requireTag) forbids the implicit latest'",
        ),
        _rule(
            "!variables.checked || variables.destination == '' || !variables.forbidLatest"
            " || !(variables.lastComponent.endsWith(':latest') || !variables.requireTag && variables.untagged)",
            "destination must not use the tag latest (policy forbidLatest)",
            "'spec.arguments.parameters destination ' + variables.destination"
            " + ' uses the tag latest (explicitly or by having no tag): the policy (forbidLatest) requires"
            " a versioned tag or a digest'",
        ),
        _rule(
            "!variables.checked || !variables.isBuild || variables.mode in variables.allowedModes"
            f" && (variables.allowSynthetic || variables.mode != {_cel(Mode.SYNTHETIC.value)})",
            "mode is not allowed by the policy (allowedModes, allowSynthetic)",
            "'spec.arguments.parameters mode ' + variables.mode + ' is not allowed: allowedModes are '"
            " + variables.allowedModes.filter(m, variables.allowSynthetic || m != 'synthetic').join(', ')",
        ),
        _rule(
            f"!variables.checked || !variables.isBuild || variables.mode != {_cel(Mode.SYNTHETIC.value)}"
            f" || !(variables.strict in {_cel(_TRUE)})",
            "mode synthetic contradicts strict=true",
            "'spec.arguments.parameters mode synthetic contradicts strict=true: drop strict, or ask for a real"
            " builder mode'",
        ),
        _rule(
            f"!variables.checked || variables.args.all(p, !(p.name in {_cel(_BOOL_PARAMS)}) || !has(p.value)"
            f" || p.value.lowerAscii() in {_cel([*_TRUE, *_FALSE])})",
            f"spec.arguments.parameters {', '.join(_BOOL_PARAMS)} must be true or false",
            f"'spec.arguments.parameters ' + variables.args.filter(p, p.name in {_cel(_BOOL_PARAMS)} && has(p.value)"
            f" && !(p.value.lowerAscii() in {_cel([*_TRUE, *_FALSE])})).map(p, p.name).join(', ')"
            " + ' must be true or false'",
        ),
        _rule(
            f"!variables.checked || variables.allowSynthetic || variables.strict in {_cel(_TRUE)}",
            "strict must be true: the policy forbids synthetic results (allowSynthetic: false)",
            "'spec.arguments.parameters strict is ' + variables.strict"
            " + ': the policy forbids synthetic results (allowSynthetic: false), so pass strict=true'",
        ),
        _rule(
            "!variables.inScope || size(variables.changed) == 0",
            "spec fields the admission checks read cannot change after creation",
            "'spec.' + variables.changed.join(', spec.') + ' cannot change after creation:"
            " submit a new Workflow instead'",
        ),
        *_four_eyes_validations(),
    ]


def _four_eyes_validations() -> list[dict[str, str]]:
    run = "request.namespace + '/' + object.metadata.name"
    submitted = "': they submitted it (' + variables.submitterKeys.map(k, k + '=' + variables.oldLabels[k]).join(', ')"
    actor = _cel(names.ARGO_ACTOR_LABEL)
    approver = (
        f"request.userInfo.username + ({actor} in variables.newLabels"
        f" ? ' (Argo actor ' + variables.newLabels[{actor}] + ')' : '')"
    )
    fix = f'the policy (ConfigMap {NAMESPACE}/{Policy.CONFIGMAP_NAME}) must set allowSelfApproval: "true"'
    changed = (
        "(k in variables.oldLabels) != (k in variables.newLabels)"
        " || k in variables.oldLabels && variables.oldLabels[k] != variables.newLabels[k]"
    )
    return [
        _rule(
            "!variables.fourEyes || variables.allowSelfApproval || size(variables.decided) == 0"
            " || !variables.bySubmitter",
            "the submitter of a run cannot approve it (four eyes): another person must approve, or the policy must"
            " set allowSelfApproval",
            f"{approver} + ' cannot set the approve gate of ' + {run} + ' to ' + variables.decided.join(', ')"
            f" + {submitted} + '). Four eyes: another person must approve it, or {fix}; the submitter may still"
            " reject'",
        ),
        _rule(
            "!variables.hiddenNodesChanged || variables.allowSelfApproval || !variables.bySubmitter",
            "the submitter of a run cannot change its compressed or offloaded nodes: admission cannot tell an"
            " approval from a rejection in them",
            f"{approver} + ' cannot change status.compressedNodes or status.offloadNodeStatusVersion of ' + {run}"
            f" + {submitted} + ') and admission cannot read those nodes to tell an approval from a rejection."
            f" Another person must decide, or {fix}'",
        ),
        _rule(
            f"!variables.fourEyes || {_cel(list(IDENTITY_LABELS))}.all(k, !({changed}))",
            f"metadata.labels {', '.join(IDENTITY_LABELS)} cannot change after creation: the four-eyes check reads"
            " them",
            f"'metadata.labels ' + {_cel(list(IDENTITY_LABELS))}.filter(k, {changed}).join(', ')"
            " + ' cannot change after creation: they record who submitted the run, which the four-eyes check reads'",
        ),
    ]


def _metadata(name: str) -> dict[str, Any]:
    return {"name": name, "labels": {"app.kubernetes.io/part-of": "imagegate"}}


# Plain dicts, not the kubernetes package's models: importing it costs every `imagegate render`
# about 0.1 s, and tests/test_admission_cel.py validates the objects with kubernetes-validate.
def policy() -> dict[str, Any]:
    """The ValidatingAdmissionPolicy, as a plain dict."""
    rule = {
        "apiGroups": ["argoproj.io"],
        "apiVersions": ["v1alpha1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["workflows"],
    }
    return {
        "apiVersion": _ADMISSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": _metadata(POLICY_NAME),
        "spec": {
            "failurePolicy": "Fail",
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "matchConstraints": {"resourceRules": [rule]},
            "variables": _variables(),
            "validations": _validations(),
        },
    }


def binding() -> dict[str, Any]:
    """The binding: every namespace, params from the policy ConfigMap, deny when it is missing."""
    return {
        "apiVersion": _ADMISSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": _metadata(BINDING_NAME),
        "spec": {
            "policyName": POLICY_NAME,
            "paramRef": {"name": Policy.CONFIGMAP_NAME, "namespace": NAMESPACE, "parameterNotFoundAction": "Deny"},
            "validationActions": ["Deny", "Audit"],
        },
    }


def manifests() -> list[dict[str, Any]]:
    """The policy and its binding, for `imagegate render`."""
    return [policy(), binding()]
