"""User-facing errors: each is one clear line naming the file/option and what to do."""


class RSPNetError(Exception):
    """Base class: the CLI prints `rspnet: error: <message>` and exits with status 2."""


class ConfigError(RSPNetError):
    """A config option has a bad value or a required option is missing."""


class DataError(RSPNetError):
    """A dataset file or folder is missing, unreadable or inconsistent."""


class ArtifactError(RSPNetError):
    """A genotype/macro/metrics/checkpoint artifact is missing or invalid."""


class BusyError(RSPNetError):
    """Another process is running the same run (its output folder is locked)."""


class NonFiniteError(RSPNetError):
    """Loss or architecture parameters became NaN/inf."""


class StoppedError(RSPNetError):
    """The run was stopped by a signal (SIGTERM, SIGINT); the CLI exits with 128 + the signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = int(signum)
