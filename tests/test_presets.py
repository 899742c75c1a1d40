"""Presets: saved from the CLI, /v2/presets and the config, checked as conversions are, and
used by /v1/convert, /v2 convert tasks and watch rules; each built-in converts a real file."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pypdf
import pytest
import requests
from PIL import Image

from tests.conftest import CORPUS, Daemon, image_bytes
from tests.daemon import run_cli
from tests.media import ffprobe, make_audio, make_video, streams
from tests.test_drops import FAST, files, serve_refuses, wait_for, write_config, write_png
from tests.test_v2_api import call, named, wait_job
from tests.test_v2_operations import SCANNED_WORDS, b64, exported, pdftotext, scanned_page

BUILTINS = {"web-photo", "phone-video", "podcast-mp3", "archive-pdfa", "scan-to-pdf"}


def v1_convert(d: Daemon, key: str, data: bytes, name: str, **fields: Any) -> requests.Response:
    if isinstance(fields.get("options"), dict):
        fields["options"] = json.dumps(fields["options"])
    return requests.post(
        f"{d.base}/convert",
        headers={"X-API-Key": key},
        files={"file": (name, data)},
        data=fields,
        timeout=30,
    )


def v1_result(d: Daemon, key: str, data: bytes, name: str, **fields: Any) -> requests.Response:
    resp = v1_convert(d, key, data, name, **fields)
    assert resp.status_code == 202, resp.text
    status = d.wait(key, resp.json()["job_id"], timeout=180)
    assert status["status"] == "finished", status
    out = requests.get(status["download_url"], timeout=30)
    assert out.status_code == 200
    return out


def photo_with_exif(size: tuple[int, int] = (3000, 2000)) -> bytes:
    exif = Image.Exif()
    exif[0x0110] = "Phone 12"  # Model
    buf = io.BytesIO()
    Image.open(io.BytesIO(image_bytes("PNG", (60, 40)))).resize(size).save(
        buf, "JPEG", exif=exif.tobytes()
    )
    return buf.getvalue()


# ----- the CLI -----


def test_cli_add_list_show_remove_and_bad_options_refused(tmp_path: Path) -> None:
    data = tmp_path / "d"

    def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = run_cli(data, "presets", *args, check=False)
        assert (proc.returncode == 0) is ok, proc.stderr
        return proc

    listed = json.loads(cli("list", "--json").stdout)
    assert {p["name"] for p in listed} == BUILTINS
    assert {p["source"] for p in listed} == {"builtin"}

    options = '{"width": 1024, "quality": 75, "strip_metadata": true}'
    added = cli("add", "Web-Small", "--filetype", "image", "--to", "webp", "--options", options)
    assert json.loads(added.stdout)["name"] == "web-small"
    shown = json.loads(cli("show", "web-small").stdout)
    assert shown["options"] == {"width": 1024, "quality": 75, "strip_metadata": True}
    assert shown["source"] == "database"
    table = cli("list").stdout
    assert "web-small" in table and "web-photo" in table

    # Refused as /v1/convert would refuse the same conversion, with the same words.
    bad = [
        (["--filetype", "image", "--to", "webp", "--options", '{"quality": 500}'], "'quality'"),
        (["--filetype", "image", "--to", "webp", "--options", '{"gps": false}'], "gps"),
        (["--filetype", "image", "--to", "mp3"], "'output_format'"),
        (["--filetype", "imagez", "--to", "webp"], "'filetype'"),
        (["--filetype", "image", "--to", "webp", "--options", "{width"], "not valid JSON"),
        (["--filetype", "image", "--to", "png", "--options", '{"ocr": true}'], "pdf output"),
    ]
    for args, named_ in bad:
        proc = cli("add", "broken", *args, ok=False)
        assert named_ in proc.stderr, proc.stderr
    assert cli("add", "bad name!", "--filetype", "image", "--to", "png", ok=False).returncode == 2
    assert "broken" not in cli("list").stdout
    # Taken names, saved or built in (in any case), need --replace, which says what it replaced.
    taken = cli("add", "web-small", "--filetype", "image", "--to", "png", ok=False).stderr
    assert "'web-small' is already a saved preset" in taken and "--replace" in taken
    assert "PATCH" not in taken
    replaced = cli("add", "web-small", "--filetype", "image", "--to", "png", "--replace").stderr
    assert "Replaced the saved preset 'web-small' (image -> webp" in replaced
    builtin = cli("add", "Web-Photo", "--filetype", "image", "--to", "png", ok=False).stderr
    assert "'web-photo' is already a built-in preset" in builtin and "--replace" in builtin
    assert json.loads(cli("show", "web-photo", "--json").stdout)["source"] == "builtin"
    replaced = cli(
        "add",
        "web-photo",
        "--filetype",
        "image",
        "--to",
        "jpg",
        "--options",
        '{"width": 800}',
        "--replace",
    ).stderr
    assert "Replaced the built-in preset 'web-photo' (image -> webp" in replaced
    shown = json.loads(cli("show", "web-photo").stdout)
    assert shown["output_format"] == "jpg" and "replaces the built-in" in shown["note"]
    # A filetype that is not a string says what it must be.
    odd = cli("add", "odd", "--filetype", " ", "--to", "png", ok=False).stderr
    assert "must be a string naming a filetype: image, audio, video, document" in odd

    assert "in force again" in cli("remove", "web-photo").stdout
    assert json.loads(cli("show", "web-photo").stdout)["source"] == "builtin"
    assert "built in" in cli("remove", "web-photo", ok=False).stderr
    cli("remove", "web-small")
    gone = cli("show", "web-small", ok=False).stderr
    assert "No preset named 'web-small'" in gone and "web-photo" in gone


# ----- /v2/presets -----


def test_v2_presets_crud_with_scopes(daemon: Daemon, key: str) -> None:
    reader = daemon.create_key("presets-reader", "--plan", "pro", "--scope", "user.read")
    worker = daemon.create_key("presets-worker", "--plan", "pro", "--scope", "task.write")

    listed = call(daemon, reader, "GET", "/v2/presets")
    assert listed.status_code == 200, listed.text
    assert {p["name"] for p in listed.json()["data"]} >= BUILTINS
    assert call(daemon, worker, "GET", "/v2/presets").status_code == 403
    web = call(daemon, reader, "GET", "/v2/presets/web-photo").json()["data"]
    assert web["output_format"] == "webp" and web["source"] == "builtin"
    assert web["options"]["strip_metadata"] is True

    body = {
        "name": "crud-thumb",
        "filetype": "image",
        "output_format": "png",
        "options": {"width": 64, "fit": "inside"},
        "description": "small",
    }
    assert call(daemon, reader, "POST", "/v2/presets", json=body).status_code == 403
    made = call(daemon, key, "POST", "/v2/presets", json=body)
    assert made.status_code == 201, made.text
    assert made.json()["data"]["source"] == "database"
    again = call(daemon, key, "POST", "/v2/presets", json=body)
    assert again.status_code == 409 and "already a saved preset" in again.json()["message"]
    assert "PATCH /v2/presets/crud-thumb" in again.json()["message"]
    # A built-in's name, in any case, needs "replace": true (or a PATCH).
    builtin_body = {"name": "Web-Photo", "filetype": "image", "output_format": "png"}
    taken = call(daemon, key, "POST", "/v2/presets", json=builtin_body)
    assert taken.status_code == 409 and "already a built-in" in taken.json()["message"]
    assert call(daemon, key, "GET", "/v2/presets/web-photo").json()["data"]["source"] == "builtin"
    # Each bad field is named as itself in `errors`.
    for field, value, words in [
        ("name", "../x", "preset's name is 1-64 letters"),
        ("filetype", ["image"], "must be a string naming a filetype: image, audio, video"),
        ("replace", "yes", "true or false"),
    ]:
        wrong = call(daemon, key, "POST", "/v2/presets", json={**body, field: value})
        assert wrong.status_code == 422, wrong.text
        assert list(wrong.json()["errors"]) == [field], wrong.json()
        assert words in wrong.json()["errors"][field][0]

    bad = call(
        daemon, key, "POST", "/v2/presets", json={**body, "name": "x", "options": {"width": 0}}
    )
    assert bad.status_code == 422, bad.text
    assert "'width' must be at least 1" in bad.json()["message"]
    assert "options" in bad.json()["errors"]
    extra = call(daemon, key, "POST", "/v2/presets", json={**body, "name": "y", "colour": 1})
    assert extra.status_code == 422 and "colour" in extra.json()["errors"]

    # PATCH: options by JSON Merge Patch (null removes one); checked again.
    patched = call(
        daemon, key, "PATCH", "/v2/presets/crud-thumb", json={"options": {"width": 32, "fit": None}}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"]["options"] == {"width": 32}
    refused = call(daemon, key, "PATCH", "/v2/presets/crud-thumb", json={"output_format": "mp3"})
    assert refused.status_code == 422 and "output_format" in refused.json()["errors"]
    assert call(daemon, reader, "PATCH", "/v2/presets/crud-thumb", json={}).status_code == 403

    assert call(daemon, reader, "DELETE", "/v2/presets/crud-thumb").status_code == 403
    assert call(daemon, key, "DELETE", "/v2/presets/crud-thumb").status_code == 204
    missing = call(daemon, key, "GET", "/v2/presets/crud-thumb")
    assert missing.status_code == 404 and "web-photo" in missing.json()["message"]
    builtin = call(daemon, key, "DELETE", "/v2/presets/podcast-mp3")
    assert builtin.status_code == 409 and "built in" in builtin.json()["message"]

    # A built-in changed without a description no longer states the old values.
    changed = call(daemon, key, "PATCH", "/v2/presets/web-photo", json={"options": {"quality": 60}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["data"]["description"] == "Changed from the built-in 'web-photo'"
    assert changed.json()["data"]["options"]["quality"] == 60
    replaced = call(daemon, key, "POST", "/v2/presets", json={**builtin_body, "replace": True})
    assert replaced.status_code == 201 and replaced.json()["data"]["output_format"] == "png"
    assert call(daemon, key, "DELETE", "/v2/presets/web-photo").status_code == 204


# ----- using presets -----


def test_preset_on_v1_convert_with_overrides(daemon: Daemon, key: str) -> None:
    photo = photo_with_exif()
    with Image.open(io.BytesIO(photo)) as im:
        assert im.getexif()[0x0110] == "Phone 12"
    out = v1_result(daemon, key, photo, "photo.jpg", preset="web-photo")
    with Image.open(io.BytesIO(out.content)) as im:
        assert im.format == "WEBP" and im.size == (2048, 1365)
        assert not im.getexif() and "icc_profile" not in im.info

    # The request's own output format and options win; the preset fills in the rest.
    out = v1_result(
        daemon,
        key,
        photo,
        "photo.jpg",
        preset="web-photo",
        output_format="jpg",
        options={"width": 600, "height": 600},
    )
    with Image.open(io.BytesIO(out.content)) as im:
        assert im.format == "JPEG" and im.size == (600, 400) and not im.getexif()

    # An override the preset's options do not fit is the 400 a conversion gets, preset named.
    resp = v1_convert(daemon, key, photo, "photo.jpg", preset="scan-to-pdf", output_format="png")
    assert resp.status_code == 400
    # Worded as the README has it.
    assert (
        "option 'ocr' applies only to pdf output (with preset 'scan-to-pdf')"
        in resp.json()["message"]
    )


def test_unknown_preset_is_refused_naming_the_known_ones(daemon: Daemon, key: str) -> None:
    resp = v1_convert(daemon, key, image_bytes(), "a.png", preset="no-such-thing")
    assert resp.status_code == 400
    message = resp.json()["message"]
    assert "'no-such-thing'" in message and "web-photo" in message
    resp = v1_convert(daemon, key, image_bytes(), "a.png", preset="x" * 5000)
    assert resp.status_code == 400 and len(resp.json()["message"]) < 1000

    job = call(
        daemon,
        key,
        "POST",
        "/v2/jobs",
        json={
            "tasks": {
                "in": b64("a.png", image_bytes()),
                "conv": {"operation": "convert", "input": "in", "preset": "nope"},
            }
        },
    )
    assert job.status_code == 422, job.text
    assert "web-photo" in job.json()["errors"]["tasks.conv.preset"][0]


def test_preset_in_a_v2_job_and_on_v2_convert(daemon: Daemon, key: str) -> None:
    job = call(
        daemon,
        key,
        "POST",
        "/v2/jobs",
        json={
            "tasks": {
                "in": b64("photo.jpg", photo_with_exif((1000, 500))),
                # CloudConvert's names override the preset's: `strip` is strip_metadata.
                "conv": {
                    "operation": "convert",
                    "input": "in",
                    "preset": "web-photo",
                    "width": 400,
                    "height": 400,
                    "strip": False,
                },
                "out": {"operation": "export/url", "input": "conv"},
            }
        },
    )
    assert job.status_code == 201, job.text
    done = wait_job(daemon, key, job.json()["data"]["id"])
    conv = named(done, "conv")
    assert conv["status"] == "finished", conv
    assert conv["payload"]["preset"] == "web-photo"
    with Image.open(io.BytesIO(exported(done))) as im:
        assert im.format == "WEBP" and im.size == (400, 200)
        assert im.getexif()[0x0110] == "Phone 12"  # strip: false won

    # A convert task on its own (POST /v2/convert) takes one too.
    made = call(daemon, key, "POST", "/v2/import/base64", json=b64("s.png", scanned_page()))
    assert made.status_code == 201, made.text
    task = call(
        daemon,
        key,
        "POST",
        "/v2/convert",
        json={"input": made.json()["data"]["id"], "preset": "scan-to-pdf"},
    )
    assert task.status_code == 201, task.text
    assert task.json()["data"]["payload"]["output_format"] == "pdf"


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_each_builtin_converts_a_real_file(
    daemon: Daemon, key: str, tmp_path: Path, name: str
) -> None:
    if name == "web-photo":
        out = v1_result(daemon, key, photo_with_exif((4000, 3000)), "p.jpg", preset=name)
        with Image.open(io.BytesIO(out.content)) as im:
            assert im.format == "WEBP" and im.size == (2048, 1536) and not im.getexif()
    elif name == "phone-video":
        source = make_video(tmp_path / "clip.mkv", 1.0, "1920x1080").read_bytes()
        out = v1_result(daemon, key, source, "clip.mkv", preset=name)
        info = ffprobe(out.content, tmp_path, "out.mp4")
        (video,), (audio,) = streams(info, "video"), streams(info, "audio")
        assert (video["codec_name"], video["width"], video["height"]) == ("h264", 1280, 720)
        assert audio["codec_name"] == "aac"
        assert "mp4" in info["format"]["format_name"]
    elif name == "podcast-mp3":
        source = make_audio(tmp_path / "talk.wav", 4.0).read_bytes()
        out = v1_result(daemon, key, source, "talk.wav", preset=name)
        (audio,) = streams(ffprobe(out.content, tmp_path, "out.mp3"), "audio")
        assert audio["codec_name"] == "mp3" and audio["channels"] == 1
        assert int(audio["bit_rate"]) == 64000
    elif name == "archive-pdfa":
        source = (CORPUS / "document" / "word2013-numbered-lists.docx").read_bytes()
        out = v1_result(daemon, key, source, "lists.docx", preset=name)
        reader = pypdf.PdfReader(io.BytesIO(out.content))
        xmp = reader.xmp_metadata
        assert xmp is not None
        assert xmp.rdf_root.getElementsByTagName("rdf:Description")
        raw = reader.trailer["/Root"]["/Metadata"].get_object().get_data().decode()
        assert 'pdfaid:part="2"' in raw or "<pdfaid:part>2</pdfaid:part>" in raw
    else:
        out = v1_result(daemon, key, scanned_page(), "scan.png", preset=name)
        text = pdftotext(out.content, tmp_path).lower()
        assert all(word in text for word in SCANNED_WORDS), text


# ----- the config file and watch rules -----


def test_toml_presets_and_watch_rules_naming_presets(make_daemon: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    # A database preset, saved before the daemon starts, for the second rule.
    run_cli(
        data,
        "presets",
        "add",
        "tiny-png",
        "--filetype",
        "image",
        "--to",
        "png",
        "--options",
        '{"width": 10}',
    )
    thumbs, small, out = tmp_path / "thumbs", tmp_path / "small", tmp_path / "out"
    stepped = tmp_path / "stepped"
    config = write_config(
        tmp_path / "c.toml",
        f"""
