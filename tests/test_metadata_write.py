"""The metadata/write operation (/v2), through the API, with what comes out read back by other
readers than the writer's: pypdf, Pillow, ffprobe."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pypdf
from PIL import Image, ImageCms, PngImagePlugin
from pypdf.generic import DecodedStreamObject, NameObject

from tests.conftest import Daemon
from tests.media import ffprobe, make_audio
from tests.test_v2_api import call, named
from tests.test_v2_operations import b64, exported, one_task, refused_fields


def written(d: Daemon, k: str, source: dict[str, Any], **params: Any) -> tuple[Any, bytes]:
    """The metadata/write task's result and the file it made."""
    done = one_task(d, k, source, "metadata/write", **params)
    task = named(done, "op")
    assert task["status"] == "finished", task
    return task["result"], exported(done)


def failed(d: Daemon, k: str, source: dict[str, Any], **params: Any) -> dict[str, Any]:
    task = named(one_task(d, k, source, "metadata/write", **params), "op")
    assert task["status"] == "error", task
    return task


def text_pdf(pages: int) -> bytes:
    writer = pypdf.PdfWriter()
    for n in range(pages):
        page = writer.add_blank_page(width=200 + n, height=300)
        content = DecodedStreamObject()
        content.set_data(b"BT /F1 12 Tf 20 20 Td (page %d) Tj ET" % n)
        page[NameObject("/Contents")] = writer._add_object(content)
    writer.add_metadata({"/Producer": "the original producer", "/Title": "old title"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_pdf_document_info_is_set_and_the_pages_are_unchanged(
    v2_daemon: Daemon, v2_key: str
) -> None:
    d, k = v2_daemon, v2_key
    source = text_pdf(3)
    tags = {
        "title": "Quarterly report ✓",
        "AUTHOR": "Ann Example",
        "Keywords": "q3, finance",
        "CreationDate": "2024-05-01T10:00:00+02:00",
        "Department": "Sales",
        "Year": 2024,
        "not a name!": "x",
    }
    result, data = written(d, k, b64("report.pdf", source), metadata=tags)
    reader, before = pypdf.PdfReader(io.BytesIO(data)), pypdf.PdfReader(io.BytesIO(source))
    info = reader.metadata
    assert info is not None
    assert info["/Title"] == "Quarterly report ✓" and info["/Author"] == "Ann Example"
    assert info["/Keywords"] == "q3, finance" and info["/Department"] == "Sales"
    assert info["/CreationDate"] == "D:20240501100000+02'00'" and info["/Year"] == "2024"
    assert info["/Producer"] == "the original producer", "what was not given is kept"
    assert "/not a name!" not in info
    assert len(reader.pages) == 3
    for old, new in zip(before.pages, reader.pages, strict=True):
        assert new.mediabox == old.mediabox
        assert new.get_contents().get_data() == old.get_contents().get_data()  # type: ignore[union-attr]
    assert result["metadata"]["title"] == "Quarterly report ✓"
    assert result["metadata"]["Year"] == "2024"
    assert result["written_as"]["AUTHOR"] == ["PDF /Author"]
    assert "letters, digits" in result["skipped"]["not a name!"]
    assert result["files"][0]["filename"] == "report.pdf"

    renamed, _ = written(d, k, b64("report.pdf", source), metadata={"Title": "x"}, filename="q3")
    assert renamed["files"][0]["filename"] == "q3.pdf", "the input's format, whatever the name"


def test_an_encrypted_pdf_is_refused_clearly(v2_daemon: Daemon, v2_key: str) -> None:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(text_pdf(1))))
    writer.encrypt("secret")
    out = io.BytesIO()
    writer.write(out)
    task = failed(v2_daemon, v2_key, b64("locked.pdf", out.getvalue()), metadata={"Title": "x"})
    assert task["code"] == "INVALID_INPUT" and "encrypted" in task["message"]


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        return im.tobytes()


