"""What of the run log also reaches the console (the rest goes to <run dir>/train.log only)."""

from __future__ import annotations

import logging

CONSOLE = {"console": True}  # log.info(..., extra=CONSOLE): a set-up line the user should see, not only the log file
FILE_ONLY = {"file_only": True}  # a message the console already shows another way (gan's one-paragraph errors)


class ConsoleWorthy(logging.Filter):
    """Warnings, and info lines marked CONSOLE; never a record marked FILE_ONLY."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "file_only", False):
            return False
        return record.levelno >= logging.WARNING or bool(getattr(record, "console", False))
