"""Watch rules' webhooks: the config names them, the database mirrors them so the events of drop
folders fan out to them like any other subscription. Every node checks them at start; the node
that leads (and watches the folders) writes them, so a node started with another config, or
none, does not take the leader's away."""

from __future__ import annotations

import logging

from convertd.config import Config, ConfigError
from convertd.drops.rules import WatchRule
from convertd.events import targets
from convertd.store import keys
from convertd.store.db import Database

logger = logging.getLogger(__name__)


async def rule_webhooks(
    db: Database, config: Config, rules: list[WatchRule]
) -> list[tuple[str, str, int]]:
    """The rules' webhooks (rule, URL, key), checked: a ConfigError names a bad one."""
    wanted: list[tuple[str, str, int]] = []
    for rule in rules:
        if rule.webhook_url is None or rule.webhook_key is None:
            continue
        if problem := targets.url_problem(config, rule.webhook_url):
            raise ConfigError(f"watch rule {rule.name!r}: field 'webhook_url' {problem}")
        key = await keys.get_key(db, rule.webhook_key)
        if key is None:
            raise ConfigError(
                f"watch rule {rule.name!r}: field 'webhook_key' names key {rule.webhook_key}, "
                "which does not exist; see `convertd keys list`"
            )
        if key.revoked_at is not None:
            # Its secret still signs: a revoked key loses the API, not the rule's deliveries.
            logger.warning(
                "watch rule %r: its webhook_key %d was revoked; its webhooks are still signed "
                "with that key's webhook secret",
                rule.name,
                key.id,
            )
        wanted.append((rule.name, rule.webhook_url, rule.webhook_key))
    return wanted