def test_png_gets_exif_and_text_chunks_with_its_pixels_unchanged(
    v2_daemon: Daemon, v2_key: str
) -> None:
    d, k = v2_daemon, v2_key
    picture = Image.new("RGBA", (64, 48))
    picture.putdata([(x % 256, (x * 7) % 256, (x * 13) % 256, x % 200) for x in range(64 * 48)])
    keep = PngImagePlugin.PngInfo()
    keep.add_text("Source", "a scanner")
    buf = io.BytesIO()
    picture.save(buf, "PNG", pnginfo=keep)
    tags = {"Title": "Sunset", "author": "Ann", "Comment": "ünïcode ✓", "copyright": "CC-BY"}
    result, data = written(d, k, b64("pic.png", buf.getvalue()), metadata=tags)
    assert pixels(data) == pixels(buf.getvalue())
    with Image.open(io.BytesIO(data)) as im:
        assert isinstance(im, PngImagePlugin.PngImageFile)
        assert im.text["Title"] == "Sunset" and im.text["Author"] == "Ann"
        assert im.text["Comment"] == "ünïcode ✓" and im.text["Copyright"] == "CC-BY"
        assert im.text["Source"] == "a scanner", "text chunks not given are kept"
        exif = im.getexif()
    assert exif[0x010E] == "Sunset" and exif[0x013B] == "Ann" and exif[0x8298] == "CC-BY"
    assert exif[0x9C9C].decode("utf-16-le").rstrip("\0") == "ünïcode ✓"  # XPComment
    assert result["written_as"]["Title"] == ["EXIF ImageDescription", "PNG Title"]


def test_jpeg_exif_is_replaced_without_re_encoding(v2_daemon: Daemon, v2_key: str) -> None:
    d, k = v2_daemon, v2_key
    exif = Image.Exif()
    exif[0x010F] = "Acme Cameras"  # Make
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buf = io.BytesIO()
    noise = Image.effect_noise((80, 60), 40).convert("RGB")
    noise.save(buf, "JPEG", quality=70, exif=exif, icc_profile=profile)
    tags = {"title": "Café ✓", "Artist": "Ann", "date": "2024-05-01T10:11:12", "album": "x"}
    result, data = written(d, k, b64("photo.jpg", buf.getvalue()), metadata=tags)
    assert pixels(data) == pixels(buf.getvalue()), "the same pixels: nothing re-encoded"
    with Image.open(io.BytesIO(data)) as im:
        assert im.info["icc_profile"] == profile
        shown = im.getexif()
    assert shown[0x010F] == "Acme Cameras", "EXIF not given is kept"
    # EXIF's text tags are written as UTF-8 (Pillow reads them as Latin-1), XPTitle as UTF-16.
    assert shown[0x010E].encode("latin-1").decode() == "Café ✓"
    assert shown[0x9C9B].decode("utf-16-le").rstrip("\0") == "Café ✓"
    assert shown[0x013B] == "Ann" and shown[0x0132] == "2024:05:01 10:11:12"
    assert "album" in result["skipped"] and "album" not in result["metadata"]


def test_webp_and_tiff_get_exif(v2_daemon: Daemon, v2_key: str) -> None:
    d, k = v2_daemon, v2_key
    for fmt, name in (("WEBP", "a.webp"), ("TIFF", "a.tiff")):
        buf = io.BytesIO()
        Image.effect_noise((40, 30), 30).convert("RGB").save(buf, fmt)
        _, data = written(d, k, b64(name, buf.getvalue()), metadata={"Title": "T", "Author": "A"})
        assert pixels(data) == pixels(buf.getvalue()), fmt
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == fmt
            assert (im.getexif()[0x010E], im.getexif()[0x013B]) == ("T", "A"), fmt


def ffprobe_tags(data: bytes, tmp_path: Path, name: str) -> dict[str, str]:
    info = ffprobe(data, tmp_path, name)
    tags = {k.lower(): v for k, v in (info["format"].get("tags") or {}).items()}
    for stream in info["streams"]:  # Ogg keeps its tags on the stream
        tags.update({k.lower(): v for k, v in (stream.get("tags") or {}).items()})
    return tags


def test_audio_tags_are_written_by_stream_copy(
    v2_daemon: Daemon, v2_key: str, tmp_path: Path
) -> None:
    d, k = v2_daemon, v2_key
    tags = {"Title": "Night Train", "author": "The Band", "Year": 2021, "track": "3", "Mood": "x"}
    for ext in ("mp3", "ogg", "m4a"):
        song = make_audio(tmp_path / f"song.{ext}", 1.0, "-metadata", "genre=Jazz")
        result, data = written(d, k, b64(f"song.{ext}", song.read_bytes()), metadata=tags)
        shown = ffprobe_tags(data, tmp_path, f"out.{ext}")
        assert shown["title"] == "Night Train" and shown["artist"] == "The Band", ext
        assert shown["date"] == "2021" and shown["track"].startswith("3"), ext
        assert shown["genre"] == "Jazz", f"{ext}: tags not given are kept"
        if ext == "m4a":  # MP4 knows a fixed set of tags: the rest is said to be skipped
            assert "mood" not in shown and "no place" in result["skipped"]["Mood"]
        else:
            assert shown["mood"] == "x" and result["metadata"]["Mood"] == "x", ext
        before = ffprobe_tags(song.read_bytes(), tmp_path, f"before.{ext}")
        assert before.get("title") is None


