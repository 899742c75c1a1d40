"""The operations a task can be, and the checking of each one's parameters.

`check_task()` turns what a client sent for one task into its stored payload, or raises
`Invalid` (a 422) naming every bad field. Option names follow CloudConvert's where the meaning
matches ours (`strip`, `audio_bitrate`, `pixel_density`, ...), so its clients need no changes;
convertd's own names are accepted too.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from convertd.converters.base import Converter, canonical_format
from convertd.converters.options import OptionError
from convertd.converters.registry import Registry
from convertd.errors import Invalid
from convertd.files import extension_of
from convertd.tasks.checking import Check, seconds_of, where
from convertd.tasks.parameters import ENGINE_WORK, check_work, image_task

IMPORTS = ("import/upload", "import/url", "import/base64", "import/raw")
OPERATIONS = (*IMPORTS, "convert", *ENGINE_WORK, "archive", "export/url")
# CloudConvert operations convertd does not do yet (a clear 422, not a 404): cloud storage.
STORAGE = ("s3", "azure/blob", "google-cloud-storage", "openstack", "sftp")
CLOUD = tuple(f"{way}/{store}" for way in ("import", "export") for store in STORAGE)
NOT_YET = CLOUD
ARCHIVE_FORMATS = ("zip", "7z", "tar", "tar.gz", "tar.bz2", "tar.xz")

# The task fields every convert task may carry besides the converter's options.
CONVERT_FIELDS = (
    "input",
    "input_format",
    "output_format",
    "engine",
    "engine_version",
    "filename",
    "timeout",
    "ignore_error",
    "operation",
    "preset",  # expanded before the task is checked (tasks/presets.expand_convert)
)

# CloudConvert's option names -> convertd's, for the options whose meaning matches.
OPTION_ALIASES = {
    "strip": "strip_metadata",
    "audio_bitrate": "bitrate",
    "audio_frequency": "sample_rate",
    "audio_channels": "channels",
    "pixel_density": "dpi",
}
FIT_ALIASES = {"max": "inside", "crop": "cover", "scale": "fill", "upscale": "contain"}
# How GET /v2/convert/formats describes what the CloudConvert names take.
ALIAS_TYPES = {"audio_bitrate": "integer"}
CLOUDCONVERT_VALUES = {"fit": tuple(FIT_ALIASES)}
OPTION_NOTES = {
    "bitrate": " (as audio_bitrate: whole kbps, e.g. 192)",
    "trim_start": " (or HH:MM:SS)",
    "trim_end": " (or HH:MM:SS)",
}

MAX_BASE64_CHARS = 1 << 34


class TaskFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def input_names(payload: dict[str, Any], prefix: str = "") -> list[str]:
    """The `input` of a task as a list of names (jobs) or ids (tasks created alone)."""
    raw = payload.get("input")
    if isinstance(raw, str) and raw.strip():
        return [raw.strip()]
    if isinstance(raw, list) and raw and all(isinstance(x, str) and x.strip() for x in raw):
        return list(dict.fromkeys(x.strip() for x in raw))
    raise Invalid(
        f"The {where(prefix, 'input')} field must name a task, or be a list of task names.",
        {where(prefix, "input"): ["must be a task name or a list of task names"]},
    )


def with_image(
    operation: Any, payload: dict[str, Any], inputs: list[str], prefix: str = ""
) -> list[str]:
    """What a task depends on: its inputs and, for a watermark with an image, last, the task
    that brings the image (so the engine waits for it; work.perform takes it from there). The
    image task is no file to mark, even if `input` names it too."""
    image = image_task(payload.get("image")) if operation == "watermark" else None
    if image is None:
        return inputs
    if not (marked := [name for name in inputs if name != image]):
        raise Invalid(
            f"The {where(prefix, 'input')} field names only the watermark's image: name the "
            "file to mark.",
            {where(prefix, "input"): ["must name the file to mark, not only the image"]},
        )
    return [*marked, image]


def check_task(
    registry: Registry,
    operation: Any,
    payload: dict[str, Any],
    prefix: str = "",
    input_hint: str | None = None,
) -> dict[str, Any]:
    """The stored form of one task's parameters; Invalid names what is wrong."""
    if not isinstance(operation, str) or not operation:
        what = "is required" if operation is None else "must be the name of an operation"
        raise Invalid(
            f"The {where(prefix, 'operation')} field {what}.",
            {where(prefix, "operation"): [f"must be one of: {', '.join(OPERATIONS)}"]},
        )
    if operation in NOT_YET:
        raise Invalid(
            f"The operation {operation!r} is not available in convertd yet.",
            {where(prefix, "operation"): [f"convertd does: {', '.join(OPERATIONS)}"]},
        )
    if operation not in OPERATIONS:
        raise Invalid(
            f"The operation {operation!r} is unknown.",
            {where(prefix, "operation"): [f"must be one of: {', '.join(OPERATIONS)}"]},
        )
    check = Check(payload, prefix)
    out: dict[str, Any] = {}
    if operation == "import/upload":
        check.only(["redirect"], takes_input=False)
        if (redirect := check.text("redirect")) is not None:
            if not redirect.startswith(("http://", "https://")):
                check.bad("redirect", "must be an http or https URL")
            out["redirect"] = redirect
    elif operation == "import/url":
        check.only(["url", "filename", "headers"], takes_input=False)
        url = check.text("url", required=True, limit=8000)
        if url is not None and not re.match(r"^https?://[^/\s]+", url, re.IGNORECASE):
            check.bad("url", "must be an http or https URL")
        out["url"] = url
        if (filename := check.name("filename")) is not None:
            out["filename"] = filename
        if (headers := check.headers("headers")) is not None:
            out["headers"] = headers
    elif operation in ("import/base64", "import/raw"):
        check.only(["file", "filename"], takes_input=False)
        # The content itself is decoded (and checked) off the event loop, as it is written.
        check.text("file", required=True, limit=MAX_BASE64_CHARS)
        filename = check.name("filename", required=True)
        out["filename"] = filename
    elif operation == "convert":
        out.update(_check_convert(registry, payload, check, input_hint))
    elif operation in ENGINE_WORK:
        out.update(check_work(operation, check))
    elif operation == "archive":
        check.only(["output_format", "filename"])
        fmt = canonical_format(check.text("output_format") or "zip")
        if fmt not in ARCHIVE_FORMATS:
            check.bad("output_format", f"must be one of: {', '.join(ARCHIVE_FORMATS)}")
        out["output_format"] = fmt
        if (filename := check.name("filename")) is not None:
            out["filename"] = filename
    elif operation == "export/url":
        check.only(["inline", "archive_multiple_files"])
        out["inline"] = check.flag("inline")
        out["archive_multiple_files"] = check.flag("archive_multiple_files")
    check.done()
    if operation not in IMPORTS and "input" in payload:
        out["input"] = payload["input"]  # shown back in the task's payload, as it was sent
    return out


