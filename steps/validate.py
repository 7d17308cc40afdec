"""Step `validate`: the request against the contract and the cluster policy, before anyone approves.

Reads:
    --param NAME=VALUE    the request, repeated (kebab-case names of steps.contract.BuildRequest).
                          A request without `mode` gets the policy's defaultMode.
    --policy-dir DIR      the mounted policy ConfigMap (default steps.contract.POLICY_DIR; safe
                          defaults when it is not mounted).
    --namespace NS        the workflow's namespace, checked against allowedNamespaces (empty: any).
    --service-account SA  the workflow's ServiceAccount, checked against allowedServiceAccounts.
    --submitter WHO       optional: who submitted; recorded as the `submitter` output for the approval
                          record (the four-eyes check happens when someone approves).
    --workspace DIR       optional: where the workspace volume is mounted here (default none). With it,
                          a local context (relative path or /workspace/...) must exist inside DIR, and
                          neither it nor the dockerfile may reach outside through a symlink; a tar
                          context's members may not escape it and must hold the dockerfile.
    --kind build|push     which request: build (image-build, BuildRequest) or push (image-push,
                          PushRequest); default push iff a `source` parameter is given.
    --out DIR             output directory (default steps.contract.OUTPUT_DIR or $IMAGEGATE_OUT).

Writes (names and defaults from steps.contract.STEPS["validate"]):
    request     the canonical BuildRequest JSON (empty when invalid).
    fallback    `allowed` iff the request is not strict and the policy has allowSynthetic, else `forbidden`.
    insecure    `true` iff the destination's host[:port] is in the policy's insecureRegistries.
    submitter   the --submitter value, or empty.
    source-simulated  push only: `false` iff the request is valid and its source-result is empty or
                not simulated; otherwise `true`, so a synthetic source is never pushed.
    error       empty, or one `field: message` line per problem; the lines also go to stderr.
    Exit status 0 when valid, 1 when the request is rejected.

The contract's validators check each field's shape (reference grammar, relative paths without
`..`, JSON objects of strings, size and control characters); this step adds what depends on the
policy and on the workspace.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from steps._io import add_common_args, load_policy, parse_param_pairs, write_outputs
from steps.contract import (
    BuildRequest,
    BuildResult,
    Mode,
    Policy,
    PushRequest,
    _check_text,
    describe_errors,
    parse_reference,
)
from steps.errors import InputError

__all__ = ["Verdict", "main", "registry_allowed", "validate"]

# Kubernetes object names (k8s.io/apimachinery/pkg/util/validation: IsDNS1123Label / IsDNS1123Subdomain).
_DNS1123_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$")
_KINDS: dict[str, type[BuildRequest] | type[PushRequest]] = {"build": BuildRequest, "push": PushRequest}
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
# A hint per pydantic error type, where its own message does not say how to fix it.
_HINTS = {
    "missing": "pass it as --param NAME=VALUE (imagegate submit -p NAME=VALUE)",
    "dict_type": 'give a JSON object of strings, e.g. {"VERSION":"1.0"}',
    "string_type": 'give a JSON object of strings, e.g. {"VERSION":"1.0"}',
    "bool_parsing": "use true or false",
}


class Verdict(BaseModel):
    """What validate decided: the canonical request and its outputs, or the problems."""

    request: BuildRequest | PushRequest | None = None
    errors: list[str] = Field(default_factory=list, description="One `field: message` line per problem.")
    fallback: Literal["allowed", "forbidden"] = "forbidden"
    insecure: bool = False
    source_simulated: bool | None = Field(None, description="image-push only: the source is a synthetic result.")

    @property
    def ok(self) -> bool:
        """True when the request may go on to approval."""
        return self.request is not None and not self.errors


def _describe(exc: ValidationError) -> list[str]:
    lines = describe_errors(exc)
    for i, err in enumerate(exc.errors()):
        hint = _HINTS.get(err["type"])
        if hint:
            lines[i] = f"{lines[i]}: {hint}"
    return lines


def _parse_request(
    params: dict[str, str], policy: Policy, kind: type[BuildRequest] | type[PushRequest]
) -> tuple[BuildRequest | PushRequest | None, list[str]]:
    if kind is BuildRequest and "mode" not in params:
        params = {**params, "mode": policy.default_mode.value}
    try:
        return kind.from_parameters(params), []
    except ValidationError as exc:
        return None, _describe(exc)
    except ValueError as exc:  # from_parameters: unknown names, JSON that does not parse
        return None, [str(exc)]


def _host_matches(entry: str, host: str) -> bool:
    return entry.split("/", 1)[0].lower() == host.lower()


def registry_allowed(entry: str, host: str, path: str) -> bool:
    """Whether allowlist `entry` (host[:port] or host[:port]/prefix) admits host/path, on '/' boundaries."""
    if not _host_matches(entry, host):
        return False
    _, _, prefix = entry.partition("/")
    prefix = prefix.strip("/")
    return not prefix or path == prefix or path.startswith(prefix + "/")


def _check_destination(destination: str, policy: Policy) -> list[str]:
    """Policy checks of a destination the contract accepted (allowlist, tag rules)."""
    ref = parse_reference(destination)
    host, path, tag, digest = ref["host"], ref["path"], ref["tag"], ref["digest"]
    errors = []
    if not any(registry_allowed(entry, host, path) for entry in policy.allowed_registries):
        allowed = ", ".join(policy.allowed_registries) or "none"
        errors.append(
            f"destination: {host}/{path} is not in the policy's allowedRegistries ({allowed}): push under one of "
            "them, or ask the platform team to add it to the imagegate-policy ConfigMap"
        )
    untagged = not tag and not digest
    if policy.require_tag and untagged:
        errors.append(f"destination: {destination!r} has no tag: add one, e.g. {destination}:1.0")
    elif policy.forbid_latest and (tag == "latest" or untagged):
        errors.append(
            f"destination: {destination!r} uses the tag latest (explicitly or by having no tag), which policy "
            "forbids: use a version tag or a digest"
        )
    return errors


def _check_mode(req: BuildRequest, policy: Policy) -> list[str]:
    errors = []
    if req.mode not in policy.allowed_modes:
        allowed = ", ".join(m.value for m in policy.allowed_modes) or "none"
        errors.append(f"mode: {req.mode.value} is not allowed by policy (allowedModes: {allowed}): use one of those")
    if req.mode is Mode.SYNTHETIC:
        if not policy.allow_synthetic:
            errors.append("mode: synthetic is forbidden by policy (allowSynthetic: false): use a real builder mode")
        elif req.strict:
            errors.append("mode: synthetic contradicts strict=true: drop strict, or ask for a real builder mode")
    return errors


def _check_placement(namespace: str, service_account: str, submitter: str | None, policy: Policy) -> list[str]:
    errors = []
    if not _DNS1123_LABEL.match(namespace):
        errors.append(
            f"namespace: {namespace!r} is not a Kubernetes namespace name: use lowercase letters, digits, '-'"
        )
    elif policy.allowed_namespaces and namespace not in policy.allowed_namespaces:
        errors.append(
            f"namespace: {namespace} is not in the policy's allowedNamespaces ({', '.join(policy.allowed_namespaces)}):"
            " submit in one of them"
        )
    if not _DNS1123_SUBDOMAIN.match(service_account):
        errors.append(
            f"service-account: {service_account!r} is not a ServiceAccount name: use lowercase, digits, '-', '.'"
        )
    elif service_account not in policy.allowed_service_accounts:
        allowed = ", ".join(policy.allowed_service_accounts) or "none"
        errors.append(
            f"service-account: {service_account} is not in the policy's allowedServiceAccounts ({allowed}): "
            "run the workflow as one of them"
        )
    if submitter is not None:
        try:
            _check_text(submitter, "submitter")
        except ValueError as exc:
            errors.append(f"submitter: {exc}")
    return errors


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _check_workspace(req: BuildRequest, workspace: Path) -> list[str]:
    """A local context must exist in the workspace; it and its dockerfile must not leave it via symlinks."""
    given = req.context_path(workspace)
    if given is None:
        return []
    root = workspace.resolve()
    context = given.resolve()
    if not _inside(context, root):
        return [f"context: {req.context!r} leads outside the workspace (through a symlink): use a directory inside it"]
    if not context.exists():
        return [f"context: {req.context!r} does not exist in the workspace: copy the build context there first"]
    if context.is_file():
        if not context.name.endswith(_TAR_SUFFIXES):
            return [f"context: {req.context!r} is a file but not a tar archive: give a directory or a .tar/.tar.gz"]
        return _check_tar(req, context)
    dockerfile = (context / req.dockerfile).resolve()
    if not _inside(dockerfile, context):
        return [f"dockerfile: {req.dockerfile!r} leads outside the context (through a symlink): use a file inside it"]
    if not dockerfile.is_file():
        return [f"dockerfile: {req.dockerfile!r} is not a file in the context {req.context!r}: fix the path"]
    return []


def _source_simulated(req: PushRequest) -> tuple[bool, list[str]]:
    """Whether an image-push source is a synthetic result (never pushed); empty source-result: not simulated."""
    if not req.source_result.strip():
        return False, []
    try:
        return BuildResult.model_validate_json(req.source_result).simulated, []
    except ValueError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)]
        return True, [f"source-result: not a result JSON ({first[0].strip()}): pass the earlier run's `result` output"]


def _check_tar(req: BuildRequest, archive: Path) -> list[str]:
    """A tar context's members stay inside it (no absolute or '..' names) and hold the dockerfile."""
    import tarfile

    dockerfile = req.dockerfile.removeprefix("./")
    has_dockerfile = False
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:  # streamed: only the headers are read
                name = member.name.removeprefix("./")
                if name.startswith("/") or ".." in name.split("/"):
                    return [f"context: archive member {member.name!r} escapes the context: rebuild the tar without it"]
                has_dockerfile = has_dockerfile or (name == dockerfile and not member.isdir())
    except (OSError, tarfile.TarError) as exc:
        return [f"context: {req.context!r} is not a readable tar archive ({exc}): recreate it"]
    if not has_dockerfile:
        return [f"dockerfile: {req.dockerfile!r} is not in the archive {req.context!r}: add it or fix the path"]
    return []


