"""Errors a user can act on: each names the file, the key path and the bad value."""

from __future__ import annotations


class HarnessError(Exception):
    """Base class for errors that are reported without a traceback by the CLI."""


class ConfigError(HarnessError):
    def __init__(self, file: str, key_path: str, message: str, value: object = None):
        self.file, self.key_path, self.value = file, key_path, value
        where = f"{file}: {key_path}" if key_path else file
        shown = f" (got {value!r})" if value is not None else ""
        super().__init__(f"{where}: {message}{shown}")


class DataRootError(HarnessError):
    """A dataset's root is missing or does not have the expected layout."""


class StorageError(HarnessError):
    """The results root cannot be written: no space left, or a read-only file system."""


class CorruptResultError(HarnessError):
    """A result file exists but does not match its schema (truncated, hand-edited, written by a broken tool)."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"corrupt result file {path}: {reason}")


def storage_error(error: OSError, path: object) -> OSError | StorageError:
    """The user-facing error for a failed write of ``path``: disk full and read-only roots by name, others as is."""
    import errno

    if error.errno == errno.ENOSPC:
        return StorageError(f"no space left on device: {path}")
    if error.errno == errno.EROFS:
        return StorageError(f"results root is read-only: {path}")
    if error.errno in (errno.EACCES, errno.EPERM):
        return StorageError(f"results root is not writable (permission denied): {path}")
    return error
