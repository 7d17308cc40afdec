"""Pod defaults every template shares: security contexts, resources, volumes, mounts.

One `PodKind` per way a pod runs, and one place that says what each kind may do
(shared/research/builders.md sections 1.1, 2.2 and 5; `workflows.pod_security` holds the
PSS level each build mode needs and checks these against it):

- `STEP`: our Python steps (validate, classify, synthetic, report) and `PUSH`: non-root,
  no privilege escalation, every capability dropped, RuntimeDefault seccomp, read-only
  root filesystem (PSS restricted). Writable paths are emptyDirs.
- `KANIKO`: root with Shipwright's seven capabilities back (Kaniko unpacks the base image
  over its own root filesystem, so that stays writable); RuntimeDefault seccomp (baseline).
- `BUILDKIT`: uid 1000, seccomp and AppArmor Unconfined, privilege escalation for the
  setuid newuidmap that rootlesskit runs (buildkit docs/rootless.md; privileged level).
- `RUNNER`: rootless buildah (uid 1000, the runner image's subuid range), which needs a
  user namespace: the same profile as BuildKit. The probe runs with it too, so it sees
  what a rootless build would.

The service account token is never mounted into main containers
(`automountServiceAccountToken: false` on the workflow); Argo's executor gets its own
through `executor.serviceAccountName` (see workflows/rbac.py).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from hera.workflows import Container, Parameter
from hera.workflows import models as m

from steps.contract import OUTPUT_DIR, POLICY_DIR, REGISTRY_AUTH_DIR, STEPS, WORKSPACE_DIR, Policy
from workflows.config import RenderConfig

__all__ = [
    "PodKind",
    "RUNNER_CACHE",
    "RUNNER_CACHE_DIR",
    "container",
    "container_security",
    "deadline",
    "inp",
    "mount",
    "pod_security",
    "python_step",
    "resources",
    "step_outputs",
    "volume",
    "workspace_volumes",
]

# Volume names, as mounts refer to them.
WORKSPACE = "workspace"
TMP = "tmp"
POLICY = "policy"
REGISTRY_AUTH = "registry-auth"
BUILDKIT_STATE = "buildkit-state"
BUILDKIT_RUN = "buildkit-run"
RUNNER_CACHE = "runner-cache"  # build-runner's buildah store, from RenderConfig.cache.runner_claim
RUNNER_CACHE_DIR = "/var/cache/imagegate"
# Where rootless BuildKit keeps state and its socket (moby/buildkit examples/kubernetes/job.rootless.yaml).
BUILDKIT_STATE_DIR = "/home/user/.local/share/buildkit"
BUILDKIT_RUN_DIR = "/home/user/.local/tmp"
# The registry auth file push reads (REGISTRY_AUTH_FILE), from the Secret's .dockerconfigjson key.
REGISTRY_AUTH_FILE = f"{REGISTRY_AUTH_DIR}/auth.json"
_TMP_DIR = OUTPUT_DIR.rsplit("/", 1)[0]  # /tmp: outputs live in it, so it is an emptyDir
_ROOTLESS_UID = 1000
_STEP_UID = 10001  # the steps image's user (images/steps/Containerfile); numeric, so runAsNonRoot can check it


class PodKind(StrEnum):
    """How a template's pod runs; decides its security context and resources."""

    STEP = "step"
    PUSH = "push"
    KANIKO = "kaniko"
    BUILDKIT = "buildkit"
    RUNNER = "runner"


_UNCONFINED = {
    "seccomp_profile": m.SeccompProfile(type="Unconfined"),
    "app_armor_profile": m.AppArmorProfile(type="Unconfined"),
}


