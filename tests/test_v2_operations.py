"""/v2 operations beyond conversion, through the API, with what comes out opened: merge,
thumbnail, metadata, optimize and ocr."""

from __future__ import annotations

import base64
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pypdf
import requests
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin
from pypdf.generic import DecodedStreamObject, NameObject

from tests.conftest import CORPUS, Daemon, image_bytes
from tests.media import make_audio, make_video
from tests.test_v2_api import call, job_of, named, wait_job, wait_task


def blank_pdf(*sizes: tuple[int, int]) -> bytes:
    """A PDF with one blank page of each (width, height) in points."""
    writer = pypdf.PdfWriter()
    for width, height in sizes:
        writer.add_blank_page(width=width, height=height)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def b64(name: str, data: bytes) -> dict[str, Any]:
    return {"operation": "import/base64", "file": base64.b64encode(data).decode(), "filename": name}


def page_sizes(data: bytes) -> list[tuple[int, int]]:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return [(round(p.mediabox.width), round(p.mediabox.height)) for p in reader.pages]


def exported(job: dict[str, Any], name: str = "out") -> bytes:
    files = named(job, name)["result"]["files"]
    assert len(files) == 1, files
    resp = requests.get(files[0]["url"], timeout=30)
    assert resp.status_code == 200
    return resp.content


def one_task(d: Daemon, k: str, source: dict[str, Any], operation: str, **params: Any) -> Any:
    """A job of an import, one `operation` task ("op") on it and an export ("out"), ended."""
    job = job_of(
        d,
        k,
        {
            "in": source,
            "op": {"operation": operation, "input": "in", **params},
            "out": {"operation": "export/url", "input": "op"},
        },
    )
    return wait_job(d, k, job["id"])


def refused_fields(d: Daemon, k: str, operation: str, **params: Any) -> set[str]:
    """The fields a 422 names for an `operation` task ("op") on a PNG with these parameters."""
    resp = call(
        d,
        k,
        "POST",
        "/v2/jobs",
        json={
            "tasks": {
                "in": b64("a.png", image_bytes("PNG")),
                "op": {"operation": operation, "input": "in", **params},
            }
        },
    )
    assert resp.status_code == 422, resp.text
    return set(resp.json()["errors"])


def test_merge_joins_pdfs_and_images_in_the_order_given(v2_daemon: Daemon, v2_key: str) -> None:
    d, k = v2_daemon, v2_key
    job = job_of(
        d,
        k,
        {
            "a": b64("a.pdf", blank_pdf((200, 200))),
            "b": b64("b.pdf", blank_pdf((300, 400), (310, 410), (320, 420))),
            "c": b64("c.png", image_bytes("PNG", (100, 50))),
            "m": {"operation": "merge", "input": ["a", "b", "c"], "output_format": "pdf"},
            "out": {"operation": "export/url", "input": "m"},
        },
    )
    done = wait_job(d, k, job["id"])
    assert done["status"] == "finished", done
    merged = exported(done)
    assert page_sizes(merged) == [(200, 200), (300, 400), (310, 410), (320, 420), (100, 50)]
    assert named(done, "m")["result"]["files"][0]["filename"] == "a.pdf"


def test_merge_takes_office_documents_as_they_are_or_through_a_convert_task(
    v2_daemon: Daemon, v2_key: str
) -> None:
    d, k = v2_daemon, v2_key
    docx = (CORPUS / "document" / "word2013-numbered-lists.docx").read_bytes()
    direct = job_of(
        d,
        k,
        {
            "cover": b64("cover.pdf", blank_pdf((595, 842))),
            "doc": b64("lists.docx", docx),
            "m": {"operation": "merge", "input": ["cover", "doc"], "filename": "direct.pdf"},
            "out": {"operation": "export/url", "input": "m"},
        },
    )
    piped = job_of(
        d,
        k,
        {
            "doc": b64("lists.docx", docx),
            "pdf": {"operation": "convert", "input": "doc", "output_format": "pdf"},
            "cover": b64("cover.pdf", blank_pdf((595, 842))),
            "m": {
                "operation": "merge",
                "input": ["cover", "pdf"],
                "output_format": "pdf",
                "filename": "bundle.pdf",
            },
            "out": {"operation": "export/url", "input": "m"},
        },
    )
    for job, name in ((direct, "direct.pdf"), (piped, "bundle.pdf")):
        done = wait_job(d, k, job["id"])
        assert done["status"] == "finished", done
        merged = pypdf.PdfReader(io.BytesIO(exported(done)))
        assert len(merged.pages) == 1 + 3  # the cover, then the document's three pages
        assert "A multi" in (merged.pages[1].extract_text() or "")
        assert not (merged.pages[0].extract_text() or "").strip(), "the blank cover comes first"
        assert named(done, "m")["result"]["files"][0]["filename"] == name
    odd = job_of(
        d,
        k,
        {
            "doc": b64("data.bin", b"\x00\x01 nothing merge reads"),
            "m": {"operation": "merge", "input": ["doc"], "output_format": "pdf"},
        },
    )
    failed = named(wait_job(d, k, odd["id"]), "m")
    assert failed["status"] == "error" and failed["code"] == "INVALID_INPUT"
    assert "convert task" in failed["message"]


