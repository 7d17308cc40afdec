"""The result contract and the request: the single source of truth for imagegate.

Template parameter names, defaults and enums, the CLI's flags and the JSON schema in
docs/ are all derived from the models here (`BuildRequest.parameter_specs()`); a name
is never typed twice. This module runs in step pods: stdlib and pydantic only.

Wire conventions:
- Workflow parameters are kebab-case strings (`build-args`, `approval-timeout`);
  objects travel as JSON, booleans as `true`/`false` (what Argo substitutes).
- The policy ConfigMap uses camelCase keys (`allowSynthetic`) with string values;
  lists are comma-separated so the admission policy's CEL can `split(',')` them.
- Results and step outputs are JSON of the models, by alias (`class`, not `class_`).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "Approval",
    "BuildRequest",
    "BuildResult",
    "Builder",
    "Capabilities",
    "Classification",
    "Decision",
    "FailureClass",
    "FALLBACK_CLASSES",
    "Mode",
    "ParameterSpec",
    "Policy",
    "PushRequest",
    "PushSkippedReason",
    "Status",
    "describe_errors",
    "parse_duration",
]

# Argo shows and substitutes values as text; anything bigger than this in one
# parameter is a mistake (or an attack), not a build argument.
MAX_VALUE_BYTES = 4096
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# A duration as Argo's suspend.duration reads it: bare seconds or Go units
# (argoproj/argo-workflows pkg/apis/workflow/v1alpha1/utils.go ParseStringToDuration).
_DURATION = re.compile(r"^(?:\d+|(?:\d+(?:\.\d+)?(?:h|m|s|ms))+)$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
# docker/distribution reference grammar, simplified to what a push destination needs:
# host[:port]/path[:tag][@sha256:hex]. Path components are lowercase.
_REFERENCE = re.compile(
    r"^(?P<host>(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]{1,5})?)"
    r"/(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
# Contexts the builder fetches itself (Kaniko syntax); anything else is a path in the workspace.
REMOTE_CONTEXT_SCHEMES = ("git://", "https://")
# The same grammar as a string, for the admission policy's CEL `matches` (RE2 accepts it).
REFERENCE_PATTERN = _REFERENCE.pattern


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class Mode(StrEnum):
    """How the build runs: `auto` lets the probe pick a real builder."""

    AUTO = "auto"
    KANIKO = "kaniko"
    BUILDKIT = "buildkit"
    RUNNER = "runner"
    SYNTHETIC = "synthetic"


class Status(StrEnum):
    """How a run ended, as callers branch on it."""

    SUCCEEDED = "succeeded"
    SYNTHETIC = "synthetic"
    REJECTED = "rejected"
    FAILED = "failed"


class Builder(StrEnum):
    """What produced the image; `synthetic` means nothing was built."""

    KANIKO = "kaniko"
    BUILDKIT = "buildkit"
    BUILDAH = "buildah"
    SYNTHETIC = "synthetic"


class Decision(StrEnum):
    """The approval gate's choice; a timeout applies the default, `reject`."""

    APPROVE = "approve"
    REJECT = "reject"


class FailureClass(StrEnum):
    """What a failed build or push means; data in the result, not an exception."""

    SUCCEEDED = "succeeded"
    BUILDER_RUNTIME_UNAVAILABLE = "builder_runtime_unavailable"
    BUILD_ERROR = "build_error"
    CONFIG_ERROR = "config_error"
    REGISTRY_AUTH = "registry_auth"
    REGISTRY_UNREACHABLE = "registry_unreachable"
    REGISTRY_REJECTED = "registry_rejected"
    REJECTED = "rejected"
    UNCLASSIFIED = "unclassified"


# The only class that may turn into a synthetic result: the node cannot run the
# builder at all. Everything else, unknown included, stays a failure.
FALLBACK_CLASSES = frozenset({FailureClass.BUILDER_RUNTIME_UNAVAILABLE})
# Worth retrying with backoff before failing (never a fallback).
TRANSIENT_CLASSES = frozenset({FailureClass.REGISTRY_UNREACHABLE})


class PushSkippedReason(StrEnum):
    """Why no image was pushed."""

    BUILDER_RUNTIME_UNAVAILABLE = "builder_runtime_unavailable"
    NO_PUSH_REQUESTED = "no_push_requested"
    REJECTED = "rejected"
    FAILED = "failed"


