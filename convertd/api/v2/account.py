"""What a /v2 client may ask about its account and about convertd: `GET /v2/users/me` and
`GET /v2/convert/formats` (made from the converter registry, so it lists what really runs)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from convertd.api.limits import rate_limits
from convertd.api.state import API_KEY, CALLS, REGISTRY
from convertd.api.urls import base_url
from convertd.api.v2.render import data, iso
from convertd.converters.base import ANY_FORMAT, Converter, canonical_format
from convertd.converters.options import PDF_EXPORT_OPTIONS, Option, OptionError
from convertd.store import keys
from convertd.tasks.operations import (
    ALIAS_TYPES,
    CLOUDCONVERT_VALUES,
    OPTION_ALIASES,
    OPTION_NOTES,
)

UNLIMITED = 2**31 - 1
_TYPES = {bool: "boolean", int: "integer", float: "float", str: "string"}
_ALIAS_OF = {ours: theirs for theirs, ours in OPTION_ALIASES.items()}


async def users_me(request: web.Request) -> web.Response:
    calls = request.app[CALLS]
    key = await calls.key_with_usage(request[API_KEY].id) or request[API_KEY]
    usage = await calls.usage(key)
    return data(
        {
            "id": key.id,
            "username": key.name,
            "email": None,
            "created_at": iso(key.created_at),
            # CloudConvert counts credits; convertd counts calls: what is left today. Clients
            # compare credits with a number, so "unlimited" is a very large one.
            "credits": UNLIMITED if usage.day.remaining is None else usage.day.remaining,
            "paying": False,
            "task_priority": None,
            "tasks_per_minute": key.plan.calls_per_minute,
            "plan": key.plan.name,
            "scopes": list(key.scopes),
            "admin": keys.is_admin(key),  # may see the admin-only views (GET /v2/drops)
            # Signs the deliveries to this key's per-job URLs (webhook_url, v1's callback); not
            # shown to a key that lives in web pages, where anyone can read it.
            "webhook_signing_secret": key.webhook_secret
            if "webhook.read" in key.scopes and key.restriction_type != "domain"
            else None,
            "rate_limits": rate_limits(key, usage),
            "links": {"self": f"{base_url(request)}/v2/users/me"},
        }
    )


def _option(name: str, option: Option) -> dict[str, Any]:
    """An option as CloudConvert lists one, under its CloudConvert name where it has one (and
    the values that name takes); convertd's own name is accepted too."""
    alias = _ALIAS_OF.get(name)
    out: dict[str, Any] = {"name": alias or name}
    if option.choices:
        out["type"] = "enum"
        out["possible_values"] = [*option.choices, *CLOUDCONVERT_VALUES.get(name, ())]
    else:
        out["type"] = ALIAS_TYPES.get(alias or "", _TYPES.get(option.kind, "string"))
    if alias:
        out["convertd_name"] = name
    out["description"] = option.help + OPTION_NOTES.get(name, "")
    if option.minimum is not None:
        out["minimum"] = option.minimum
    if option.maximum is not None:
        out["maximum"] = option.maximum
    if option.default is not None:
        out["default"] = option.default
    return out


def _pairs(converter: Converter) -> list[tuple[str, str]]:
    pairs = []
    for input_format in converter.input_formats:
        for output_format in converter.output_formats:
            if input_format != ANY_FORMAT:
                try:
                    converter.check_pair(input_format, output_format)
                except OptionError:
                    continue
            pairs.append((input_format, output_format))
    return pairs


async def formats(request: web.Request) -> web.Response:
    wanted_in = canonical_format(request.query.get("filter[input_format]", ""))
    wanted_out = canonical_format(request.query.get("filter[output_format]", ""))
    wanted_engine = request.query.get("filter[engine]", "")
    with_options = "options" in request.query.get("include", "").split(",")
    seen: set[tuple[str, str]] = set()
    out = []
    for converter in request.app[REGISTRY].available():
        for input_format, output_format in _pairs(converter):
            engine = converter.engine(input_format, output_format)
            if wanted_engine and engine != wanted_engine:
                continue
            if wanted_in and input_format not in (wanted_in, ANY_FORMAT):
                continue
            if wanted_out and output_format != wanted_out:
                continue
            if (input_format, output_format) in seen:
                continue  # the first converter that can is the one a task uses
            seen.add((input_format, output_format))
            entry: dict[str, Any] = {
                "operation": "convert",
                "input_format": input_format,
                "output_format": output_format,
                "engine": engine,
                "credits": 0,
                "deprecated": False,
                "experimental": False,
                "meta": {"group": converter.filetype},
            }
            if with_options:
                entry["options"] = [
                    _option(name, option)
                    for name, option in converter.options.items()
                    # The PDF export options (documents, ebooks) apply to pdf output only.
                    if output_format == "pdf" or option is not PDF_EXPORT_OPTIONS.get(name)
                ]
            out.append(entry)
    return data(out)