def test_merge_refuses_what_it_cannot_do(v2_daemon: Daemon, v2_key: str) -> None:
    d, k = v2_daemon, v2_key
    assert "tasks.op.output_format" in refused_fields(d, k, "merge", output_format="docx")
    broken = job_of(
        d,
        k,
        {
            "a": b64("a.pdf", blank_pdf((10, 10))),
            "b": b64("b.pdf", b"%PDF-1.4\n this is not really a PDF"),
            "m": {"operation": "merge", "input": ["a", "b"]},
        },
    )
    m = named(wait_job(d, k, broken["id"]), "m")
    assert m["status"] == "error" and m["code"] == "INVALID_INPUT", m
    assert "could not be merged" in m["message"]


def test_merge_as_a_task_of_its_own(v2_daemon: Daemon, v2_key: str) -> None:
    d, k = v2_daemon, v2_key
    first = call(d, k, "POST", "/v2/import/base64", json=b64("x.pdf", blank_pdf((50, 60))))
    second = call(d, k, "POST", "/v2/import/base64", json=b64("y.jpg", image_bytes("JPEG")))
    ids = [first.json()["data"]["id"], second.json()["data"]["id"]]
    merge = call(d, k, "POST", "/v2/merge", json={"input": ids, "output_format": "pdf"})
    assert merge.status_code == 201, merge.text
    done = wait_task(d, k, merge.json()["data"]["id"])
    assert done["status"] == "finished", done
    assert done["result"]["files"][0]["filename"] == "x.pdf"


def thumb(d: Daemon, k: str, source: dict[str, Any], **params: Any) -> dict[str, Any]:
    return one_task(d, k, source, "thumbnail", **params)  # type: ignore[no-any-return]


