"""Errors raised by step code. A leaf module: it imports nothing from imagegate.

    StepError            a step cannot do its job; main() prints it and exits non-zero
    ├── InputError       an argument, environment variable or input file is missing or malformed
    └── ToolError        an external tool (buildah, skopeo) failed in a way the step cannot absorb

Failure classes such as `builder_runtime_unavailable` are data in the result
(steps.contract.FailureClass), not exceptions.
"""

__all__ = ["InputError", "StepError", "ToolError"]


class StepError(Exception):
    """A step cannot do its job."""


class InputError(StepError):
    """An argument, environment variable or input file is missing or malformed."""


class ToolError(StepError):
    """An external tool failed in a way the step cannot absorb."""
