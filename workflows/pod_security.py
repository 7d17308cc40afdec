"""Pod Security Standards: which level each builder needs, and a checker for rendered pods.

The checker applies the `baseline` and `restricted` rules of the Kubernetes Pod Security
Standards (https://kubernetes.io/docs/concepts/security/pod-security-standards/, the
rules as of v1.30, when `appArmorProfile` became a field) to one pod: a rendered Argo
template's pod-level fields plus its containers. It returns findings, never raises, so
tests and lint can both say exactly which field breaks which rule. `template_pods` turns
a rendered WorkflowTemplate into the pods Argo would create from it (template defaults,
workflow-level security context, pod metadata and volumes applied), one per template
that runs a pod. Argo's own init and wait containers are not in the manifest: their
security context is the controller's `executor` setting (docs/security.md).

`BUILDER_LEVELS` is the one place that says how much each build mode needs; the
namespace labels (`workflows.rbac`) are derived from it and a test checks it against the
rendered templates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel

from steps.contract import Mode

__all__ = [
    "BASELINE_CAPABILITIES",
    "BUILDER_LEVELS",
    "Finding",
    "Level",
    "PodView",
    "check_pod",
    "check_view",
    "level_of",
    "required_level",
    "template_pods",
]


class Level(StrEnum):
    """A Pod Security Standard level, from most to least permissive."""

    PRIVILEGED = "privileged"
    BASELINE = "baseline"
    RESTRICTED = "restricted"


# Ordered from weakest to strongest requirement: a pod "meets" every level at or below its own.
_ORDER = (Level.PRIVILEGED, Level.BASELINE, Level.RESTRICTED)

# What a build pod of each mode needs, and why (shared/research/builders.md sections 1.1, 1.5, 5):
# - kaniko runs as root with seven default capabilities added back (Shipwright's strategy):
#   all of them are in baseline's allowed set, so baseline, never restricted.
# - buildkit rootless needs seccomp and AppArmor Unconfined (rootlesskit mounts and creates
#   user namespaces); baseline forbids both profiles, so only privileged admits it.
# - runner is rootless buildah: it creates a user namespace and mounts inside it, so it takes
#   BuildKit's profile (seccomp and AppArmor Unconfined), which only privileged admits.
# - synthetic builds nothing: only the steps pods run, and they are restricted.
# - auto may resolve to any real builder on the node, so it needs the weakest of them.
_REAL_BUILDERS = {Mode.KANIKO: Level.BASELINE, Mode.BUILDKIT: Level.PRIVILEGED, Mode.RUNNER: Level.PRIVILEGED}
BUILDER_LEVELS: dict[Mode, Level] = {
    **_REAL_BUILDERS,
    Mode.SYNTHETIC: Level.RESTRICTED,
    Mode.AUTO: min(_REAL_BUILDERS.values(), key=_ORDER.index),
}

# Capabilities baseline lets a container add: the container runtimes' default set
# (PSS "Capabilities" control, baseline).
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
# restricted: drop ALL; only NET_BIND_SERVICE may be added back.
_RESTRICTED_ADD = frozenset({"NET_BIND_SERVICE"})
_SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
# restricted's volume types (PSS "Volume Types"); anything else, image volumes included, is flagged.
_RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


class Finding(BaseModel):
    """One rule a pod breaks: the level it breaks, the field, and what the rule allows.

    `standard` is `pss` for the Kubernetes rules and `imagegate` for the hardening we add
    on top of restricted (a read-only root filesystem), which PSS itself does not require.
    """

    standard: Literal["pss", "imagegate"] = "pss"
    level: Level
    rule: str
    field: str
    message: str


def required_level(modes: Iterable[Mode]) -> Level:
    """The weakest PSS level a namespace must admit so that every given mode can run."""
    levels = [BUILDER_LEVELS[m] for m in modes] or [Level.RESTRICTED]
    return min(levels, key=_ORDER.index)


def level_of(findings: Iterable[Finding]) -> Level:
    """The strongest PSS level a pod with these findings still meets (imagegate rules aside)."""
    broken = {f.level for f in findings if f.standard == "pss"}
    if Level.BASELINE in broken:
        return Level.PRIVILEGED
    if Level.RESTRICTED in broken:
        return Level.BASELINE
    return Level.RESTRICTED


def check_pod(
    pod: Mapping[str, Any],
    containers: Iterable[tuple[str, Mapping[str, Any]]],
    annotations: Mapping[str, str] | None = None,
) -> list[Finding]:
    """Check one pod against baseline and restricted.

    Args:
        pod: Pod-level fields as an Argo template renders them (`securityContext`,
            `volumes`, `hostNetwork`, ...), camelCase.
        containers: `(field path, container)` pairs, e.g. `("container", {...})` or
            `("initContainers[0]", {...})`, so findings name the field.
        annotations: The pod's annotations (the pre-1.30 AppArmor annotation lives there).

    Returns:
        Every rule broken, each a `Finding`; empty means the pod meets restricted.
    """
    out: list[Finding] = []
    psc: Mapping[str, Any] = pod.get("securityContext") or {}
    _check_pod_fields(pod, psc, annotations or {}, out)
    for path, c in containers:
        _check_container(path, c, psc, out)
    return out


def _add(out: list[Finding], level: Level, rule: str, field: str, message: str) -> None:
    out.append(Finding(level=level, rule=rule, field=field, message=message))


def _check_pod_fields(
    pod: Mapping[str, Any], psc: Mapping[str, Any], annotations: Mapping[str, str], out: list[Finding]
) -> None:
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            _add(out, Level.BASELINE, "host-namespaces", key, f"{key} must be unset or false")
    for i, vol in enumerate(pod.get("volumes") or []):
        kinds = set(vol) - {"name"}
        if "hostPath" in kinds:
            _add(out, Level.BASELINE, "host-path-volumes", f"volumes[{i}].hostPath", "hostPath volumes are forbidden")
        elif kinds - _RESTRICTED_VOLUMES:
            bad = ", ".join(sorted(kinds - _RESTRICTED_VOLUMES))
            _add(out, Level.RESTRICTED, "volume-types", f"volumes[{i}]", f"volume type {bad} is not allowed")
    for i, sysctl in enumerate(psc.get("sysctls") or []):
        if sysctl.get("name") not in _SAFE_SYSCTLS:
            _add(
                out,
                Level.BASELINE,
                "sysctls",
                f"securityContext.sysctls[{i}]",
                f"sysctl {sysctl.get('name')} is unsafe",
            )
    _check_profiles("securityContext", psc, out)
    for key, value in annotations.items():
        if (
            key.startswith(_APPARMOR_ANNOTATION)
            and value not in ("runtime/default",)
            and not value.startswith("localhost/")
        ):
            _add(
                out,
                Level.BASELINE,
                "apparmor",
                f"metadata.annotations[{key}]",
                f"AppArmor {value}: use runtime/default",
            )
    if psc.get("runAsUser") == 0:
        _add(out, Level.RESTRICTED, "run-as-user", "securityContext.runAsUser", "runAsUser must not be 0")


def _check_profiles(prefix: str, sc: Mapping[str, Any], out: list[Finding]) -> None:
    """Seccomp, AppArmor and SELinux: the fields pod and container contexts share."""
    seccomp = (sc.get("seccompProfile") or {}).get("type")
    if seccomp == "Unconfined":
        _add(out, Level.BASELINE, "seccomp", f"{prefix}.seccompProfile.type", "seccomp Unconfined: use RuntimeDefault")
    apparmor = (sc.get("appArmorProfile") or {}).get("type")
    if apparmor not in (None, "RuntimeDefault", "Localhost"):
        _add(
            out,
            Level.BASELINE,
            "apparmor",
            f"{prefix}.appArmorProfile.type",
            f"AppArmor {apparmor}: use RuntimeDefault",
        )
    selinux = sc.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in _SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
        _add(out, Level.BASELINE, "selinux", f"{prefix}.seLinuxOptions", "custom SELinux user, role or type")


def _check_container(path: str, c: Mapping[str, Any], psc: Mapping[str, Any], out: list[Finding]) -> None:
    sc: Mapping[str, Any] = c.get("securityContext") or {}
    field = f"{path}.securityContext"
    if sc.get("privileged"):
        _add(out, Level.BASELINE, "privileged", f"{field}.privileged", "privileged must be unset or false")
    if sc.get("procMount", "Default") != "Default":
        _add(out, Level.BASELINE, "proc-mount", f"{field}.procMount", "procMount must be Default")
    if any(p.get("hostPort") for p in c.get("ports") or []):
        _add(out, Level.BASELINE, "host-ports", f"{path}.ports", "hostPort must be unset or 0")
    caps = sc.get("capabilities") or {}
    added = set(caps.get("add") or [])
    if added - BASELINE_CAPABILITIES:
        bad = ", ".join(sorted(added - BASELINE_CAPABILITIES))
        _add(out, Level.BASELINE, "capabilities", f"{field}.capabilities.add", f"{bad} beyond the runtime default set")
    if added - _RESTRICTED_ADD:
        bad = ", ".join(sorted(added - _RESTRICTED_ADD))
        _add(out, Level.RESTRICTED, "capabilities", f"{field}.capabilities.add", f"adds {bad}: only NET_BIND_SERVICE")
    if "ALL" not in (caps.get("drop") or []):
        _add(out, Level.RESTRICTED, "capabilities", f"{field}.capabilities.drop", "must drop ALL")
    _check_profiles(field, sc, out)
    seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        _add(out, Level.RESTRICTED, "seccomp", f"{field}.seccompProfile.type", "must be RuntimeDefault or Localhost")
    if sc.get("allowPrivilegeEscalation") is not False:
        _add(out, Level.RESTRICTED, "privilege-escalation", f"{field}.allowPrivilegeEscalation", "must be false")
    non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
    if non_root is not True:
        _add(out, Level.RESTRICTED, "run-as-non-root", f"{field}.runAsNonRoot", "must be true")
    if sc.get("runAsUser") == 0:
        _add(out, Level.RESTRICTED, "run-as-user", f"{field}.runAsUser", "runAsUser must not be 0")
    if sc.get("readOnlyRootFilesystem") is not True:
        out.append(
            Finding(
                standard="imagegate",
                level=Level.RESTRICTED,
                rule="read-only-root-filesystem",
                field=f"{field}.readOnlyRootFilesystem",
                message="must be true: write to emptyDir volumes instead",
            )
        )


class PodView(BaseModel):
    """The pod Argo creates for one template, as far as the manifest decides it."""

    template: str
    pod: dict[str, Any]
    containers: list[tuple[str, dict[str, Any]]]
    annotations: dict[str, str]
    pod_spec_patch: str | None = None


def _merge(defaults: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Template fields over templateDefaults: mappings merge, anything else the template wins."""
    out = dict(defaults)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