[[preset]]
name = "thumb-jpg"
filetype = "image"
output_format = "jpg"
options = {{ width = 20, quality = 70 }}
description = "tiny thumbnails"

[[watch]]
name = "thumbs"
folder = "{thumbs}"
output = "{out / "thumbs"}"
preset = "thumb-jpg"
options = {{ quality = 90 }}

[[watch]]
name = "small"
folder = "{small}"
output = "{out / "small"}"
preset = "tiny-png"

[[watch]]
name = "stepped"
folder = "{stepped}"
output = "{out / "stepped"}"
steps = [{{ operation = "convert", preset = "thumb-jpg", width = 12 }}]
""",
    )
    for folder in (thumbs, small, stepped):
        folder.mkdir()
    d = make_daemon(env={**FAST, "CONVERTD_CONFIG": str(config)}, data_dir=data)
    write_png(thumbs / "a.png", (40, 30))
    write_png(small / "b.png", (40, 30))
    write_png(stepped / "c.png", (40, 30))
    wait_for(lambda: files(out / "thumbs") == ["a.jpg"], what="the thumbs rule's output")
    wait_for(lambda: files(out / "small") == ["b.png"], what="the small rule's output")
    with Image.open(out / "thumbs" / "a.jpg") as im:
        assert im.size == (20, 15)
    with Image.open(out / "small" / "b.png") as im:
        assert im.size == (10, 8)
    wait_for(lambda: files(out / "stepped") == ["c.jpg"], what="the stepped rule's output")
    with Image.open(out / "stepped" / "c.jpg") as im:
        assert im.size == (12, 9)

    key = d.create_key("toml", "--plan", "pro")
    shown = call(d, key, "GET", "/v2/presets/thumb-jpg").json()["data"]
    assert shown["source"] == "config" and shown["description"] == "tiny thumbnails"
    body = {"name": "thumb-jpg", "filetype": "image", "output_format": "png"}
    assert call(d, key, "POST", "/v2/presets", json=body).status_code == 409
    assert call(d, key, "PATCH", "/v2/presets/thumb-jpg", json={}).status_code == 409
    assert call(d, key, "DELETE", "/v2/presets/thumb-jpg").status_code == 409
    # The database preset a rule uses cannot be removed under it.
    in_use = call(d, key, "DELETE", "/v2/presets/tiny-png")
    assert in_use.status_code == 409 and "'small'" in in_use.json()["message"]
    out_v1 = v1_result(d, key, image_bytes("PNG", (80, 60)), "c.png", preset="thumb-jpg")
    with Image.open(io.BytesIO(out_v1.content)) as im:
        assert im.format == "JPEG" and im.size == (20, 15)


@pytest.mark.parametrize(
    ("text", "named_"),
    [
        (
            '[[preset]]\nname = "bad"\nfiletype = "image"\noutput_format = "webp"\n'
            "options = { quality = 500 }\n",
            "'quality'",
        ),
        ('[[preset]]\nname = "bad"\nfiletype = "image"\n', "'output_format'"),
        ('[[preset]]\nname = "Bad Name"\nfiletype = "image"\noutput_format = "png"\n', "name"),
        (
            '[[watch]]\nname = "rule-x"\nfolder = "/tmp/in-x"\noutput = "/tmp/out-x"\n'
            'preset = "nope"\n',
            "'nope'; known presets: archive-pdfa",
        ),
        (
            '[[watch]]\nname = "rule-y"\nfolder = "/tmp/in-y"\noutput = "/tmp/out-y"\n'
            'preset = "web-photo"\noutput_format = "mp3"\n',
            "rule-y",
        ),
    ],
)
def test_bad_presets_and_unknown_rule_presets_stop_start_up(
    tmp_path: Path, text: str, named_: str
) -> None:
    stderr = serve_refuses(write_config(tmp_path / "c.toml", text), tmp_path / "d")
    assert named_ in stderr, stderr


def test_admin_commands_without_the_config_never_stop_the_next_start(
    make_daemon: Any, tmp_path: Path
) -> None:
    """The CLI run without --config (as an admin does) cannot know the config file: a preset it
    saves under a config preset's name is shadowed (a warning), not a refused start; a saved
    preset a watch rule uses cannot be removed, since the daemon recorded its rules' presets.
    And a rule takes its preset as it is when each file is taken."""
    data = tmp_path / "d"
    run_cli(
        data,
        "presets",
        "add",
        "web-small",
        "--filetype",
        "image",
        "--to",
        "png",
        "--options",
        '{"width": 40}',
    )
    small, out = tmp_path / "small", tmp_path / "out"
    small.mkdir()
    config = write_config(
        tmp_path / "c.toml",
        f"""
