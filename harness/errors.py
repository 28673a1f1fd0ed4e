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
