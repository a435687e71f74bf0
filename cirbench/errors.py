"""The expected failures: bad input, missing data, refused files. Each is one line that names the file and
the fix; the command line prints it and exits 2. Any other exception is a bug and keeps its traceback."""

from __future__ import annotations

__all__ = ["CirbenchError", "ConfigError", "DatasetMissing", "ImageError", "RunError", "InvalidInputs",
           "CheckpointError", "WeightsMissing", "FetchError", "Unreachable", "Interrupted"]


class CirbenchError(Exception):
    """An expected failure; the message names the file (or the name) and the fix. ``details`` are lines printed
    before it (e.g. one per bad file, when all problems are reported together)."""

    def __init__(self, message: str = "", *, details: list[str] | None = None):
        super().__init__(message)
        self.details = list(details or [])


class ConfigError(CirbenchError, ValueError):
    """A configuration file, a name or a command-line value is wrong."""


class DatasetMissing(CirbenchError, LookupError):
    """A dataset's files are not under the data root."""


class ImageError(CirbenchError, ValueError):
    """An image cannot be evaluated."""


class RunError(CirbenchError, RuntimeError):
    """A run cannot go on; records written so far stay."""


class InvalidInputs(RunError):
    """Inputs failed the preflight; ``details`` lists one problem per file."""


class CheckpointError(CirbenchError):
    """A checkpoint could not be read, verified or matched to a model."""


class WeightsMissing(CirbenchError, FileNotFoundError):
    """A model's weights are not on disk (and could not be fetched)."""


class FetchError(CirbenchError):
    """A download or an archive was refused; nothing was left behind."""


class Unreachable(FetchError):
    """A download's host could not be reached (no network, a wrong host name, a closed port, a timeout); ``host``
    and ``why`` let the caller say what to do instead."""

    def __init__(self, message: str, *, host: str, why: str):
        super().__init__(message)
        self.host, self.why = host, why


class Interrupted(KeyboardInterrupt):
    """Not a failure: the process was asked to stop (SIGTERM, from ``kill`` or a job scheduler). A
    KeyboardInterrupt, so everything that tidies up after Ctrl-C (run.json says "interrupted") does so for it
    too; ``signal_name`` and ``exit_code`` (128 + the signal's number) say which."""

    def __init__(self, signal_name: str, exit_code: int):
        super().__init__(signal_name)
        self.signal_name, self.exit_code = signal_name, exit_code
