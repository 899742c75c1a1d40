"""`/v2/presets`: named option sets, shared by every key (reading them needs `user.read`,
changing them `user.write`), and"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from convertd.api.receive import read_json
from convertd.api.routes import Route
from convertd.api.state import DB, PRESETS
from convertd.api.urls import base_url
from convertd.api.v2.render import data, iso
from convertd.api.v2.schemas import PAGING, error, json_request, many, one
from convertd.api.v2.tasks import page_of
from convertd.converters.registry import FILETYPES
from convertd.errors import BadRequest, Invalid, NotFound
from convertd.presets import TABLE_FIELDS, Preset, PresetError, check_fields, check_name
from convertd.tasks.presets import UnknownPreset

MAX_BODY = 64 * 1024
HINT = (
    'Send {"name": "web-photo", "filetype": "image", "output_format": "webp", '
    '"options": {"width": 2048, "quality": 80}}.'
)
EDITABLE = ("filetype", "output_format", "options", "description")


def preset_json(request: web.Request, preset: Preset) -> dict[str, Any]:
    out = {
        **preset.as_json(),
        "created_at": iso(preset.created_at),
        "updated_at": iso(preset.updated_at),
        "links": {"self": f"{base_url(request)}/v2/presets/{preset.name}"},
    }
    if note := request.app[PRESETS].source_note(preset):
        out["note"] = note
    return out


def _invalid(exc: BadRequest | PresetError) -> Invalid:
    """A preset refused as /v1/convert would refuse it, in /v2's shape (422, the field named)."""
    if isinstance(exc, PresetError):
        text = str(exc)
        message = f"{text[:1].upper()}{text[1:]}."
        return Invalid(message, {exc.field: [message]})
    named = re.search(r"'(filetype|output_format|options|description)'", exc.message)
    field = named.group(1) if named else "options"
    return Invalid(exc.message, {field: [exc.message]})


