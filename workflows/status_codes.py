"""Exit statuses of the `imagegate` command, so CI can branch on how a run ended."""

from steps.contract import Status

SUCCESS = 0
FAILED = 1  # a build failed, or lint found errors, or a check (render --check) did not pass
USAGE_ERROR = 2  # argparse's own code for bad flags
SYNTHETIC = 3  # the run ended with a synthetic result: nothing real was pushed
REJECTED = 4  # the approval was refused or timed out
ERROR = 5  # imagegate could not do what was asked (configuration, cluster, template)

_BY_STATUS = {Status.SUCCEEDED: SUCCESS, Status.FAILED: FAILED, Status.SYNTHETIC: SYNTHETIC, Status.REJECTED: REJECTED}


def for_status(status: Status) -> int:
    """The exit status for a run that ended with `status`."""
    return _BY_STATUS[status]
