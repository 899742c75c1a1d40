"""Webhooks, with real receivers: every event type, both signatures, retries after the receiver
was down, delivery after a kill -9, per-job URLs on v1 and v2, watch rules, and the admin CLI."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ROOT, Daemon, image_bytes
from tests.daemon import run_cli
from tests.test_v2_api import call, job_of, wait_job
from tests.webhook_receiver import Receiver

# Short waits between tries, so a test sees the whole schedule: four tries in all.
FAST_RETRIES = {"CONVERTD_WEBHOOK_RETRY_SECONDS": "0.3,0.3,0.3"}


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("webhooks") / "data", FAST_RETRIES).start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def hkey(hooked: Daemon) -> str:
    return hooked.create_key("hooks", "--plan", "pro")


def png_job(ok: bool = True) -> dict[str, Any]:
    data = image_bytes("PNG") if ok else b"this is not a picture"
    return {
        "in": {
            "operation": "import/base64",
            "file": base64.b64encode(data).decode(),
            "filename": "picture.png",
        },
        "webp": {"operation": "convert", "input": "in", "output_format": "webp"},
        "out": {"operation": "export/url", "input": "webp"},
    }


def subscribe(d: Daemon, key: str, url: str, events: list[str]) -> dict[str, Any]:
    resp = call(d, key, "POST", "/v2/webhooks", json={"url": url, "events": events})
    assert resp.status_code == 201, resp.text
    return resp.json()["data"]  # type: ignore[no-any-return]


def key_secret(d: Daemon, key: str) -> str:
    me = call(d, key, "GET", "/v2/users/me").json()["data"]
    return str(me["webhook_signing_secret"])


ALL = ["job.created", "job.finished", "job.failed", "task.finished", "task.failed"]


def test_every_event_type_reaches_a_subscriber_signed_both_ways(
    hooked: Daemon, hkey: str, receiver: Receiver, sdk_verify: Any
) -> None:
    hook = subscribe(hooked, hkey, receiver.url, ALL)
    secret = hook["signing_secret"]
    assert secret.startswith("whsec_") and hook["events"] == ALL

    good = job_of(hooked, hkey, png_job())
    wait_job(hooked, hkey, good["id"])
    receiver.wait_for(1, what="job.finished")
    bad = job_of(hooked, hkey, png_job(ok=False))
    wait_job(hooked, hkey, bad["id"])
    receiver.wait_for(1, what="job.failed")
    receiver.wait_for(1, what="task.failed")
    receiver.wait_for(4, what="task.finished")  # the good job's three, the bad job's import
    receiver.wait_for(2, what="job.created")

    by_event: dict[str, list[Any]] = {}
    for r in receiver.received:
        r.verify(secret)
        assert sdk_verify(r.body.decode(), r.headers["CloudConvert-Signature"], secret)
        by_event.setdefault(r.event, []).append(r)
    assert set(by_event) == set(ALL), by_event.keys()
    assert len(by_event["job.created"]) == 2
    assert len(by_event["task.finished"]) == 4
    ids = [r.json["id"] for r in receiver.received]
    assert len(set(ids)) == len(ids), "each event has its own id"

    finished = by_event["job.finished"][0].json["job"]
    assert finished["id"] == good["id"] and finished["status"] == "finished"
    export = next(t for t in finished["tasks"] if t["name"] == "out")
    link = export["result"]["files"][0]["url"]
    fetched = requests.get(link, timeout=30)  # the payload's link works, without a key
    assert fetched.status_code == 200 and fetched.content[8:12] == b"WEBP"
    failed = by_event["job.failed"][0].json["job"]
    assert failed["id"] == bad["id"] and failed["status"] == "error"
    task_failed = by_event["task.failed"][0].json["task"]
    assert task_failed["job_id"] == bad["id"] and task_failed["code"]
    assert by_event["job.created"][0].headers["X-Webhook-Event"] == "job.created"

    # Listing, deleting, and nobody else's.
    listed = call(hooked, hkey, "GET", "/v2/webhooks").json()
    assert [w["id"] for w in listed["data"]] == [hook["id"]]
    assert "signing_secret" not in listed["data"][0]
    other = hooked.create_key("other", "--plan", "pro")
    assert call(hooked, other, "GET", "/v2/webhooks").json()["data"] == []
    assert call(hooked, other, "DELETE", f"/v2/webhooks/{hook['id']}").status_code == 404
    assert call(hooked, hkey, "DELETE", f"/v2/webhooks/{hook['id']}").status_code == 204
    assert call(hooked, hkey, "GET", "/v2/webhooks").json()["data"] == []
    before = len(receiver.received)
    wait_job(hooked, hkey, job_of(hooked, hkey, png_job())["id"])
    assert call(hooked, hkey, "GET", "/v2/webhooks").json()["meta"]["total"] == 0
    assert len(receiver.received) == before, "a deleted webhook hears nothing more"


@pytest.fixture
def sdk_verify() -> Any:
    import cloudconvert

    def verify(payload: str, signature: str, secret: str) -> bool:
        return bool(cloudconvert.Webhook.verify(payload, signature, secret))

    return verify


def test_subscriptions_are_checked(hooked: Daemon, hkey: str) -> None:
    cases = [
        ({"url": "ftp://x/y", "events": ["job.finished"]}, "url"),
        ({"url": "http://192.168.1.10/hook", "events": ["job.finished"]}, "url"),
        ({"url": "http://169.254.169.254/", "events": ["job.finished"]}, "url"),
        ({"url": "http://user:pw@127.0.0.1/h", "events": ["job.finished"]}, "url"),
        ({"events": ["job.finished"]}, "url"),
        ({"url": "http://127.0.0.1:1/h", "events": []}, "events"),
        ({"url": "http://127.0.0.1:1/h", "events": ["job.exploded"]}, "events"),
        ({"url": "http://127.0.0.1:1/h", "events": ["job.finished"], "secret": "x"}, "secret"),
    ]
    for body, field in cases:
        resp = call(hooked, hkey, "POST", "/v2/webhooks", json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert field in resp.json()["errors"], (body, resp.json())
    reader = hooked.create_key("reader", "--scope", "task.read", "--scope", "webhook.read")
    refused = call(
        hooked, reader, "POST", "/v2/webhooks", json={"url": "http://127.0.0.1:1/h", "events": ALL}
    )
    assert refused.status_code == 403 and "webhook.write" in refused.text
    assert call(hooked, reader, "GET", "/v2/webhooks").status_code == 200
    bad_job = call(
        hooked,
        hkey,
        "POST",
        "/v2/jobs",
        json={"tasks": png_job(), "webhook_url": "http://10.0.0.1/hook"},
    )
    assert bad_job.status_code == 422 and "webhook_url" in bad_job.json()["errors"]


def test_a_v2_jobs_own_webhook_url_hears_its_end(
    hooked: Daemon, hkey: str, receiver: Receiver
) -> None:
    job = job_of(hooked, hkey, png_job(), webhook_url=receiver.url)
    wait_job(hooked, hkey, job["id"])
    (got,) = receiver.wait_for(1, what="job.finished")
    got.verify(key_secret(hooked, hkey))
    assert got.json["job"]["id"] == job["id"]
    assert receiver.events() == ["job.finished"], "a job's URL hears its end only"


def test_v1_callback_and_webhook_url_carry_the_status_body(
    hooked: Daemon, hkey: str, receiver: Receiver
) -> None:
    secret = key_secret(hooked, hkey)
    for field in ("callback", "webhook_url"):
        resp = requests.post(
            f"{hooked.base}/convert",
            headers={"X-API-Key": hkey},
            files={"file": ("p.png", image_bytes("PNG"))},
            data={"filetype": "image", "output_format": "webp", field: receiver.url},
            timeout=30,
        )
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["job_id"]
        got = receiver.wait_for(1, what="job.finished")[-1]
        receiver.received.clear()
        got.verify(secret)
        status = requests.get(
            f"{hooked.base}/status/{job_id}", headers={"X-API-Key": hkey}, timeout=10
        ).json()
        assert got.json["job"] == status, "the body carries the v1 status body"
        out = requests.get(got.json["job"]["download_url"], timeout=30)
        assert out.status_code == 200 and out.content[8:12] == b"WEBP"
    failing = requests.post(
        f"{hooked.base}/convert",
        headers={"X-API-Key": hkey},
        files={"file": ("p.png", b"not a png")},
        data={"filetype": "image", "output_format": "webp", "callback": receiver.url},
        timeout=30,
    )
    got = receiver.wait_for(1, what="job.failed")[0]
    assert got.json["job"]["job_id"] == failing.json()["job_id"]
    assert got.json["job"]["ok"] is False and got.json["job"]["error"]
    for bad in ("ftp://x", "http://192.168.0.5/", "not a url"):
        refused = requests.post(
            f"{hooked.base}/convert",
            headers={"X-API-Key": hkey},
            files={"file": ("p.png", image_bytes("PNG"))},
            data={"filetype": "image", "output_format": "webp", "callback": bad},
            timeout=30,
        )
        assert refused.status_code == 400 and "callback" in refused.json()["message"], bad


def test_retries_after_errors_and_a_receiver_that_was_down(
    hooked: Daemon, hkey: str, receiver: Receiver
) -> None:
    receiver.answers = [503, 500]
    job = job_of(hooked, hkey, png_job(), webhook_url=receiver.url)
    (got,) = receiver.wait_for(3, what="job.finished")[-1:]
    tries = [r for r in receiver.received if r.event == "job.finished"]
    assert len({r.json["id"] for r in tries}) == 1, "the same event id on every try"
    assert len({r.body for r in tries}) == 1, "the same body on every try"
    assert got.json["job"]["id"] == job["id"]

    receiver.down()
    receiver.received.clear()
    job2 = job_of(hooked, hkey, png_job(), webhook_url=receiver.url)
    wait_job(hooked, hkey, job2["id"])
    shown = _deliveries_of(hooked, job2["id"], want=lambda d: d["attempts"] >= 1)
    assert "connect" in shown["last_answer"].lower(), shown
    receiver.up()
    (late,) = receiver.wait_for(1, what="job.finished")
    assert late.json["job"]["id"] == job2["id"]
    done = _deliveries_of(hooked, job2["id"], want=lambda d: d["status"] == "delivered")
    assert done["last_answer"] == "200 OK"


def _deliveries_of(d: Daemon, job_id: str, want: Any, timeout: float = 30) -> dict[str, Any]:
    """This job's delivery as `convertd webhooks deliveries --json` shows it, once `want`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = run_cli(d.data_dir, "webhooks", "deliveries", "--json").stdout
        mine = [x for x in json.loads(out) if x["subject"] == job_id]
        if mine and want(mine[0]):
            return mine[0]
        time.sleep(0.2)
    raise AssertionError(f"no delivery of {job_id} as wanted: {out}")


