"""User-facing errors: each message names the problem and the fix on one line.

Binaries catch `TfpruneError`, print its message and exit non-zero; anything else is a bug and keeps its
traceback.
"""


class TfpruneError(Exception):
    """A problem the user can fix (bad flag, bad file, missing artefact)."""


class ConfigError(TfpruneError, ValueError):
    """An invalid configuration value (unknown name, value out of range)."""


class DataError(TfpruneError):
    """A dataset file is missing, truncated, corrupt, mis-shaped or has out-of-range labels."""


class ChecksumError(DataError):
    """A file's SHA-256 does not match the expected one."""


class CheckpointError(TfpruneError):
    """A checkpoint or cached artefact is missing, corrupt or from an incompatible version."""


class TrainingError(TfpruneError):
    """Training diverged (NaN/inf loss) or cannot continue."""


class StorageError(TfpruneError):
    """Writing an artefact failed (disk full, quota, read-only or unwritable directory)."""
