"""Checking a task's parameters: every problem collected, then raised together as one 422
that names each bad field (`tasks.<name>.<field>` in a job)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from convertd.errors import Invalid
from convertd.files import safe_filename

# metadata/write's tags: how many, and how long (in UTF-8 bytes) each key, value and all.
MAX_TAGS = 100
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 64 * 1024
MAX_TAGS_TOTAL = 1024 * 1024
_TIMESTAMP = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


def where(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def seconds_of(text: str) -> float | None:
    """`HH:MM:SS(.s)` or `MM:SS` as seconds, or None."""
    match = _TIMESTAMP.match(text.strip())
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


def _controls(text: str, *, allowed: str) -> bool:
    return any(unicodedata.category(c) == "Cc" and c not in allowed for c in text)


def _bad(text: str) -> bool:
    """A lone surrogate (JSON's `\\ud800`): no UTF-8 for it, nor for any file format."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


class Check:
    """Collects every problem with one task's fields, to raise them together."""

    def __init__(self, payload: dict[str, Any], prefix: str) -> None:
        self.payload = payload
        self.prefix = prefix
        self.errors: dict[str, list[str]] = {}

    def bad(self, name: str, problem: str) -> None:
        self.errors.setdefault(where(self.prefix, name), []).append(problem)

    def text(self, name: str, *, required: bool = False, limit: int = 1000) -> str | None:
        value = self.payload.get(name)
        if value is None:
            if required:
                self.bad(name, "is required")
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            self.bad(name, "must be a non-empty string" if required else "must be a string")
            return None
        if len(value) > limit:
            self.bad(name, f"must be at most {limit} characters")
            return None
        return value

    def name(self, field: str, *, required: bool = False) -> str | None:
        """A file name: a non-empty last path component once made safe."""
        value = self.text(field, required=required, limit=255)
        if value is not None and not safe_filename(value, default=""):
            self.bad(field, "must be a file name, such as report.pdf")
            return None
        return value

    def flag(self, name: str) -> bool:
        value = self.payload.get(name, False)
        if not isinstance(value, bool):
            self.bad(name, "must be true or false")
            return False
        return value

    def number(
        self, name: str, low: float, high: float, default: float | None, *, whole: bool = False
    ) -> float | None:
        """A number from `low` to `high` (a whole one if `whole`), or `default` when absent."""
        value = self.payload.get(name, default)
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (whole and isinstance(value, float) and not value.is_integer())
            or not low <= value <= high
        ):
            kind = "a whole number" if whole else "a number"
            self.bad(name, f"must be {kind} from {low:g} to {high:g}")
            return default
        return int(value) if whole else value

    def headers(self, name: str) -> dict[str, str] | None:
        """An object of HTTP header names to one-line string values."""
        value = self.payload.get(name)
        if value is None:
            return None
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and not {"\n", "\r"} & set(k + v)
            for k, v in value.items()
        ):
            self.bad(name, "must be an object of header names to string values")
            return None
        return value

    def tags(self, name: str) -> dict[str, str]:
        """An object of 1 to MAX_TAGS names to text (numbers become text), bounded in size. A
        refused key is named as `<name>.<key>`, cut short: never a huge field name."""
        value = self.payload.get(name)
        if not isinstance(value, dict) or not 1 <= len(value) <= MAX_TAGS:
            problem = "is required" if value is None else f"must have 1 to {MAX_TAGS} entries"
            if value is not None and not isinstance(value, dict):
                problem = 'must be an object of names to values, e.g. {"Title": "Report"}'
            self.bad(name, problem)
            return {}
        out: dict[str, str] = {}
        seen: dict[str, str] = {}
        for key, raw in value.items():
            field = f"{name}.{key[:MAX_TAG_KEY]}"
            text = str(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else raw
            if not key.strip() or len(key) > MAX_TAG_KEY or _controls(key, allowed="") or _bad(key):
                self.bad(field, f"must be a name of 1 to {MAX_TAG_KEY} characters, no controls")
            elif key.lower() in seen:
                self.bad(field, f"is {seen[key.lower()]!r} again: names are matched ignoring case")
            elif not isinstance(text, str) or _bad(text):
                self.bad(field, "must be text (valid Unicode) or a number")
            elif len(text.encode()) > MAX_TAG_VALUE:
                self.bad(field, f"must be at most {MAX_TAG_VALUE // 1024} KiB (UTF-8)")
            elif _controls(text, allowed="\t\n"):
                self.bad(field, "must not hold control characters other than tab and newline")
            else:
                out[key] = text
            seen[key.lower()] = key
        if sum(len(k.encode()) + len(v.encode()) for k, v in out.items()) > MAX_TAGS_TOTAL:
            self.bad(name, f"must be at most {MAX_TAGS_TOTAL // 1024} KiB in all (UTF-8)")
        return out

    def only(self, allowed: Iterable[str], *, takes_input: bool = True) -> None:
        allowed = (
            set(allowed) | {"operation", "ignore_error"} | ({"input"} if takes_input else set())
        )
        for name in sorted(set(self.payload) - allowed):
            known = ", ".join(sorted(allowed))
            self.bad(name, f"is not a parameter of this operation; known: {known}")

    def done(self) -> None:
        if self.errors:
            first = next(iter(self.errors))
            problem = self.errors[first][0]
            if problem.startswith(("option", "options", "give")):
                raise Invalid(f"{first}: {problem}.", self.errors)
            raise Invalid(f"The {first} field {problem}.", self.errors)
