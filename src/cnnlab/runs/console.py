"""How log lines look in the terminal: the message alone, warnings and errors marked as such."""

from __future__ import annotations

import logging


class ConsoleFormatter(logging.Formatter):
    """``message`` for INFO, ``warning: message`` / ``error: message`` above (train.log keeps the details)."""

    def __init__(self) -> None:
        super().__init__("%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"