def test_a_delivery_is_given_up_after_its_tries_and_listed(
    hooked: Daemon, hkey: str, receiver: Receiver
) -> None:
    receiver.answers = [500] * 10
    job = job_of(hooked, hkey, png_job(), webhook_url=receiver.url)
    failed = _deliveries_of(hooked, job["id"], want=lambda d: d["status"] == "failed")
    assert failed["attempts"] == 4 and failed["last_answer"].startswith("500")
    assert len(receiver.wait_for(4, what="job.finished")) == 4
    table = run_cli(hooked.data_dir, "webhooks", "deliveries", "--failed").stdout
    assert job["id"] in table and "500" in table


def test_a_slow_receiver_holds_up_no_other(hooked: Daemon, hkey: str, receiver: Receiver) -> None:
    slow = Receiver()
    try:
        slow.hang = True
        job_of(hooked, hkey, png_job(), webhook_url=slow.url)
        job = job_of(hooked, hkey, png_job(), webhook_url=receiver.url)
        (got,) = receiver.wait_for(1, what="job.finished")
        assert got.json["job"]["id"] == job["id"]
        assert slow.requests >= 1 and not slow.received, "the slow one is still not answered"
        status = requests.get(f"{hooked.base}/formats", headers={"X-API-Key": hkey}, timeout=5)
        assert status.status_code == 200
    finally:
        slow.release()
        slow.close()