def pod_security(kind: PodKind, config: RenderConfig) -> m.PodSecurityContext:
    """The pod-level securityContext: who the pod runs as and the workspace's group."""
    if kind is PodKind.KANIKO:
        return m.PodSecurityContext(run_as_user=0, run_as_group=0, fs_group=config.fs_group,
                                    seccomp_profile=m.SeccompProfile(type="RuntimeDefault"))
    if kind in (PodKind.BUILDKIT, PodKind.RUNNER):
        return m.PodSecurityContext(run_as_user=_ROOTLESS_UID, run_as_group=_ROOTLESS_UID, run_as_non_root=True,
                                    fs_group=config.fs_group, **_UNCONFINED)
    return m.PodSecurityContext(run_as_user=_STEP_UID, run_as_group=_STEP_UID, run_as_non_root=True,
                                fs_group=config.fs_group, seccomp_profile=m.SeccompProfile(type="RuntimeDefault"))


def container_security(kind: PodKind) -> m.SecurityContext:
    """The main container's securityContext."""
    if kind is PodKind.KANIKO:
        # Shipwright's Kaniko strategy: root, but only these capabilities (all within baseline).
        caps = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETFCAP", "SETGID", "SETUID"]
        return m.SecurityContext(allow_privilege_escalation=False, read_only_root_filesystem=False,
                                 capabilities=m.Capabilities(drop=["ALL"], add=caps),
                                 seccomp_profile=m.SeccompProfile(type="RuntimeDefault"))
    if kind in (PodKind.BUILDKIT, PodKind.RUNNER):
        # The setuid newuidmap/newgidmap need SETUID/SETGID (Shipwright's BuildKit strategy adds exactly these);
        # everything else in the runtime's default set is dropped.
        return m.SecurityContext(allow_privilege_escalation=True, read_only_root_filesystem=kind is PodKind.BUILDKIT,
                                 capabilities=m.Capabilities(drop=["ALL"], add=["SETGID", "SETUID"]), **_UNCONFINED)
    return m.SecurityContext(allow_privilege_escalation=False, read_only_root_filesystem=True, run_as_non_root=True,
                             capabilities=m.Capabilities(drop=["ALL"]),
                             seccomp_profile=m.SeccompProfile(type="RuntimeDefault"))


def resources(kind: PodKind, config: RenderConfig) -> m.ResourceRequirements:
    """Requests and limits from the configuration."""
    r = {PodKind.STEP: config.resources.step, PodKind.PUSH: config.resources.push}.get(kind, config.resources.build)
    return m.ResourceRequirements(
        requests={"cpu": m.Quantity(r.cpu_request), "memory": m.Quantity(r.memory_request)},
        limits={"cpu": m.Quantity(r.cpu_limit), "memory": m.Quantity(r.memory_limit)},
    )


def deadline(kind: PodKind, config: RenderConfig, *, probe: bool = False) -> int:
    """The activeDeadlineSeconds of a pod of this kind."""
    d = config.deadlines
    if probe:
        return d.probe
    return {PodKind.STEP: d.step, PodKind.PUSH: d.push}.get(kind, d.build)


def volume(name: str, config: RenderConfig) -> m.Volume:
    """A template-level volume by name (the workspace is per workflow, see `workspace_volumes`)."""
    if name == POLICY:
        return m.Volume(name=POLICY, config_map=m.ConfigMapVolumeSource(name=Policy.CONFIGMAP_NAME))
    if name == REGISTRY_AUTH:
        # Optional: an anonymous registry needs no Secret; push then reports registry_auth if one was needed.
        return m.Volume(name=REGISTRY_AUTH, secret=m.SecretVolumeSource(
            secret_name=config.registry_secret, optional=True,
            items=[m.KeyToPath(key=".dockerconfigjson", path="auth.json")]))
    if name == RUNNER_CACHE:
        return m.Volume(name=RUNNER_CACHE, persistent_volume_claim=m.PersistentVolumeClaimVolumeSource(
            claim_name=config.cache.runner_claim))
    return m.Volume(name=name, empty_dir=m.EmptyDirVolumeSource())


