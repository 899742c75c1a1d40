"""GET /metrics, end to end: a real daemon runs real jobs, Prometheus' own text parser reads the
scrape, and the counts move with the jobs; labels never carry a job id, a file name or a path;
only a key with the `metrics` scope may scrape, uncounted; the endpoint can be turned off."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from convertd import __version__
from convertd.converters.registry import FILETYPES
from convertd.metrics import MAX_KEY_NAMES, OTHER, Metrics, Readings
from convertd.store.migrations import SCHEMA_VERSION
from tests.conftest import ROOT, Daemon, image_bytes
from tests.media import make_video
from tests.test_v2_api import call, job_of, named, wait_job, wait_task
from tests.test_v2_operations import b64, blank_pdf
from tests.webhook_receiver import Receiver

QUIET = {"CONVERTD_OFFICE_PREWARM": "false"}
DROPS = {**QUIET, "CONVERTD_DROP_SETTLE_SECONDS": "0.3", "CONVERTD_DROP_SCAN_SECONDS": "1"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics_url(d: Daemon) -> str:
    return f"http://127.0.0.1:{d.port}/metrics"


def scrape(d: Daemon, key: str) -> Samples:
    """Every sample of a scrape, parsed by prometheus_client's own parser."""
    resp = requests.get(metrics_url(d), headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def wait_for(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def scrape_until(d: Daemon, key: str, check: Any, what: str) -> Samples:
    """Scrape until `check(samples)` holds; those samples."""
    found: list[Samples] = []

    def holds() -> bool:
        found[:] = [scrape(d, key)]
        return bool(check(found[0]))

    wait_for(holds, what)
    return found[0]


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_the_counts_move_with_real_jobs(make_daemon: Any) -> None:
    d = make_daemon(env=DROPS)
    prom = d.create_key("prometheus", "--scope", "metrics")
    user = d.create_key("alice", "--plan", "pro")
    before = scrape(d, prom)

    # Three jobs through the API: a hash, an image conversion, and one that fails.
    png = image_bytes("PNG", (64, 48))
    bad = b"this is not a png at all"
    job_ids = []
    status, _ = d.convert_and_fetch(user, b"hello", "note-to-self.txt", "hash", "md5")
    assert status["status"] == "finished"
    job_ids.append(status["job_id"])
    status, out = d.convert_and_fetch(user, png, "holiday-photo.png", "image", "jpg")
    assert status["status"] == "finished" and out is not None
    with Image.open(io.BytesIO(out.content)) as im:
        assert im.format == "JPEG" and im.size == (64, 48)
    job_ids.append(status["job_id"])
    status, _ = d.convert_and_fetch(user, bad, "broken-scan.png", "image", "gif")
    assert status["status"] == "failed"
    job_ids.append(status["job_id"])

    # A key on a plan of one call a minute: of three calls, at least one is refused (two
    # windows at most, so one of them sees two calls).
    d.cli("plans", "set", "trickle", "--api", "--calls-per-minute", "1")
    trickle = d.create_key("trickle-client", "--plan", "trickle")
    codes = [
        requests.get(f"{d.base}/keys/me", headers={"X-API-Key": trickle}, timeout=10).status_code
        for _ in range(3)
    ]
    assert 429 in codes and set(codes) <= {200, 429}

    # The drop folder: one file converted, one that fails, one symbolic link skipped.
    root = d.data_dir / "drop"
    inbox = root / "inbox" / "webp"
    inbox.mkdir(parents=True, exist_ok=True)
    (root / "elsewhere.png").write_bytes(png)
    os.symlink(root / "elsewhere.png", inbox / "linked-picture.png")
    (inbox / "dropped-picture.png").write_bytes(png)
    (inbox / "garbage-drop.png").write_bytes(bad)
    wait_for(lambda: files(root / "outbox") == ["dropped-picture.webp"], "the dropped file")
    with Image.open(root / "outbox" / "dropped-picture.webp") as im:
        assert im.format == "WEBP"
    wait_for(lambda: "garbage-drop.png" in files(root / "failed" / "webp"), "the failed drop")
    after = scrape_until(
        d,
        prom,
        lambda s: (
            value(s, "convertd_drop_files_total", outcome="failed") >= 1
            and value(s, "convertd_drop_files_skipped") >= 1
            and value(s, "convertd_drop_files_in_progress") == 0
        ),
        "the drops in the metrics",
    )

    # Jobs by filetype, output format and final state; durations by filetype.
    jobs = "convertd_jobs_total"
    assert moved(before, after, jobs, filetype="hash", output_format="md5", state="finished") == 1
    assert moved(before, after, jobs, filetype="image", output_format="jpg", state="finished") == 1
    assert moved(before, after, jobs, filetype="image", output_format="gif", state="failed") == 1
    assert moved(before, after, jobs, filetype="image", output_format="webp", state="finished") == 1
    assert moved(before, after, "convertd_job_duration_seconds_count", filetype="hash") == 1
    assert moved(before, after, "convertd_job_duration_seconds_count", filetype="image") >= 3
    assert value(after, "convertd_job_duration_seconds_sum", filetype="image") > 0
    assert value(after, "convertd_jobs_queued") == 0
    assert value(after, "convertd_jobs_running") == 0
    assert value(after, "convertd_jobs_oldest_queued_seconds") == 0

    # HTTP by route template and status, with latencies; 429s by key name; upload bytes.
    http = "convertd_http_requests_total"
    convert = {"method": "POST", "route": "/v1/convert"}
    assert moved(before, after, http, **convert, status="202") == 3
    assert moved(before, after, "convertd_http_request_duration_seconds_count", **convert) == 3
    status_route = {"method": "GET", "route": "/v1/status/{job_id}", "status": "200"}
    assert moved(before, after, http, **status_route) >= 3
    me = {"method": "GET", "route": "/v1/keys/me"}
    assert moved(before, after, http, **me, status="429") == codes.count(429)
    assert value(after, "convertd_rate_limited_requests_total", key="trickle-client") == (
        codes.count(429)
    )
    assert moved(before, after, "convertd_upload_bytes_total") == len(b"hello") + len(png) + len(
        bad
    )

    # Drop-folder files that ended, and what the watcher skips.
    assert moved(before, after, "convertd_drop_files_total", outcome="done") == 1
    assert moved(before, after, "convertd_drop_files_total", outcome="failed") == 1
    assert value(after, "convertd_drop_files_skipped") == 1
    assert value(after, "convertd_drop_files_waiting") == 0

    assert value(after, "convertd_build_info", version=__version__, schema=str(SCHEMA_VERSION))

    # A path no route matches is counted as "unmatched", its path nowhere.
    lost = requests.get(f"{d.base}/no-such-thing-{job_ids[0]}", timeout=10)
    assert lost.status_code == 404
    final = scrape(d, prom)
    assert moved(after, final, http, method="GET", route="unmatched", status="404") == 1

    # No label carries a job id, a file name or a raw path.
    names = ["note-to-self", "holiday-photo", "broken-scan", "dropped-picture", "garbage-drop"]
    names.append("linked-picture")
    labels = {v for (_, pairs) in final for _, v in pairs}
    for forbidden in [*job_ids, *names]:
        assert not [v for v in labels if forbidden in v], forbidden
    routes = {v for (_, pairs) in final for k, v in pairs if k == "route"}
    assert routes >= {"/v1/convert", "/v1/status/{job_id}", "/v1/download/{job_id}", "unmatched"}
    filetypes = {v for (_, pairs) in final for k, v in pairs if k == "filetype"}
    assert filetypes <= {*FILETYPES, "pipeline", OTHER}


def test_only_a_metrics_key_scrapes_and_scrapes_are_not_counted(make_daemon: Any) -> None:
    d = make_daemon(env=QUIET, workers=0)  # nothing runs: what is sent stays queued
    d.cli("plans", "set", "trickle", "--api", "--calls-per-minute", "1")
    prom = d.create_key("prometheus", "--plan", "trickle", "--scope", "metrics")
    user = d.create_key("alice", "--plan", "pro")

    assert requests.get(metrics_url(d), timeout=10).status_code == 401
    wrong = requests.get(metrics_url(d), headers={"X-API-Key": "cvd_" + "x" * 43}, timeout=10)
    assert wrong.status_code == 401
    # A key made without --scope has CloudConvert's scopes, not this one.
    unscoped = requests.get(metrics_url(d), headers={"X-API-Key": user}, timeout=10)
    assert unscoped.status_code == 403
    assert "metrics scope" in unscoped.json()["message"]
    # And a metrics key can do nothing else.
    refused = d.convert(prom, b"hello", "a.txt", "hash", "md5")
    assert refused.status_code == 403
    assert "metrics" in d.cli("keys", "list").stdout

    for _ in range(2):
        assert d.convert(user, b"queued", "a.txt", "hash", "md5").status_code == 202
    # On a plan of one call a minute, scrape after scrape answers: they are not counted.
    for _ in range(3):
        samples = scrape(d, prom)
    assert value(samples, "convertd_jobs_queued") == 2
    assert value(samples, "convertd_jobs_running") == 0
    assert value(samples, "convertd_jobs_oldest_queued_seconds") > 0


def test_metrics_can_be_turned_off(make_daemon: Any) -> None:
    d = make_daemon(env={**QUIET, "CONVERTD_METRICS_ENABLED": "false"}, workers=0)
    prom = d.create_key("prometheus", "--scope", "metrics")
    resp = requests.get(metrics_url(d), headers={"X-API-Key": prom}, timeout=10)
    assert resp.status_code == 404
    assert resp.json()["error"] == "Not Found"
    assert requests.get(f"{d.base}/", timeout=10).status_code == 200


def samples_of(metrics: Metrics) -> Samples:
    from prometheus_client import generate_latest

    metrics.show(Readings())
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_labels_stay_bounded() -> None:
    metrics = Metrics()
    metrics.know(["image"], ["png"])
    metrics.job_ended("image", "png", "finished", 0.5)
    metrics.job_ended("made-up-type", "../../etc/passwd", "finished", 0.5)
    metrics.request_answered("BREW", "/v1/", 418, 0.001)
    for n in range(MAX_KEY_NAMES + 5):
        metrics.rate_limited(f"key-{n}")
    samples = samples_of(metrics)
    jobs = "convertd_jobs_total"
    assert value(samples, jobs, filetype="image", output_format="png", state="finished") == 1
    assert value(samples, jobs, filetype=OTHER, output_format=OTHER, state="finished") == 1
    assert value(samples, "convertd_http_requests_total", method=OTHER, route="/v1/", status="418")
    keys = {dict(pairs)["key"] for name, pairs in samples if name.startswith("convertd_rate")}
    assert len(keys) == MAX_KEY_NAMES + 1
    assert value(samples, "convertd_rate_limited_requests_total", key=OTHER) == 5


def test_a_recording_that_fails_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    with caplog.at_level(logging.ERROR, logger="convertd.metrics"):
        metrics.job_ended("image", "png", "finished", "not a number")  # type: ignore[arg-type]
        metrics.uploaded(-1)  # a counter refuses to go down
    assert "job_ended failed" in caplog.text and "uploaded failed" in caplog.text


SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "info": ["_info"]}


def exported_names() -> dict[str, set[str]]:
    """Each metric family convertd defines, with the sample names it is queried by."""
    return {
        family.name: {family.name + s for s in SUFFIXES.get(family.type, [""])}
        for family in Metrics().registry.collect()
    }


def test_the_dashboard_and_the_readme_use_the_exact_names() -> None:
    dashboard = json.loads((ROOT / "packaging" / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"\bconvertd_\w+", expr)}
    families = exported_names()
    known = set().union(*families.values())
    assert used <= known, used - known
    # Every metric has a panel, and a line in the README's table.
    assert [f for f, names in families.items() if not names & used] == []
    readme = (ROOT / "README.md").read_text()
    missing = [
        f for f, names in families.items() if not any(f"`{n}`" in readme for n in {f, *names})
    ]
    assert missing == []
    # The scrape block in the README is a valid one.
    assert "authorization:\n      type: Bearer" in readme


def test_a_job_stopped_while_it_runs_counts_as_cancelled(make_daemon: Any, tmp_path: Path) -> None:
    # Revoking a key stops its running job (the worker kills FFmpeg): the job ends here as
    # cancelled, not as failed or finished.
    d = make_daemon(env=QUIET, workers=1)
    prom = d.create_key("prometheus", "--scope", "metrics")
    leaver = d.create_key("leaver", "--plan", "pro")
    clip = make_video(
        tmp_path / "long.mp4", 20.0, "640x360", "-c:v", "libx264", "-preset", "ultrafast"
    )
    options = {"video_codec": "vp9", "crf": 4}
    job = d.convert(leaver, clip.read_bytes(), "long.mp4", "video", "webm", options).json()
    wait_for(lambda: value(scrape(d, prom), "convertd_jobs_running") == 1, "the transcode to start")
    listing = json.loads(d.cli("keys", "list", "--json").stdout)
    d.cli("keys", "revoke", str(next(k["key_id"] for k in listing if k["name"] == "leaver")))
    cancelled = {"filetype": "video", "output_format": "webm", "state": "cancelled"}
    after = scrape_until(
        d,
        prom,
        lambda s: value(s, "convertd_jobs_total", **cancelled) == 1,
        "the cancelled job in the metrics",
    )
    assert (
        value(after, "convertd_jobs_total", filetype="video", output_format="webm", state="failed")
        == 0
    )
    assert value(after, "convertd_jobs_running") == 0
    assert value(after, "convertd_job_duration_seconds_count", filetype="video") == 1
    assert job["job_id"] not in str(after)


def test_libreoffice_and_webhook_deliveries(make_daemon: Any, receiver: Receiver) -> None:
    env = {
        **QUIET,
        "CONVERTD_OFFICE_INSTANCES": "1",
        "CONVERTD_OFFICE_RECYCLE_AFTER": "1",  # every document recycles its instance
        "CONVERTD_WEBHOOK_RETRY_SECONDS": "0.2,0.2",  # three tries in all
    }
    d = make_daemon(env=env, workers=1)
    prom = d.create_key("prometheus", "--scope", "metrics")
    user = d.create_key("alice", "--plan", "pro")
    assert value(scrape(d, prom), "convertd_office_instances") == 0  # started on first use

    # A document through warm LibreOffice; its webhook answered 500 once, then 200.
    receiver.answers = [500]
    text = b"Quarterly notes\nsecond line\n"
    resp = requests.post(
        f"{d.base}/convert",
        headers={"X-API-Key": user},
        files={"file": ("notes.txt", text)},
        data={"filetype": "document", "output_format": "pdf", "callback": receiver.url},
        timeout=30,
    )
    assert resp.status_code == 202, resp.text
    status = d.wait(user, resp.json()["job_id"])
    assert status["status"] == "finished", status
    pdf = requests.get(status["download_url"], timeout=30).content
    assert pdf.startswith(b"%PDF")
    receiver.wait_for(1, what="job.finished")

    def tried(outcome: str, count: int) -> Any:
        return lambda s: value(s, "convertd_webhook_tries_total", outcome=outcome) == count

    after = scrape_until(d, prom, tried("delivered", 1), "the delivery in the metrics")
    assert value(after, "convertd_webhook_tries_total", outcome="retry") == 1
    assert value(after, "convertd_webhook_deliveries", state="pending") == 0
    jobs = "convertd_jobs_total"
    assert value(after, jobs, filetype="document", output_format="pdf", state="finished") == 1
    assert value(after, "convertd_office_recycles_total") == 1
    assert value(after, "convertd_office_instances_busy") == 0
    assert value(after, "convertd_office_restarts_total", reason="crashed") == 0

    # A receiver that never says yes: tried three times, then given up, and on record.
    receiver.answers = [500, 500, 500]
    refused = requests.post(
        f"{d.base}/convert",
        headers={"X-API-Key": user},
        files={"file": ("b.txt", b"y")},
        data={"filetype": "hash", "output_format": "sha1", "callback": receiver.url},
        timeout=30,
    )
    assert refused.status_code == 202, refused.text
    after = scrape_until(d, prom, tried("failed", 1), "the given-up delivery in the metrics")
    assert value(after, "convertd_webhook_tries_total", outcome="retry") == 3
    assert value(after, "convertd_webhook_deliveries", state="failed") == 1
    assert value(after, "convertd_webhook_deliveries", state="pending") == 0


def present(samples: Samples, name: str, **labels: str) -> bool:
    return (name, frozenset(labels.items())) in samples


def test_v2_operations_count_as_tasks_and_series_start_at_zero(make_daemon: Any) -> None:
    d = make_daemon(env=QUIET)
    prom = d.create_key("prometheus", "--scope", "metrics")
    user = d.create_key("alice", "--plan", "pro")
    before = scrape(d, prom)
    # Known label sets are there at 0 before anything happened, so increase() sees a first
    # failure: the jobs of each filetype's formats, the engine's operations.
    for state in ("finished", "failed", "cancelled"):
        assert present(
            before, "convertd_jobs_total", filetype="image", output_format="gif", state=state
        )
        assert present(before, "convertd_tasks_total", operation="ocr", state=state)
    assert present(before, "convertd_job_duration_seconds_count", filetype="hash")
    assert present(before, "convertd_task_duration_seconds_count", operation="metadata/write")
    assert (
        value(before, "convertd_jobs_total", filetype="image", output_format="gif", state="failed")
        == 0
    )

    # A merge that finishes and a thumbnail of garbage that fails, run by the task engine.
    pdf = blank_pdf((50, 60))
    job = job_of(
        d,
        user,
        {
            "a": b64("a.pdf", pdf),
            "b": b64("b.pdf", pdf),
            "m": {"operation": "merge", "input": ["a", "b"], "output_format": "pdf"},
            "junk": b64("junk.png", b"not a picture at all"),
            "t": {"operation": "thumbnail", "input": "junk", "output_format": "png"},
        },
    )
    # The job is in error as soon as the thumbnail fails, maybe before the merge has finished.
    assert wait_job(d, user, job["id"])["status"] == "error"
    merge = wait_task(d, user, named(job, "m")["id"])
    thumbnail = wait_task(d, user, named(job, "t")["id"])
    assert merge["status"] == "finished" and thumbnail["status"] == "error"
    after = scrape(d, prom)
    tasks = "convertd_tasks_total"
    assert moved(before, after, tasks, operation="merge", state="finished") == 1
    assert moved(before, after, tasks, operation="thumbnail", state="failed") == 1
    assert moved(before, after, "convertd_task_duration_seconds_count", operation="merge") == 1
    operations = {v for (_, pairs) in after for k, v in pairs if k == "operation"}
    assert "import/base64" not in operations and "export/url" not in operations

    # Requests held open are counted, not timed: a /sync/v2 wait (above), an event stream.
    sync = {"method": "GET", "route": "/sync/v2/jobs/{job_id}"}
    assert moved(before, after, "convertd_http_requests_total", **sync, status="200") == 1
    assert not present(after, "convertd_http_request_duration_seconds_count", **sync)
    # A method the path does not take is labelled with the path's template.
    refused = requests.delete(f"{d.base}/formats", headers={"X-API-Key": user}, timeout=10)
    assert refused.status_code == 405
    final = scrape(d, prom)
    wrong_method = {"method": "DELETE", "route": "/v1/formats", "status": "405"}
    assert moved(after, final, "convertd_http_requests_total", **wrong_method) == 1


def test_a_metrics_key_scrapes_without_api_access_and_is_seen(make_daemon: Any) -> None:
    d = make_daemon(env=QUIET, workers=0)
    prom = d.create_key("prometheus", "--plan", "free", "--scope", "metrics")
    other = d.create_key("freeloader", "--plan", "free")
    # The free plan has no API access: its metrics key may still scrape, nothing else.
    assert value(scrape(d, prom), "convertd_jobs_queued") == 0
    refused = requests.get(metrics_url(d), headers={"X-API-Key": other}, timeout=10)
    assert refused.status_code == 403
    assert d.convert(prom, b"hello", "a.txt", "hash", "md5").status_code == 403

    # `keys list` says when it last scraped; the access log names it.
    def last_used() -> Any:
        listing = json.loads(d.cli("keys", "list", "--json").stdout)
        return next(k for k in listing if k["name"] == "prometheus")["last_used_at"]

    assert wait_for(last_used, "the scrape's key on record")
    assert re.search(r"GET /metrics 200 .* key=\d+", d.log())


def test_a_libreoffice_killed_from_outside_stops_counting(make_daemon: Any) -> None:
    env = {"CONVERTD_OFFICE_PREWARM": "true", "CONVERTD_OFFICE_INSTANCES": "1"}
    d = make_daemon(env=env, workers=1)
    prom = d.create_key("prometheus", "--scope", "metrics")
    ready = re.compile(r"office instance \d+ ready \(soffice pid (\d+)\)")
    found = wait_for(lambda: ready.search(d.log()), "the warm start")
    assert value(scrape(d, prom), "convertd_office_instances") == 1
    os.kill(int(found.group(1)), signal.SIGKILL)
    # Seen at the next scrape, not at the next document sent to it.
    scrape_until(d, prom, lambda s: value(s, "convertd_office_instances") == 0, "the dead soffice")


def test_a_queued_v2_conversion_deleted_counts_as_cancelled(make_daemon: Any) -> None:
    d = make_daemon(env=QUIET, workers=0)  # nothing runs: the conversion stays queued
    prom = d.create_key("prometheus", "--scope", "metrics")
    user = d.create_key("alice", "--plan", "pro")
    job = job_of(
        d,
        user,
        {
            "in": b64("a.png", image_bytes("PNG")),
            "c": {"operation": "convert", "input": "in", "output_format": "jpg"},
        },
    )
    scrape_until(d, prom, lambda s: value(s, "convertd_jobs_queued") == 1, "the queued job")
    assert call(d, user, "DELETE", f"/v2/jobs/{job['id']}").status_code == 204
    after = scrape(d, prom)
    cancelled = {"filetype": "image", "output_format": "jpg", "state": "cancelled"}
    assert value(after, "convertd_jobs_total", **cancelled) == 1
    assert value(after, "convertd_jobs_queued") == 0
    assert value(after, "convertd_job_duration_seconds_count", filetype="image") == 0
