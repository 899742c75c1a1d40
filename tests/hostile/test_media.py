"""Hostile media: playlists and manifests that make FFmpeg read other files or the network
(CVE-2016-1897/1898, CVE-2017-9993). Nothing local or remote ever reaches an output."""

from __future__ import annotations

import struct
from pathlib import Path

from tests.canary import Canary
from tests.conftest import Daemon

SECRET = "TOP-SECRET-CONTENT"


def secret_file(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_text(f"{SECRET}\n" * 100)
    return secret


def test_playlists_disguised_as_mp4_are_refused(
    daemon: Daemon, key: str, tmp_path: Path, canary: Canary
) -> None:
    secret = secret_file(tmp_path)
    playlist = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n"
        f"file://{secret}\n#EXTINF:10,\n{canary.url('/seg.ts')}\n#EXT-X-ENDLIST\n"
    ).encode()
    status, out = daemon.convert_and_fetch(key, playlist, "movie.mp4", "video", "mkv")
    assert out is None and status["status"] == "failed"
    concat = f"ffconcat version 1.0\nfile '{secret}'\n".encode()
    status, out = daemon.convert_and_fetch(key, concat, "movie.mp4", "video", "mp4")
    assert out is None and status["status"] == "failed"
    assert canary.hits == []


def test_dash_manifest_as_media_is_refused(daemon: Daemon, key: str, canary: Canary) -> None:
    mpd = (
        f'<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static">'
        f'<Period><AdaptationSet><Representation id="1" bandwidth="1">'
        f"<BaseURL>{canary.url('/seg.mp4')}</BaseURL></Representation></AdaptationSet>"
        f"</Period></MPD>"
    ).encode()
    _status, out = daemon.convert_and_fetch(key, mpd, "movie.mp4", "video", "mkv")
    assert out is None and canary.hits == []


def riff_chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + b"\0" * (len(data) % 2)


def riff_list(kind: bytes, *chunks: bytes) -> bytes:
    return riff_chunk(b"LIST", kind + b"".join(chunks))


def avi_with_gab2_playlist(playlist: bytes, packets: int = 200) -> bytes:
    """An AVI whose text stream carries a GAB2 subtitle block holding an HLS playlist: the
    shape of CVE-2017-9993, where FFmpeg's AVI demuxer opened the block with whatever demuxer
    probed best."""
    avih = struct.pack("<14I", 40000, 0, 0, 0, packets, 0, 1, 0, 224, 160, 0, 0, 0, 0)
    strh = b"txts" + struct.pack(
        "<2I2H8I4h", 0, 0, 0, 0, 0, 1, 25, 0, packets, 0, 0xFFFFFFFF, 0, 0, 0, 224, 160
    )
    gab2 = b"GAB2\x00\x02\x00" + bytes(10) + playlist
    movi = riff_list(
        b"movi",
        riff_chunk(b"00tx", gab2),
        *[riff_chunk(b"00tx", b"\0\0\0") for _ in range(packets)],
    )
    header = riff_list(
        b"hdrl",
        riff_chunk(b"avih", avih),
        riff_list(b"strl", riff_chunk(b"strh", strh), riff_chunk(b"strf", bytes(40))),
    )
    body = b"AVI " + header + movi
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_avi_with_an_embedded_playlist_reads_nothing(
    daemon: Daemon, key: str, tmp_path: Path, canary: Canary
) -> None:
    secret = secret_file(tmp_path)
    playlist = (
        f"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:1.0,\nfile://{secret}\n"
        f"#EXTINF:1.0,\n{canary.url('/seg.ts')}\n#EXT-X-ENDLIST\n"
    ).encode()
    evil = avi_with_gab2_playlist(playlist)
    for fmt in ("mp4", "mkv"):
        status, out = daemon.convert_and_fetch(key, evil, "clip.avi", "video", fmt)
        assert status["status"] in {"failed", "finished"}
        assert out is None or SECRET.encode() not in out.content
    assert canary.hits == []


def test_a_flood_of_tags_in_what_ffmpeg_prints_is_read_within_bounds(
    daemon: Daemon, key: str, tmp_path: Path
) -> None:
    # FFmpeg prints the input's tags as it opens it, and convertd reads those lines to learn
    # what the file holds: a 100 KB title on one line, and 2,000 more lines of tags before the
    # streams, are cut and counted, and the song still converts, by its real stream and length.
    from tests.media import duration, ffprobe, make_audio, streams

    many = [f"-metadata tag{n}=" + "\n".join(["v"] * 20) for n in range(100)]
    song = make_audio(
        tmp_path / "tags.mka",
        1.0,
        "-c:a",
        "flac",
        "-metadata",
        "title=" + "T" * 100_000,
        *" ".join(many).split(" "),
    )
    status, out = daemon.convert_and_fetch(key, song.read_bytes(), "tags.mka", "audio", "mp3")
    assert out is not None, status
    info = ffprobe(out.content, tmp_path, "o.mp3")
    assert streams(info, "audio") and abs(duration(info) - 1.0) < 0.1
