"""Every request has an id: the client's `X-Request-Id` when it is sane (a reverse proxy's, so
one id follows a request through both logs), else a fresh one. It is sent back in the answer's
`X-Request-Id` and carried by every log line the request causes (logs.request_id), the access
log's and the error renderer's included."""

from __future__ import annotations

import random
import re

from aiohttp import web

from convertd import logs
from convertd.api.routes import Handler

HEADER = "X-Request-Id"
# Bounded, and nothing that could break a log line or a header: letters, digits and - _ . : @
# + = / (UUIDs, hex, nginx's $request_id, a tracing header's ids).
SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=/-]{0,127}")

REQUEST_ID = web.RequestKey("request_id", str)
# The one job a request created or addressed, for its access line.
JOB_ID = web.RequestKey("job_id", str)


def fresh() -> str:
    """32 hex digits, as a UUID's: unique enough to find a request's lines, and no secret
    (the client sees it), so the plain generator's 128 random bits do, at a sixth of uuid4's
    cost."""
    return f"{random.getrandbits(128):032x}"


def request_id_of(request: web.BaseRequest) -> str:
    """The request's id, chosen once: the sane incoming one, else a fresh one."""
    known = request.get(REQUEST_ID)
    if isinstance(known, str):
        return known
    incoming = request.headers.get(HEADER, "").strip()
    chosen = incoming if SANE.fullmatch(incoming) else fresh()
    request[REQUEST_ID] = chosen
    return chosen


def about_job(request: web.BaseRequest, job_id: str) -> None:
    """The request created or addressed this job: its later lines and its access line name it."""
    request[JOB_ID] = job_id
    logs.job_id.set(job_id)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The outermost middleware: everything the request logs, errors included, carries its id
    (and the job's and the key's, once named; never past the request: requests on one
    keep-alive connection run in one task, and share its context)."""
    token = logs.request_id.set(request_id_of(request))
    job_token = logs.job_id.set(None)
    key_tokens = logs.key_name.set(None), logs.key_id.set(None)
    try:
        return await handler(request)
    finally:
        logs.key_id.reset(key_tokens[1])
        logs.key_name.reset(key_tokens[0])
        logs.job_id.reset(job_token)
        logs.request_id.reset(token)


def add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer (app.py's on_response_prepare), streamed ones and errors included: its
    id."""
    response.headers[HEADER] = request_id_of(request)