def opened(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def test_thumbnails_of_an_image_a_pdf_an_office_document_and_a_video(
    v2_daemon: Daemon, v2_key: str, tmp_path: Path
) -> None:
    d, k = v2_daemon, v2_key
    photo = b64("photo.jpg", image_bytes("JPEG", (800, 600)))
    done = thumb(d, k, photo, output_format="png", width=200, height=200)
    im = opened(exported(done))
    assert im.format == "PNG" and im.size == (200, 150)  # max: inside the box
    crop = opened(
        exported(thumb(d, k, photo, output_format="webp", width=100, height=100, fit="crop"))
    )
    assert crop.format == "WEBP" and crop.size == (100, 100)
    small = opened(exported(thumb(d, k, photo, output_format="jpg", width=2000)))
    assert small.size == (800, 600), "max never enlarges"

    first_pdf = sorted((CORPUS / "pdf").glob("*.pdf"))[0]
    pdf = b64("doc.pdf", first_pdf.read_bytes())
    page = opened(exported(thumb(d, k, pdf, output_format="jpg", width=300, height=300)))
    assert page.format == "JPEG" and max(page.size) == 300

    docx = (CORPUS / "document" / "word2013-numbered-lists.docx").read_bytes()
    sheet = opened(exported(thumb(d, k, b64("lists.docx", docx), output_format="png", width=210)))
    assert sheet.size[0] == 210 and 260 <= sheet.size[1] <= 300  # a Letter or A4 page, upright
    assert sheet.convert("L").getextrema()[0] < 200, "the first page's text is drawn"

    clip = make_video(tmp_path / "clip.mp4", 3.0, "320x240")
    video = b64("clip.mp4", clip.read_bytes())
    frame = opened(exported(thumb(d, k, video, output_format="png", timestamp=1.5, width=160)))
    assert frame.size == (160, 120)
    late = thumb(d, k, video, output_format="png", timestamp="00:01:00")
    failed = named(late, "op")
    assert failed["status"] == "error" and "60 s" in failed["message"], failed


def test_thumbnail_parameters_are_checked(v2_daemon: Daemon, v2_key: str) -> None:
    d, k = v2_daemon, v2_key
    for params, field in (
        ({"output_format": "gif"}, "output_format"),
        ({"output_format": "png", "width": 0}, "width"),
        ({"output_format": "png", "height": "big"}, "height"),
        ({"output_format": "png", "fit": "stretch"}, "fit"),
        ({"output_format": "png", "timestamp": -1}, "timestamp"),
        ({"output_format": "png", "count": 3}, "count"),
    ):
        assert f"tasks.op.{field}" in refused_fields(d, k, "thumbnail", **params)
    odd = b64("data.bin", b"\x00\x01 nothing a thumbnail reads")
    refused = named(thumb(d, k, odd, output_format="png"), "op")
    assert refused["status"] == "error" and "data.bin" in refused["message"], refused


def metadata_of(d: Daemon, k: str, source: dict[str, Any]) -> dict[str, Any]:
    done = one_task(d, k, source, "metadata")
    meta = named(done, "op")
    assert meta["status"] == "finished", meta
    assert json.loads(exported(done)) == meta["result"]["metadata"], "the file says the same"
    return meta["result"]["metadata"]  # type: ignore[no-any-return]


def test_metadata_of_an_image_a_pdf_and_audio(
    v2_daemon: Daemon, v2_key: str, tmp_path: Path
) -> None:
    d, k = v2_daemon, v2_key
    exif = Image.Exif()
    exif[0x010F] = "Acme Cameras"  # Make
    exif[0x0110] = "Model 7"  # Model
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(buf, "JPEG", exif=exif)
    photo = metadata_of(d, k, b64("photo.jpg", buf.getvalue()))
    assert photo["type"] == "image" and (photo["width"], photo["height"]) == (64, 48)
    assert photo["exif"]["Make"] == "Acme Cameras" and photo["exif"]["Model"] == "Model 7"

    writer = pypdf.PdfWriter()
    for _ in range(3):
        writer.add_blank_page(width=100, height=100)
    writer.add_metadata({"/Title": "Quarterly report", "/Author": "Ann Example"})
    pdf = io.BytesIO()
    writer.write(pdf)
    info = metadata_of(d, k, b64("report.pdf", pdf.getvalue()))
    assert info["type"] == "pdf" and info["pages"] == 3
    assert info["title"] == "Quarterly report" and info["author"] == "Ann Example"

    song = make_audio(tmp_path / "song.mp3", 1.0, "-metadata", "title=Night Train")
    tags = metadata_of(d, k, b64("song.mp3", song.read_bytes()))
    assert tags["type"] == "media" and tags["format"]["tags"]["title"] == "Night Train"
    assert "filename" not in tags["format"], "no server path leaks"
    assert tags["streams"][0]["codec_type"] == "audio"


def test_metadata_is_bounded_and_never_expands_entities(v2_daemon: Daemon, v2_key: str) -> None:
    d, k = v2_daemon, v2_key
    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=10, height=10)
    writer.add_metadata({"/Title": "x" * 10_000_000})
    huge = io.BytesIO()
    writer.write(huge)
    info = metadata_of(d, k, b64("huge.pdf", huge.getvalue()))
    assert len(json.dumps(info)) < 300_000 and info["pages"] == 1
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        "<x:xmpmeta xmlns:x='adobe:ns:meta/'>&c;</x:xmpmeta>"
    )
    png = io.BytesIO()
    info_chunk = PngImagePlugin.PngInfo()
    info_chunk.add_itxt("XML:com.adobe.xmp", bomb)
    Image.new("RGB", (8, 8)).save(png, "PNG", pnginfo=info_chunk)
    shown = metadata_of(d, k, b64("bomb.png", png.getvalue()))
    assert shown["xmp"] == bomb, "reported as the text it is, entities unexpanded"