_TEMPLATE_TYPES = frozenset(
    {"container", "script", "containerSet", "dag", "steps", "suspend", "resource", "http", "plugin", "data"}
)


def template_pods(manifest: Mapping[str, Any]) -> list[PodView]:
    """The pods of a rendered Workflow or WorkflowTemplate, one per pod-running template.

    Argo builds each pod from the template strategic-merged over `spec.templateDefaults`,
    then resets the template's type, so a default `container` only reaches container
    templates (docs/template-defaults.md; operator.go `mergedTemplateDefaultsInto`). The
    template's `securityContext` replaces the workflow's (workflow/controller/workflowpod.go).
    Suspend, DAG, steps and resource templates run no pod of ours and are skipped.
    """
    spec: Mapping[str, Any] = manifest.get("spec") or {}
    defaults = spec.get("templateDefaults") or {}
    pod_annotations = (spec.get("podMetadata") or {}).get("annotations") or {}
    views = []
    for raw in spec.get("templates") or []:
        # A default for one template type (container, script, ...) applies to templates of that type only.
        typed_defaults = {k: v for k, v in defaults.items() if k not in _TEMPLATE_TYPES or k in raw}
        tmpl = _merge(typed_defaults, raw)
        containers: list[tuple[str, dict[str, Any]]] = []
        for key in ("container", "script"):
            if key in tmpl:
                containers.append((key, tmpl[key]))
        for i, c in enumerate((tmpl.get("containerSet") or {}).get("containers") or []):
            containers.append((f"containerSet.containers[{i}]", c))
        if not containers:
            continue
        for key in ("initContainers", "sidecars"):
            containers += [(f"{key}[{i}]", c) for i, c in enumerate(tmpl.get(key) or [])]
        pod = {
            "securityContext": tmpl.get("securityContext", spec.get("securityContext")) or {},
            "volumes": [*(spec.get("volumes") or []), *(tmpl.get("volumes") or [])],
            "hostNetwork": spec.get("hostNetwork", False),
            "automountServiceAccountToken": tmpl.get(
                "automountServiceAccountToken", spec.get("automountServiceAccountToken")
            ),
        }
        views.append(
            PodView(
                template=raw["name"],
                pod=pod,
                containers=containers,
                annotations={**pod_annotations, **((tmpl.get("metadata") or {}).get("annotations") or {})},
                pod_spec_patch=tmpl.get("podSpecPatch", spec.get("podSpecPatch")),
            )
        )
    return views


def check_view(view: PodView) -> list[Finding]:
    """`check_pod` for a `PodView`; a podSpecPatch cannot be checked, so it counts as privileged."""
    findings = check_pod(view.pod, view.containers, view.annotations)
    if view.pod_spec_patch:
        _add(
            findings, Level.BASELINE, "pod-spec-patch", "podSpecPatch", "a podSpecPatch can change anything: remove it"
        )
    return findings
