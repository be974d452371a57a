"""Logging set-up: one line per record, as text or JSON, with secrets masked wherever they appear
(libraries log request URLs, and a Telegram token is part of every Bot API URL)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Iterable, Literal, TextIO

LogFormat = Literal["text", "json"]
MASK = "[redacted]"
TURN_FIELDS = ("session", "channel", "outcome", "duration_ms")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update({name: getattr(record, name) for name in TURN_FIELDS if hasattr(record, name)})
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


class RedactingFormatter(logging.Formatter):
    """Formats with `inner`, then masks every secret in the finished line."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self.inner = inner
        # Longest first, so a secret containing another is masked whole; short values are not
        # secrets worth masking and would garble ordinary words.
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record)
        for secret in self.secrets:
            line = line.replace(secret, MASK)
        return line


def setup_logging(level: str, fmt: LogFormat, secrets: Iterable[str], stream: TextIO = sys.stderr) -> None:
    inner = JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter(inner, secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
