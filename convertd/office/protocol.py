"""The helper's protocol, typed: one JSON request per line in, one JSON reply per line out.

`helper.py` runs under the system Python and cannot import this module; the field names here
and there are the contract, and `tests/test_documents.py` exercises every kind of reply.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Literal

ReplyKind = Literal["done", "input", "family", "crash"]


@dataclasses.dataclass(frozen=True)
class Request:
    input: Path
    output: Path
    filter: str
    filter_options: str | None = None
    filter_data: dict[str, Any] | None = None
    import_filter: str | None = None
    import_options: str | None = None
    families: tuple[str, ...] | None = None
    password: str | None = None  # opens an encrypted document

    def to_line(self) -> bytes:
        return (
            json.dumps(
                {
                    "input": str(self.input),
                    "output": str(self.output),
                    "filter": self.filter,
                    "filter_options": self.filter_options,
                    "filter_data": self.filter_data,
                    "import_filter": self.import_filter,
                    "import_options": self.import_options,
                    "families": list(self.families) if self.families else None,
                    "password": self.password,
                }
            ).encode()
            + b"\n"
        )


@dataclasses.dataclass(frozen=True)
class Reply:
    """What became of one request: `done`, or why not (`input`: LibreOffice could not open or
    write it; `family`: it is a document of another family; `crash`: soffice died)."""

    kind: ReplyKind
    family: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "done"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reply:
        if data.get("ok"):
            return cls("done", family=data.get("family"))
        kind = data.get("kind")
        return cls(
            kind if kind in ("input", "family", "crash") else "input",
            family=data.get("family"),
            error=str(data.get("error") or "LibreOffice could not convert it"),
        )


@dataclasses.dataclass(frozen=True)
class Hello:
    """The helper's first line: soffice is up (with its pid), or why it is not."""

    ready: bool
    office_pid: int | None = None
    error: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Hello:
        pid = data.get("office_pid")
        return cls(
            ready=bool(data.get("ready")),
            office_pid=pid if isinstance(pid, int) else None,
            error=str(data["error"]) if data.get("error") else None,
        )