[[preset]]
name = "thumb"
filetype = "image"
output_format = "jpg"

[[watch]]
name = "small"
folder = "{small}"
output = "{out}"
preset = "web-small"
""",
    )
    env = {**FAST, "CONVERTD_CONFIG": str(config)}
    d = make_daemon(env=env, data_dir=data)
    write_png(small / "a.png", (80, 60))
    wait_for(lambda: files(out) == ["a.png"], what="the first output")
    with Image.open(out / "a.png") as im:
        assert im.size == (40, 30)

    # Changed through the API while the daemon runs: the next file takes the new options.
    key = d.create_key("admin", "--plan", "pro")
    patched = call(d, key, "PATCH", "/v2/presets/web-small", json={"options": {"width": 20}})
    assert patched.status_code == 200, patched.text
    write_png(small / "b.png", (80, 60))
    wait_for(lambda: "b.png" in files(out), what="the second output")
    with Image.open(out / "b.png") as im:
        assert im.size == (20, 15)

    # The CLI, without the daemon's config: the config's name saved, the rule's preset kept.
    assert run_cli(data, "presets", "add", "thumb", "--filetype", "image", "--to", "png")
    kept = run_cli(data, "presets", "remove", "web-small", check=False)
    assert kept.returncode == 1 and "used by the watch rule 'small'" in kept.stderr
    in_use = call(d, key, "DELETE", "/v2/presets/web-small")
    assert in_use.status_code == 409 and "'small'" in in_use.json()["message"]

    # The restart works; the config's 'thumb' wins, with a warning.
    assert d.stop() == 0
    d = make_daemon(env=env, data_dir=data)
    assert "'thumb' is both in the config file and in the database: the config's" in d.log()
    key = d.create_key("admin2", "--plan", "pro")
    assert call(d, key, "GET", "/v2/presets/thumb").json()["data"]["output_format"] == "jpg"
    listed = run_cli(data, "presets", "list", "--config", str(config))
    assert "the saved preset 'thumb' is not in force" in listed.stderr
    assert "database (shadowed)" in listed.stdout
    as_json = json.loads(run_cli(data, "presets", "list", "--json", "--config", str(config)).stdout)
    shadowed = [p for p in as_json if p["name"] == "thumb" and p["source"] == "database"]
    assert shadowed and "not in force" in shadowed[0]["note"]
    # The shadowed copy may go; the config's stays.
    run_cli(data, "presets", "remove", "thumb", "--config", str(config))
    assert "shadowed" not in run_cli(data, "presets", "list", "--config", str(config)).stdout

    # A preset gone under a rule anyway (here by hand in SQLite) fails that file, not the daemon.
    conn = sqlite3.connect(data / "convertd.db")
    conn.execute("DELETE FROM presets WHERE name = 'web-small'")
    conn.commit()
    conn.close()
    write_png(small / "c.png", (80, 60))
    failed = out / "failed"
    wait_for(lambda: "c.png.error.txt" in files(failed), what="the failed report")
    report = (failed / "c.png.error.txt").read_text()
    assert "No preset named 'web-small'" in report, report
    assert call(d, key, "GET", "/v2/presets").status_code == 200


def test_the_cli_given_the_config_will_not_save_its_names(tmp_path: Path) -> None:
    data = tmp_path / "d"
    config = write_config(
        tmp_path / "c.toml",
        '[[preset]]\nname = "twice"\nfiletype = "image"\noutput_format = "jpg"\n',
    )
    # The CLI will not add a name the config holds.
    proc = run_cli(
        data,
        "presets",
        "add",
        "twice",
        "--filetype",
        "image",
        "--to",
        "png",
        "--replace",
        "--config",
        str(config),
        check=False,
    )
    assert proc.returncode == 2 and "config file" in proc.stderr


def test_local_convert_takes_a_preset(tmp_path: Path) -> None:
    data = tmp_path / "d"
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photo_with_exif((3000, 1500)))
    run_cli(
        data,
        "presets",
        "add",
        "half",
        "--filetype",
        "image",
        "--to",
        "png",
        "--options",
        '{"width": 300}',
    )
    run_cli(data, "convert", str(photo), "--preset", "web-photo")
    with Image.open(tmp_path / "photo.webp") as im:
        assert im.size == (2048, 1024) and not im.getexif()
    # A saved preset, with the command line's own options over it.
    run_cli(data, "convert", str(photo), "--preset", "half", "--options", '{"width": 100}')
    with Image.open(tmp_path / "photo.png") as im:
        assert im.size == (100, 50)
    proc = run_cli(data, "convert", str(photo), "--preset", "nope", check=False)
    assert proc.returncode == 2 and "known presets: archive-pdfa" in proc.stderr
