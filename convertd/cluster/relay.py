"""What one node announces (changes.py), heard on the others: LISTEN/NOTIFY on PostgreSQL.

A `?wait`, a sync wait or an event stream on node A is woken when node B ends the job, and the
leading node's task engine and webhook sender hear of work another node did. Announcements made
in one turn of the event loop go as one message (at most MAX_MESSAGE_BYTES, PostgreSQL's limit
being 8000); each node ignores its own. A message lost (a node's listening connection dropping)
costs a `?wait` or sync wait up to a second: the outside-ends sweep (events/outside.py) looks at
what is waited on once a second. An event stream misses it, as streams replay nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from convertd.changes import Changes, Published
from convertd.store.db import Database

logger = logging.getLogger(__name__)

CHANNEL = "convertd_changes"
MAX_MESSAGE_BYTES = 7000


class Relay:
    def __init__(self, db: Database, node_id: str, changes: Changes) -> None:
        self.db = db
        self.node_id = node_id
        self.changes = changes
        self._subjects: dict[str, None] = {}
        self._published: Published = []
        self._sending: asyncio.Task[None] | None = None
        self._stop_listening: Callable[[], Awaitable[Any]] | None = None

    async def start(self) -> Relay:
        if not self.db.shared:
            return self  # one node: nobody to tell
        self._stop_listening = await self.db.listen(CHANNEL, self._heard)
        self.changes.relay = self._announce
        return self

    async def stop(self) -> None:
        self.changes.relay = None
        if self._sending is not None:
            with contextlib.suppress(Exception):
                await self._sending
        if self._stop_listening is not None:
            await self._stop_listening()

    def _announce(self, subjects: list[str], published: Published) -> None:
        self._subjects.update(dict.fromkeys(subjects))
        self._published.extend(published)
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send(), name="relay")

    async def _send(self) -> None:
        await asyncio.sleep(0)  # what the rest of this turn announces goes along
        while self._subjects or self._published:
            message, self._subjects, self._published = self._message()
            try:
                await self.db.send(CHANNEL, message)
            except Exception as exc:
                logger.warning("could not tell the other nodes of a change (%s)", exc)
                return

    def _message(
        self,
    ) -> tuple[str, dict[str, None], Published]:
        """One message of what is waiting, and what is left for the next."""
        subjects, published = list(self._subjects), list(self._published)
        while True:
            text = json.dumps({"n": self.node_id, "c": subjects, "p": published})
            if len(text.encode()) <= MAX_MESSAGE_BYTES or len(subjects) + len(published) <= 1:
                break
            subjects, published = subjects[: len(subjects) // 2], published[: len(published) // 2]
        rest_subjects = {s: None for s in self._subjects if s not in set(subjects)}
        rest_published = self._published[len(published) :]
        return text, rest_subjects, rest_published

    def _heard(self, message: str) -> None:
        try:
            body = json.loads(message)
            if body["n"] == self.node_id:
                return
            published = [(key_id, [tuple(item) for item in items]) for key_id, items in body["p"]]
            self.changes.heard(list(body["c"]), published)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("a change another node announced could not be read (%s)", exc)
