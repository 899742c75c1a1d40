"""Drop folders, end to end: real folders, a real daemon, the files that come out."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import Daemon, image_bytes
from tests.daemon import run_cli

FAST = {
    "CONVERTD_DROP_SETTLE_SECONDS": "0.6",
    "CONVERTD_DROP_SCAN_SECONDS": "2",
    "CONVERTD_OFFICE_PREWARM": "false",
}


def wait_for(check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def files(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file())


@pytest.fixture
def drop(make_daemon: Any) -> Any:
    def start(env: dict[str, str] | None = None, **kw: Any) -> tuple[Daemon, Path]:
        d = make_daemon(env={**FAST, **(env or {})}, **kw)
        return d, d.data_dir / "drop"

    return start


def write_png(path: Path, size: tuple[int, int] = (40, 30), **kw: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes("PNG", size, **kw))
    return path


def webp_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "WEBP"
        im.load()
        return im.size


def test_inbox_to_outbox(drop: Any) -> None:
    d, root = drop()
    write_png(root / "inbox" / "webp" / "photo.png")
    out = wait_for(lambda: files(root / "outbox"), what="output")
    assert out == ["photo.webp"]
    assert webp_size(root / "outbox" / "photo.webp") == (40, 30)
    wait_for(lambda: files(root / "processed" / "webp") == ["photo.png"], what="original moved")
    assert files(root / "inbox" / "webp") == []
    # The original is filed just before the drop is closed and logged.
    wait_for(lambda: "drop taken" in d.log() and "drop finished" in d.log(), what="log lines")
    listing = json.loads(run_cli(d.data_dir, "jobs", "list", "--json").stdout)
    assert listing[0]["status"] == "finished" and listing[0]["key_id"] is None


def test_slow_copy_is_taken_once_complete(drop: Any) -> None:
    d, root = drop()
    data = image_bytes("PNG", (400, 300))
    target = root / "inbox" / "webp" / "slow.png"
    target.parent.mkdir(parents=True)
    with target.open("wb") as fh:
        step = len(data) // 10 + 1
        for n in range(0, len(data), step):
            fh.write(data[n : n + step])
            fh.flush()
            time.sleep(0.3)  # slower than nothing, faster than the settle time
    wait_for(lambda: files(root / "outbox"), what="output")
    time.sleep(2)
    assert files(root / "outbox") == ["slow.webp"]
    assert webp_size(root / "outbox" / "slow.webp") == (400, 300)
    assert d.log().count("drop taken") == 1
    assert files(root / "failed" / "webp") == []


def test_renamed_into_the_inbox_and_temp_names_ignored(drop: Any) -> None:
    _d, root = drop()
    inbox = root / "inbox" / "webp"
    for name in (
        "movie.part",
        "file.crdownload",
        "x.tmp",
        "~$report.docx",
        ".hidden.png",
        "old.error.txt",
    ):
        write_png(inbox / name)
    partial = write_png(inbox / "late.png.part")
    time.sleep(3)  # well past the settle time: none of those is taken
    assert files(root / "outbox") == [] and files(root / "failed" / "webp") == []
    os.rename(partial, inbox / "late.png")
    wait_for(lambda: files(root / "outbox") == ["late.webp"], what="renamed file converted")
    assert sorted(files(inbox)) == sorted(
        [".hidden.png", "file.crdownload", "movie.part", "old.error.txt", "x.tmp", "~$report.docx"]
    )


def test_same_name_twice_never_overwrites(drop: Any) -> None:
    _d, root = drop()
    write_png(root / "inbox" / "webp" / "same.png", (10, 10))
    wait_for(lambda: files(root / "outbox") == ["same.webp"], what="first")
    write_png(root / "inbox" / "webp" / "same.png", (20, 20))
    wait_for(lambda: len(files(root / "outbox")) == 2, what="second")
    assert files(root / "outbox") == ["same (1).webp", "same.webp"]
    assert webp_size(root / "outbox" / "same.webp") == (10, 10)
    assert webp_size(root / "outbox" / "same (1).webp") == (20, 20)
    wait_for(
        lambda: files(root / "processed" / "webp") == ["same (1).png", "same.png"],
        what="both originals kept",
    )


def test_corrupt_file_goes_to_failed_and_comes_back(drop: Any) -> None:
    _d, root = drop()
    bad = root / "inbox" / "webp" / "broken.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(image_bytes("PNG", (100, 100))[:300])
    failed = root / "failed" / "webp"
    wait_for(lambda: "broken.png.error.txt" in files(failed), what="error report")
    report = (failed / "broken.png.error.txt").read_text()
    details = json.loads((failed / "broken.png.error.json").read_text())
    assert "PNG" in report and details["job_id"] in report and details["error"] in report
    # Back where it came from: the inbox's root is skipped (a stranger was told to move it there).
    assert f"move broken.png back into {bad.parent}.\n" in report
    assert files(root / "outbox") == []
    # Fixed and moved back, it converts.
    (failed / "broken.png").write_bytes(image_bytes("PNG", (100, 100)))
    os.rename(failed / "broken.png", bad)
    wait_for(lambda: files(root / "outbox") == ["broken.webp"], what="retry converted")


def test_files_dropped_while_stopped_and_kill_mid_conversion(drop: Any, make_daemon: Any) -> None:
    d, root = drop(workers=1)
    d.stop()
    write_png(root / "inbox" / "webp" / "while-down.png")
    noise = io.BytesIO()
    Image.effect_noise((5000, 5000), 40).convert("RGB").save(noise, "PNG", compress_level=1)
    (root / "inbox" / "webp" / "noise.png").write_bytes(noise.getvalue())
    d2 = make_daemon(env=FAST, workers=1, data_dir=d.data_dir)

    def noise_running() -> bool:
        import sqlite3

        conn = sqlite3.connect(d.data_dir / "convertd.db")
        try:
            row = conn.execute(
                "SELECT j.status FROM jobs j JOIN uploads u ON u.id = j.upload_id "
                "WHERE u.file_name = 'noise.png'"
            ).fetchone()
        finally:
            conn.close()
        return bool(row and row[0] == "processing")

    wait_for(noise_running, what="noise job running")
    d2.kill()
    d3 = make_daemon(env=FAST, workers=1, data_dir=d.data_dir)
    wait_for(lambda: "noise.webp" in files(root / "outbox"), timeout=120, what="after restart")
    time.sleep(1)
    assert files(root / "outbox") == ["noise.webp", "while-down.webp"]
    assert webp_size(root / "outbox" / "noise.webp") == (5000, 5000)
    assert files(root / "processed" / "webp") == ["noise.png", "while-down.png"]
    assert "drop finished" in d3.log()


def test_a_thousand_files_at_once(drop: Any) -> None:
    d, root = drop()
    staging = d.data_dir.parent / "burst"
    staging.mkdir()
    for n in range(1000):
        (staging / f"f{n:04d}.txt").write_text(f"file {n}\n")
    os.rename(staging, root / "inbox" / "md5")  # all at once, as one folder
    import hashlib

    import requests

    assert requests.get(f"{d.base}/", timeout=5).status_code == 200  # responsive meanwhile
    wait_for(lambda: len(files(root / "outbox")) == 1000, timeout=240, what="1000 outputs")
    for n in (0, 499, 999):
        digest = (root / "outbox" / f"f{n:04d}.md5").read_text().strip()
        assert digest == hashlib.md5(f"file {n}\n".encode()).hexdigest()
    wait_for(lambda: len(files(root / "processed" / "md5")) == 1000, what="originals")


def test_folder_moved_in_and_nested_and_non_utf8(drop: Any, tmp_path: Path) -> None:
    _d, root = drop()
    outside = tmp_path / "album"
    write_png(outside / "a.png")
    write_png(outside / "deeper" / "b.png")
    (root / "inbox" / "webp").mkdir(parents=True)
    os.rename(outside, root / "inbox" / "webp" / "album")
    weird = os.path.join(os.fsencode(root / "inbox" / "webp"), b"caf\xe9.png")
    with open(weird, "wb") as fh:
        fh.write(image_bytes("PNG"))
    wait_for(lambda: len(files(root / "outbox")) == 3, what="three outputs")
    assert "a.webp" in files(root / "outbox") and "b.webp" in files(root / "outbox")
    assert any(n.startswith("caf") for n in files(root / "outbox"))


def test_watched_root_removed_and_recreated(drop: Any) -> None:
    _d, root = drop()
    write_png(root / "inbox" / "webp" / "one.png")
    wait_for(lambda: files(root / "outbox") == ["one.webp"], what="first")
    shutil.rmtree(root / "inbox")
    time.sleep(1.5)
    write_png(root / "inbox" / "webp" / "two.png")
    wait_for(lambda: "two.webp" in files(root / "outbox"), what="after recreate")


def test_scans_find_what_events_miss(drop: Any) -> None:
    _d, root = drop(env={"CONVERTD_DROP_EVENTS": "false", "CONVERTD_DROP_SCAN_SECONDS": "1"})
    write_png(root / "inbox" / "webp" / "quiet.png")
    wait_for(lambda: files(root / "outbox") == ["quiet.webp"], what="scan-only pickup")


def test_symlinks_are_not_followed(drop: Any) -> None:
    d, root = drop()
    (root / "inbox" / "md5").mkdir(parents=True)
    os.symlink("/etc/hostname", root / "inbox" / "md5" / "host.txt")
    write_png(root / "inbox" / "md5" / "real.png")
    wait_for(lambda: files(root / "outbox") == ["real.md5"], what="real file")
    time.sleep(2.5)
    assert files(root / "outbox") == ["real.md5"]
    status = json.loads(run_cli(d.data_dir, "drops", "--json").stdout)
    assert any("symbolic link" in s["reason"] for s in status["skipped"])


def test_missing_tool_waits_instead_of_failing(drop: Any, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    d, root = drop(env={"PATH": str(bin_dir)})
    wav = root / "inbox" / "mp3" / "tone.wav"
    wav.parent.mkdir(parents=True)
    wav.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 30)
    wait_for(lambda: "not available" in run_cli(d.data_dir, "drops").stdout, what="reported")
    assert wav.exists() and files(root / "failed" / "mp3") == []


def serve_refuses(config: Path, data_dir: Path) -> str:
    """`convertd serve` with this config file stops at start (exit status 2); its stderr."""
    proc = run_cli(
        data_dir,
        "serve",
        "--port",
        "0",
        "--config",
        str(config),
        check=False,
        env={"CONVERTD_OFFICE_PREWARM": "false"},
    )
    assert proc.returncode == 2, proc.stderr[-500:]
    return proc.stderr


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_configured_rule_recursive_with_patterns_and_polling(
    make_daemon: Any, tmp_path: Path
) -> None:
    scans = tmp_path / "scans"
    out = tmp_path / "converted"
    config = write_config(
        tmp_path / "c.toml",
        f"""
