"""A job's ``log.txt``: one JSON object a line (time, level, logger, message; the exception's text when there
is one), printed plainly or followed by ``harness logs``."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)),
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            row["exception"] = self.formatException(record.exc_info)
        return json.dumps(row, default=str)


def last_line(text: str) -> str:
    """The last non-empty line of an error (a traceback's exception line)."""
    lines = [x.strip() for x in str(text).strip().splitlines() if x.strip()]
    return lines[-1] if lines else ""


def plain(line: str) -> str:
    """A JSON log line as ``time level logger: message``; other lines (a worker's stderr) unchanged."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return line
    if not isinstance(row, dict) or "message" not in row:
        return line
    text = f"{row.get('time', '')} {row.get('level', '')} {row.get('logger', '')}: {row['message']}"
    return text + ("\n" + row["exception"] if row.get("exception") else "")


def follow(path: Path, poll_s: float = 0.5, stop=lambda: False) -> Iterator[str]:
    """The lines of ``path``, then each new one as it is written, until ``stop()`` is true (or forever)."""
    while not path.exists():
        if stop():
            return
        time.sleep(poll_s)
    with open(path) as f:
        while True:
            line = f.readline()
            if line:
                yield line.rstrip("\n")
            elif stop():
                return
            else:
                time.sleep(poll_s)
