"""The one error hierarchy of videdit, and the exit codes the CLI maps it to.

Every error a user can cause is a :class:`VideditError`; its ``str()`` is a single
line that names the file (or option) and the problem. The CLI prints that line and
exits with ``exit_code``; anything else escaping is a bug and prints a traceback
only under ``--debug``.

Exit codes (documented in README.md):

====  =====================================================================
 0    success
 1    internal error (a bug: please report it with ``--debug`` output)
 2    usage error: bad option value, unknown name, conflicting options
 3    unreadable input: missing, empty, not a video, truncated, too large
 4    missing model weights (not present locally and the hub is not reachable)
 5    output problem: cannot write, would overwrite the input, encoder failed
====  =====================================================================
"""

from __future__ import annotations

__all__ = [
    "VideditError",
    "UsageError",
    "InputError",
    "MissingWeightsError",
    "OutputError",
    "EXIT_OK",
    "EXIT_INTERNAL",
]

EXIT_OK = 0
EXIT_INTERNAL = 1


class VideditError(Exception):
    """Base of every error a user can cause; ``str(err)`` is one line."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str):
        # One line, always: a multi-line message would break the CLI contract.
        super().__init__(" ".join(str(message).split()))


class UsageError(VideditError, ValueError):
    """A bad option value, an unknown name, or options that contradict each other."""

    exit_code = 2


class InputError(VideditError):
    """The input cannot be read as asked: missing, empty, not a video, truncated..."""

    exit_code = 3


class MissingWeightsError(VideditError):
    """Model weights are neither in a local directory nor in the Hugging Face cache."""

    exit_code = 4


class OutputError(VideditError):
    """The output cannot be written: bad path, would overwrite the input, encoder failed."""

    exit_code = 5
