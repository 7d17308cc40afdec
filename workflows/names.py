"""Names the Argo side shares: templates, tasks, annotations, labels, Kubernetes objects.

Defined once here; templates, lint, plan, the local runner and the client import them.
Task names are what the Argo UI shows, so they read as verbs of the pipeline.
"""

IMAGE_BUILD = "image-build"
IMAGE_PUSH = "image-push"

# DAG tasks of image-build (and, where shared, image-push).
VALIDATE = "validate"
APPROVE = "approve"
PROBE = "probe"
BUILD_KANIKO = "build-kaniko"
BUILD_BUILDKIT = "build-buildkit"
BUILD_RUNNER = "build-runner"
CLASSIFY = "classify"
SYNTHETIC = "synthetic"
PUSH = "push"
REPORT = "report"  # the onExit template
BUILD_TASKS = (BUILD_KANIKO, BUILD_BUILDKIT, BUILD_RUNNER)
# Tasks that build, push or fabricate a result: none may run unless the gate approved.
GATED_TASKS = (PROBE, *BUILD_TASKS, CLASSIFY, SYNTHETIC, PUSH)

# The suspend node's intermediate parameters (input and output names must match: Argo's UI sets
# outputs named after the inputs it shows, see shared/research/argo.md section 2).
DECISION = "decision"
REASON = "reason"

ANNOTATION_PREFIX = "imagegate.dev/"
# Names the approval gate task; lint's approval rule checks every gated task is dominated by it.
GATE_ANNOTATION = ANNOTATION_PREFIX + "approval-gate"
# Comma-separated tasks that must not run without the gate's decision being approve.
GATED_ANNOTATION = ANNOTATION_PREFIX + "gated-tasks"
# Templates allowed to mount the registry credentials Secret (lint: credentials-outside-push).
CREDENTIALS_ANNOTATION = ANNOTATION_PREFIX + "credentials-templates"

LABEL_REQUEST_ID = ANNOTATION_PREFIX + "request-id"
LABEL_SUBMITTER = ANNOTATION_PREFIX + "submitter"
# Argo's identity labels (argoproj/argo-workflows workflow/common/common.go): who created the
# Workflow, and who last acted on it (resume); the client and the admission policy read both.
ARGO_LABEL_PREFIX = "workflows.argoproj.io/"
ARGO_CREATOR_LABEL = ARGO_LABEL_PREFIX + "creator"
ARGO_ACTOR_LABEL = ARGO_LABEL_PREFIX + "actor"
CREATOR_LABELS = (ARGO_CREATOR_LABEL, ARGO_CREATOR_LABEL + "-email", ARGO_CREATOR_LABEL + "-preferred-username")
ACTOR_LABELS = (ARGO_ACTOR_LABEL, ARGO_ACTOR_LABEL + "-email", ARGO_ACTOR_LABEL + "-preferred-username")

SERVICE_ACCOUNT = "imagegate-workflow"
REGISTRY_SECRET = "imagegate-registry"