def _fields(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    if unknown := sorted(set(body) - set(allowed)):
        known = ", ".join(allowed)
        raise Invalid(
            f"The {unknown[0][:60]} field is not a field of a preset; known: {known}.",
            {name[:60]: [f"not a field of a preset; known: {known}"] for name in unknown[:10]},
        )


async def _save(request: web.Request, preset: Preset, *, replace: bool) -> Preset:
    try:
        saved, _ = await request.app[PRESETS].save(
            request.app[DB],
            preset,
            replace=replace,
            replace_hint=f"PATCH /v2/presets/{preset.name} changes it (a built-in is then "
            'replaced by a saved copy), or send "replace": true to replace it whole.',
        )
    except BadRequest as exc:
        raise _invalid(exc) from None
    return saved


async def create(request: web.Request) -> web.Response:
    body = await read_json(request, MAX_BODY, HINT)
    _fields(body, (*TABLE_FIELDS, "replace"))
    replace = body.get("replace", False)
    if not isinstance(replace, bool):
        message = "The replace field is true or false."
        raise Invalid(message, {"replace": [message]})
    try:
        name = check_name(body.get("name"))
        fields = check_fields(
            body.get("filetype"),
            body.get("output_format"),
            body.get("options", {}),
            body.get("description", ""),
            FILETYPES,
        )
    except PresetError as exc:
        raise _invalid(exc) from None
    saved = await _save(request, Preset(name, *fields), replace=replace)
    return data(preset_json(request, saved), status=201)


async def listing(request: web.Request) -> web.Response:
    page = page_of(request)
    found = await request.app[PRESETS].all(request.app[DB])
    shown = found[page.offset : page.offset + page.per_page]
    return page.answer([preset_json(request, p) for p in shown], len(found))


async def _named(request: web.Request) -> Preset:
    try:
        return await request.app[PRESETS].get(request.app[DB], request.match_info["name"])
    except UnknownPreset as exc:
        raise NotFound(f"{exc.message}.", "GET /v2/presets lists them.") from None


async def show(request: web.Request) -> web.Response:
    return data(preset_json(request, await _named(request)))


def _patched(options: dict[str, Any], patch: Any) -> Any:
    """JSON Merge Patch (RFC 7396) of the options: given keys replace, null removes one."""
    if not isinstance(patch, dict):
        return patch  # check_fields refuses it
    out = {k: v for k, v in options.items() if k not in patch}
    out.update({k: v for k, v in patch.items() if v is not None})
    return out


async def update(request: web.Request) -> web.Response:
    """Change a preset; a built-in changed this way is replaced by a database preset."""
    current = await _named(request)
    body = await read_json(request, MAX_BODY, HINT)
    _fields(body, EDITABLE)
    description = body.get("description", current.description)
    builtin = request.app[PRESETS].builtins.get(current.name)
    changes = any(f in body for f in ("filetype", "output_format", "options"))
    if builtin and changes and "description" not in body and description == builtin.description:
        # The built-in's description states its option values, which may no longer hold.
        description = f"Changed from the built-in {current.name!r}"
    try:
        fields = check_fields(
            body.get("filetype", current.filetype),
            body.get("output_format", current.output_format),
            _patched(current.options, body["options"]) if "options" in body else current.options,
            description,
            FILETYPES,
        )
    except PresetError as exc:
        raise _invalid(exc) from None
    saved = await _save(request, Preset(current.name, *fields), replace=True)
    return data(preset_json(request, saved))


async def delete(request: web.Request) -> web.Response:
    """Remove a database preset (the built-in it replaced, if any, is in force again)."""
    name = request.match_info["name"].strip().lower()
    await request.app[PRESETS].remove(request.app[DB], name)
    return web.Response(status=204)


FIELDS: dict[str, Any] = {
    "name": {"type": "string"},
    "filetype": {"type": "string"},
    "output_format": {"type": "string"},
    "options": {"type": "object"},
    "description": {"type": "string"},
    "source": {"type": "string", "enum": ["builtin", "config", "database"]},
}
PRESET = {"type": "object", "properties": FIELDS}
# What POST takes: a preset, and whether it may replace one in force of that name.
NEW_PRESET = {
    "type": "object",
    "properties": {**FIELDS, "replace": {"type": "boolean", "default": False}},
}
PRESET_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
READ, WRITE = "user.read", "user.write"

ROUTES = [
    Route(
        "GET",
        "/v2/presets",
        listing,
        "Every preset in force (built-in, config, database), by name",
        scope=READ,
        operation={
            "parameters": PAGING,
            "responses": {"200": many("Presets", PRESET), "422": error("A bad page")},
        },
    ),
    Route(
        "POST",
        "/v2/presets",
        create,
        "Save a preset, checked as a conversion's options are (replace: true for a name in force)",
        scope=WRITE,
        operation={
            "requestBody": json_request(NEW_PRESET),
            "responses": {
                "201": one("The preset", PRESET),
                "400": error("A malformed body"),
                "413": error("A body over 64 KiB"),
                "409": error("The name is in force (without replace), or the config file's"),
                "422": error("A field a conversion would refuse, named in `errors`"),
            },
        },
    ),
    Route(
        "GET",
        "/v2/presets/{name}",
        show,
        "A preset",
        scope=READ,
        operation={
            "parameters": [PRESET_NAME],
            "responses": {"200": one("The preset", PRESET), "404": error("No such preset")},
        },
    ),
    Route(
        "PATCH",
        "/v2/presets/{name}",
        update,
        "Change a preset's fields (options by JSON Merge Patch: null removes one)",
        scope=WRITE,
        operation={
            "parameters": [PRESET_NAME],
            "requestBody": json_request(PRESET),
            "responses": {
                "200": one("The preset", PRESET),
                "400": error("A malformed body"),
                "404": error("No such preset"),
                "413": error("A body over 64 KiB"),
                "409": error("A config file's preset"),
                "422": error("A field a conversion would refuse"),
            },
        },
    ),
    Route(
        "DELETE",
        "/v2/presets/{name}",
        delete,
        "Remove a saved preset (a built-in it replaced is in force again)",
        scope=WRITE,
        operation={
            "parameters": [PRESET_NAME],
            "responses": {
                "204": {"description": "Removed"},
                "404": error("No such preset"),
                "409": error("A built-in, the config's, or used by a watch rule"),
            },
        },
    ),
]