[[watch]]
name = "scanner"
folder = "{scans}"
output_format = "jpg"
filetype = "image"
options = {{ width = 20 }}
output = "{out}"
originals = "delete"
recursive = true
include = ["*.png", "*.bmp"]
exclude = ["skip-*"]
polling = true
poll_interval = 0.5
""",
    )
    scans.mkdir()
    make_daemon(env={**FAST, "CONVERTD_CONFIG": str(config)})
    write_png(scans / "2026" / "11" / "page.png", (40, 20))
    write_png(scans / "skip-me.png")
    (scans / "notes.txt").write_text("not an image")
    wait_for(lambda: files(out) == ["page.jpg"], what="nested output")
    with Image.open(out / "page.jpg") as im:
        assert im.size == (20, 10)
    wait_for(lambda: not (scans / "2026" / "11" / "page.png").exists(), what="original deleted")
    time.sleep(1.5)
    assert (scans / "skip-me.png").exists() and (scans / "notes.txt").exists()
    assert files(out) == ["page.jpg"]


@pytest.mark.parametrize(
    ("rule", "named"),
    [
        ('folder = "/tmp/x"\noutput_format = "jpg"', "'output'"),
        ('folder = "relative"\noutput = "/tmp/o"\noutput_format = "jpg"', "'folder'"),
        ('folder = "/tmp/in"\noutput = "/tmp/in/out"\noutput_format = "jpg"', "'output'"),
        ('folder = "/tmp/in"\noutput = "/tmp/o"\noutput_format = "xyz"', "'output_format'"),
        (
            'folder = "/tmp/in"\noutput = "/tmp/o"\noutput_format = "jpg"\noriginals = "shred"',
            "'originals'",
        ),
        (
            'folder = "/tmp/in"\noutput = "/tmp/o"\noutput_format = "jpg"\nfiletype = "image"\n'
            "options = { quality = 500 }",
            "'options'",
        ),
        ('folder = "/tmp/in"\noutput = "/tmp/o"\noutput_format = "jpg"\ncolour = 1', "colour"),
    ],
)
def test_invalid_rule_stops_serve_naming_rule_and_field(
    tmp_path: Path, rule: str, named: str
) -> None:
    config = write_config(tmp_path / "c.toml", f'[[watch]]\nname = "bad-rule"\n{rule}\n')
    stderr = serve_refuses(config, tmp_path / "d")
    assert "bad-rule" in stderr and named in stderr


def keeping_daemon(
    make_daemon: Any, tmp_path: Path, output_format: str, filetype: str | None = None
) -> tuple[Path, Path]:
    """A daemon with one `originals = "keep"` rule: (its watched folder, its output folder)."""
    watched, out = tmp_path / "keep-in", tmp_path / "keep-out"
    typed = f'filetype = "{filetype}"\n' if filetype else ""
    config = write_config(
        tmp_path / "c.toml",
        f"""