def test_deliveries_survive_a_kill_9(make_daemon: Any, receiver: Receiver) -> None:
    d = make_daemon(FAST_RETRIES)
    key = d.create_key("survivor", "--plan", "pro")
    receiver.hang = True  # the event is recorded; its delivery is under way, never answered
    job = job_of(d, key, png_job(), webhook_url=receiver.url)
    deadline = time.monotonic() + 60
    while receiver.requests == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receiver.requests == 1
    d.kill()  # SIGKILL, mid-delivery
    receiver.release()
    receiver.received.clear()
    d.start()
    (again,) = receiver.wait_for(1, what="job.finished")
    assert again.json["job"]["id"] == job["id"]
    again.verify(key_secret(d, key))


def test_a_watch_rules_webhook_hears_results_and_failures(
    make_daemon: Any, receiver: Receiver, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    made = run_cli(data, "keys", "create", "--name", "folders").stdout.splitlines()
    secret = next(x for x in made if x.startswith("webhook_secret: ")).split(": ")[1]
    key_id = 1
    inbox, outbox = tmp_path / "scans", tmp_path / "out"
    inbox.mkdir()
    config = tmp_path / "convertd.toml"
    config.write_text(
        f"""[[watch]]
name = "scans"
folder = "{inbox}"
output = "{outbox}"
output_format = "webp"
webhook_url = "{receiver.url}"
webhook_key = {key_id}
"""
    )
    d = make_daemon(
        {"CONVERTD_CONFIG": str(config), "CONVERTD_DROP_SETTLE_SECONDS": "0.2"}, data_dir=data
    )
    (inbox / "photo.png").write_bytes(image_bytes("PNG"))
    (got,) = receiver.wait_for(1, what="job.finished")
    got.verify(secret)
    drop = got.json["drop"]
    assert drop["rule"] == "scans" and drop["status"] == "finished"
    assert Path(drop["output"]).read_bytes()[8:12] == b"WEBP"
    (inbox / "broken.png").write_bytes(b"not a png")
    (failed,) = receiver.wait_for(1, what="job.failed")
    assert failed.json["drop"]["error"] and failed.json["drop"]["file"].endswith("broken.png")
    listed = d.cli("webhooks", "list").stdout
    assert "watch rule scans" in listed and receiver.url in listed


def readme_verify() -> Any:
    """The README's 5-line `verify`, exactly as printed there."""
    readme = (ROOT / "README.md").read_text()
    block = next(
        b.split("```", 1)[0]
        for b in readme.split("```python\n")[1:]
        if "def verify(body" in b.split("```", 1)[0]
    )
    assert len(block.strip().splitlines()) <= 5, block
    scope: dict[str, Any] = {}
    exec(block, scope)
    return scope["verify"]


def test_the_readmes_verify_recipe_accepts_deliveries_and_refuses_forgeries(
    hooked: Daemon, hkey: str, receiver: Receiver
) -> None:
    verify = readme_verify()
    job_of(hooked, hkey, png_job(), webhook_url=receiver.url)
    (got,) = receiver.wait_for(1, what="job.finished")
    secret = key_secret(hooked, hkey)
    assert verify(got.body, got.headers, secret)
    assert not verify(got.body + b" ", got.headers, secret)
    assert not verify(got.body, got.headers, secret + "x")
    stale = {**got.headers, "X-Webhook-Timestamp": str(int(time.time()) - 3600)}
    assert not verify(got.body, stale, secret)


def test_many_events_to_one_receiver_arrive_once_each(
    hooked: Daemon, hkey: str, receiver: Receiver
) -> None:
    """Forty tasks end at once: the sender works through them four at a time, and no event is
    sent twice (a send that ends while due deliveries are read is not started again)."""
    key = hooked.create_key("many", "--plan", "pro")
    subscribe(hooked, key, receiver.url, ["task.finished", "job.finished"])
    raw = {
        f"r{n}": {"operation": "import/raw", "file": f"line {n}", "filename": f"{n}.txt"}
        for n in range(40)
    }
    job_of(hooked, key, raw)
    receiver.wait_for(1, what="job.finished")
    got = receiver.wait_for(40, what="task.finished")
    time.sleep(1)  # a duplicate, if any, would come now
    ids = [r.json["id"] for r in receiver.received]
    assert len(got) == 40 and len(ids) == len(set(ids)) == 41, len(ids)


def test_a_job_failing_again_after_a_retry_is_told_of_again(
    hooked: Daemon, hkey: str, receiver: Receiver
) -> None:
    job = job_of(hooked, hkey, png_job(ok=False), webhook_url=receiver.url)
    (first,) = receiver.wait_for(1, what="job.failed")
    failed = next(t for t in first.json["job"]["tasks"] if t["name"] == "webp")
    retried = call(hooked, hkey, "POST", f"/v2/tasks/{failed['id']}/retry")
    assert retried.status_code == 201, retried.text
    second = receiver.wait_for(2, what="job.failed")[1]
    assert second.json["job"]["id"] == job["id"] and second.json["id"] != first.json["id"]


def test_the_keys_webhook_secret_is_shown_to_keys_that_may_keep_it(hooked: Daemon) -> None:
    full = hooked.create_key("full", "--plan", "pro")
    browser = hooked.create_key("page", "--restrict", "domain", "--allow", "example.com")
    narrow = hooked.create_key("narrow", "--scope", "user.read", "--scope", "task.read")
    assert key_secret(hooked, full).startswith("whsec_")
    page = call(
        hooked, browser, "GET", "/v2/users/me", headers={"Origin": "https://example.com"}
    ).json()["data"]
    assert page["webhook_signing_secret"] is None
    assert (
        call(hooked, narrow, "GET", "/v2/users/me").json()["data"]["webhook_signing_secret"] is None
    )


def test_a_key_may_have_fifty_webhooks(hooked: Daemon) -> None:
    key = hooked.create_key("fifty", "--plan", "pro")
    for n in range(50):
        subscribe(hooked, key, f"http://127.0.0.1:9/{n}", ["job.finished"])
    more = call(
        hooked,
        key,
        "POST",
        "/v2/webhooks",
        json={"url": "http://127.0.0.1:9/51", "events": ["job.finished"]},
    )
    assert more.status_code == 422 and "50" in more.json()["message"]
