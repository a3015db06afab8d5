"""User-facing errors: one line that names the problem and the fix."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class CnnlabError(Exception):
    """A problem with the user's input (config, data, checkpoint), not a bug."""


class DataError(CnnlabError):
    """The dataset is missing, corrupt or inconsistent with the config."""


class ConfigError(CnnlabError):
    """A config value is invalid or inconsistent with another one."""


class CheckpointError(CnnlabError):
    """A checkpoint is missing, unreadable, or does not fit the data or model asked for."""


def reason_of(error: BaseException, limit: int = 160) -> str:
    """An exception as a short clause for a one-line message: its type and first line (``KeyError: 101``)."""
    lines = str(error).strip().splitlines()
    first = lines[0][:limit] if lines else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def user_error(error: BaseException) -> CnnlabError | None:
    """The CnnlabError behind ``error``, also when a library (e.g. Hydra's instantiate) wrapped it."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, CnnlabError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Print a user error as one line and exit with status 2; bugs keep their traceback."""
    try:
        yield
    except Exception as error:
        cause = user_error(error)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        raise SystemExit(2) from None
