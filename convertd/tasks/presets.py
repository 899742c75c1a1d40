"""The presets in force, and what a preset does to a conversion.

A preset is checked exactly as a conversion's filetype, output format and options are checked
(`check_conversion`, the one home of v1's messages), when it is saved and again when it is used
(a converter may have changed since it was saved). Applied to a request, whatever the request
names itself wins: its filetype, its output format, each of its options; the preset fills in
the rest (`merged`, and `expand_convert` for a /v2 convert task).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable
from typing import Any

from convertd.converters.base import Converter, canonical_format
from convertd.converters.options import OptionError
from convertd.converters.registry import FILETYPES, Registry
from convertd.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from convertd.presets import BUILTIN, BUILTINS, DATABASE, Preset, PresetError, unknown_message
from convertd.store import presets as saved
from convertd.store.db import Database
from convertd.tasks.operations import OPTION_ALIASES

# Saved presets are few by nature; the bound keeps a listing (and a runaway script) small.
MAX_SAVED = 1000


class UnknownPreset(LookupError):
    """No preset has this name; the message lists the known ones (bounded)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_conversion(
    registry: Registry,
    filetype: str,
    output_format: str,
    raw_options: dict[str, Any],
    *,
    need_tools: bool = True,
    preset: str | None = None,
) -> tuple[Converter, str, dict[str, Any]]:
    """The converter, the canonical output format and the validated options, or the 400 (503
    for a converter whose tool is missing, when `need_tools`) that /v1/convert answers."""
    with_preset = f" (with preset {preset!r})" if preset else ""
    filetype = filetype.strip().lower()
    if not filetype:
        raise BadRequest("The field 'filetype' is required.", f"One of: {', '.join(FILETYPES)}.")
    if filetype not in FILETYPES:
        raise BadRequest(
            f"The field 'filetype' has an unknown value {filetype!r}.",
            f"One of: {', '.join(FILETYPES)}.",
        )
    converter = registry.get(filetype) if need_tools else registry.known(filetype)
    if converter is None:
        known = registry.known(filetype)
        if known is not None:
            raise ServiceUnavailable(
                f"The {filetype} converter needs {', '.join(known.missing_tools())}, which is "
                "not installed on this server.",
                "Install it and restart convertd; `convertd doctor` shows what is missing.",
            )
        available = ", ".join(c.filetype for c in registry.available())
        raise BadRequest(
            f"The filetype {filetype!r} is not available on this server.",
            f"Available here: {available}. See GET /v1/formats.",
        )
    output_format = canonical_format(output_format)
    if not output_format:
        raise BadRequest(
            "The field 'output_format' is required.",
            f"For {filetype}: {', '.join(converter.output_formats)}.",
        )
    if output_format not in converter.output_formats:
        raise BadRequest(
            f"The field 'output_format' has a value {output_format!r} that {filetype} cannot make.",
            f"For {filetype}: {', '.join(converter.output_formats)}.",
        )
    try:
        options = converter.validate_options(dict(raw_options), output_format)
    except OptionError as exc:
        raise BadRequest(f"The field 'options' is invalid: {exc}{with_preset}.") from None
    return converter, output_format, options


def checked(registry: Registry, preset: Preset) -> Preset:
    """The preset with its options normalised by its converter, or BadRequest saying why."""
    _, fmt, options = check_conversion(
        registry, preset.filetype, preset.output_format, preset.options, need_tools=False
    )
    return dataclasses.replace(preset, output_format=fmt, options=options)


def merged(
    preset: Preset, filetype: str, output_format: str, options: dict[str, Any]
) -> tuple[str, str, dict[str, Any]]:
    """A request's own filetype, output format and options over the preset's."""
    return (
        filetype or preset.filetype,
        output_format or preset.output_format,
        {**preset.options, **options},
    )


def expand_convert(payload: dict[str, Any], preset: Preset) -> dict[str, Any]:
    """A /v2 convert task (or a watch rule's convert step) with the preset's output format and
    options where it gives none of its own (an option given by CloudConvert's name counts)."""
    out = dict(payload)
    if not out.get("output_format"):
        out["output_format"] = preset.output_format
    given = {OPTION_ALIASES.get(name, name) for name in payload}
    out.update({k: v for k, v in preset.options.items() if k not in given})
    out["preset"] = preset.name
    return out