def parse_duration(text: str) -> float:
    """Seconds in an Argo duration (`24h`, `90m`, `1h30m`, `3600`); ValueError otherwise."""
    if not _DURATION.match(text):
        raise ValueError(f"{text!r} is not a duration: use seconds or Go units such as 24h, 90m, 1h30m")
    if text.isdigit():
        return float(text)
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def parse_reference(ref: str) -> dict[str, str | None]:
    """Split an image reference into host, path, tag and digest; ValueError if malformed."""
    m = _REFERENCE.match(ref)
    if not m or "." not in m["host"] and ":" not in m["host"] and m["host"] != "localhost":
        raise ValueError(
            f"{ref!r} is not a fully qualified image reference: use host[:port]/path[:tag], "
            "e.g. registry.example.com/team/app:1.0"
        )
    return m.groupdict()


def _check_text(value: str, field: str) -> str:
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise ValueError(f"{field} is longer than {MAX_VALUE_BYTES} bytes: shorten it")
    if _CONTROL.search(value):
        raise ValueError(f"{field} contains a control character: remove it")
    return value


def _check_destination(value: str) -> str:
    _check_text(value, "destination")
    parse_reference(value)
    return value


def _check_timeout(value: str) -> str:
    if parse_duration(value) <= 0:
        raise ValueError("approval-timeout must be positive: use e.g. 24h")
    return value


def _check_relative_path(value: str, field: str) -> str:
    _check_text(value, field)
    if "\n" in value or "\t" in value:  # allowed in free text, never in a path
        raise ValueError(f"{field} {value!r} contains a newline or tab: remove it")
    if value.startswith("/") or any(part == ".." for part in value.replace("\\", "/").split("/")):
        raise ValueError(f"{field} {value!r} escapes the build context: give a relative path without '..'")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True, use_enum_values=False)

    def to_json(self) -> str:
        """Canonical JSON: aliases, sorted keys, no whitespace; what steps write and read."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


class ParameterSpec(BaseModel):
    """One workflow parameter as derived from a request field."""

    name: str
    default: str | None
    enum: list[str] | None
    description: str
    required: bool


class _Parameters(_Model):
    """A model whose fields are workflow parameters (kebab-case, string-valued)."""

    model_config = ConfigDict(alias_generator=_kebab, extra="forbid", populate_by_name=True, serialize_by_alias=True)

    @classmethod
    def parameter_specs(cls) -> list[ParameterSpec]:
        """The workflow parameters, derived from the fields: what templates and CLIs declare."""
        specs = []
        for name, field in cls.model_fields.items():
            enum = None
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, StrEnum):
                enum = [m.value for m in annotation]
            elif annotation is bool:
                enum = ["true", "false"]
            default = None if field.is_required() else _to_param(field.get_default(call_default_factory=True))
            specs.append(
                ParameterSpec(
                    name=field.alias or _kebab(name),
                    default=default,
                    enum=enum,
                    description=field.description or "",
                    required=field.is_required(),
                )
            )
        return specs

    @classmethod
    def from_parameters(cls, values: dict[str, str]) -> Self:
        """Parse Argo's string parameters (JSON objects, `true`/`false`) into the model."""
        parsed: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            key = field.alias or _kebab(name)
            if key not in values:
                continue
            raw = values[key]
            if field.annotation is bool:
                parsed[key] = raw
            elif _is_mapping(field.annotation):
                try:
                    parsed[key] = json.loads(raw) if raw.strip() else {}
                except json.JSONDecodeError as exc:
                    raise ValueError(
                        f'{key}: not valid JSON ({exc.msg}): give a JSON object such as {{"K":"V"}}'
                    ) from None
            else:
                parsed[key] = raw
        unknown = sorted(set(values) - {f.alias or _kebab(n) for n, f in cls.model_fields.items()})
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(unknown)}: "
                f"the template takes {', '.join(s.name for s in cls.parameter_specs())}"
            )
        return cls.model_validate(parsed)

    def to_parameters(self) -> dict[str, str]:
        """The model as Argo workflow parameters, every value a string."""
        return {
            (field.alias or _kebab(name)): _to_param(getattr(self, name))
            for name, field in type(self).model_fields.items()
        }


