"""Image conversions through the API, checked by opening the output with Pillow."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import CORPUS, Daemon, image_bytes

IN_FORMATS = {
    "jpg": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "gif": "GIF",
    "bmp": "BMP",
    "tiff": "TIFF",
    "ico": "ICO",
}
OUT_FORMATS = IN_FORMATS


def open_output(content: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(content))
    im.load()
    return im


@pytest.mark.parametrize("src", sorted(IN_FORMATS))
@pytest.mark.parametrize("dst", sorted(OUT_FORMATS))
def test_every_pair(daemon: Daemon, key: str, src: str, dst: str) -> None:
    size = (48, 48) if src == "ico" else (48, 32)  # icons are square
    data = image_bytes(IN_FORMATS[src], size, "RGBA" if src in {"png", "webp", "ico"} else "RGB")
    status, out = daemon.convert_and_fetch(key, data, f"pic.{src}", "image", dst)
    assert out is not None, status
    im = open_output(out.content)
    assert im.format == OUT_FORMATS[dst]
    if dst == "ico":
        assert im.size == (48, 48)
    else:
        assert im.size == size
    assert status["file_name"] == f"pic.{dst}"


def test_width_alone_keeps_aspect(daemon: Daemon, key: str) -> None:
    _, out = daemon.convert_and_fetch(
        key, image_bytes("PNG", (400, 200)), "w.png", "image", "png", {"width": 100}
    )
    assert out is not None and open_output(out.content).size == (100, 50)
    _, out = daemon.convert_and_fetch(
        key, image_bytes("PNG", (400, 200)), "h.png", "image", "png", {"height": 50}
    )
    assert out is not None and open_output(out.content).size == (100, 50)


def minor_faults(pid: int) -> int:
    """Pages a process has touched for the first time (mapped afresh) so far."""
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[7])


def test_large_jpeg_resize_maps_no_fresh_memory(daemon: Daemon, key: str) -> None:
    """A photo's decoded pixels (12 MB here) are resized where they were decoded: a copy of them
    lands in freshly mapped memory in the daemon, ~3,000 page faults a conversion (and the
    time to clear those pages) for nothing."""
    buf = io.BytesIO()
    Image.effect_noise((4000, 3000), 30).convert("RGB").save(buf, "JPEG", quality=90)
    assert daemon.proc is not None
    faults = []
    for n in range(4):  # the first one warms the heap up
        before = minor_faults(daemon.proc.pid)
        _, out = daemon.convert_and_fetch(
            key, buf.getvalue(), f"big{n}.jpg", "image", "webp", {"width": 1024}
        )
        faults.append(minor_faults(daemon.proc.pid) - before)
        assert out is not None and open_output(out.content).size == (1024, 768)
    # The fewest: a memory trim after 2 idle seconds (a slow machine) makes the next one fault.
    assert min(faults[1:]) < 1000, faults


@pytest.mark.parametrize(
    ("fit", "expected"), [("contain", (100, 50)), ("cover", (100, 100)), ("fill", (100, 100))]
)
def test_fit_modes(daemon: Daemon, key: str, fit: str, expected: tuple[int, int]) -> None:
    _, out = daemon.convert_and_fetch(
        key,
        image_bytes("PNG", (400, 200)),
        "f.png",
        "image",
        "png",
        {"width": 100, "height": 100, "fit": fit},
    )
    assert out is not None and open_output(out.content).size == expected


def test_quality_changes_the_output(daemon: Daemon, key: str) -> None:
    noise = io.BytesIO()
    Image.effect_noise((300, 300), 60).convert("RGB").save(noise, "PNG")
    sizes = []
    for quality in (10, 95):
        _, out = daemon.convert_and_fetch(
            key, noise.getvalue(), "n.png", "image", "jpg", {"quality": quality}
        )
        assert out is not None
        sizes.append(len(out.content))
    assert sizes[0] < sizes[1] / 2


def test_alpha_to_jpeg_uses_the_background(daemon: Daemon, key: str) -> None:
    transparent = io.BytesIO()
    Image.new("RGBA", (20, 20), (255, 0, 0, 0)).save(transparent, "PNG")
    _, out = daemon.convert_and_fetch(
        key, transparent.getvalue(), "t.png", "image", "jpg", {"background": "#0000ff"}
    )
    assert out is not None
    r, g, b = open_output(out.content).convert("RGB").getpixel((10, 10))
    assert b > 240 and r < 15 and g < 15


def test_pixel_limit_is_enforced(make_daemon: Any) -> None:
    d = make_daemon(env={"CONVERTD_MAX_IMAGE_PIXELS": "10000"})
    key = d.create_key("limit", "--plan", "pro")
    status, out = d.convert_and_fetch(
        key, image_bytes("PNG", (200, 200)), "big.png", "image", "jpg"
    )
    assert out is None and "limit" in status["error"]
    status, out = d.convert_and_fetch(
        key, image_bytes("PNG", (50, 50)), "ok.png", "image", "jpg", {"width": 2000}
    )
    assert out is None and "too large" in status["error"]


def test_disallowed_decoder_is_refused(daemon: Daemon, key: str) -> None:
    # A PCX file renamed .jpg: Pillow could read it, but convertd only uses its allow-list.
    pcx = io.BytesIO()
    Image.new("RGB", (10, 10)).save(pcx, "PCX")
    status, out = daemon.convert_and_fetch(key, pcx.getvalue(), "x.jpg", "image", "png")
    assert out is None and status["status"] == "failed"
    assert "not a valid image" in status["error"]


CORPUS_CASES = [
    # (file, output format, expected size or None, expected mode after open, or None)
    ("exif-orientation-6-landscape.jpg", "png", (1800, 1200), None),
    ("cmyk-adobe-photo.jpg", "png", (640, 682), "RGB"),
    ("progressive-pixel7pro.jpg", "webp", (1020, 768), None),
    ("png-16bit-rgba-hdr-frame.png", "jpg", (1920, 1080), "RGB"),
    ("palette-trns-interlaced.png", "webp", None, "RGBA"),
    ("animated-transparent.gif", "png", None, None),
    ("multipage-jpeg.tif", "jpg", (800, 600), None),
    ("bmp-rle8-palette.bmp", "png", None, None),
    ("multi-size.ico", "png", (48, 48), "RGBA"),
    ("webp-lossy-alpha.webp", "png", (400, 301), "RGBA"),
]


@pytest.mark.parametrize(("name", "fmt", "size", "mode"), CORPUS_CASES)
def test_real_world_images(
    daemon: Daemon, key: str, name: str, fmt: str, size: tuple[int, int] | None, mode: str | None
) -> None:
    path: Path = CORPUS / "image" / name
    if not path.exists():
        pytest.fail(f"corpus file missing: {path}")
    status, out = daemon.convert_and_fetch(key, path.read_bytes(), name, "image", fmt)
    assert out is not None, status
    im = open_output(out.content)
    assert im.format == OUT_FORMATS[fmt]
    if size:
        assert im.size == size
    if mode:
        assert im.mode == mode
    # Not a blank image: real content survived the conversion.
    extrema = im.convert("L").getextrema()
    assert extrema[1] - extrema[0] > 20


@pytest.mark.parametrize("name", ["photo.heic", "photo.HEIF", "photo.jpg", "photo"])
def test_phone_heic_photos_convert(daemon: Daemon, key: str, name: str) -> None:
    # An iPhone's HEIC, by its name or (misnamed, nameless) by its content.
    data = (CORPUS / "image" / "iphone-photo.heic").read_bytes()
    status, out = daemon.convert_and_fetch(key, data, name, "image", "jpg", {"width": 1008})
    assert out is not None, status
    with Image.open(io.BytesIO(out.content)) as im:
        assert im.format == "JPEG" and im.size == (1008, 756)


def frame_count(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as im:
        return getattr(im, "n_frames", 1)


@pytest.mark.parametrize(
    ("name", "dst", "frames"),
    [
        ("animated-transparent.gif", "webp", 30),
        ("animated.webp", "gif", 42),
        ("animated-transparent.gif", "gif", 30),
        ("multipage-jpeg.tif", "tiff", 2),
        ("animated.webp", "png", 1),
    ],
)
def test_animations_and_pages_keep_their_frames(
    daemon: Daemon, key: str, name: str, dst: str, frames: int
) -> None:
    data = (CORPUS / "image" / name).read_bytes()
    status, out = daemon.convert_and_fetch(key, data, name, "image", dst, {"width": 120})
    assert out is not None, status
    assert frame_count(out.content) == frames
    with Image.open(io.BytesIO(out.content)) as im:
        assert im.width == 120


def test_image_to_pdf(daemon: Daemon, key: str) -> None:
    from tests.inspect_files import pdf_text

    data = (CORPUS / "image" / "multipage-jpeg.tif").read_bytes()
    status, out = daemon.convert_and_fetch(key, data, "scan.tif", "image", "pdf")
    assert out is not None, status
    assert pdf_text(out.content)[0] == 2
    status, out = daemon.convert_and_fetch(
        key, image_bytes("PNG", mode="RGBA"), "a.png", "image", "pdf"
    )
    assert out is not None and pdf_text(out.content)[0] == 1


def test_too_many_frames_is_refused(daemon: Daemon, key: str) -> None:
    frames = [Image.new("L", (8, 8), n % 256) for n in range(2500)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    status, out = daemon.convert_and_fetch(key, buf.getvalue(), "many.gif", "image", "webp")
    assert out is None and "frames" in status["error"]
    status, out = daemon.convert_and_fetch(key, buf.getvalue(), "many.gif", "image", "png")
    assert out is not None  # one frame is asked for: the first one is fine


def photo_with_location() -> bytes:
    """A JPEG as a phone writes it: camera make, a colour profile and where it was taken."""
    from PIL import ImageCms

    im = Image.new("RGB", (64, 48), (200, 120, 40))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (52.0, 22.0, 12.5), 3: "E", 4: (4.0, 53.0, 30.0)})
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif, icc_profile=icc)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["jpg", "webp", "png"])
@pytest.mark.parametrize("keep", [False, True])
def test_location_is_dropped_unless_kept(daemon: Daemon, key: str, fmt: str, keep: bool) -> None:
    options = {"keep_metadata": True} if keep else None
    status, out = daemon.convert_and_fetch(
        key, photo_with_location(), "phone.jpg", "image", fmt, options
    )
    assert out is not None, status
    with Image.open(io.BytesIO(out.content)) as im:
        exif = im.getexif()
        assert exif.get(0x010F) == "PhoneMaker"  # the rest of EXIF stays
        assert im.info.get("icc_profile")  # and the colour profile
        assert bool(exif.get_ifd(0x8825)) is keep
