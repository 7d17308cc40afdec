"""Render configuration: images, names, resources, deadlines, TTLs and caches, in one model.

`RenderConfig()` is the default every committed manifest is rendered with; a YAML file
given to `imagegate render --config FILE` overrides any part of it (keys as below,
snake_case; the `policy` section takes the ConfigMap's camelCase keys). Invalid values
fail render with `ConfigError`, one line per field (`images.steps: ...`).

Images are pinned by digest here and nowhere else. Upstream images carry the source the
digest was taken from. Our own images (`steps`, `runner`, built from images/) have no
published digest yet: their defaults use `UNRELEASED_DIGEST`, which render accepts but
reports in its summary, and release CI renders with `--config` naming the digests it pushed
(docs/templates.md, "Images").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator

from steps.contract import Policy, describe_errors, parse_reference
from workflows import names
from workflows.errors import ConfigError

__all__ = ["Cache", "Deadlines", "Images", "RenderConfig", "Resources", "UNRELEASED_DIGEST", "load_config"]

# The placeholder digest of an image we have not released: pulls fail loudly, never silently.
UNRELEASED_DIGEST = "sha256:" + "0" * 64
_PINNED = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")

Quantity = Annotated[str, Field(pattern=_QUANTITY.pattern)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Images(_Section):
    """Every image a template runs, each `name[:tag]@sha256:<digest>`."""

    # The maintained Kaniko fork's -debug variant: it has busybox sh for our wrapper script.
    # Digest as pinned in zystem/CiNim's CI (ci script, ghcr.io/osscontainertools/kaniko v1.28.5-debug).
    kaniko: str = (
        "ghcr.io/osscontainertools/kaniko:v1.28.5-debug"
        "@sha256:d6d74217dc077acfd3094992e917c357080a2d3fdd1042a49e34e29a7e57c572"
    )
    # Rootless BuildKit; digest as pinned in HasonoCell/Orbit-DevOps (kind e2e test, v0.33.0-rootless).
    buildkit: str = (
        "docker.io/moby/buildkit:v0.33.0-rootless"
        "@sha256:80b15f0735e87bab7bf59ec4d695dfb4a7cfb25521cf56dc75d6f256285b63ef"
    )
    # Built from images/ by release CI; see UNRELEASED_DIGEST.
    steps: str = f"ghcr.io/imagegate/steps:0.1.0@{UNRELEASED_DIGEST}"
    runner: str = f"ghcr.io/imagegate/runner:0.1.0@{UNRELEASED_DIGEST}"

    @field_validator("*")
    @classmethod
    def _pinned(cls, v: str) -> str:
        if not _PINNED.match(v):
            raise ValueError(f"{v!r} is not pinned by digest: write it as name:tag@sha256:<64 hex digits>")
        return v

    def unreleased(self) -> list[str]:
        """Names of the images still on the placeholder digest."""
        return [name for name, ref in self.model_dump().items() if ref.endswith(UNRELEASED_DIGEST)]


class Resources(_Section):
    """Requests and limits of one kind of pod."""

    cpu_request: Quantity
    memory_request: Quantity
    cpu_limit: Quantity
    memory_limit: Quantity


class ResourceSet(_Section):
    """Resources per kind of pod: small step pods, the build pods, the push pod."""

    step: Resources = Resources(cpu_request="50m", memory_request="64Mi", cpu_limit="500m", memory_limit="256Mi")
    build: Resources = Resources(cpu_request="500m", memory_request="1Gi", cpu_limit="2", memory_limit="4Gi")
    push: Resources = Resources(cpu_request="100m", memory_request="128Mi", cpu_limit="1", memory_limit="512Mi")


class Deadlines(_Section):
    """activeDeadlineSeconds per kind of pod (Argo allows it on leaf templates only)."""

    step: PositiveInt = 300
    probe: PositiveInt = 120
    build: PositiveInt = 3600
    push: PositiveInt = 900


class TTL(_Section):
    """How long finished workflows stay for `argo get` and the UI (spec.ttlStrategy)."""

    seconds_after_success: PositiveInt = 86400
    seconds_after_failure: PositiveInt = 7 * 86400


class Cache(_Section):
    """Layer caches, off by default.

    The cache registry must accept the build pod's pushes without credentials (build pods
    never hold the push Secret), e.g. an in-cluster registry.
    """

    kaniko_repo: str | None = Field(None, description="Kaniko --cache=true --cache-repo=<repo>.")
    buildkit_ref: str | None = Field(None, description="BuildKit registry cache import/export ref.")
    runner_claim: str | None = Field(
        None,
        description="An existing PVC build-runner mounts as its buildah layer store (--cache-dir), kept between "
        "runs; builds sharing it take turns on buildah's storage lock.",
    )

    @field_validator("runner_claim")
    @classmethod
    def _claim(cls, v: str | None) -> str | None:
        # A PVC name is a DNS-1123 subdomain (kubernetes.io/docs/concepts/overview/working-with-objects/names).
        if v is not None and not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", v):
            raise ValueError(f"{v!r} is not a PersistentVolumeClaim name: use lowercase letters, digits, '-' and '.'")
        return v

    @field_validator("kaniko_repo", "buildkit_ref")
    @classmethod
    def _reference(cls, v: str | None) -> str | None:
        if v is not None:
            parse_reference(v)
        return v


class Workspace(_Section):
    """The run's workspace volume: a fresh PVC per run, or an existing claim holding the context."""

    size: Quantity = "2Gi"
    storage_class: str | None = None
    claim_name: str | None = Field(None, description="Use this existing PVC instead of a per-run volume.")


class RenderConfig(_Section):
    """Everything render needs besides the contract; defaults are what manifests/ holds."""

    images: Images = Images()
    registry_secret: str = Field(names.REGISTRY_SECRET, description="The dockerconfigjson Secret push mounts.")
    service_account: str = names.SERVICE_ACCOUNT
    resources: ResourceSet = ResourceSet()
    deadlines: Deadlines = Deadlines()
    ttl: TTL = TTL()
    cache: Cache = Cache()
    workspace: Workspace = Workspace()
    fs_group: int = Field(65532, ge=0, description="Group that owns the workspace, shared by every pod.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Placement of probe and build pods.")
    push_retries: int = Field(3, ge=0, le=10, description="Retries of a transient push failure, with backoff.")
    policy: Policy = Field(default_factory=Policy, description="The policy ConfigMap's contents.")


def load_config(path: str | Path | None) -> RenderConfig:
    """The default configuration, or the defaults overridden by the YAML file at `path`.

    Raises:
        ConfigError: The file is unreadable, not a mapping, or a value is invalid; the
            message has one `field: problem` line per error.
    """
    if path is None:
        return RenderConfig()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read render config {path}: {exc}", hint="give a readable YAML file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"render config {path} is not a mapping", hint="write keys such as `images:` at the top")
    try:
        return RenderConfig.model_validate(data)
    except ValidationError as exc:
        lines = "\n".join(describe_errors(exc))
        raise ConfigError(f"render config {path} is invalid:\n{lines}", hint="fix the fields named above") from None
