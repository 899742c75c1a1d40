"""Option defaults, for forms made from the option schema (the web page): shown in /v1/formats
and /v2/convert/formats, each one a value the option accepts, and each what the converter
really does when the option is left out."""

from __future__ import annotations

import io
from pathlib import Path

import requests
from PIL import Image

from convertd.converters.registry import default_registry
from convertd.office.pool import OfficePool
from tests.conftest import ROOT, Daemon

CORPUS = ROOT / "tests" / "corpus"


def test_every_declared_default_is_an_accepted_value(tmp_path: Path) -> None:
    registry = default_registry(OfficePool(tmp_path / "office", 1))
    declared = {
        (c.filetype, name): option.default
        for c in registry.known_all()
        for name, option in c.options.items()
        if option.default is not None
    }
    assert ("image", "fit") in declared and ("pdf", "dpi") in declared
    for (filetype, name), default in declared.items():
        option = registry.known(filetype).options[name]  # type: ignore[union-attr]
        assert option.validate(name, default) == default, (filetype, name)
        assert option.describe()["default"] == default
    # Where the default depends on the output format (jpg 85, webp 80), none is claimed.
    assert ("image", "quality") not in declared


def test_defaults_are_listed_and_are_what_happens_without_the_option(
    daemon: Daemon, key: str
) -> None:
    base = daemon.base.removesuffix("/v1")
    listed = requests.get(f"{daemon.base}/formats", headers={"X-API-Key": key}, timeout=10)
    image = listed.json()["filetypes"]["image"]["options"]
    assert image["fit"]["default"] == "contain" and image["strip_metadata"]["default"] is False
    assert "default" not in image["quality"] and "default" not in image["width"]
    v2 = requests.get(
        f"{base}/v2/convert/formats",
        params={
            "filter[input_format]": "pdf",
            "filter[output_format]": "png",
            "include": "options",
        },
        timeout=10,
    ).json()["data"]
    dpi = next(o for o in v2[0]["options"] if o.get("convertd_name") == "dpi")
    assert dpi["default"] == 150 and dpi["minimum"] == 36

    pdf = (CORPUS / "pdf" / "google-docs-export.pdf").read_bytes()
    sizes = []
    # The listed default, sent, makes what leaving the option out makes; another value does not.
    for options in (None, {"dpi": dpi["default"]}, {"dpi": 72}):
        _status, out = daemon.convert_and_fetch(key, pdf, "doc.pdf", "pdf", "png", options)
        assert out is not None
        with Image.open(io.BytesIO(out.content)) as im:
            sizes.append(im.size)
    assert sizes[0] == sizes[1] != sizes[2]

    png = (CORPUS / "image" / "palette-trns-interlaced.png").read_bytes()
    made = []
    for options in (
        None,
        {"background": image["background"]["default"]},
        {"background": "#000000"},
    ):
        _status, out = daemon.convert_and_fetch(key, png, "t.png", "image", "jpg", options)
        assert out is not None
        with Image.open(io.BytesIO(out.content)) as im:
            made.append(im.convert("RGB").tobytes())
    assert made[0] == made[1] != made[2]
