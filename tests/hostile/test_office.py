"""Hostile office documents: auto-run macros, linked sections, floating frames, external
references and DDE. LibreOffice runs none of it and fetches nothing.

Each macro case has a control: the same file given to LibreOffice the careless way (a view,
macros allowed, default profile) must run the macro, so the test would notice if the hostile
file stopped being hostile."""

from __future__ import annotations

import io
import subprocess
import time
import zipfile
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest

from convertd.office.profile import find_soffice, find_uno_python, office_binary, write_profile
from tests.canary import Canary
from tests.conftest import ROOT, Daemon
from tests.inspect_files import pdf_text

SOFFICE = find_soffice()
UNO_PYTHON = find_uno_python()
pytestmark = pytest.mark.skipif(
    SOFFICE is None or UNO_PYTHON is None, reason="needs LibreOffice and python3-uno"
)

NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
    'xmlns:script="urn:oasis:names:tc:opendocument:xmlns:script:1.0" '
    'xmlns:xlink="http://www.w3.org/1999/xlink" '
    'xmlns:dom="http://www.w3.org/2001/xml-events" '
    'xmlns:ooo="http://openoffice.org/2004/office" '
    'xmlns:of="urn:oasis:names:tc:opendocument:xmlns:of:1.2" office:version="1.3"'
)
# Every document event LibreOffice fires while opening, laying out and exporting a document.
AUTO_EVENTS = (
    "dom:load",
    "office:load-finished",
    "office:view-created",
    "office:layout-finished",
    "office:page-count-change",
    "dom:DOMFocusIn",
    "office:copy-to",
    "office:copy-to-done",
    "office:print",
    "office:prepare-unload",
    "dom:unload",
)
MACRO_URL = "vnd.sun.star.script:Standard.Module1.Main?language=Basic&location=document"


def opendocument(mimetype: str, body: str, extra: dict[str, str] | None = None) -> bytes:
    extra = extra or {}
    entries = "".join(
        f'<manifest:file-entry manifest:full-path="{name}" manifest:media-type="text/xml"/>'
        for name in ["content.xml", *extra]
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), mimetype)
        zf.writestr(
            "META-INF/manifest.xml",
            '<?xml version="1.0"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:'
            'opendocument:xmlns:manifest:1.0" manifest:version="1.3"><manifest:file-entry '
            f'manifest:full-path="/" manifest:media-type="{mimetype}"/>{entries}'
            "</manifest:manifest>",
        )
        zf.writestr(
            "content.xml",
            f'<?xml version="1.0"?><office:document-content {NS}>{body}</office:document-content>',
        )
        for name, text in extra.items():
            zf.writestr(name, text)
    return buf.getvalue()


def macro_odt(marker: Path) -> bytes:
    """An ODT whose Basic macro appends to `marker`, bound to every automatic event and to a
    link's mouse-over (CVE-2018-16858's trigger)."""
    listeners = "".join(
        f'<script:event-listener script:language="ooo:script" script:event-name="{event}" '
        f'xlink:href={quoteattr(MACRO_URL)} xlink:type="simple"/>'
        for event in AUTO_EVENTS
    )
    module = (
        '<?xml version="1.0" encoding="UTF-8"?><script:module xmlns:script="http://openoffice.org/'
        '2000/script" script:name="Module1" script:language="StarBasic">Sub Main\n'
        f' Open "{marker}" For Append As #1\n Print #1, "macro ran"\n Close #1\nEnd Sub\n'
        "</script:module>"
    )
    body = (
        f"<office:scripts><office:event-listeners>{listeners}</office:event-listeners>"
        "</office:scripts><office:body><office:text><text:p>Quarterly report</text:p><text:p>"
        f'<text:a xlink:type="simple" xlink:href={quoteattr(MACRO_URL)}>'
        '<office:event-listeners><script:event-listener script:language="ooo:script" '
        f'script:event-name="dom:mouseover" xlink:href={quoteattr(MACRO_URL)} '
        'xlink:type="simple"/></office:event-listeners>details</text:a></text:p>'
        '<text:p><text:a xlink:type="simple" xlink:href="vnd.libreoffice.command:.uno:Quit">'
        "quit</text:a></text:p></office:text></office:body>"
    )
    return opendocument(
        "application/vnd.oasis.opendocument.text",
        body,
        {
            "Basic/script-lc.xml": (
                '<?xml version="1.0" encoding="UTF-8"?><library:libraries xmlns:library='
                '"http://openoffice.org/2000/library" xmlns:xlink="http://www.w3.org/1999/xlink">'
                '<library:library library:name="Standard" library:link="false"/>'
                "</library:libraries>"
            ),
            "Basic/Standard/script-lb.xml": (
                '<?xml version="1.0" encoding="UTF-8"?><library:library xmlns:library='
                '"http://openoffice.org/2000/library" library:name="Standard" '
                'library:readonly="false" library:passwordprotected="false">'
                '<library:element library:name="Module1"/></library:library>'
            ),
            "Basic/Standard/Module1.xml": module,
        },
    )


