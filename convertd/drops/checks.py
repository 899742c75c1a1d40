"""The watch rules in force: the embedded inbox plus the configured rules, checked against the
converters when the daemon starts (filetype, output format, options), with each rule's options
normalised by its converter, so jobs are queued with exactly what the API would accept."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from convertd.config import Config
from convertd.converters.options import OptionError
from convertd.converters.registry import FILETYPES, Registry
from convertd.drops.rules import RuleError, WatchRule, check_layout, inbox_rule
from convertd.errors import Invalid
from convertd.tasks.pipeline import check_steps


def build_rules(config: Config, drop_root: Path, registry: Registry) -> list[WatchRule]:
    """The embedded inbox under `drop_root` plus the configured rules, checked, with their
    options normalised by their converter. A RuleError names the rule and the field at fault."""
    rules = [inbox_rule(drop_root, config.drop_originals), *config.watch_rules]
    check_layout(rules)
    return [rules[0], *(_checked(rule, registry) for rule in rules[1:])]


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