[[watch]]
name = "keeper"
folder = "{watched}"
output = "{out}"
output_format = "{output_format}"
{typed}originals = "keep"
""",
    )
    watched.mkdir()
    make_daemon(env={**FAST, "CONVERTD_CONFIG": str(config)})
    return watched, out


def test_keep_originals_in_place(make_daemon: Any, tmp_path: Path) -> None:
    watched, out = keeping_daemon(make_daemon, tmp_path, "md5")
    (watched / "keep.txt").write_text("keep me")
    wait_for(lambda: files(out) == ["keep.md5"], what="output")
    time.sleep(3)  # more scans: the kept original is not converted again
    assert files(out) == ["keep.md5"] and (watched / "keep.txt").read_text() == "keep me"


def test_half_claimed_files_are_repaired_at_start(drop: Any, make_daemon: Any) -> None:
    import sqlite3

    d, root = drop()
    d.stop()
    # What a crash leaves between "row written" and "queued": one file already moved into the
    # upload area, one not moved yet.
    moved_token = "0123456789abcdef"
    (d.data_dir / "uploads" / moved_token).mkdir(parents=True)
    (d.data_dir / "uploads" / moved_token / "moved.png").write_bytes(image_bytes("PNG"))
    waiting = write_png(root / "inbox" / "webp" / "unmoved.png")
    conn = sqlite3.connect(d.data_dir / "convertd.db")
    with conn:
        for name, source, token in (
            ("moved.png", root / "inbox" / "webp" / "moved.png", moved_token),
            ("unmoved.png", waiting, "fedcba9876543210"),
        ):
            conn.execute(
                "INSERT INTO drops (rule, source_path, display_name, output_format, size, "
                "mtime_ns, upload_path, status, created_at) "
                "VALUES ('inbox', ?, ?, 'webp', 1, 0, ?, 'claiming', 0)",
                (os.fsencode(source), name, f"{token}/{name}"),
            )
    conn.close()
    make_daemon(env=FAST, data_dir=d.data_dir)
    wait_for(lambda: files(root / "outbox") == ["moved.webp", "unmoved.webp"], what="both")
    time.sleep(1.5)
    assert files(root / "outbox") == ["moved.webp", "unmoved.webp"]
    assert files(root / "processed" / "webp") == ["moved.png", "unmoved.png"]


def test_rule_options_are_normalised_before_jobs_use_them(make_daemon: Any, tmp_path: Path) -> None:
    # Options are checked the way the API checks them, and jobs get the checked values: a
    # spelling the check accepts ("High", " 1 - 2") must convert, not fail inside a converter.
    from tests.media import duration, ffprobe, make_video, streams

    clips, out = tmp_path / "clips", tmp_path / "clips-out"
    config = write_config(
        tmp_path / "c.toml",
        f"""
