"""Errors a user can cause. Each carries the exit code the CLI returns and says what to do.

The exit codes of every cvops command, in one table: `exit_codes()`, which the docs' reference page of exit codes
is generated from.
"""

INTERRUPTED_EXIT = 130  # Ctrl-C; SIGTERM ends a command with 128 + 15 = 143, through the same cleanup


class CvopsError(Exception):
    """An error cvops did not foresee: one line naming it and the file that holds its traceback."""

    exit_code = 1


class ConfigError(CvopsError):
    """Bad or misspelt parameters, or a command line that does not parse (`--help` says what it takes)."""

    exit_code = 2


class DataError(CvopsError):
    """Missing, empty or unreadable input data."""

    exit_code = 3


class NotInitializedError(CvopsError):
    """A step was skipped: a command ran before `cvops init` or `cvops data import`."""

    exit_code = 4


class ModelError(CvopsError):
    """Missing or incompatible model weights or checkpoints."""

    exit_code = 5


class DataInvalidError(CvopsError):
    """The data failed validation: the report names every failed check and file."""

    exit_code = 6


class GateFailedError(CvopsError):
    """A trained model failed its gate: registered with its evidence, but not as challenger."""

    exit_code = 7


class RegistryError(CvopsError):
    """An unknown model version, or no champion / previous champion where one is needed."""

    exit_code = 8


class PromotionRefusedError(CvopsError):
    """A promotion, rejection or rollback that the approval rules forbid."""

    exit_code = 9


class AlreadyRunningError(CvopsError):
    """The same pipeline is already running in this project (training and monitoring hold a lock)."""

    exit_code = 11


class ServiceUnavailable(CvopsError):
    """A server did not answer or refused this command's credentials: the model service, the team stack's
    MLflow, ZenML or S3 server, a Ray cluster."""

    exit_code = 10


class LineageError(CvopsError):
    """A version's commit, data or parameters cannot be found, so it cannot be reproduced."""

    exit_code = 12


class NotReproducedError(CvopsError):
    """A reproduction ran but did not give the version back (other data, or metrics outside their interval)."""

    exit_code = 13


class FeedbackError(CvopsError):
    """A true label that cannot be recorded or imported: an unknown request id or label, no such capture."""

    exit_code = 14


class UnhealthyError(CvopsError):
    """`cvops doctor` found problems: each is printed with the command that fixes it."""

    exit_code = 15


def exit_codes() -> list[tuple[int, str]]:
    """(code, meaning) of every exit code a cvops command returns besides 0, in order."""
    kinds: list[type[CvopsError]] = [CvopsError, *CvopsError.__subclasses__()]
    table = {kind.exit_code: " ".join((kind.__doc__ or "").split()) for kind in kinds}
    table[INTERRUPTED_EXIT] = "Interrupted (Ctrl-C); a SIGTERM ends a command the same way, with 143."
    return sorted(table.items())