def optimized(
    d: Daemon, k: str, source: dict[str, Any], **params: Any
) -> tuple[dict[str, Any], bytes]:
    done = one_task(d, k, source, "optimize", **params)
    task = named(done, "op")
    assert task["status"] == "finished", task
    return task["result"], exported(done)


def test_optimize_makes_pdfs_and_pictures_smaller_and_never_larger(
    v2_daemon: Daemon, v2_key: str
) -> None:
    d, k = v2_daemon, v2_key
    writer = pypdf.PdfWriter()
    page = writer.add_blank_page(width=200, height=200)
    drawing = DecodedStreamObject()
    drawing.set_data(b"0 0 m 150 150 l S\n" * 20000)  # a big stream, stored uncompressed
    page[NameObject("/Contents")] = writer._add_object(drawing)
    raw = io.BytesIO()
    writer.write(raw)
    result, out = optimized(d, k, b64("drawing.pdf", raw.getvalue()), profile="web")
    assert result["optimize"]["smaller"] and len(out) < len(raw.getvalue()) // 10
    assert result["optimize"]["output_size"] == len(out)
    assert len(pypdf.PdfReader(io.BytesIO(out)).pages) == 1

    exif = Image.Exif()
    exif[0x010F] = "Acme Cameras"
    photo = io.BytesIO()
    Image.effect_noise((640, 480), 30).convert("RGB").save(
        photo, "JPEG", quality=90, optimize=False, exif=exif
    )
    result, out = optimized(d, k, b64("photo.jpg", photo.getvalue()))
    assert result["optimize"]["smaller"] and len(out) < len(photo.getvalue())
    before, after = opened(photo.getvalue()), opened(out)
    assert after.size == before.size and after.getexif()[0x010F] == "Acme Cameras"
    diff = max(abs(a - b) for a, b in zip(before.tobytes(), after.tobytes(), strict=True))
    assert diff <= 8, "no visible loss"

    loose = io.BytesIO()
    Image.new("RGB", (300, 200), "orange").save(loose, "PNG", compress_level=0)
    result, out = optimized(d, k, b64("flat.png", loose.getvalue()), profile="max")
    assert result["optimize"]["smaller"]
    assert opened(out).tobytes() == opened(loose.getvalue()).tobytes(), "lossless"

    tight = io.BytesIO()
    Image.new("L", (4, 4)).save(tight, "PNG", optimize=True)
    result, out = optimized(d, k, b64("tiny.png", tight.getvalue()))
    assert result["optimize"]["smaller"] is False and out == tight.getvalue()


def test_optimize_refuses_what_it_cannot_do(v2_daemon: Daemon, v2_key: str) -> None:
    d, k = v2_daemon, v2_key
    assert "tasks.op.profile" in refused_fields(d, k, "optimize", profile="tiny")
    job = job_of(
        d,
        k,
        {
            "in": {"operation": "import/raw", "file": "plain words", "filename": "a.txt"},
            "o": {"operation": "optimize", "input": "in"},
        },
    )
    task = named(wait_job(d, k, job["id"]), "o")
    assert task["status"] == "error" and "PDFs, JPEGs and PNGs" in task["message"]


FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
SCANNED_WORDS = ("convertd", "reads", "scanned", "pages", "quietly")


