"""Watch rules' webhooks: the config names them, the database mirrors them at start-up so the
events of drop folders fan out to them like any other subscription."""

from __future__ import annotations

from convertd.config import Config, ConfigError
from convertd.drops.rules import WatchRule
from convertd.events import targets
from convertd.store import keys, webhooks
from convertd.store.db import Database


async def mirror_rule_webhooks(db: Database, config: Config, rules: list[WatchRule]) -> None:
    wanted: list[tuple[str, str, int]] = []
    for rule in rules:
        if rule.webhook_url is None or rule.webhook_key is None:
            continue
        if problem := targets.url_problem(config, rule.webhook_url):
            raise ConfigError(f"watch rule {rule.name!r}: field 'webhook_url' {problem}")
        key = await keys.get_key(db, rule.webhook_key)
        if key is None or key.revoked_at is not None:
            raise ConfigError(
                f"watch rule {rule.name!r}: field 'webhook_key' names key {rule.webhook_key}, "
                "which does not exist or was revoked; see `convertd keys list`"
            )
        wanted.append((rule.name, rule.webhook_url, rule.webhook_key))
    await webhooks.mirror_rules(db, wanted)
