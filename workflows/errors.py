"""Errors of the authoring side (render, lint, plan, local run, client, CLI).

A leaf module: it imports nothing from imagegate, so every module can import it.

    ImagegateError              base; the CLI catches this alone and prints `Name: message`
    ├── ConfigError             render/run configuration is invalid (an unpinned image, a bad timeout)
    ├── RequestError            a build request or parameter does not satisfy the contract
    ├── TemplateError           a manifest cannot be read or is not a Workflow/WorkflowTemplate
    ├── DriftError              committed manifests differ from what render produces
    ├── ExpressionError         a `when`, `depends` or `{{=...}}` expression cannot be used
    │   ├── ExpressionSyntaxError      it does not parse (what Argo reports when the node is reached)
    │   ├── ExpressionEvaluationError  it parses but fails on these values (a type error, a non-boolean `when`)
    │   └── UnresolvedReferenceError   a `{{...}}` tag names nothing in scope
    ├── LocalRunError           `run --local` cannot run a task on this machine
    └── ClientError             talking to the cluster failed
        ├── NotFoundError       the Workflow (or node) does not exist
        ├── ForbiddenError      RBAC refused the call
        ├── NotWaitingError     the approval gate is not waiting for a decision
        ├── WaitTimeoutError    the run did not finish in time
        ├── RejectedError       the approval was refused (by policy or by a person)
        └── ResultParseError    the workflow's `result` output is not a valid BuildResult
"""

__all__ = [
    "ClientError",
    "ConfigError",
    "DriftError",
    "ExpressionError",
    "ExpressionEvaluationError",
    "ExpressionSyntaxError",
    "ForbiddenError",
    "ImagegateError",
    "LocalRunError",
    "NotFoundError",
    "NotWaitingError",
    "RejectedError",
    "RequestError",
    "ResultParseError",
    "TemplateError",
    "UnresolvedReferenceError",
    "WaitTimeoutError",
]


class ImagegateError(Exception):
    """Base of every error the CLI reports without a traceback."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class ConfigError(ImagegateError):
    """Render or run configuration is invalid."""


class RequestError(ImagegateError):
    """A build request or parameter does not satisfy the contract."""


class TemplateError(ImagegateError):
    """A manifest cannot be read or is not a Workflow or WorkflowTemplate."""


class DriftError(ImagegateError):
    """Committed manifests differ from what render produces."""

    hint = "run `imagegate render` and commit manifests/"


class ExpressionError(ImagegateError):
    """A `when`, `depends` or `{{=...}}` expression cannot be used."""


class ExpressionSyntaxError(ExpressionError):
    """The expression does not parse."""


class ExpressionEvaluationError(ExpressionError):
    """The expression parses but fails on the values given."""


class UnresolvedReferenceError(ExpressionError):
    """A `{{...}}` tag names nothing in scope."""


class LocalRunError(ImagegateError):
    """`run --local` cannot run a task on this machine."""


class ClientError(ImagegateError):
    """Talking to the cluster failed."""


class NotFoundError(ClientError):
    """The Workflow or node does not exist."""


class ForbiddenError(ClientError):
    """RBAC refused the call."""


class NotWaitingError(ClientError):
    """The approval gate is not waiting: not reached yet, or already decided."""


class WaitTimeoutError(ClientError):
    """The run did not finish in time."""


class RejectedError(ClientError):
    """The approval was refused, by policy or by a person."""


class ResultParseError(ClientError):
    """The workflow's `result` output is not a valid BuildResult."""