def validate(
    params: dict[str, str],
    policy: Policy,
    *,
    namespace: str,
    service_account: str,
    submitter: str | None = None,
    workspace: Path | None = None,
    kind: type[BuildRequest] | type[PushRequest] = BuildRequest,
) -> Verdict:
    """Check a request's parameters against the contract, the policy and (optionally) the workspace.

    `kind` is BuildRequest (template image-build) or PushRequest (image-push, no mode or context).
    """
    verdict = Verdict()
    req, errors = _parse_request(params, policy, kind)
    errors += _check_placement(namespace, service_account, submitter, policy)
    if req is None and "destination" in params and not any(e.startswith("destination") for e in errors):
        # The rest of the request is malformed; report the destination's policy problems in the same round.
        try:
            errors += _check_destination(params["destination"], policy)
        except ValueError:
            pass  # not parsed yet (from_parameters stopped at bad JSON): its shape is reported next round
    if isinstance(req, BuildRequest):
        errors += _check_destination(req.destination, policy) + _check_mode(req, policy)
        if workspace is not None:
            errors += _check_workspace(req, workspace)
    elif isinstance(req, PushRequest):
        verdict.source_simulated, source_errors = _source_simulated(req)
        errors += _check_destination(req.destination, policy) + source_errors
    if req is not None:
        # Both kinds: a synthetic outcome (built, or a synthetic source not pushed) is accepted
        # only for non-strict requests under a policy that allows it.
        verdict.fallback = "allowed" if policy.allow_synthetic and not req.strict else "forbidden"
    if req is not None:
        host = parse_reference(req.destination)["host"]
        verdict.insecure = any(_host_matches(entry, host) for entry in policy.insecure_registries)
    verdict.errors = errors
    verdict.request = req if not errors else None
    return verdict


