"""Errors the CLI reports as one clear line (no traceback wall)."""

from __future__ import annotations


class BenchError(Exception):
    """An error caused by input or environment, reported to the user as one line; exit code 2."""


class DataError(BenchError):
    """Bad input data: the message names the file and the record (line) at fault."""

    def __init__(self, path: object, message: str, line: int | None = None, field: str | None = None):
        where = f"{path}" + (f":{line}" if line is not None else "") + (f" field {field!r}" if field else "")
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.field = path, line, field


class OfflineError(BenchError):
    """A model or dataset is not available locally and the network must not be used."""