def _check_convert(
    registry: Registry, payload: dict[str, Any], check: Check, input_hint: str | None
) -> dict[str, Any]:
    """`input_hint`: the input's format as its name tells, when that is known now (an import
    with a file name); the options are then checked against the converter that will run."""
    out: dict[str, Any] = {}
    output_format = check.text("output_format", required=True)
    input_format = check.text("input_format")
    for name in ("engine", "engine_version"):
        if (value := check.text(name, limit=255)) is not None:
            out[name] = value
    if (filename := check.name("filename")) is not None:
        out["filename"] = filename
    if isinstance(payload.get("preset"), str):
        out["preset"] = payload["preset"]  # shown back; its options are the task's own now
    timeout = payload.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            check.bad("timeout", "must be a whole number of seconds, at least 1")
        else:
            out["timeout"] = timeout
    if "options" in payload:
        check.bad(
            "options",
            "is not taken here: put conversion options at the task's top level, "
            'e.g. {"operation": "convert", "output_format": "jpg", "width": 300}',
        )
    if output_format is None:
        return out
    out["output_format"] = canonical_format(output_format)
    if input_format is not None:
        out["input_format"] = canonical_format(input_format)
    if isinstance(payload.get("input"), list) and len(payload["input"]) > 1:
        check.bad("input", "names several tasks: a convert task takes one; archive them first")
    candidates = registry.making(out["output_format"], out.get("input_format"))
    if "input_format" not in out and input_hint:
        # A misnamed file (its name says nothing convertd reads) is checked against them all.
        candidates = registry.making(out["output_format"], input_hint) or candidates
    if not candidates:
        what = f"from {out['input_format']} " if "input_format" in out else ""
        check.bad(
            "output_format",
            f"names a conversion convertd cannot do ({what}to {out['output_format']})",
        )
        return out
    raw = {k: v for k, v in payload.items() if k not in CONVERT_FIELDS and k != "options"}
    # Options sit beside the task's fields, as CloudConvert has them (in convertd's names).
    out.update(_options(candidates, raw, out["output_format"], check))
    return out