def careless_conversion(source: bytes, workdir: Path, profile: Path) -> bytes:
    """The control: tests/office_control.py converts with a view and macros allowed."""
    assert SOFFICE is not None and UNO_PYTHON is not None
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "in.odt").write_bytes(source)
    subprocess.run(
        [
            UNO_PYTHON,
            str(ROOT / "tests" / "office_control.py"),
            str(workdir / "in.odt"),
            str(workdir / "out.pdf"),
            str(profile),
            office_binary(SOFFICE),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    return (workdir / "out.pdf").read_bytes()


def test_auto_run_macros_never_run(daemon: Daemon, key: str, tmp_path: Path) -> None:
    control_marker = tmp_path / "control-marker"
    careless_conversion(macro_odt(control_marker), tmp_path / "control", tmp_path / "defaults")
    assert control_marker.exists(), "the control did not run the macro: the test proves nothing"

    marker = tmp_path / "marker"
    for fmt in ("pdf", "docx", "odt", "html"):
        status, out = daemon.convert_and_fetch(
            key, macro_odt(marker), "report.odt", "document", fmt
        )
        assert out is not None, status
        if fmt == "pdf":
            assert "Quarterly report" in pdf_text(out.content)[1]
    time.sleep(1)
    assert not marker.exists()


def test_hardened_profile_alone_stops_macros(tmp_path: Path) -> None:
    """Defence in depth: even loaded with a view and macros allowed by the caller, the profile
    every instance starts with keeps document macros off."""
    profile = tmp_path / "hardened"
    write_profile(profile)
    marker = tmp_path / "marker"
    pdf = careless_conversion(macro_odt(marker), tmp_path / "run", profile)
    assert "Quarterly report" in pdf_text(pdf)[1]
    assert not marker.exists()


def linked_odt(canary: Canary) -> bytes:
    """Sections linked to a local file and to the canary (Writer's file inclusion), a floating
    frame on the canary (CVE-2023-2255) and an image linked to it."""
    sections = "".join(
        f'<text:section text:name="S{i}"><text:section-source xlink:type="simple" '
        f'xlink:href="{href}" text:filter-name="Text"/><text:p>cached {i}</text:p></text:section>'
        for i, href in enumerate(("file:///etc/passwd", canary.url("/section.txt")))
    )
    frame = (
        '<text:p><draw:frame draw:name="F" text:anchor-type="paragraph" svg:width="4cm" '
        f'svg:height="3cm"><draw:floating-frame xlink:type="simple" xlink:href="{canary.url("/frame")}" '
        'xlink:show="embed" xlink:actuate="onLoad"/></draw:frame><draw:frame draw:name="I" '
        'text:anchor-type="paragraph" svg:width="4cm" svg:height="3cm"><draw:image '
        f'xlink:type="simple" xlink:href="{canary.url("/image.png")}" xlink:show="embed" '
        'xlink:actuate="onLoad"/></draw:frame></text:p>'
    )
    return opendocument(
        "application/vnd.oasis.opendocument.text",
        f"<office:body><office:text><text:p>Linked report</text:p>{sections}{frame}"
        "</office:text></office:body>",
    )


def test_linked_sections_and_frames_are_not_followed(
    daemon: Daemon, key: str, canary: Canary, tmp_path: Path
) -> None:
    careless_conversion(linked_odt(canary), tmp_path / "control", tmp_path / "defaults")
    assert canary.hits, "the control fetched nothing: the test proves nothing"
    canary.hits.clear()

    for fmt in ("pdf", "docx", "txt"):
        status, out = daemon.convert_and_fetch(
            key, linked_odt(canary), "linked.odt", "document", fmt
        )
        assert out is not None, status
        text = pdf_text(out.content)[1].encode() if fmt == "pdf" else out.content
        assert b"root:x:0:0" not in text and b"CANARY-CONTENT" not in text
        if fmt != "docx":
            assert b"Linked report" in text and b"cached 0" in text
    time.sleep(1)
    assert canary.hits == []


def linked_ods(canary: Canary) -> bytes:
    """External references to a local file and to the canary, DDE, and a sheet linked to the
    canary, each formula with a harmless cached result."""
    formulas = [
        "of:=['file:///etc/passwd'#$Sheet1.A1]",
        f"of:=['{canary.url('/book.ods')}'#$Sheet1.A1]",
        'of:=DDE("soffice";"file:///etc/passwd";"A1")',
        f'of:=DDE("soffice";"{canary.url("/dde.ods")}";"A1")',
        'of:=HYPERLINK("file:///etc/passwd")',
    ]
    cells = "".join(
        f'<table:table-cell table:formula={quoteattr(f)} office:value-type="string">'
        f"<text:p>cached {i}</text:p></table:table-cell>"
        for i, f in enumerate(formulas)
    )
    return opendocument(
        "application/vnd.oasis.opendocument.spreadsheet",
        "<office:body><office:spreadsheet>"
        f'<table:table table:name="S"><table:table-row>{cells}</table:table-row></table:table>'
        '<table:table table:name="Linked"><table:table-source xlink:type="simple" '
        f'xlink:href="{canary.url("/sheet.ods")}" table:table-name="Sheet1" table:mode="copy-all"/>'
        "<table:table-row><table:table-cell><text:p>cached linked</text:p></table:table-cell>"
        "</table:table-row></table:table></office:spreadsheet></office:body>",
    )


@pytest.mark.parametrize("fmt", ["csv", "pdf", "xlsx"])
def test_link_and_dde_formulas_keep_their_cached_values(
    daemon: Daemon, key: str, canary: Canary, fmt: str
) -> None:
    status, out = daemon.convert_and_fetch(key, linked_ods(canary), "links.ods", "document", fmt)
    assert out is not None, status
    text = pdf_text(out.content)[1].encode() if fmt == "pdf" else out.content
    assert b"root:x:0:0" not in text and b"CANARY-CONTENT" not in text
    if fmt == "csv":
        # Each reference keeps the value it arrived with or shows LibreOffice's error for
        # blocked external content (Err:540) or an unanswered DDE link (#N/A): nothing fetched.
        cells = [c.strip('"') for c in text.decode().strip().splitlines()[0].split(",")]
        for i, cell in enumerate(cells[:4]):
            assert cell in (f"cached {i}", "Err:540", "#N/A"), cell
        assert cells[4] in ("cached 4", "file:///etc/passwd")
    time.sleep(1)
    assert canary.hits == []


def ods_with_webservice(url: str) -> bytes:
    cells = "".join(
        f'<table:table-cell table:formula="of:=WEBSERVICE(&quot;{src}&quot;)" '
        f'office:value-type="string"><text:p>cached</text:p></table:table-cell>'
        for src in (url, "file:///etc/passwd")
    )
    return opendocument(
        "application/vnd.oasis.opendocument.spreadsheet",
        "<office:body><office:spreadsheet>"
        f'<table:table table:name="S"><table:table-row>{cells}</table:table-row></table:table>'
        "</office:spreadsheet></office:body>",
    )


@pytest.mark.parametrize("fmt", ["csv", "pdf", "xlsx"])
def test_webservice_formulas_never_fetch(
    daemon: Daemon, key: str, canary: Canary, fmt: str
) -> None:
    status, out = daemon.convert_and_fetch(
        key, ods_with_webservice(canary.url("/ws")), "sheet.ods", "document", fmt
    )
    assert out is not None, status
    text = out.content if fmt != "pdf" else pdf_text(out.content)[1].encode()
    assert b"root:x:0:0" not in text and b"CANARY-CONTENT" not in text
    time.sleep(1)
    assert canary.hits == []
