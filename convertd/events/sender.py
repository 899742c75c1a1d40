"""The webhook sender: works through the outbox of deliveries (store/webhooks.py).

Each delivery is a signed POST with a 10 s timeout. A 2xx answer delivers it; anything else
(another status, a timeout, a refused connection) tries it again after the next wait of
`webhook_retry_seconds` (10 s, 30 s, 1 min, 5 min, 15 min, 30 min, then hourly: ten tries over
about four hours), then gives it up. Tries are recorded as they happen, so a restart or a
kill -9 loses nothing: a delivery whose answer was not recorded is sent again, and receivers
de-duplicate on the event id (`X-Webhook-Id`, the body's `id`).

Deliveries run as their own tasks, at most MAX_IN_FLIGHT at once and PER_SUBSCRIBER per
receiver, so a slow or dead receiver holds up no other receiver, no worker and no request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from convertd import clock
from convertd.config import Config
from convertd.events import targets
from convertd.fetch import BadTarget, FetchError, post
from convertd.metrics import Metrics
from convertd.periodic import Periodic
from convertd.signing import webhook_headers
from convertd.store import webhooks
from convertd.store.db import Database
from convertd.store.webhooks import Delivery

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0
MAX_IN_FLIGHT = 32
COOL_DOWN_SECONDS = 60.0
# A safety net: new deliveries are announced (poke), but a watch rule's or the admin CLI's are
# found within this long.
IDLE_SECONDS = 5.0

Render = Callable[[Delivery], Awaitable[bytes]]


class WebhookSender:
    def __init__(
        self, config: Config, db: Database, render: Render, metrics: Metrics | None = None
    ) -> None:
        self.db = db
        self.metrics = metrics or Metrics()
        self.render = render
        self.policy = targets.policy(config)
        self.waits = config.webhook_retry_seconds
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        # Sends that ended while due deliveries were being read: what was read of them is stale.
        self._ended_meanwhile: set[int] = set()
        # Deliveries that failed on our side (even to record the failure: a full disk), and
        # when they may be tried again: a receiver is never hammered because of us.
        self._cooling: dict[int, float] = {}
        # A short debounce: a burst of pokes (sends ending, tasks ending) is one look.
        self._loop = Periodic("webhooks", self._start_due, IDLE_SECONDS, debounce=0.02)

    def start(self) -> WebhookSender:
        self._loop.start()
        return self

    def poke(self) -> None:
        self._loop.poke()

    async def stop(self) -> None:
        """Stop sending; tries in flight are cut off and, unrecorded, sent again next start."""
        await self._loop.stop()
        for task in list(self._in_flight.values()):
            task.cancel()
        for task in list(self._in_flight.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _start_due(self) -> float:
        now = clock.now()
        self._ended_meanwhile.clear()
        self._cooling = {i: until for i, until in self._cooling.items() if until > now}
        for delivery in await webhooks.due(self.db, now):
            if (
                delivery.id in self._in_flight
                or delivery.id in self._ended_meanwhile
                or delivery.id in self._cooling
                or len(self._in_flight) >= MAX_IN_FLIGHT
            ):
                continue
            self._in_flight[delivery.id] = asyncio.create_task(
                self._send(delivery), name=f"webhook-{delivery.id}"
            )
        next_at = await webhooks.next_due_at(self.db, exclude=list(self._in_flight))
        if next_at is None or next_at <= now:
            # Nothing more, or only what waits for a place: a finished send pokes.
            return IDLE_SECONDS
        return min(next_at - now, IDLE_SECONDS)

    async def _send(self, delivery: Delivery) -> None:
        try:
            await self._try(delivery)
        except Exception as exc:
            # A fault of ours (a payload that would not render, a database that cannot be
            # written): it counts as a try where that can be recorded, and waits regardless.
            logger.exception("webhook delivery %d: could not be tried", delivery.id)
            self._cooling[delivery.id] = clock.now() + COOL_DOWN_SECONDS
            with contextlib.suppress(Exception):
                await self._record(delivery, f"not sent: internal error ({type(exc).__name__})")
        finally:
            self._in_flight.pop(delivery.id, None)
            self._ended_meanwhile.add(delivery.id)
            self.poke()

    async def _try(self, d: Delivery) -> None:
        if d.secret is None:
            await self._record(d, "not sent: its key has no webhook secret", final=True)
            return
        body = await webhooks.body_of(self.db, d.id) if d.rendered else None
        if body is None:
            body = await self.render(d)
            await webhooks.set_body(self.db, d.id, body)
        headers = webhook_headers(d.secret, d.event_id, d.event, bytes(body))
        try:
            status, reason = await post(
                d.url, bytes(body), headers, policy=self.policy, timeout=TIMEOUT_SECONDS
            )
        except FetchError as exc:
            # An address the policy refuses stays refused: trying again would not help.
            await self._record(d, str(exc), final=isinstance(exc, BadTarget))
            return
        answer = f"{status} {reason}".strip()
        if 200 <= status < 300:
            await webhooks.record_try(self.db, d, answer, delivered=True, next_at=None)
            self.metrics.webhook_tried("delivered")
            logger.info("webhook %s %s to %s: %s", d.event, d.event_id, _shown(d.url), answer)
            return
        if 300 <= status < 400:
            answer += " (redirects are not followed)"
        await self._record(d, answer)

    async def _record(self, d: Delivery, answer: str, *, final: bool = False) -> None:
        tries = d.attempts + 1
        retry = not final and tries <= len(self.waits)
        next_at = clock.now() + self.waits[tries - 1] if retry else None
        await webhooks.record_try(self.db, d, answer, delivered=False, next_at=next_at)
        self.metrics.webhook_tried("retry" if retry else "failed")
        if retry:
            logger.info(
                "webhook %s %s to %s: %s; try %d in %.0f s",
                d.event,
                d.event_id,
                _shown(d.url),
                answer,
                tries + 1,
                self.waits[tries - 1],
            )
        else:
            logger.warning(
                "webhook %s %s to %s: %s; given up after %d tries",
                d.event,
                d.event_id,
                _shown(d.url),
                answer,
                tries,
            )


def _shown(url: str) -> str:
    """A URL for the log: without its query, where receivers often put a token."""
    return url.split("?", 1)[0] + ("?…" if "?" in url else "")