def scanned_page() -> bytes:
    """A page as a scanner makes it: printed words, rasterised at 300 dpi, a little skewed,
    with speckle noise."""
    page = Image.new("L", (2480, 1200), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(FONT, 64)
    draw.text((150, 200), "convertd reads scanned pages", fill=0, font=font)
    draw.text((150, 400), "and files them quietly", fill=0, font=font)
    page = page.rotate(1.5, fillcolor=255, resample=Image.Resampling.BICUBIC)
    noise = Image.effect_noise(page.size, 40)
    page = Image.blend(page, noise, 0.15)
    out = io.BytesIO()
    page.save(out, "PNG", dpi=(300, 300))
    return out.getvalue()


def pdftotext(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "out.pdf"
    path.write_bytes(data)
    done = subprocess.run(
        ["pdftotext", str(path), "-"], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def test_ocr_makes_a_scan_searchable_or_text(
    v2_daemon: Daemon, v2_key: str, tmp_path: Path
) -> None:
    d, k = v2_daemon, v2_key
    scan = b64("scan.png", scanned_page())
    job = job_of(
        d,
        k,
        {
            "in": scan,
            "pdf": {"operation": "ocr", "input": "in", "languages": ["eng"]},
            "txt": {"operation": "ocr", "input": "in", "output_format": "txt"},
            "out": {"operation": "export/url", "input": ["pdf", "txt"]},
        },
    )
    done = wait_job(d, k, job["id"])
    assert done["status"] == "finished", [t["message"] for t in done["tasks"]]
    files = {f["filename"]: f["url"] for f in named(done, "out")["result"]["files"]}
    assert set(files) == {"scan.pdf", "scan.txt"}
    searchable = requests.get(files["scan.pdf"], timeout=30).content
    text = pdftotext(searchable, tmp_path).lower()
    for word in SCANNED_WORDS:
        assert word in text, (word, text)
    plain = requests.get(files["scan.txt"], timeout=30).text.lower()
    assert all(word in plain for word in SCANNED_WORDS), plain
    # A PDF that already has text keeps it as it is.
    typed = blank_pdf((100, 100))
    kept = job_of(d, k, {"in": b64("typed.pdf", typed), "o": {"operation": "ocr", "input": "in"}})
    assert named(wait_job(d, k, kept["id"]), "o")["status"] == "finished"


def test_ocr_refuses_what_it_cannot_do(v2_daemon: Daemon, v2_key: str) -> None:
    d, k = v2_daemon, v2_key
    for params, field in (
        ({"languages": ["english"]}, "languages"),
        ({"languages": []}, "languages"),
        ({"output_format": "docx"}, "output_format"),
    ):
        assert f"tasks.op.{field}" in refused_fields(d, k, "ocr", **params)
    job = job_of(
        d,
        k,
        {
            "in": b64("a.png", image_bytes("PNG")),
            "o": {"operation": "ocr", "input": "in", "languages": ["xyz"]},
        },
    )
    missing = named(wait_job(d, k, job["id"]), "o")
    assert missing["status"] == "error" and "tesseract-ocr-xyz" in missing["message"]


def watermarked(d: Daemon, k: str, source: dict[str, Any], **params: Any) -> bytes:
    done = one_task(d, k, source, "watermark", **params)
    assert named(done, "op")["status"] == "finished", named(done, "op")
    return exported(done)


def test_watermark_text_on_an_image_changes_only_where_it_is(
    v2_daemon: Daemon, v2_key: str
) -> None:
    d, k = v2_daemon, v2_key
    plain = image_bytes("PNG", (400, 300))
    out = watermarked(
        d,
        k,
        b64("p.png", plain),
        text="DRAFT",
        font_size=40,
        font_color="#ff0000",
        position_vertical="top",
        position_horizontal="left",
        margin_vertical=10,
        margin_horizontal=10,
    )
    before, after = opened(plain).convert("RGB"), opened(out).convert("RGB")
    assert after.size == before.size
    changed = [
        (x, y)
        for y in range(before.height)
        for x in range(before.width)
        if before.getpixel((x, y)) != after.getpixel((x, y))
    ]
    assert changed, "the text is there"
    assert max(x for x, _ in changed) < 200 and max(y for _, y in changed) < 70, "and only there"
    assert any(after.getpixel(p)[0] > 200 and after.getpixel(p)[1] < 80 for p in changed)


def test_watermark_text_on_pdf_pages_is_text_not_markup(
    v2_daemon: Daemon, v2_key: str, tmp_path: Path
) -> None:
    d, k = v2_daemon, v2_key
    source = blank_pdf((595, 842), (595, 842), (595, 842))
    mark = "<b>Confidential</b> & (copy) \\ 50%\x07"
    out = watermarked(d, k, b64("r.pdf", source), text=mark, pages="2-", opacity=50, rotation=45)
    reader = pypdf.PdfReader(io.BytesIO(out))
    assert len(reader.pages) == 3
    texts = [(page.extract_text() or "") for page in reader.pages]
    assert texts[0].strip() == ""
    for text in texts[1:]:
        assert "<b>Confidential</b> & (copy) \\ 50%" in text, text
    level = watermarked(d, k, b64("r.pdf", source), text=mark, pages="1,3", font_size=20)
    whole = pdftotext(level, tmp_path)
    assert whole.count("<b>Confidential</b> & (copy)") == 2, whole
    refused = refused_fields(d, k, "watermark", pages="0,x", opacity=150)
    assert {"tasks.op.text", "tasks.op.pages", "tasks.op.opacity"} <= refused


def test_ocr_and_optimize_as_v1_options(daemon: Daemon, key: str, tmp_path: Path) -> None:
    """v1's one-file shape: ocr and optimize ride on an image or PDF conversion."""
    status, out = daemon.convert_and_fetch(
        key, scanned_page(), "scan.png", "image", "pdf", {"ocr": True, "optimize": "web"}
    )
    assert out is not None, status
    text = pdftotext(out.content, tmp_path).lower()
    assert all(word in text for word in SCANNED_WORDS), text
    plain, _ = daemon.convert_and_fetch(key, scanned_page(), "scan.png", "image", "pdf")
    assert plain["status"] == "finished"
    # The scan is A4 wide at its 300 dpi, not 2480 points.
    assert page_sizes(out.content)[0][0] == 595
    jpg = image_bytes("JPEG", (800, 600), quality=98)
    _, smaller = daemon.convert_and_fetch(
        key, jpg, "big.jpg", "image", "jpg", {"quality": 98, "optimize": "max"}
    )
    assert smaller is not None and len(smaller.content) <= len(jpg)
    for options, problem in (
        ({"ocr": True}, "pdf output"),
        ({"optimize": "tiny"}, "optimize"),
        ({"ocr_languages": "eng"}, "ocr"),
    ):
        resp = daemon.convert(key, image_bytes("PNG"), "a.png", "image", "webp", options)
        assert resp.status_code == 400 and problem in resp.json()["message"], (options, resp.text)


def test_watermark_keeps_what_it_marks_and_refuses_pages_it_cannot_mark(
    v2_daemon: Daemon, v2_key: str
) -> None:
    d, k = v2_daemon, v2_key
    writer = pypdf.PdfWriter()
    for _ in range(5):
        writer.add_blank_page(width=200, height=200)
    writer.pdf_header = "%PDF-1.6"
    pdf = io.BytesIO()
    writer.write(pdf)
    done = one_task(d, k, b64("five.pdf", pdf.getvalue()), "watermark", text="REV", pages="2")
    assert done["status"] == "finished", done
    assert exported(done).startswith(b"%PDF-1.6")  # not written down to 1.3
    nothing = one_task(d, k, b64("five.pdf", pdf.getvalue()), "watermark", text="REV", pages="9")
    assert nothing["status"] == "error" and "names no page" in named(nothing, "op")["message"]
    assert "tasks.op.pages" in refused_fields(d, k, "watermark", text="x", pages="3-1")
    assert "tasks.op.font_color" in refused_fields(d, k, "watermark", text="x", font_color="#zz")
    assert "tasks.op.text" in refused_fields(d, k, "watermark", text="  ")
    photo = image_bytes("JPEG", (400, 300), quality=95)
    marked = one_task(d, k, b64("photo.jpg", photo), "watermark", text="©", font_size=20)
    with Image.open(io.BytesIO(photo)) as before, Image.open(io.BytesIO(exported(marked))) as after:
        assert after.quantization == before.quantization  # type: ignore[attr-defined]


def test_a_tool_failure_does_not_show_where_files_lie(v2_daemon: Daemon, v2_key: str) -> None:
    d, k = v2_daemon, v2_key
    broken = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF"
    done = one_task(d, k, b64("broken.pdf", broken), "optimize")
    message = named(done, "op")["message"]
    assert done["status"] == "error" and "broken.pdf" in message, message
    assert "/tasks/" not in message and str(d.data_dir) not in message, message


def test_ocr_of_a_damaged_pdf_says_so(v2_daemon: Daemon, v2_key: str) -> None:
    done = one_task(v2_daemon, v2_key, b64("scan.pdf", b"%PDF-1.4\ngarbage"), "ocr")
    failed = named(done, "op")
    assert failed["status"] == "error" and "damaged" in failed["message"], failed
    assert "InputFileError" not in failed["message"]
