"""Where log lines go and what they carry: text or JSON lines on stderr, or the journal.

The request and the job a line is about travel in context variables, set by the request-id
middleware (and the auth middleware, for the key's name) and by the worker around a job, so any
module's `logger.info(...)` carries them without passing them along. They can also be given
per line, as `extra=job(job_id)`, where no context is at hand (the database's writer thread).
The key's name and id are logged, never the key itself.

Under systemd, stderr is connected to the journal ($JOURNAL_STREAM names its device and inode,
checked against stderr as systemd documents); lines then go to the journal's native socket
through `logging-journald`'s transport, with REQUEST_ID, JOB_ID and KEY_NAME as fields of their
own, so `journalctl JOB_ID=…` finds every line about a job.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import os
import re
import sys
import time
from typing import Any, TextIO

from logging_journald import JournaldTransport

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
key_name: contextvars.ContextVar[str | None] = contextvars.ContextVar("key_name", default=None)
key_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("key_id", default=None)

# The record attributes (and JSON fields) these fill, with their journal field names.
FIELDS = {
    "request_id": "REQUEST_ID",
    "job_id": "JOB_ID",
    "key_name": "KEY_NAME",
    "key_id": "KEY_ID",
}
_VARS: dict[str, contextvars.ContextVar[Any]] = {
    "request_id": request_id,
    "job_id": job_id,
    "key_name": key_name,
    "key_id": key_id,
}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SEND_TIMEOUT_SECONDS = 1.0
# syslog priorities, as the journal has them.
PRIORITIES = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def counted(n: int, noun: str) -> str:
    """ "1 worker", "2 workers": a count in a log line, in the singular when it is one."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def job(job_id: str) -> dict[str, str]:
    """`extra=` for a line about a job, logged where no job context is set."""
    return {"job_id": job_id}


class ContextFilter(logging.Filter):
    """Copies the context's request, job and key onto each record (unless the line gave its
    own), so every formatter sees them as attributes."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _VARS.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


def context_of(record: logging.LogRecord) -> dict[str, Any]:
    return {name: value for name in FIELDS if (value := getattr(record, name, None)) is not None}


def escape(text: str) -> str:
    """`text` on one line: control characters (CR, LF, ESC, ...) and line separators written
    as Python escapes, so that no value a line quotes can start a line of its own."""
    if text.isprintable():
        return text
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text)


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class TextFormatter(logging.Formatter):
    """The usual line, with the request and job it is about at the end when known. Each line
    is one line whatever the values it quotes; a traceback follows it, indented."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        # The time to the second, formatted once a second rather than for every line (a
        # localtime and a strftime, ~1 us): (epoch second, its text), swapped whole, so a
        # thread never sees one's second with the other's text.
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt:
            return super().formatTime(record, datefmt)
        second, text = self._second
        if second != int(record.created):
            second = int(record.created)
            text = time.strftime(self.default_time_format, self.converter(second))
            self._second = (second, text)
        return f"{text},{int(record.msecs):03d}"  # as logging's default_msec_format has it

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        first, newline, rest = line.partition("\n")  # a traceback stays below the line
        if rest:  # indented, so that none of its lines passes for a line of the log
            rest = "\n".join("  " + escape(part) for part in rest.split("\n"))
        context = context_of(record)
        if context:
            first += " [" + " ".join(f"{k}={escape(str(v))}" for k, v in context.items()) + "]"
        return f"{first}{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the context,
    and the traceback (as `exception`) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        body: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **context_of(record),
        }
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            body["exception"] = record.exc_text
        return json.dumps(body, default=str)


class JournalHandler(logging.Handler):
    """Lines to the journal's native socket, the context as fields of their own. A line the
    journal does not take (it restarts, it is gone) goes to stderr instead, never lost."""

    def __init__(self, socket_path: str, fallback: TextIO) -> None:
        super().__init__()
        self.transport = JournaldTransport(socket_path)  # connects now: raises if it is absent
        # A journal that stops reading must not stop the daemon: past this, stderr takes it.
        self.transport.socket.settimeout(SEND_TIMEOUT_SECONDS)
        self.fallback = fallback
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: list[tuple[str, Any]] = [
                ("MESSAGE", self.format(record)),
                ("PRIORITY", PRIORITIES.get(record.levelno, 6)),
                ("SYSLOG_IDENTIFIER", "convertd"),
                ("LOGGER", record.name),
                ("CODE_FILE", record.pathname),
                ("CODE_LINE", record.lineno),
                ("CODE_FUNC", record.funcName),
            ]
            fields += [(FIELDS[k], v) for k, v in context_of(record).items()]
            self.transport.send(fields)
        except Exception:
            try:
                self.fallback.write(TextFormatter().format(record) + "\n")
                self.fallback.flush()
            except Exception:
                self.handleError(record)


def stderr_is_journal(journal_stream: str | None, stream: TextIO | None = None) -> bool:
    """Whether stderr is the journal's stream: $JOURNAL_STREAM is "device:inode" of it (a
    stderr redirected since, to a file or a pipe, no longer matches)."""
    if not journal_stream:
        return False
    device, _, inode = journal_stream.partition(":")
    try:
        st = os.fstat((stream or sys.stderr).fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


def configure(log_format: str, *, journal_stream: str | None, journal_socket: str) -> str:
    """Send the root logger's lines where `log_format` says; the format in force is returned
    (auto resolves to journal or text; a journal that cannot be reached falls back to text)."""
    if log_format == "auto":
        log_format = "journal" if stderr_is_journal(journal_stream) else "text"
    handler: logging.Handler
    unreachable = None
    if log_format == "journal":
        try:
            handler = JournalHandler(journal_socket, sys.stderr)
        except OSError as exc:
            unreachable, log_format = exc.strerror or str(exc), "text"
    if log_format != "journal":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    # No format shows a line's thread or process: not looked up for every record.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    if unreachable:
        logging.getLogger(__name__).warning(
            "the journal's socket %s cannot be reached (%s): logging to stderr",
            journal_socket,
            unreachable,
        )
    return log_format