def main(argv: list[str] | None = None) -> int:
    """Validate one request and write the validate outputs."""
    parser = argparse.ArgumentParser(prog="python -m steps.validate", description=__doc__.splitlines()[0])
    parser.add_argument("--param", action="append", metavar="NAME=VALUE", help="a request parameter (repeat)")
    parser.add_argument("--policy-dir", type=Path, help="the mounted policy ConfigMap")
    parser.add_argument("--namespace", required=True, help="the workflow's namespace")
    parser.add_argument("--service-account", required=True, help="the workflow's ServiceAccount")
    parser.add_argument("--submitter", help="who submitted the request (recorded)")
    parser.add_argument("--workspace", type=Path, help="the workspace volume as mounted here")
    parser.add_argument(
        "--kind",
        choices=sorted(_KINDS),
        help="build (image-build) or push (image-push); default: push iff a source is given",
    )
    add_common_args(parser)
    args = parser.parse_args(argv)
    verdict = Verdict()
    try:
        params = parse_param_pairs(args.param)
    except InputError as exc:
        verdict.errors.append(f"param: {exc}")
    try:
        policy = load_policy(args.policy_dir)
    except InputError as exc:
        verdict.errors.append(f"policy: {exc}: fix the imagegate-policy ConfigMap")
    if not verdict.errors:
        kind = args.kind or ("push" if "source" in params else "build")
        verdict = validate(
            params,
            policy,
            namespace=args.namespace,
            service_account=args.service_account,
            submitter=args.submitter,
            workspace=args.workspace,
            kind=_KINDS[kind],
        )
    outputs = {
        "request": verdict.request.to_json() if verdict.ok else "",
        "fallback": verdict.fallback if verdict.ok else "forbidden",
        "insecure": "true" if verdict.ok and verdict.insecure else "false",
        "submitter": args.submitter or "",
        "error": "\n".join(verdict.errors),
    }
    if verdict.source_simulated is not None:
        outputs["source-simulated"] = "false" if verdict.ok and not verdict.source_simulated else "true"
    write_outputs("validate", args.out, outputs)
    if not verdict.ok:
        for line in verdict.errors:
            print(line, file=sys.stderr)
        return 1
    print(verdict.request.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