def test_other_files_fail_naming_what_can_be_written(v2_daemon: Daemon, v2_key: str) -> None:
    source = {"operation": "import/raw", "file": "just text", "filename": "notes.txt"}
    task = failed(v2_daemon, v2_key, source, metadata={"Title": "x"})
    assert task["code"] == "INVALID_INPUT"
    assert "PDFs, images" in task["message"] and "notes.txt" in task["message"]


def test_metadata_parameters_are_checked(v2_daemon: Daemon, v2_key: str) -> None:
    d, k = v2_daemon, v2_key
    op = "metadata/write"
    assert refused_fields(d, k, op) == {"tasks.op.metadata"}
    for bad in ("Title=x", [], {}, {f"k{n}": "v" for n in range(101)}):
        assert refused_fields(d, k, op, metadata=bad) == {"tasks.op.metadata"}, bad
    for key, value in (
        ("Title", ["a list"]),
        ("Title", None),
        ("Title", True),
        ("Title", "nul\0byte"),
        ("Title", "bell\x07"),
        ("Title", "carriage\rreturn"),
        ("Title", "lone \ud800 surrogate"),
        ("Title", "x" * (64 * 1024 + 1)),
        ("t\nx", "v"),
    ):
        fields = refused_fields(d, k, op, metadata={key: value})
        assert fields == {f"tasks.op.metadata.{key}"}, (key, value)
    long_key = "k" * 65
    assert refused_fields(d, k, op, metadata={long_key: "v"}) == {f"tasks.op.metadata.{'k' * 64}"}
    assert refused_fields(d, k, op, metadata={"Title": "a", "TITLE": "b"}) == {
        "tasks.op.metadata.TITLE"
    }
    big = {f"k{n}": "x" * 60_000 for n in range(20)}
    assert refused_fields(d, k, op, metadata=big) == {"tasks.op.metadata"}
    assert refused_fields(d, k, op, metadata={"a": "b"}, output_format="pdf") == {
        "tasks.op.output_format"
    }
    fine = {"Title": "tab\tand\nnewline", "Year": 2024, "Rating": 4.5}
    resp = call(d, k, "POST", "/v2/metadata/write", json={"metadata": fine})
    assert not [f for f in resp.json().get("errors", {}) if f.startswith("metadata")], resp.text


def test_a_huge_value_is_a_short_clean_422(v2_daemon: Daemon, v2_key: str) -> None:
    d, k = v2_daemon, v2_key
    imported = call(d, k, "POST", "/v2/import/base64", json=b64("a.pdf", text_pdf(1)))
    assert imported.status_code == 201, imported.text
    huge = {"metadata": {"Title": "x" * 10_000_000}}
    source = {"input": imported.json()["data"]["id"]}
    alone = call(d, k, "POST", "/v2/metadata/write", json={**source, **huge})
    assert alone.status_code == 422, alone.text[:200]
    assert alone.json()["errors"] == {"metadata.Title": ["must be at most 64 KiB (UTF-8)"]}
    assert len(alone.content) < 2000, "the value is not echoed back"
    job = {"in": b64("a.pdf", text_pdf(1)), "op": {"operation": "metadata/write", "input": "in"}}
    job["op"].update(huge)
    resp = call(d, k, "POST", "/v2/jobs", json={"tasks": job})
    assert resp.status_code == 422 and len(resp.content) < 2000
    assert set(resp.json()["errors"]) == {"tasks.op.metadata.Title"}


def test_what_metadata_write_writes_metadata_reads_back_as_written(
    v2_daemon: Daemon, v2_key: str
) -> None:
    from tests.conftest import image_bytes
    from tests.test_v2_api import job_of, wait_job

    job = job_of(
        v2_daemon,
        v2_key,
        {
            "in": b64("photo.jpg", image_bytes("JPEG", (64, 48))),
            "tag": {
                "operation": "metadata/write",
                "input": "in",
                "metadata": {"title": "Sunset ✓ é"},
            },
            "read": {"operation": "metadata", "input": "tag"},
        },
    )
    done = wait_job(v2_daemon, v2_key, job["id"])
    exif = named(done, "read")["result"]["metadata"]["exif"]
    assert exif["ImageDescription"] == "Sunset ✓ é", exif
    assert exif["XPTitle"] == "Sunset ✓ é", exif
