"""The watch rules in force: the embedded inbox plus the configured rules, checked against the
converters when the daemon starts (filetype, output format, options), with each rule's options
normalised by its converter, so jobs are queued with exactly what the API would accept.

A rule naming a preset (its own, or in a convert step) is checked once the database is open,
since the preset may be one saved there (`with_presets`), and again as each file is taken
(`Fresh`), since a saved preset may change while the daemon runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from convertd.config import Config
from convertd.converters.options import OptionError
from convertd.converters.registry import FILETYPES, Registry
from convertd.drops.rules import RuleError, WatchRule, check_layout, inbox_rule
from convertd.errors import Invalid
from convertd.store.db import Database
from convertd.tasks.pipeline import check_steps
from convertd.tasks.presets import Presets, UnknownPreset, expand_convert, merged


def build_rules(config: Config, drop_root: Path, registry: Registry) -> list[WatchRule]:
    """The embedded inbox under `drop_root` plus the configured rules, checked, with their
    options normalised by their converter. A RuleError names the rule and the field at fault."""
    rules = [inbox_rule(drop_root, config.drop_originals), *config.watch_rules]
    check_layout(rules)
    return [
        rules[0],
        *(rule if _has_preset(rule) else _checked(rule, registry) for rule in rules[1:]),
    ]


def _has_preset(rule: WatchRule) -> bool:
    return rule.preset is not None or any("preset" in step for step in rule.steps)


async def with_presets(
    rules: list[WatchRule], presets: Presets, db: Database, registry: Registry
) -> list[WatchRule]:
    """The rules with their presets applied and checked; RuleError names an unknown preset."""
    out = []
    for rule in rules:
        if _has_preset(rule):
            rule = _checked(await _applied(rule, presets, db), registry)
        out.append(rule)
    return out


class Fresh:
    """A rule naming a preset as it is now: re-applied and checked when each file is taken, so
    a preset changed while the daemon runs is used at once. RuleError (the preset removed or
    no longer fitting the rule) fails that file, with the reason in failed/."""

    def __init__(
        self, configured: tuple[WatchRule, ...], presets: Presets, db: Database, registry: Registry
    ) -> None:
        self.raw = {rule.name: rule for rule in configured if _has_preset(rule)}
        self.presets, self.db, self.registry = presets, db, registry

    async def __call__(self, rule: WatchRule) -> WatchRule:
        raw = self.raw.get(rule.name)
        if raw is None:
            return rule
        return _checked(await _applied(raw, self.presets, self.db), self.registry)


async def _applied(rule: WatchRule, presets: Presets, db: Database) -> WatchRule:
    async def lookup(name: Any, field: str) -> Any:
        try:
            return await presets.get(db, name)
        except UnknownPreset as exc:
            raise RuleError(f"watch rule {rule.name!r}: field {field!r}: {exc.message}") from None

    if rule.preset is not None:
        preset = await lookup(rule.preset, "preset")
        filetype, fmt, options = merged(
            preset, rule.filetype or "", rule.output_format or "", rule.options
        )
        return dataclasses.replace(rule, filetype=filetype, output_format=fmt, options=options)
    steps = []
    for n, step in enumerate(rule.steps, 1):
        if "preset" in step and step.get("operation") == "convert":
            step = expand_convert(step, await lookup(step["preset"], f"steps[{n}].preset"))
        steps.append(step)
    return dataclasses.replace(rule, steps=tuple(steps))


def _checked(rule: WatchRule, registry: Registry) -> WatchRule:
    if rule.steps:
        try:
            steps = check_steps(registry, list(rule.steps))
        except Invalid as exc:
            raise RuleError(f"watch rule {rule.name!r}: field 'steps': {exc}") from None
        return dataclasses.replace(rule, steps=tuple(steps))
    if rule.filetype is None:
        if not any(rule.output_format in c.output_formats for c in registry.known_all()):
            raise RuleError(
                f"watch rule {rule.name!r}: field 'output_format' "
                f"{rule.output_format!r} is not a format convertd makes"
            )
        if rule.options:
            raise RuleError(
                f"watch rule {rule.name!r}: field 'options' needs a 'filetype', "
                "since options belong to one converter"
            )
        return rule
    if rule.filetype not in FILETYPES:
        raise RuleError(
            f"watch rule {rule.name!r}: field 'filetype' must be one of {', '.join(FILETYPES)}"
        )
    converter = registry.known(rule.filetype)
    if converter is None or rule.output_format not in converter.output_formats:
        raise RuleError(
            f"watch rule {rule.name!r}: field 'output_format' "
            f"{rule.output_format!r} is not made by {rule.filetype}"
        )
    try:
        options = converter.validate_options(dict(rule.options), rule.output_format or "")
    except OptionError as exc:
        raise RuleError(f"watch rule {rule.name!r}: field 'options': {exc}") from None
    return dataclasses.replace(rule, options=options)