def convert_options(payload: dict[str, Any]) -> dict[str, Any]:
    """The converter options of a stored convert payload."""
    return {k: v for k, v in payload.items() if k not in CONVERT_FIELDS}


def cloudconvert_options(raw: dict[str, Any]) -> dict[str, Any]:
    """CloudConvert's option names and values in convertd's terms."""
    options: dict[str, Any] = {}
    for name, value in raw.items():
        ours = OPTION_ALIASES.get(name, name)
        if ours == "bitrate" and isinstance(value, int | float) and not isinstance(value, bool):
            value = f"{int(value)}k"
        elif ours == "fit" and isinstance(value, str):
            value = FIT_ALIASES.get(value.strip().lower(), value)
        elif (
            ours in ("trim_start", "trim_end")
            and isinstance(value, str)
            and (seconds := seconds_of(value)) is not None
        ):
            value = seconds
        options[ours] = value
    return options


def _options(
    candidates: list[Converter], raw: dict[str, Any], output_format: str, check: Check
) -> dict[str, Any]:
    """Options valid for at least one converter that can do this conversion."""
    options = cloudconvert_options(raw)
    for theirs, ours_name in OPTION_ALIASES.items():
        if theirs in raw and ours_name in raw:
            check.bad(theirs, f"is '{ours_name}' by another name: give one of them, not both")
            return {}
    ours = {name for c in candidates for name in c.options}
    known = sorted(ours | {alias for alias, name in OPTION_ALIASES.items() if name in ours})
    unknown = [name for name in raw if OPTION_ALIASES.get(name, name) not in ours]
    for name in unknown:
        check.bad(name, f"is not an option of this conversion; known options: {', '.join(known)}")
    if unknown:
        return {}
    problem = ""
    for converter in candidates:
        if set(options) - set(converter.options):
            continue
        try:
            return converter.validate_options(dict(options), output_format)
        except OptionError as exc:
            problem = problem or str(exc)
    for theirs, ours_name in OPTION_ALIASES.items():  # said back in the client's own names
        if theirs in raw:
            problem = problem.replace(f"'{ours_name}'", f"'{theirs}'")
    for name in _named_in(problem, raw):
        check.bad(name, problem or "these options do not go together here")
    return {}


def _named_in(problem: str, raw: dict[str, Any]) -> list[str]:
    """The options (as the client named them) that a converter's complaint is about: each one
    it quotes that was sent (a conflict names them all), else the first sent."""
    quoted = re.findall(r"'(\w+)'", problem)
    named = [sent for sent in raw if {sent, OPTION_ALIASES.get(sent)} & set(quoted)]
    return named or [next(iter(raw), "options")]


def name_brought(operation: Any, payload: dict[str, Any]) -> str | None:
    """The name of the file a task will bring, where its parameters say: an import's file name
    (given, or the URL's last path segment), or a convert's output format."""
    if operation == "convert" and isinstance(payload.get("output_format"), str):
        return f"output.{payload['output_format']}"
    if operation in ("import/raw", "import/base64", "import/url") and payload.get("filename"):
        return str(payload["filename"])
    if operation == "import/url" and isinstance(payload.get("url"), str):
        return urlsplit(payload["url"]).path.rsplit("/", 1)[-1] or None
    return None


def format_hint(name: str | None) -> str | None:
    return canonical_format(extension_of(name)) or None if name else None
