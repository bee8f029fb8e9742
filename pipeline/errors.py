"""The project's own exceptions.

Library code raises these with a *remedy*; only :mod:`pipeline.cli` turns them into an exit code
and a one-line message.
"""

from __future__ import annotations


class GovTopicsError(Exception):
    """Base class: a problem the user can fix, with what to do about it.

    Parameters
    ----------
    message : str
        What is wrong, naming the file (and line) where there is one.
    remedy : str, optional
        What to do about it.
    """

    exit_code = 1

    def __init__(self, message: str, remedy: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy

    def __str__(self) -> str:
        return f"{self.message} ({self.remedy})" if self.remedy else self.message


class ConfigError(GovTopicsError):
    """An invalid themes file, experiment config or command-line setting."""

    exit_code = 2


class UsageError(GovTopicsError):
    """A command given something that does not exist (a path, a model): nothing was done."""

    exit_code = 2


class DataError(GovTopicsError):
    """Unreadable, undecodable or inconsistent input data."""


class StageError(GovTopicsError):
    """A stage's input is missing or stale."""


class ModelError(GovTopicsError):
    """A model that cannot be found, loaded or trusted."""

    exit_code = 2


class Terminated(BaseException):
    """SIGTERM arrived: the command stops as on Ctrl-C, cleaning up on the way (no partial
    output, no half-registered version). A ``BaseException``, so that no ``except Exception`` on
    the way swallows it; the CLI exits with 143."""
