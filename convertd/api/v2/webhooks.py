"""`/v2/webhooks`: a key's subscriptions to its job and task events (CloudConvert's and
ConvertFly's shape). The signing secret is shown once, when the webhook is made."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from convertd.api.receive import read_json
from convertd.api.state import API_KEY, CONFIG, DB
from convertd.api.urls import base_url
from convertd.api.v2.render import data, iso
from convertd.api.v2.tasks import page_of
from convertd.errors import Invalid, NotFound
from convertd.events import targets
from convertd.store import webhooks

MAX_BODY = 64 * 1024
HINT = 'Send {"url": "http://127.0.0.1:9000/hook", "events": ["job.finished", "job.failed"]}.'


def webhook_json(request: web.Request, webhook: webhooks.Webhook) -> dict[str, Any]:
    return {
        "id": webhook.id,
        "url": webhook.url,
        "events": webhook.events,
        "created_at": iso(webhook.created_at),
        "links": {"self": f"{base_url(request)}/v2/webhooks/{webhook.id}"},
    }


def _events(body: dict[str, Any]) -> list[str]:
    events = body.get("events")
    known = ", ".join(webhooks.EVENTS)
    if not isinstance(events, list) or not events:
        problem = f"must be a non-empty list of: {known}"
        raise Invalid(f"The events field {problem}.", {"events": [problem]})
    for event in events:
        if not isinstance(event, str) or event not in webhooks.EVENTS:
            problem = f"has {str(event)[:60]!r}, which is not one of: {known}"
            raise Invalid(f"The events field {problem}.", {"events": [problem]})
    return list(dict.fromkeys(events))


async def create(request: web.Request) -> web.Response:
    body = await read_json(request, MAX_BODY, HINT)
    if unknown := sorted(set(body) - {"url", "events"}):
        raise Invalid(
            f"The {unknown[0]} field is not a field of a webhook; known: url, events.",
            {name: ["not a field of a webhook; known: url, events"] for name in unknown},
        )
    url = body.get("url")
    if url is None or url == "":
        problem: str | None = "is required: an http or https URL"
    elif not isinstance(url, str):
        problem = "must be an http or https URL (a string)"
    else:
        problem = targets.url_problem(request.app[CONFIG], url.strip())
    if problem or not isinstance(url, str):
        raise Invalid(f"The url field {problem}.", {"url": [problem or "is required"]})
    events = _events(body)
    try:
        webhook, secret = await webhooks.create(
            request.app[DB], request[API_KEY].id, url.strip(), events
        )
    except webhooks.TooMany:
        problem = f"this key has {webhooks.MAX_PER_KEY} webhooks, the most it may have"
        raise Invalid(f"No more webhooks: {problem}.", {"url": [problem]}) from None
    return data({**webhook_json(request, webhook), "signing_secret": secret}, status=201)


async def listing(request: web.Request) -> web.Response:
    page = page_of(request)
    key_id = request[API_KEY].id
    found = await webhooks.of_key(request.app[DB], key_id, page.offset, page.per_page)
    total = await webhooks.count_of_key(request.app[DB], key_id)
    return page.answer([webhook_json(request, w) for w in found], total)


async def delete(request: web.Request) -> web.Response:
    webhook_id = request.match_info["webhook_id"]
    found = await webhooks.get_owned(request.app[DB], request[API_KEY].id, webhook_id)
    if found is None:
        raise NotFound(f"No webhook with id {webhook_id!r}.", "GET /v2/webhooks lists yours.")
    await webhooks.delete(request.app[DB], webhook_id)
    return web.Response(status=204)