def _is_mapping(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", None) is dict


def _to_param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, StrEnum):
        return value.value
    return str(value)


class BuildRequest(_Parameters):
    """What a caller asks for: the parameters of WorkflowTemplate `image-build`."""

    context: str = Field(
        description="Build context: a directory in the workspace volume, a tar archive, "
        "or a git:// URL (Kaniko syntax)."
    )
    dockerfile: str = Field("Dockerfile", description="Path of the Dockerfile, relative to the context.")
    destination: str = Field(
        description="Image reference to push, host[:port]/path:tag; the registry must be allowlisted by policy."
    )
    build_args: dict[str, str] = Field(default_factory=dict, description="Build arguments, a JSON object of strings.")
    labels: dict[str, str] = Field(default_factory=dict, description="Image labels, a JSON object of strings.")
    mode: Mode = Field(
        Mode.AUTO, description="Builder: auto (the probe picks), kaniko, buildkit, runner (buildah) or synthetic."
    )
    strict: bool = Field(
        False, description="true forbids the synthetic fallback: a runtime incompatibility then fails the run."
    )
    push: bool = Field(True, description="false builds without pushing (the result says no_push_requested).")
    approval_timeout: str = Field(
        "24h", description="How long the approval waits before it rejects by default (Argo duration)."
    )

    @field_validator("context")
    @classmethod
    def _context(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("context is empty: give the build context directory, tar archive or git:// URL")
        if v.startswith(REMOTE_CONTEXT_SCHEMES):
            return _check_text(v, "context")
        # /workspace/... is the volume itself; below it the same rules as a relative path ('..' escapes).
        _check_relative_path(v.removeprefix(f"{WORKSPACE_DIR}/"), "context")
        return v

    def context_path(self, workspace: Path) -> Path | None:
        """Where a local context is with the workspace volume mounted at `workspace`; None for a URL."""
        if self.context.startswith(REMOTE_CONTEXT_SCHEMES):
            return None
        return workspace / self.context.removeprefix(f"{WORKSPACE_DIR}/")

    @field_validator("dockerfile")
    @classmethod
    def _dockerfile(cls, v: str) -> str:
        return _check_relative_path(v, "dockerfile")

    @field_validator("destination")
    @classmethod
    def _destination(cls, v: str) -> str:
        return _check_destination(v)

    @field_validator("build_args", "labels")
    @classmethod
    def _mapping(cls, v: dict[str, str], info: Any) -> dict[str, str]:
        field = _kebab(info.field_name)
        for key, value in v.items():
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", key):
                raise ValueError(f"{field} key {key!r} is not a valid name: use letters, digits, '_', '.', '-'")
            _check_text(value, f"{field}[{key}]")
        _check_text(json.dumps(v), field)
        return v

    @field_validator("approval_timeout")
    @classmethod
    def _timeout(cls, v: str) -> str:
        return _check_timeout(v)


class PushRequest(_Parameters):
    """The parameters of WorkflowTemplate `image-push`: an approval-gated copy of an existing image."""

    source: str = Field(
        description="What to copy: an image reference (docker://host/path:tag) "
        "or an OCI archive from an earlier run (oci-archive:/workspace/...)."
    )
    source_result: str = Field(
        "", description="The earlier run's result JSON, if any; a synthetic source is never pushed."
    )
    destination: str = Field(description="Image reference to push to; the registry must be allowlisted by policy.")
    strict: bool = Field(False, description="true turns a synthetic source into a failure instead of a skipped push.")
    approval_timeout: str = Field(
        "24h", description="How long the approval waits before it rejects by default (Argo duration)."
    )

    @field_validator("destination")
    @classmethod
    def _destination(cls, v: str) -> str:
        return _check_destination(v)

    @field_validator("approval_timeout")
    @classmethod
    def _timeout(cls, v: str) -> str:
        return _check_timeout(v)

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        _check_text(v, "source")
        if v.startswith("docker://"):
            parse_reference(v.removeprefix("docker://"))
        elif not v.startswith("oci-archive:"):
            raise ValueError("source must start with docker:// or oci-archive:")
        return v


class Policy(_Model):
    """The cluster policy (ConfigMap `imagegate-policy`); the validate step and admission both read it."""

    model_config = ConfigDict(alias_generator=_camel, extra="forbid", populate_by_name=True, serialize_by_alias=True)

    allowed_registries: list[str] = Field(
        default_factory=list,
        description="Destinations allowed, as host[:port] or host[:port]/path-prefix "
        "(matched on '/' boundaries). Empty allows none.",
    )
    insecure_registries: list[str] = Field(
        default_factory=list, description="Hosts pushed to without TLS verification (loopback test registries only)."
    )
    allowed_namespaces: list[str] = Field(
        default_factory=list, description="Namespaces runs may use. Empty allows any."
    )
    allowed_service_accounts: list[str] = Field(
        default_factory=lambda: ["imagegate-workflow"], description="ServiceAccounts runs may use."
    )
    allowed_modes: list[Mode] = Field(default_factory=lambda: list(Mode), description="Modes requests may ask for.")
    allow_synthetic: bool = Field(
        True, description="false forbids synthetic results cluster-wide; it wins over strict=false."
    )
    require_tag: bool = Field(True, description="Destinations must carry an explicit tag or digest.")
    forbid_latest: bool = Field(True, description="Destinations may not use the tag 'latest'.")
    allow_self_approval: bool = Field(False, description="true lets the submitter approve their own build.")
    require_template_ref: bool = Field(
        True, description="Workflows must reference image-build instead of inlining templates."
    )
    default_mode: Mode = Field(Mode.AUTO, description="The mode used when a request does not name one.")

    CONFIGMAP_NAME: ClassVar[str] = "imagegate-policy"

    @classmethod
    def from_configmap_data(cls, data: dict[str, str]) -> Self:
        """Parse a ConfigMap's string data (comma-separated lists, true/false)."""
        parsed: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            key = field.alias or _camel(name)
            if key not in data:
                continue
            raw = data[key]
            parsed[key] = [s.strip() for s in raw.split(",") if s.strip()] if _is_list(field.annotation) else raw
        unknown = sorted(set(data) - {f.alias or _camel(n) for n, f in cls.model_fields.items()})
        if unknown:
            raise ValueError(f"unknown policy key(s) {', '.join(unknown)}")
        return cls.model_validate(parsed)

    def to_configmap_data(self) -> dict[str, str]:
        """The policy as ConfigMap data: every value a string."""
        out = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            out[field.alias or _camel(name)] = (
                ",".join(_to_param(v) for v in value) if isinstance(value, list) else _to_param(value)
            )
        return out


def _is_list(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", None) is list


class Classification(_Model):
    """What classify decided about a failed step: the class and the signature that matched."""

    class_: FailureClass = Field(alias="class", description="The failure class.")
    fallback_allowed: bool = Field(description="true only for builder_runtime_unavailable.")
    signature: str | None = Field(None, description="Id of the catalogue rule that matched, or null.")
    message: str = Field("", description="The matching log line, or why nothing matched.")

    @model_validator(mode="after")
    def _fallback_only_for_runtime(self) -> Self:
        if self.fallback_allowed != (self.class_ in FALLBACK_CLASSES):
            raise ValueError(
                f"fallback_allowed must be {self.class_ in FALLBACK_CLASSES} for class {self.class_.value}"
            )
        return self


class Capabilities(_Model):
    """What the probe found the node allows, and the mode `auto` resolves to."""

    uid: int
    userns: bool = Field(description="A forked child could unshare(CLONE_NEWUSER).")
    userns_error: str | None = Field(None, description="The errno text when it could not.")
    seccomp: int | None = Field(None, description="Seccomp mode from /proc/self/status (0 off, 1 strict, 2 filter).")
    no_new_privs: bool = False
    cap_eff: str = Field("", description="CapEff from /proc/self/status, hex.")
    max_user_namespaces: int | None = None
    newuidmap: bool = False
    newgidmap: bool = False
    dev_fuse: bool = False
    apparmor: str | None = Field(
        None, description="This process's AppArmor profile (e.g. unconfined), null without AppArmor."
    )
    builders: dict[str, str | None] = Field(
        default_factory=dict, description="Builder binary -> version, null when absent."
    )
    resolved_mode: Mode = Field(description="What `auto` resolves to on this node.")


class Approval(_Model):
    """The approval record: who decided what, and when."""

    decision: Decision
    approver: str | None = Field(None, description="Who resumed the gate (Argo's actor label), null on timeout.")
    reason: str = ""
    at: datetime | None = None


class BuildResult(_Model):
    """The one JSON result every run ends with (workflow output parameter `result`)."""

    status: Status
    builder: Builder | None = None
    simulated: bool = False
    image: str | None = Field(None, description="The pushed reference (or the destination of a synthetic result).")
    digest: str | None = Field(
        None, pattern=DIGEST_PATTERN, description="sha256 digest; derived from the request when simulated."
    )
    push_skipped_reason: PushSkippedReason | None = None
    classification: Classification | None = None
    approval: Approval | None = None
    message: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        synthetic = self.status is Status.SYNTHETIC
        if self.simulated != synthetic or (self.builder is Builder.SYNTHETIC) != synthetic:
            raise ValueError("simulated and builder=synthetic go together, and only with status synthetic")
        if synthetic:
            if self.push_skipped_reason is not PushSkippedReason.BUILDER_RUNTIME_UNAVAILABLE:
                raise ValueError("a synthetic result has push_skipped_reason builder_runtime_unavailable")
            if self.classification is None or self.classification.class_ not in FALLBACK_CLASSES:
                raise ValueError("a synthetic result carries its builder_runtime_unavailable classification")
        if self.status is Status.FAILED and self.classification is None:
            raise ValueError("a failed result carries its classification")
        if self.status is Status.SUCCEEDED and self.digest is None:
            raise ValueError("a succeeded result has the digest of what was built or pushed")
        if self.status is Status.REJECTED and self.push_skipped_reason is not PushSkippedReason.REJECTED:
            raise ValueError("a rejected result has push_skipped_reason rejected")
        return self


class StepSpec(_Model):
    """How one step talks to its template: `python -m steps.<module>` writing one file per output."""

    module: str
    outputs: dict[str, str] = Field(description="Output parameter -> default (used when a failed step wrote none).")


# Where things live inside step pods. The templates mount these paths and `run --local`
# maps them to directories on the machine; nothing else hard-codes them.
OUTPUT_DIR = "/tmp/outputs"
WORKSPACE_DIR = "/workspace"
POLICY_DIR = "/etc/imagegate/policy"
REGISTRY_AUTH_DIR = "/etc/imagegate/registry"
ARCHIVE_PATH = f"{WORKSPACE_DIR}/image.oci.tar"
BUILD_LOG_PATH = f"{WORKSPACE_DIR}/build.log"

# Every step's outputs, by template name. A step writes exactly these files into its
# --out directory (steps._io.write_outputs checks); templates declare exactly these
# outputs, each with its default, because Argo saves a failed step's outputs too.
STEPS: dict[str, StepSpec] = {
    "validate": StepSpec(
        module="validate",
        # source-simulated (image-push): "false" iff source-result is empty or not simulated; push runs only
        # then, so the fail-safe default keeps a synthetic source from ever being pushed.
        outputs={
            "request": "",
            "fallback": "forbidden",
            "insecure": "false",
            "error": "",
            "submitter": "",
            "source-simulated": "true",
        },
    ),
    "probe": StepSpec(module="probe", outputs={"mode": "runner", "capabilities": "{}"}),
    "build-runner": StepSpec(
        # digest: the manifest digest inside the archive (what a push=false run reports).
        module="build_runner",
        outputs={"exit-code": "-1", "log-tail": "", "archive": "", "digest": ""},
    ),
    "classify": StepSpec(
        module="classify", outputs={"class": "unclassified", "fallback-allowed": "false", "classification": ""}
    ),
    "synthetic": StepSpec(module="synthetic", outputs={"result": "", "digest": ""}),
    "push": StepSpec(
        module="push",
        outputs={
            "result": "",
            "digest": "",
            "image-url": "",
            "IMAGE_DIGEST": "",
            "IMAGE_URL": "",
            "classification": "",
        },
    ),
    "report": StepSpec(module="report", outputs={"result": ""}),
}


def describe_errors(exc: ValidationError) -> list[str]:
    """One line per problem, `field: message`, with the field named as the caller wrote it."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "request"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}")
    return lines