class Presets:
    """The presets in force: the config's and the built-ins (checked once, at start), and the
    database's (read at each use, since the CLI and the API change them while the daemon runs).
    """

    def __init__(
        self, registry: Registry, configured: Iterable[Preset], rules: dict[str, str] | None = None
    ) -> None:
        self.registry = registry
        # A registry whose converters cannot do a built-in (a test's own) goes without it.
        self.builtins = {}
        for preset in BUILTINS:
            with contextlib.suppress(BadRequest):
                self.builtins[preset.name] = checked(registry, preset)
        self.configured: dict[str, Preset] = {}
        for preset in configured:
            try:
                self.configured[preset.name] = checked(registry, preset)
            except BadRequest as exc:
                raise PresetError(f"preset {preset.name!r}: {exc.message}") from None
        # preset name -> the watch rule that uses it (a preset in use is not removed).
        self.rules = rules or {}

    async def start(self, db: Database) -> list[Preset]:
        """At the daemon's start: record which saved presets the watch rules name (so no CLI
        or API removes one under them), and return the saved presets the config's shadow."""
        # A name the config holds is the config's: its shadowed saved copy may go.
        await saved.mark_used(
            db, {n: rule for n, rule in self.rules.items() if n not in self.configured}
        )
        return await self.shadowed(db)

    async def shadowed(self, db: Database) -> list[Preset]:
        """Saved presets not in force, since the config file has one of the same name."""
        return [p for p in await saved.all_saved(db) if p.name in self.configured]

    async def all(self, db: Database) -> list[Preset]:
        found = {**self.builtins, **{p.name: p for p in await saved.all_saved(db)}}
        found.update(self.configured)
        return [found[name] for name in sorted(found)]

    async def get(self, db: Database, name: str) -> Preset:
        if not isinstance(name, str) or not name.strip():
            raise UnknownPreset("A preset is named by a non-empty string, e.g. web-photo")
        key = name.strip().lower()
        preset = self.configured.get(key) or await saved.get(db, key) or self.builtins.get(key)
        if preset is None:
            raise UnknownPreset(unknown_message(name, [p.name for p in await self.all(db)]))
        return preset

    async def save(
        self, db: Database, preset: Preset, *, replace: bool, replace_hint: str
    ) -> tuple[Preset, Preset | None]:
        """Check and save a database preset; returns it and the preset it replaced (a saved or
        a built-in one), if any. BadRequest as /v1/convert would answer, Conflict for a name
        the config holds, or, without `replace`, one already in force (`replace_hint` says how
        the caller's surface replaces it)."""
        if preset.name in self.configured:
            raise Conflict(
                f"The preset {preset.name!r} is defined in the config file, which is read-only "
                "here.",
                "Edit its [[preset]] table and restart, or choose another name.",
            )
        good = checked(self.registry, preset)
        before = await saved.get(db, preset.name) or self.builtins.get(preset.name)
        if before is not None and not replace:
            what = "a built-in preset" if before.source == BUILTIN else "a saved preset"
            raise Conflict(f"{preset.name!r} is already {what}.", replace_hint)
        if before is None and await saved.count(db) >= MAX_SAVED:
            raise Conflict(
                f"There are {MAX_SAVED} saved presets, the most convertd keeps.",
                "Remove some first (`convertd presets remove NAME`).",
            )
        try:
            return await saved.save(db, good, replace=replace), before
        except saved.Exists:  # saved by another process since
            raise Conflict(f"{preset.name!r} is already a saved preset.", replace_hint) from None

    async def remove(self, db: Database, name: str) -> Preset | None:
        """Remove a database preset; the built-in it replaced (if any) is in force again and
        returned. Conflict for the config's and the built-ins, NotFound for an unknown name."""
        if name in self.configured:
            if await saved.delete(db, name):  # the saved copy it shadowed: not in force
                return None
            raise Conflict(
                f"The preset {name!r} is defined in the config file, which is read-only here.",
                "Remove its [[preset]] table and restart.",
            )
        # The daemon's own rules, or (for a CLI given another config, or none) the rules the
        # daemon recorded at its last start.
        rule = self.rules.get(name) or await saved.user_of(db, name)
        if rule is not None and name not in self.builtins:
            raise Conflict(
                f"The preset {name!r} is used by the watch rule {rule!r}.",
                "Change the rule and restart first (a daemon would not start without it).",
            )
        if await saved.delete(db, name):
            return self.builtins.get(name)
        if name in self.builtins:
            raise Conflict(
                f"The preset {name!r} is built in and cannot be removed.",
                "Save a preset of the same name to replace it.",
            )
        raise NotFound(unknown_message(name, [p.name for p in await self.all(db)]) + ".")

    def source_note(self, preset: Preset) -> str | None:
        """What a database or config preset replaces (or what shadows it), for listings."""
        if preset.source == DATABASE and preset.name in self.configured:
            return "not in force: the config file has a preset of this name"
        if preset.source != BUILTIN and preset.name in self.builtins:
            return f"replaces the built-in {preset.name!r}"
        return None
