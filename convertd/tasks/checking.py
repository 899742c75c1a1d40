"""Checking a task's parameters: every problem collected, then raised together as one 422
that names each bad field (`tasks.<name>.<field>` in a job)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from convertd.errors import Invalid
from convertd.files import safe_filename

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