def mount(name: str) -> m.VolumeMount:
    """Where each volume is mounted, read-only unless a step writes there."""
    paths = {WORKSPACE: WORKSPACE_DIR, TMP: _TMP_DIR, POLICY: POLICY_DIR, REGISTRY_AUTH: REGISTRY_AUTH_DIR,
             BUILDKIT_STATE: BUILDKIT_STATE_DIR, BUILDKIT_RUN: BUILDKIT_RUN_DIR, RUNNER_CACHE: RUNNER_CACHE_DIR}
    return m.VolumeMount(name=name, mount_path=paths[name], read_only=name in (POLICY, REGISTRY_AUTH) or None)


def workspace_volumes(config: RenderConfig) -> tuple[list[m.PersistentVolumeClaim], list[m.Volume]]:
    """The workspace: a claim template per run, or the configured existing claim."""
    ws = config.workspace
    if ws.claim_name:
        return [], [m.Volume(name=WORKSPACE, persistent_volume_claim=m.PersistentVolumeClaimVolumeSource(
            claim_name=ws.claim_name))]
    claim = m.PersistentVolumeClaim(
        metadata=m.ObjectMeta(name=WORKSPACE),
        spec=m.PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            storage_class_name=ws.storage_class,
            resources=m.VolumeResourceRequirements(requests={"storage": m.Quantity(ws.size)}),
        ),
    )
    return [claim], []


def step_outputs(step: str, global_names: dict[str, str] | None = None) -> list[Parameter]:
    """Output parameters of a step, exactly `STEPS[step].outputs`, each with its default.

    A failed or killed step still has its outputs saved, so every one needs a default
    (shared/research/argo.md section 3). `global_names` exports some to `workflow.outputs`
    for the onExit report.
    """
    globals_ = global_names or {}
    unknown = set(globals_) - set(STEPS[step].outputs)
    if unknown:
        raise ValueError(f"step {step} has no outputs {sorted(unknown)}")
    return [
        Parameter(name=name, value_from=m.ValueFrom(path=f"{OUTPUT_DIR}/{name}", default=default),
                  global_name=globals_.get(name))
        for name, default in STEPS[step].outputs.items()
    ]


def container(
    name: str,
    kind: PodKind,
    config: RenderConfig,
    *,
    image: str,
    command: list[str],
    args: list[str],
    mounts: tuple[str, ...] = (TMP,),
    inputs: tuple[str, ...] = (),
    outputs: list[Parameter] | None = None,
    env: dict[str, str] | None = None,
    probe: bool = False,
    **extra: Any,
) -> Container:
    """A container template with the pod defaults of `kind`: security, resources, deadline, volumes.

    The workspace is mounted by name only; its volume is declared once per workflow
    (`workspace_volumes`). `inputs` are the values the DAG task passes in (a template
    cannot read `tasks.*` itself); refer to them with `inp(name)`.
    """
    # Probe and build pods go where the configuration places builds; step pods run anywhere.
    placed = kind not in (PodKind.STEP, PodKind.PUSH)
    return Container(
        name=name,
        image=image,
        command=command,
        args=args,
        env=[m.EnvVar(name=k, value=v) for k, v in (env or {}).items()] or None,
        security_context=container_security(kind),
        pod_security_context=pod_security(kind, config),
        resources=resources(kind, config),
        # A string: Argo's JSON schema types IntOrString fields as strings (the CRD takes both).
        active_deadline_seconds=str(deadline(kind, config, probe=probe)),
        volumes=[volume(v, config) for v in mounts if v != WORKSPACE] or None,
        volume_mounts=[mount(v) for v in mounts],
        node_selector=(dict(config.node_selector) or None) if placed else None,
        inputs=[Parameter(name=n) for n in inputs] or None,
        outputs=outputs,
        **extra,
    )


def inp(name: str) -> str:
    """A reference to a template input: `{{inputs.parameters.NAME}}`."""
    return f"{{{{inputs.parameters.{name}}}}}"


def python_step(step: str) -> list[str]:
    """The command of a steps/ module: `python -m steps.<module>`."""
    return ["python", "-m", f"steps.{STEPS[step].module}"]
