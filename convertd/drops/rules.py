"""Watch rules: which folders are drop folders, what their files become, where results go.

The embedded default needs no configuration: under the drop root, `inbox/<format>/` folders
are watched, results go to `outbox/`, originals to `processed/<format>/` or `failed/<format>/`.
More rules come from `[[watch]]` tables in the config file, read here when the config is loaded
(so a malformed rule stops every command, naming the rule and the field); checks.py then checks
them against the converters when the daemon starts.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

ORIGINALS = ("move", "delete", "keep")
# The output format of a rule with steps: what they make is known when they have run.
PIPELINE = "pipeline"

# Names that are never taken: partial downloads, editor and office lock files, our own reports.
IGNORED_PATTERNS = (
    ".*",
    "*.part",
    "*.partial",
    "*.crdownload",
    "*.download",
    "*.tmp",
    "*.temp",
    "~$*",
    "*~",
    "*.swp",
    "*.error.txt",
    "*.error.json",
)


class RuleError(Exception):
    """A watch rule convertd cannot use; the message names the rule and the field."""


@dataclasses.dataclass(frozen=True)
class WatchRule:
    name: str
    folder: Path
    output: Path
    processed: Path
    failed: Path
    output_format: str | None  # None: the first folder under `folder` names it (the inbox)
    filetype: str | None = None
    # Validated and normalised by the rule's converter (checks.py): what jobs are queued with.
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    originals: str = "move"
    recursive: bool = False
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    polling: bool = False
    poll_interval: float = 5.0
    # Told of each file's result or failure, signed with this key's webhook secret.
    webhook_url: str | None = None
    webhook_key: int | None = None
    # Operations each file goes through, as /v2 tasks (tasks/pipeline.py), checked by checks.py.
    steps: tuple[dict[str, Any], ...] = ()
    # Files that arrive together (batch_seconds apart at most, or a folder moved in) become
    # one merged result (drops/batches.py); the steps then start with a merge.
    merge: bool = False
    batch_seconds: float = 10.0
    # A preset's name (presets.py): its filetype, output format and options, under the rule's
    # own; resolved when the daemon starts and again as each file is taken (drops/checks.py).
    preset: str | None = None

    @property
    def by_subfolder(self) -> bool:
        return self.output_format is None

    def format_for(self, relative: PurePosixPath) -> str | None:
        """The output format for a file at `relative` (to the rule's folder)."""
        if self.output_format is not None:
            return self.output_format
        return relative.parts[0].lower() if len(relative.parts) > 1 else None

    def processed_dir(self, fmt: str) -> Path:
        return self.processed / fmt if self.by_subfolder else self.processed

    def failed_dir(self, fmt: str) -> Path:
        return self.failed / fmt if self.by_subfolder else self.failed

    def wants(self, relative: PurePosixPath) -> bool:
        name = relative.name
        if any(fnmatch.fnmatch(name, p) for p in IGNORED_PATTERNS):
            return False
        if any(part.startswith(".") for part in relative.parts[:-1]):
            return False
        text = relative.as_posix()
        if not any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(text, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(text, p) for p in self.exclude)


def inbox_rule(drop_root: Path, originals: str) -> WatchRule:
    return WatchRule(
        name="inbox",
        folder=drop_root / "inbox",
        output=drop_root / "outbox",
        processed=drop_root / "processed",
        failed=drop_root / "failed",
        output_format=None,
        originals=originals,
        recursive=True,
    )


def _path(rule: str, field: str, value: Any) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise RuleError(f"watch rule {rule!r}: field {field!r} must be a folder path")
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise RuleError(f"watch rule {rule!r}: field {field!r} must be an absolute path")
    return path


def _strings(rule: str, field: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RuleError(f"watch rule {rule!r}: field {field!r} must be a list of patterns")
    return tuple(value)


FIELDS = {
    "name",
    "folder",
    "output_format",
    "filetype",
    "options",
    "output",
    "processed",
    "failed",
    "originals",
    "recursive",
    "include",
    "exclude",
    "polling",
    "poll_interval",
    "webhook_url",
    "webhook_key",
    "steps",
    "merge",
    "batch_seconds",
    "preset",
}


def parse_rule(table: dict[str, Any], index: int, default_originals: str) -> WatchRule:
    name = table.get("name", f"watch-{index}")
    if not isinstance(name, str) or not name.strip():
        raise RuleError(f"watch rule #{index}: field 'name' must be a non-empty string")
    unknown = sorted(set(table) - FIELDS)
    if unknown:
        raise RuleError(f"watch rule {name!r}: unknown field(s) {', '.join(unknown)}")
    folder = _path(name, "folder", table.get("folder"))
    output = _path(name, "output", table.get("output"))
    steps = table.get("steps", [])
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise RuleError(
            f"watch rule {name!r}: field 'steps' must be a list of tables, e.g. "
            '[{operation = "ocr"}, {operation = "optimize"}]'
        )
    one_conversion = any(
        field in table for field in ("output_format", "options", "filetype", "preset")
    )
    if steps and one_conversion:
        raise RuleError(
            f"watch rule {name!r}: with 'steps', a convert step names its own output_format "
            "and options, or a preset (fields 'output_format', 'filetype', 'options' and "
            "'preset' are for one conversion)"
        )
    merge = table.get("merge", False)
    if not isinstance(merge, bool):
        raise RuleError(f"watch rule {name!r}: field 'merge' must be true or false")
    batch = table.get("batch_seconds", 10.0)
    if isinstance(batch, bool) or not isinstance(batch, int | float) or not 0.5 <= batch <= 3600:
        raise RuleError(f"watch rule {name!r}: field 'batch_seconds' must be 0.5 to 3600")
    if merge:
        if table.get("originals", default_originals) == "keep":
            raise RuleError(
                f"watch rule {name!r}: 'merge' takes the files of a batch away; "
                "originals must be move or delete"
            )
        if one_conversion:
            raise RuleError(
                f"watch rule {name!r}: with 'merge', the result is one file (a PDF, audio or "
                "video); further work goes in 'steps' (fields 'output_format', 'filetype', "
                "'options' and 'preset' are for one conversion)"
            )
        if not steps or steps[0].get("operation") != "merge":
            steps = [{"operation": "merge"}, *steps]
    preset = table.get("preset")
    if preset is not None and (not isinstance(preset, str) or not preset.strip()):
        raise RuleError(f"watch rule {name!r}: field 'preset' must be a preset's name")
    fmt = table.get("output_format", PIPELINE if steps else None)
    if preset is not None and fmt is None:
        fmt = ""  # the preset's, once it is known (drops/checks.py)
    elif not isinstance(fmt, str) or not fmt.strip():
        raise RuleError(
            f"watch rule {name!r}: field 'output_format' is required, e.g. \"pdf\" "
            "(or 'steps', a list of operations, or a 'preset')"
        )
    filetype = table.get("filetype")
    if filetype is not None and not isinstance(filetype, str):
        raise RuleError(f"watch rule {name!r}: field 'filetype' must be a string")
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise RuleError(f"watch rule {name!r}: field 'options' must be a table")
    originals = table.get("originals", default_originals)
    if originals not in ORIGINALS:
        raise RuleError(f"watch rule {name!r}: field 'originals' must be one of {ORIGINALS}")
    for flag in ("recursive", "polling"):
        if not isinstance(table.get(flag, False), bool):
            raise RuleError(f"watch rule {name!r}: field {flag!r} must be true or false")
    interval = table.get("poll_interval", 5.0)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 0.1:
        raise RuleError(f"watch rule {name!r}: field 'poll_interval' must be seconds >= 0.1")
    webhook_url, webhook_key = table.get("webhook_url"), table.get("webhook_key")
    if webhook_url is not None and (
        not isinstance(webhook_url, str) or not webhook_url.startswith(("http://", "https://"))
    ):
        raise RuleError(f"watch rule {name!r}: field 'webhook_url' must be an http or https URL")
    if (webhook_url is None) != (webhook_key is None):
        raise RuleError(
            f"watch rule {name!r}: fields 'webhook_url' and 'webhook_key' go together: the key "
            "(its id in `convertd keys list`) whose webhook secret signs the deliveries"
        )
    if webhook_key is not None and (
        isinstance(webhook_key, bool) or not isinstance(webhook_key, int)
    ):
        raise RuleError(f"watch rule {name!r}: field 'webhook_key' must be a key id (a number)")
    return WatchRule(
        name=name.strip(),
        folder=folder,
        output=output,
        processed=_path(name, "processed", table["processed"])
        if "processed" in table
        else output / "processed",
        failed=_path(name, "failed", table["failed"]) if "failed" in table else output / "failed",
        output_format=fmt.strip().lower(),
        filetype=filetype.strip().lower() if filetype else None,
        options=options,
        originals=originals,
        recursive=table.get("recursive", merge),  # a merge rule takes folders moved in
        include=_strings(name, "include", table.get("include", ["*"])),
        exclude=_strings(name, "exclude", table.get("exclude", [])),
        polling=table.get("polling", False),
        poll_interval=float(interval),
        webhook_url=webhook_url,
        webhook_key=webhook_key,
        steps=tuple(steps),
        merge=merge,
        batch_seconds=float(batch),
        preset=preset.strip().lower() if preset is not None else None,
    )


def preset_users(rules: tuple[WatchRule, ...]) -> dict[str, str]:
    """Preset name -> a rule naming it (itself or in a convert step)."""
    users: dict[str, str] = {}
    for rule in rules:
        named = [rule.preset, *(step.get("preset") for step in rule.steps)]
        users.update({name.strip().lower(): rule.name for name in named if isinstance(name, str)})
    return users


def check_layout(rules: list[WatchRule]) -> None:
    """Refuse rules whose outputs would be watched as inputs, or that share a folder."""
    seen: dict[Path, str] = {}
    for rule in rules:
        folder = rule.folder.resolve()
        if folder in seen:
            raise RuleError(f"watch rules {seen[folder]!r} and {rule.name!r} watch one folder")
        seen[folder] = rule.name
        for field in ("output", "processed", "failed"):
            target = getattr(rule, field).resolve()
            if target == folder or target.is_relative_to(folder):
                raise RuleError(
                    f"watch rule {rule.name!r}: field {field!r} ({target}) is inside the "
                    f"watched folder {folder}; convertd would convert its own output"
                )
    for rule in rules:
        for other in rules:
            for field in ("output", "processed", "failed"):
                target = getattr(rule, field).resolve()
                if other is not rule and target.is_relative_to(other.folder.resolve()):
                    raise RuleError(
                        f"watch rule {rule.name!r}: field {field!r} is inside the folder "
                        f"watched by rule {other.name!r}"
                    )


def parse_rules(tables: Any, default_originals: str) -> tuple[WatchRule, ...]:
    if tables is None:
        return ()
    if not isinstance(tables, list | tuple) or not all(isinstance(t, dict) for t in tables):
        raise RuleError("[[watch]] must be a list of tables")
    return tuple(parse_rule(t, n, default_originals) for n, t in enumerate(tables, 1))