[[watch]]
name = "clips"
folder = "{clips}"
output = "{out}"
output_format = "mp4"
filetype = "video"
options = {{ quality = "High", video_codec = " H264 ", trim_end = 1 }}
""",
    )
    clips.mkdir()
    make_daemon(env={**FAST, "CONVERTD_CONFIG": str(config)})
    source = make_video(tmp_path / "clip.mkv", 2.0, "160x120")
    shutil.copyfile(source, clips / ".clip.mkv.part")
    os.rename(clips / ".clip.mkv.part", clips / "clip.mkv")
    wait_for(lambda: files(out) == ["clip.mp4"], what="converted clip")
    info = ffprobe((out / "clip.mp4").read_bytes(), tmp_path)
    assert streams(info, "video")[0]["codec_name"] == "h264"
    assert abs(duration(info) - 1.0) < 0.2
    assert not (out / "failed").exists()


def test_a_file_still_open_for_writing_is_not_taken(drop: Any) -> None:
    # A scanner or an scp copy keeps the file open and pauses longer than the settle time
    # (0.6 s here) between writes: it must be taken whole, once, after it is closed.
    _, root = drop()
    inbox = root / "inbox" / "md5"
    inbox.mkdir(parents=True)
    target = inbox / "scan.txt"
    with target.open("w") as writer:
        writer.write("page one\n")
        writer.flush()
        time.sleep(3)
        writer.write("page two\n")
    wait_for(lambda: files(root / "outbox") == ["scan.md5"], what="one output")
    digest = hashlib.md5(b"page one\npage two\n").hexdigest()
    assert (root / "outbox" / "scan.md5").read_text().split()[0] == digest
    time.sleep(1.5)
    assert files(root / "outbox") == ["scan.md5"]


def test_a_file_changed_after_it_was_taken_is_converted_again(tmp_path: Path) -> None:
    # A writer on another machine (NFS, SMB) is invisible in /proc and may write into the file
    # after it was taken: delivery sees the change and converts what is really there.
    import asyncio

    from convertd.config import Config
    from convertd.drops.deliver import Deliverer
    from convertd.drops.rules import inbox_rule
    from convertd.files import DataDir
    from convertd.store import drops as drop_store
    from convertd.store import jobs
    from convertd.store.sqlite import SqliteDatabase

    async def scenario() -> tuple[str, str, list[str]]:
        data = DataDir(tmp_path / "data")
        data.ensure()
        rule = inbox_rule(data.drop_root, Config(data_dir=tmp_path).drop_originals)
        db = await SqliteDatabase.open(data.database)
        file_path, upload = data.new_upload_path("scan.txt")
        upload.write_text("page one\n")
        st = upload.stat()
        found = drop_store.Found(
            "inbox", b"/in/md5/scan.txt", "scan.txt", "md5", st.st_size, st.st_mtime_ns
        )
        drop_id = await drop_store.begin_claim(db, found, file_path)
        first = await drop_store.queue(
            db, drop_id, "scan.txt", "txt", jobs.Conversion("hash", "txt", "md5", {})
        )
        claimed = await jobs.claim_next(db, "w")
        assert claimed is not None and claimed.id == first
        result = data.work_dir(first)
        result.mkdir()
        (result / "scan.md5").write_text("stale\n")
        data.publish_result(first, result / "scan.md5", "scan.md5")
        await jobs.finish(db, first, "w", "scan.md5", 1, 6)
        with upload.open("a") as late_writer:
            late_writer.write("page two\n")
        woken: list[str] = []
        await Deliverer(db, data, [rule], lambda: woken.append("queued")).deliver_ready()
        (now,) = await drop_store.by_status(db, "queued")
        await db.close()
        return first, str(now.job_id), woken

    first, second, woken = asyncio.run(scenario())
    assert second != first and woken == ["queued"]
    assert not (tmp_path / "data" / "drop" / "outbox").exists()  # nothing stale delivered


def test_keep_never_takes_the_original_away(make_daemon: Any, tmp_path: Path) -> None:
    # Sync tools watching a `keep` folder must never see the original vanish, not even while
    # a slow conversion runs (or after a crash in the middle of one).
    from tests.media import make_video

    watched, out = keeping_daemon(make_daemon, tmp_path, "webm", "video")
    clip = make_video(tmp_path / "clip.mp4", 3.0, "640x480")
    shutil.copyfile(clip, watched / ".clip.mp4.part")
    os.rename(watched / ".clip.mp4.part", watched / "clip.mp4")
    deadline = time.monotonic() + 120
    while not (out / "clip.webm").exists():
        assert (watched / "clip.mp4").exists(), "the original left its folder"
        assert time.monotonic() < deadline, "no output"
        time.sleep(0.05)
    time.sleep(3)  # more scans: the kept original is not converted again
    assert files(out) == ["clip.webm"] and (watched / "clip.mp4").read_bytes() == clip.read_bytes()


@pytest.mark.parametrize(
    ("fmt", "name", "good"),
    [
        ("md5", b"caf\xe9 -\nnotes.txt", True),  # Latin-1 byte, newline: converted
        ("md5", b"-dash \xff.txt", True),
        ("webp", b"broken \xfe.png", False),  # not an image: to failed/, still by its name
    ],
)
def test_names_that_are_not_utf8_round_trip(drop: Any, fmt: str, name: bytes, good: bool) -> None:
    # The original comes back under its own name, byte for byte, in processed/ or failed/;
    # and events for such names no longer break the watcher.
    d, root = drop()
    inbox = root / "inbox" / fmt
    inbox.mkdir(parents=True)
    with open(os.path.join(os.fsencode(inbox), name), "wb") as fh:
        fh.write(b"some text\n")
    where = root / ("processed" if good else "failed") / fmt
    wait_for(lambda: where.exists() and name in os.listdir(os.fsencode(where)), what="the original")
    assert "unhandled errors" not in d.log() and "Traceback" not in d.log()


def test_a_file_without_an_extension_is_read_by_its_bytes_or_told_to_be_named(
    drop: Any,
) -> None:
    """The fourth stranger: a PNG dropped without an extension converts (its bytes tell), and
    text without one is refused with the hint v1 gives (the refusal said only "cannot make pdf
    from a file without an extension", which the PNG beside it belied)."""
    _d, root = drop()
    inbox = root / "inbox" / "webp"
    inbox.mkdir(parents=True)
    (inbox / "noextpng").write_bytes(image_bytes("PNG", (10, 10)))
    (inbox / "notes").write_text("plain words\n")
    wait_for(lambda: files(root / "outbox") == ["noextpng.webp"], what="the PNG's output")
    assert webp_size(root / "outbox" / "noextpng.webp") == (10, 10)
    failed = root / "failed" / "webp"
    wait_for(lambda: "notes.error.txt" in files(failed), what="the text's refusal")
    report = (failed / "notes.error.txt").read_text()
    assert "its name has no extension" in report, report
    assert "name it with its extension (as in report.docx)" in report, report


def test_drops_status_is_current_and_lists_refused_files(drop: Any) -> None:
    # With scans a minute apart, what `convertd drops` shows still follows the files: one taken
    # is no longer "waiting", and one refused at pickup is listed with its reason.
    d, root = drop(env={"CONVERTD_DROP_SCAN_SECONDS": "60"})
    (root / "inbox" / "md5").mkdir(parents=True)
    (root / "inbox" / "nosuchformat").mkdir(parents=True)
    time.sleep(1)  # the watcher sees the new folders
    (root / "inbox" / "md5" / "a.txt").write_text("hello")
    (root / "inbox" / "nosuchformat" / "b.txt").write_text("hello")
    wait_for(lambda: files(root / "outbox") == ["a.md5"], what="output")
    wait_for(lambda: files(root / "failed" / "nosuchformat"), what="the refused file")

    def state() -> dict[str, Any]:
        return dict(json.loads(run_cli(d.data_dir, "drops", "--json").stdout))

    current = wait_for(lambda: (s := state())["waiting"] == [] and s, what="nothing waiting")
    refused = [r for r in current["recent"] if r["file"] == "b.txt"]
    assert refused and refused[0]["status"] == "failed" and "cannot make" in refused[0]["error"]


def test_drops_status_follows_takes_between_scans(make_daemon: Any, tmp_path: Path) -> None:
    # Scans a minute apart and no events: the file found at start is taken after it settles,
    # and `convertd drops` must stop calling it waiting then, not at the next scan.
    data = tmp_path / "data"
    (data / "drop" / "inbox" / "md5").mkdir(parents=True)
    (data / "drop" / "inbox" / "md5" / "a.txt").write_text("hello")
    d = make_daemon(
        env={**FAST, "CONVERTD_DROP_SCAN_SECONDS": "60", "CONVERTD_DROP_EVENTS": "false"},
        data_dir=data,
    )
    wait_for(lambda: files(data / "drop" / "outbox") == ["a.md5"], what="output")
    state = json.loads(run_cli(d.data_dir, "drops", "--json").stdout)
    assert state["waiting"] == [], state["waiting"]


def test_an_output_folder_that_cannot_be_written_neither_floods_nor_blocks(
    make_daemon: Any, tmp_path: Path
) -> None:
    # Rule "broken" delivers into a path that is a file; rule "fine" works. The broken drop
    # waits with back-off and says why once; the fine one, dropped after it, is delivered.
    broken_in, fine_in, fine_out = tmp_path / "b-in", tmp_path / "f-in", tmp_path / "f-out"
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    config = write_config(
        tmp_path / "c.toml",
        f"""
[[watch]]
name = "broken"
folder = "{broken_in}"
output = "{blocker / "out"}"
output_format = "md5"

[[watch]]
name = "fine"
folder = "{fine_in}"
output = "{fine_out}"
output_format = "md5"
""",
    )
    broken_in.mkdir()
    fine_in.mkdir()
    d = make_daemon(env={**FAST, "CONVERTD_CONFIG": str(config)})
    (broken_in / "first.txt").write_text("one")
    time.sleep(1.5)
    (fine_in / "second.txt").write_text("two")
    wait_for(lambda: files(fine_out) == ["second.md5"], what="the other rule's output")
    time.sleep(6)  # a few more delivery rounds for the broken one
    said = [line for line in d.log().splitlines() if "first.txt" in line and "deliver" in line]
    assert 1 <= len(said) <= 2, said
    assert "Traceback" not in d.log()
    recent = json.loads(run_cli(d.data_dir, "drops", "--json").stdout)["recent"]
    (first,) = [r for r in recent if r["file"] == "first.txt"]
    assert first["status"] in {"queued", "delivering"} and "cannot deliver" in first["error"]
