"""The /v2 watermark operation with an image (another task's file) as the watermark: on images and
on PDF pages, rendered and compared with the original where the stamp is and where it is not."""

from __future__ import annotations

import io
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

from PIL import Image

from tests.conftest import Daemon
from tests.test_v2_api import call, job_of, named, wait_job, wait_task
from tests.test_v2_operations import b64, blank_pdf, exported, page_sizes, refused_fields

RED = (255, 0, 0)
WHITE = (255, 255, 255)


def solid(fmt: str, size: tuple[int, int], colour: Any, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format=fmt)
    return buf.getvalue()


def opened(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def stamped(
    d: Daemon, k: str, target: dict[str, Any], logo: dict[str, Any], **params: Any
) -> dict[str, Any]:
    """A job marking `target` with `logo` (tasks "in", "logo", "op", "out"), ended."""
    job = job_of(
        d,
        k,
        {
            "in": target,
            "logo": logo,
            "op": {"operation": "watermark", "input": "in", "image": "logo", **params},
            "out": {"operation": "export/url", "input": "op"},
        },
    )
    return wait_job(d, k, job["id"])


def marked(d: Daemon, k: str, target: dict[str, Any], logo: dict[str, Any], **params: Any) -> bytes:
    done = stamped(d, k, target, logo, **params)
    assert named(done, "op")["status"] == "finished", named(done, "op")
    return exported(done)


def changed_box(before: Image.Image, after: Image.Image, tolerance: int = 8) -> tuple[int, ...]:
    """The bounding box (left, top, right, bottom) of the pixels that differ."""
    a, b = before.convert("RGB"), after.convert("RGB")
    assert a.size == b.size
    xs, ys = [], []
    for y in range(a.height):
        for x in range(a.width):
            p, q = a.getpixel((x, y)), b.getpixel((x, y))
            assert isinstance(p, tuple) and isinstance(q, tuple)
            if max(abs(u - v) for u, v in zip(p, q, strict=True)) > tolerance:
                xs.append(x)
                ys.append(y)
    assert xs, "something was drawn"
    return min(xs), min(ys), max(xs) + 1, max(ys) + 1


def near(pixel: Any, colour: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(p - c) <= tolerance for p, c in zip(pixel, colour, strict=False))


def test_an_image_watermark_on_an_image_changes_only_where_it_is(
    v2_daemon: Daemon, v2_key: str
) -> None:
    d, k = v2_daemon, v2_key
    plain = solid("PNG", (400, 300), WHITE)
    logo = b64("logo.png", solid("PNG", (100, 50), RED))
    corner = dict(position_vertical="bottom", position_horizontal="right")
    out = marked(d, k, b64("p.png", plain), logo, **corner, margin_vertical=10, image_width=80)
    after = opened(out)
    assert after.format == "PNG" and after.mode == "RGB" and after.size == (400, 300)
    # 80 x 40 (the proportions kept), 10 from the bottom and right edges; nothing else touched.
    assert changed_box(opened(plain), after) == (295, 250, 375, 290)  # margin_horizontal 25
    assert near(after.getpixel((330, 270)), RED)
    assert after.getpixel((5, 5)) == WHITE
    half = opened(marked(d, k, b64("p.png", plain), logo, **corner, opacity=50))
    assert near(half.getpixel((300, 240)), (255, 128, 128)), half.getpixel((300, 240))
    # image_width_percent is of the target's width; rotation turns the stamp (box expanded).
    wide = opened(marked(d, k, b64("p.png", plain), logo, image_width_percent=50, rotation=90))
    left, top, right, bottom = changed_box(opened(plain), wide)
    assert abs((right - left) - 100) <= 2 and abs((bottom - top) - 200) <= 2
    assert abs((left + right) / 2 - 200) <= 2 and abs((top + bottom) / 2 - 150) <= 2


def test_an_image_watermark_keeps_the_targets_format_and_mode(
    v2_daemon: Daemon, v2_key: str
) -> None:
    d, k = v2_daemon, v2_key
    grey = solid("JPEG", (200, 100), 255, mode="L")
    clear = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    clear.paste((0, 0, 255, 255), (10, 10, 30, 30))  # a blue square inside a transparent frame
    buf = io.BytesIO()
    clear.save(buf, format="PNG")
    out = opened(marked(d, k, b64("g.jpg", grey), b64("sq.png", buf.getvalue())))
    assert out.format == "JPEG" and out.mode == "L" and out.size == (200, 100)
    # Centred: only the opaque square shows (the transparent frame leaves the page as it was).
    left, top, right, bottom = changed_box(opened(grey), out, tolerance=24)
    assert left >= 88 and right <= 112 and top >= 38 and bottom <= 62
    assert out.getpixel((100, 50)) < 60  # blue, in grey


def render(data: bytes, tmp_path: Path, name: str) -> list[Image.Image]:
    """The PDF's pages at 72 dpi (a pixel a point), by pdftoppm."""
    source = tmp_path / f"{name}.pdf"
    source.write_bytes(data)
    subprocess.run(
        ["pdftoppm", "-r", "72", "-png", str(source), str(tmp_path / name)],
        check=True,
        timeout=60,
        capture_output=True,
    )
    pages = sorted(tmp_path.glob(f"{name}-*.png"))
    return [Image.open(p).convert("RGB") for p in pages]


def test_an_image_watermark_on_chosen_pdf_pages(
    v2_daemon: Daemon, v2_key: str, tmp_path: Path
) -> None:
    d, k = v2_daemon, v2_key
    source = blank_pdf((300, 200), (300, 200), (300, 200))
    logo = b64("logo.png", solid("PNG", (100, 50), RED))
    top_left = dict(position_vertical="top", position_horizontal="left")
    margins = dict(margin_vertical=20, margin_horizontal=30)
    out = marked(
        d, k, b64("r.pdf", source), logo, pages="2", image_width=100, **top_left, **margins
    )
    assert page_sizes(out) == [(300, 200)] * 3
    plain = render(source, tmp_path, "plain")
    pages = render(out, tmp_path, "marked")
    assert len(pages) == 3
    assert pages[0].tobytes() == plain[0].tobytes(), "page 1 is untouched"
    assert pages[2].tobytes() == plain[2].tobytes(), "page 3 is untouched"
    left, top, right, bottom = changed_box(plain[1], pages[1])
    assert abs(left - 30) <= 1 and abs(top - 20) <= 1, (left, top)
    assert abs(right - 130) <= 1 and abs(bottom - 70) <= 1, (right, bottom)
    assert near(pages[1].getpixel((80, 45)), RED)
    assert pages[1].getpixel((290, 190)) == WHITE, "the opposite corner is as it was"
    half = marked(d, k, b64("r.pdf", source), logo, opacity=50, image_width_percent=50)
    centre = render(half, tmp_path, "half")
    for page in centre:
        assert near(page.getpixel((150, 100)), (255, 128, 128)), page.getpixel((150, 100))
        assert page.getpixel((5, 5)) == WHITE


def test_an_image_watermark_from_tasks_created_alone(v2_daemon: Daemon, v2_key: str) -> None:
    d, k = v2_daemon, v2_key
    target = call(
        d, k, "POST", "/v2/import/base64", json=b64("p.png", solid("PNG", (64, 64), WHITE))
    )
    logo = call(d, k, "POST", "/v2/import/base64", json=b64("l.png", solid("PNG", (8, 8), RED)))
    ids = [target.json()["data"]["id"], logo.json()["data"]["id"]]
    task = call(d, k, "POST", "/v2/watermark", json={"input": ids[0], "image": ids[1]})
    assert task.status_code == 201, task.text
    assert task.json()["data"]["depends_on_task_ids"] == ids
    done = wait_task(d, k, task.json()["data"]["id"])
    assert done["status"] == "finished", done
    assert [f["filename"] for f in done["result"]["files"]] == ["p.png"]
    stranger = call(d, k, "POST", "/v2/watermark", json={"input": ids[0], "image": "x" * 36})
    assert stranger.status_code == 422 and set(stranger.json()["errors"]) == {"image"}


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels; its data is a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_image_watermarks_refused(v2_daemon: Daemon, v2_key: str) -> None:
    d, k = v2_daemon, v2_key
    target = b64("p.png", solid("PNG", (64, 64), WHITE))
    logo = b64("logo.png", solid("PNG", (8, 8), RED))
    # Checked when the job is made: a 422 naming the field.
    for params, field in [
        ({"image": "https://example.com/logo.png"}, "tasks.op.image"),
        ({"image": "logo", "text": "DRAFT"}, "tasks.op.text"),
        ({"image": "logo", "image_width_percent": 0}, "tasks.op.image_width_percent"),
        ({"image": "logo", "image_height": 1.5}, "tasks.op.image_height"),
        ({"image": "nope"}, "tasks.op.image"),
        ({"image": "in"}, "tasks.op.input"),
        ({}, "tasks.op.text"),
    ]:
        op = {"operation": "watermark", "input": "in", **params}
        resp = call(
            d, k, "POST", "/v2/jobs", json={"tasks": {"in": target, "logo": logo, "op": op}}
        )
        assert resp.status_code == 422 and field in resp.json()["errors"], (params, resp.text)
    assert "tasks.op.image_width" in refused_fields(d, k, "watermark", text="A", image_width=50)
    # Found when the task runs: the task fails with INVALID_INPUT and says why.
    for logo, words in [
        (b64("logo.pdf", blank_pdf((100, 100))), "not an image"),
        (b64("logo.png", b"not a picture at all"), "not an image"),
        (b64("bomb.png", bomb_png(11_000, 10_000)), "limit"),
        (b64("huge.png", bomb_png(30_000, 30_000)), "could not be read"),
    ]:
        failed = named(stamped(d, k, target, logo), "op")
        assert failed["status"] == "error" and failed["code"] == "INVALID_INPUT", failed
        assert words in failed["message"], failed["message"]
