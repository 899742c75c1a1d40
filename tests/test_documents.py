"""Office documents through the warm LibreOffice pool, checked by opening the output."""

from __future__ import annotations

import io
import itertools
import os
import re
import signal
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import CORPUS, Daemon, tool_pids
from tests.daemon import run_cli
from tests.inspect_files import check_output, pdf_text
from tests.test_api import assert_error_body

TEXT_OUT = ["pdf", "docx", "odt", "rtf", "txt", "html"]
SHEET_OUT = ["xlsx", "ods", "csv", "pdf"]
SLIDES_OUT = ["pptx", "odp", "pdf"]
CORPUS_DOCS = {
    "word2013-numbered-lists.docx": TEXT_OUT,
    "word97.doc": TEXT_OUT,
    "libreoffice-writer-odf13.odt": TEXT_OUT,
    "japanese.rtf": TEXT_OUT,
    "résumé-ünïcode.docx": TEXT_OUT,
    "excel2016-multi-sheet.xlsx": SHEET_OUT,
    "excel97.xls": SHEET_OUT,
    "libreoffice-calc-odf13.ods": SHEET_OUT,
    "powerpoint2007-various.pptx": SLIDES_OUT,
    "powerpoint97-various.ppt": SLIDES_OUT,
    "libreoffice-impress-odf13.odp": SLIDES_OUT,
}
CASES = [(name, fmt) for name, outs in CORPUS_DOCS.items() for fmt in outs]
MARKER = "convertd marker Grüße 2026"


@pytest.mark.parametrize(("name", "fmt"), CASES)
def test_real_world_documents(daemon: Daemon, key: str, name: str, fmt: str) -> None:
    data = (CORPUS / "document" / name).read_bytes()
    status, out = daemon.convert_and_fetch(key, data, name, "document", fmt)
    assert out is not None, status
    check_output(fmt, out.content)
    assert status["file_name"] == f"{Path(name).stem}.{fmt}"


MADE_INPUTS = {
    "txt": f"{MARKER}\nsecond line\n".encode(),
    "html": f"<html><body><h1>{MARKER}</h1><p>para</p></body></html>".encode(),
    "csv": f"name,value\n{MARKER},42\n".encode(),
}


@pytest.mark.parametrize(
    ("src", "fmt"),
    [("txt", f) for f in TEXT_OUT]
    + [("html", f) for f in TEXT_OUT]
    + [("csv", f) for f in SHEET_OUT],
)
def test_text_survives(daemon: Daemon, key: str, src: str, fmt: str) -> None:
    status, out = daemon.convert_and_fetch(key, MADE_INPUTS[src], f"made.{src}", "document", fmt)
    assert out is not None, status
    text = check_output(fmt, out.content)
    if fmt == "rtf":
        assert "convertd marker" in text
    else:
        assert MARKER in text, text[:500]


def test_pages_and_pdf_a(daemon: Daemon, key: str) -> None:
    data = (CORPUS / "document" / "word2013-numbered-lists.docx").read_bytes()
    _, whole = daemon.convert_and_fetch(key, data, "lists.docx", "document", "pdf")
    _, part = daemon.convert_and_fetch(key, data, "lists.docx", "document", "pdf", {"pages": "2-3"})
    assert whole is not None and part is not None
    assert pdf_text(whole.content)[0] == 3 and pdf_text(part.content)[0] == 2
    _, archival = daemon.convert_and_fetch(
        key, data, "lists.docx", "document", "pdf", {"pdf_a": True}
    )
    assert archival is not None and b"pdfaid" in archival.content


@pytest.mark.parametrize(
    ("name", "fmt", "options"),
    [
        ("a.docx", "xlsx", None),
        ("a.xlsx", "docx", None),
        ("a.pptx", "csv", None),
        ("a.docx", "pdf", {"pages": "one"}),
        ("a.docx", "docx", {"pages": "1"}),
    ],
)
def test_impossible_pairs_are_400(
    daemon: Daemon, key: str, name: str, fmt: str, options: dict[str, Any] | None
) -> None:
    resp = daemon.convert(key, b"PK\x03\x04", name, "document", fmt, options)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    if options is None:
        assert "can become" in body["message"]


def test_broken_and_locked_documents_fail_cleanly(daemon: Daemon, key: str) -> None:
    locked = (CORPUS / "document" / "password-protected.docx").read_bytes()
    status, out = daemon.convert_and_fetch(key, locked, "locked.docx", "document", "pdf")
    assert out is None and "password-protected" in status["error"]
    good = (CORPUS / "document" / "word2013-numbered-lists.docx").read_bytes()
    status, out = daemon.convert_and_fetch(key, good[:3000], "cut.docx", "document", "pdf")
    assert out is None and status["status"] == "failed" and "Traceback" not in status["error"]
    status, out = daemon.convert_and_fetch(key, good, "fine.docx", "document", "pdf")
    assert out is not None


def test_an_empty_text_is_a_blank_document_but_an_empty_docx_is_refused(
    daemon: Daemon, key: str
) -> None:
    """An empty .txt is a document with nothing in it, as any editor opens it (the first
    stranger's was refused as a broken upload): one blank page as PDF, an empty DOCX. An empty
    .docx cannot be opened by anything, and is still said to be empty."""
    status, out = daemon.convert_and_fetch(key, b"", "empty.txt", "document", "pdf")
    assert out is not None, status
    assert pdf_text(out.content) == (1, "")
    status, out = daemon.convert_and_fetch(key, b"", "empty.txt", "document", "docx")
    assert out is not None
    check_output("docx", out.content)
    with zipfile.ZipFile(io.BytesIO(out.content)) as docx:
        assert not re.findall(r"<w:t\b[^>]*>[^<]", docx.read("word/document.xml").decode())
    status, out = daemon.convert_and_fetch(key, b"", "empty.docx", "document", "pdf")
    assert out is None and "is empty (0 bytes)" in status["error"]


def test_a_document_without_an_extension_is_told_what_is_needed(daemon: Daemon, key: str) -> None:
    """Plain text named `notes` cannot be told by its bytes: the refusal says the name needs its
    extension (a stranger got 'The document converter cannot read this files.')."""
    body = assert_error_body(daemon.convert(key, b"plain words", "notes", "document", "pdf"), 400)
    assert body["message"] == (
        "The document converter cannot tell what this file is: its name has no extension, "
        "and its content is not of a format it recognises."
    )
    assert "Name it with its extension (as in report.docx)" in body["hint"], body
    assert "txt" in body["hint"]
    body = assert_error_body(
        daemon.convert(key, b"plain words", "notes.xyz", "document", "pdf"), 400
    )
    assert body["message"] == "The document converter cannot read xyz files."


def office_pids(data_dir: Path) -> list[int]:
    """soffice.bin processes whose profile lives in this daemon's data dir."""
    return tool_pids("soffice.bin", data_dir / "office")


def wait_for_pids(data_dir: Path, count: int, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = office_pids(data_dir)
        if len(pids) >= count:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"expected {count} soffice processes, found {office_pids(data_dir)}")


def test_a_daemon_without_workers_starts_no_libreoffice(make_daemon: Any) -> None:
    """`--workers 0` is a node that only serves the API, or a queue held paused: it started a
    LibreOffice instance all the same (the second stranger). It says at start that none is
    started, and its queued document waits without one."""
    d = make_daemon(workers=0)
    assert "office: LibreOffice is not started with the daemon" in d.log(), d.log()
    key = d.create_key("queue-only", "--plan", "pro")
    job = d.convert(key, b"text", "a.txt", "document", "pdf").json()
    assert job["status"] == "pending", job
    assert office_pids(d.data_dir) == [], d.log()
    assert "office instance 0 ready" not in d.log(), d.log()


def one_warm_office(make_daemon: Any, **env: str) -> tuple[Any, str, bytes, int]:
    """A daemon with one LibreOffice instance, warmed by a conversion: (daemon, key, a
    document, soffice's pid)."""
    d = make_daemon(env={"CONVERTD_OFFICE_INSTANCES": "1", **env}, workers=1)
    key = d.create_key("office", "--plan", "pro")
    doc = (CORPUS / "document" / "libreoffice-writer-odf13.odt").read_bytes()
    _, warm = d.convert_and_fetch(key, doc, "warm.odt", "document", "pdf")
    assert warm is not None
    (pid,) = wait_for_pids(d.data_dir, 1)
    return d, key, doc, pid


def test_killed_office_is_replaced(make_daemon: Any) -> None:
    d, key, doc, first = one_warm_office(make_daemon)
    os.kill(first, signal.SIGKILL)
    status, out = d.convert_and_fetch(key, doc, "a.odt", "document", "pdf")
    assert out is not None, (status.get("error"), d.log()[-3000:])
    (second,) = wait_for_pids(d.data_dir, 1)
    assert second != first


def test_hung_office_times_out_and_is_replaced(make_daemon: Any) -> None:
    d, key, doc, frozen = one_warm_office(make_daemon, CONVERTD_JOB_TIMEOUT_SECONDS="4")
    os.kill(frozen, signal.SIGSTOP)
    status, out = d.convert_and_fetch(key, doc, "a.odt", "document", "pdf")
    assert out is None and "LibreOffice took longer than 4 s" in status["error"]
    # The frozen soffice was killed with its process group, not left behind.
    deadline = time.monotonic() + 10
    while frozen in office_pids(d.data_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert frozen not in office_pids(d.data_dir)
    status, out = d.convert_and_fetch(key, doc, "b.odt", "document", "pdf")
    assert out is not None, status


def test_documents_convert_in_parallel_on_two_instances(daemon: Daemon, key: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    doc = (CORPUS / "document" / "word2013-numbered-lists.docx").read_bytes()
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda n: daemon.convert_and_fetch(key, doc, f"p{n}.docx", "document", "pdf"),
                range(6),
            )
        )
    for status, out in results:
        assert out is not None, status
        assert pdf_text(out.content)[0] == 3
    assert len(office_pids(daemon.data_dir)) == 2


def test_no_office_process_outlives_a_killed_daemon(make_daemon: Any) -> None:
    d = make_daemon(env={"CONVERTD_OFFICE_INSTANCES": "2"})
    wait_for_pids(d.data_dir, 2)
    d.kill()
    deadline = time.monotonic() + 15
    while office_pids(d.data_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert office_pids(d.data_dir) == []


DOCX_3_PAGES = CORPUS / "document" / "word2013-numbered-lists.docx"
PDF_6_PAGES = CORPUS / "pdf" / "scanned-with-ocr-layer-6p.pdf"


@pytest.mark.parametrize(
    ("source", "filetype", "pages", "outcome"),
    [
        # One rule for documents and PDFs: pages the document lacks are an error naming them.
        (DOCX_3_PAGES, "document", "5-9", "page 5 does not exist: the document has 3 pages"),
        (DOCX_3_PAGES, "document", "1-1000", "page 4 does not exist: the document has 3 pages"),
        (PDF_6_PAGES, "pdf", "1-1000", "page 7 does not exist: the document has 6 pages"),
        # Nonsense that needs no page count is a 400 for both.
        (DOCX_3_PAGES, "document", "0", 400),
        (DOCX_3_PAGES, "document", "1-4294967297", 400),
        (DOCX_3_PAGES, "document", "3-1", 400),
        (PDF_6_PAGES, "pdf", "3-1", 400),
        (PDF_6_PAGES, "pdf", "0", 400),
        # What the document has comes out, page for page.
        (DOCX_3_PAGES, "document", "3,1", 2),
        (PDF_6_PAGES, "pdf", "2-3,6", 3),
    ],
)
def test_pages_mean_the_same_for_documents_and_pdfs(
    daemon: Daemon, key: str, source: Path, filetype: str, pages: str, outcome: object
) -> None:
    data = source.read_bytes()
    resp = daemon.convert(key, data, source.name, filetype, "pdf", {"pages": pages})
    if outcome == 400:
        assert resp.status_code == 400 and "pages" in resp.json()["message"], resp.text
        return
    assert resp.status_code == 202, resp.text
    status = daemon.wait(key, resp.json()["job_id"])
    if isinstance(outcome, str):
        assert status["status"] == "failed" and status["error"] == outcome, status
        return
    assert status["status"] == "finished", status
    out = requests.get(status["download_url"], headers={"X-API-Key": key}, timeout=30)
    assert pdf_text(out.content)[0] == outcome


@pytest.mark.parametrize("fmt", ["pdf", "odt"])
def test_password_protected_documents_open_with_their_password(
    daemon: Daemon, key: str, fmt: str
) -> None:
    # Tika's encrypted DOCX (password "tika", an OLE2 container): the password opens it, for
    # any output; a wrong one fails as before.
    locked = (CORPUS / "document" / "password-protected.docx").read_bytes()
    status, out = daemon.convert_and_fetch(
        key, locked, "locked.docx", "document", fmt, {"password": "tika"}
    )
    assert out is not None, status
    if fmt == "pdf":
        pages, text = pdf_text(out.content)
        assert pages >= 1 and text.strip()
    status, out = daemon.convert_and_fetch(
        key, locked, "locked.docx", "document", fmt, {"password": "wrong"}
    )
    assert out is None and "password-protected" in status["error"]


# The pool's two recycling lines; each lists every instance's documents served and share.
HANDOVER_BEGIN = re.compile(
    r"office instance (\d+) recycled after (\d+) documents \(its share (\d+)\).*"
    r"served/share (.*)$"
)
HANDOVER_END = re.compile(r"office instance \d+ took over from instance \d+ .*served/share (.*)$")


def numbered_document(d: Daemon, key: str, n: int) -> str:
    """Document `n` (a line of text with MARKER) converted to PDF: its one page's words."""
    text = f"{MARKER} document {n}\n".encode()
    status, out = d.convert_and_fetch(key, text, f"doc{n}.txt", "document", "pdf")
    assert out is not None, (status, d.log()[-3000:])
    pages, words = pdf_text(out.content)
    assert pages == 1 and f"document {n}" in words, words
    return words


def handovers(log: str) -> list[tuple[str, int, int, int, dict[int, tuple[int, int]]]]:
    """("begin", instance, served, share, counts) and ("end", -1, 0, 0, counts) in log order,
    counts being {instance: (served, share)} when the line was written."""
    seen: list[tuple[str, int, int, int, dict[int, tuple[int, int]]]] = []
    for line in log.splitlines():
        if (m := HANDOVER_BEGIN.search(line)) or (m := HANDOVER_END.search(line)):
            counts = {
                int(n): (int(served), int(share))
                for n, served, share in re.findall(r"#(\d+) (\d+)/(\d+)", m[m.lastindex or 0])
            }
            if m.re is HANDOVER_BEGIN:
                seen.append(("begin", int(m[1]), int(m[2]), int(m[3]), counts))
            else:
                seen.append(("end", -1, 0, 0, counts))
    return seen


def test_recycling_hands_over_to_a_warm_replacement_one_at_a_time(make_daemon: Any) -> None:
    """Instances recycled every few documents while four clients send bursts: each replacement
    is started beside the instance it replaces, one hand-over at a time, and no document ever
    waits for LibreOffice to start (the pool logs it when one does). An instance that passes
    its share while another hand-over runs begins its own the moment that one ends, even when
    the burst is over, so it never serves more than its share plus what it converted while the
    previous hand-over ran."""
    from concurrent.futures import ThreadPoolExecutor

    d = make_daemon(
        env={"CONVERTD_OFFICE_INSTANCES": "2", "CONVERTD_OFFICE_RECYCLE_AFTER": "4"}, workers=2
    )
    key = d.create_key("office", "--plan", "pro")
    first = wait_for_pids(d.data_dir, 2)  # warmed up at start

    def convert(n: int) -> str:
        return numbered_document(d, key, n)

    def quiet() -> bool:
        """No hand-over runs, and none began just after the last one ended."""
        seen = handovers(d.log())
        if seen and seen[-1][0] == "begin":
            time.sleep(0.1)
            return False
        time.sleep(0.5)  # a begin chained to that end is written in the same loop step
        return handovers(d.log()) == seen

    def chained(seen: list[Any]) -> int:
        """Hand-overs that ended with an instance past its share."""
        return sum(e[0] == "end" and any(a >= b for a, b in e[4].values()) for e in seen)

    # Bursts of 20 (hand-overs take seconds, documents tens of milliseconds), each followed by
    # a pause until the pool is quiet: an instance past its share when a hand-over ends gets
    # no release in the pause to remind the pool of it.
    done = 0
    with ThreadPoolExecutor(4) as pool:
        while done < 400:
            list(pool.map(convert, range(done, done + 20)))
            done += 20
            deadline = time.monotonic() + 60
            while not quiet() and time.monotonic() < deadline:
                pass
            seen = handovers(d.log())
            if [e[0] for e in seen].count("end") >= 3 and chained(seen):
                break
    kinds = [e[0] for e in seen]
    assert kinds.count("end") >= 3 and chained(seen), (kinds, d.log()[-3000:])
    # One hand-over at a time: each begins only after the one before has ended.
    assert kinds[0] == "begin" and all(a != b for a, b in itertools.pairwise(kinds)), kinds
    assert kinds[-1] == "end", kinds
    for k, (kind, number, served, share, _) in enumerate(seen):
        if kind != "begin":
            continue
        ended = seen[k - 1][4] if k else {}
        past = {n: s - sh for n, (s, sh) in ended.items() if s >= sh}
        if not past:  # begun by the release that reached its share
            assert served == share, seen[: k + 1]
            continue
        # Begun when the previous hand-over ended, by the instance furthest past its share,
        # with no document converted in between...
        assert number in past and past[number] == max(past.values()), seen[: k + 1]
        assert served == ended[number][0], seen[: k + 1]
        # ...so its documents past its share were converted while that hand-over ran.
        before = seen[k - 2][4][number][0]
        assert served - share <= served - before, seen[k - 2 : k + 1]
    # An instance past its share never waits for a release: after the last hand-over, none is.
    assert all(s < sh for s, sh in seen[-1][4].values()), seen[-1]
    assert "waits for it to start" not in d.log(), d.log()[-3000:]
    # The replaced instances are stopped: two run, none of them the first two.
    deadline = time.monotonic() + 30
    while len(office_pids(d.data_dir)) > 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    now = office_pids(d.data_dir)
    assert len(now) == 2 and not set(now) & set(first), (first, now)
    # Each replaced instance's final count is logged when it stops, with what it converted
    # during its own hand-over (no other line lists it once replaced): its count when the
    # hand-over began, plus those.
    begun = {number: served for kind, number, served, _, _ in seen if kind == "begin"}

    def stops() -> dict[int, tuple[int, int]]:
        found = re.findall(
            r"office instance (\d+) stopped after (\d+) documents?, (\d+) of them during its "
            r"hand-over",
            d.log(),
        )
        return {int(n): (int(total), int(during)) for n, total, during in found}

    deadline = time.monotonic() + 10  # written just after its processes are gone
    while set(stopped := stops()) != set(begun) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert set(stopped) == set(begun), (begun, stopped)
    assert all(total == begun[n] + during for n, (total, during) in stopped.items()), stopped


def test_an_instance_that_dies_during_its_hand_over_is_replaced_by_its_spare(
    make_daemon: Any,
) -> None:
    """The stranger's kill -9 of the retiring soffice as its hand-over began: it was started
    again beside its spare (a document waited 3 s for that cold start), and its stop line read
    'stopped after 1 documents, -1 of them during its hand-over' (the restart reset its count).
    The spare replaces it; its documents still add up."""
    from concurrent.futures import ThreadPoolExecutor

    d = make_daemon(
        env={"CONVERTD_OFFICE_INSTANCES": "2", "CONVERTD_OFFICE_RECYCLE_AFTER": "2"}, workers=2
    )
    key = d.create_key("office", "--plan", "pro")
    wait_for_pids(d.data_dir, 2)

    def convert(n: int) -> None:
        numbered_document(d, key, n)

    n = 0
    while not (seen := handovers(d.log())) and n < 10:  # one at a time, as curl sent them
        convert(n)
        n += 1
    assert seen, d.log()[-3000:]
    _, old, served, _, _ = seen[0]
    (pid,) = re.findall(rf"office instance {old} ready \(soffice pid (\d+)\)", d.log())
    os.kill(int(pid), signal.SIGKILL)
    # Both instances taken at once, while the spare starts: one document finds the dead one.
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(convert, range(n, n + 4)))
    deadline = time.monotonic() + 30
    stop = re.compile(rf"office instance {old} stopped after (\d+) documents?, (-?\d+) of them")
    while not (m := stop.search(d.log())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert m is not None, d.log()[-3000:]
    assert "waits for it to start" not in d.log(), d.log()[-3000:]
    assert f"office instance {old} died during its hand-over;" in d.log(), d.log()[-3000:]
    assert re.search(rf"took over from instance {old} ", d.log()), d.log()[-3000:]
    total, during = int(m[1]), int(m[2])
    assert during >= 0 and total == served + during, (served, m[0])
    plural = "" if total == 1 else "s"
    assert f"stopped after {total} document{plural}, " in m[0], m[0]


def test_with_one_instance_a_document_whose_soffice_dies_while_writing_is_retried_on_the_spare(
    make_daemon: Any,
) -> None:
    """The fourth stranger, workers=1: soffice killed during its hand-over, while it wrote a
    document's PDF, left '.~lock.NAME.pdf#' in the job's folder; the retry on the spare found
    it and failed at once ('could not write this document in the asked format'), and that
    failure counted towards the spare's share. The profile turns LibreOffice's locking off."""
    d = make_daemon(
        env={"CONVERTD_OFFICE_INSTANCES": "1", "CONVERTD_OFFICE_RECYCLE_AFTER": "2"}, workers=1
    )
    key = d.create_key("office", "--plan", "pro")
    wait_for_pids(d.data_dir, 1)
    n = 0
    while not handovers(d.log()) and n < 10:
        numbered_document(d, key, n)
        n += 1
    _, old, _, _, _ = handovers(d.log())[0]
    (pid,) = re.findall(rf"office instance {old} ready \(soffice pid (\d+)\)", d.log())
    # Long enough that its PDF takes a while to write; killed once the write has begun (a
    # file beside the input in its job's folder: the output, a temporary or the lock).
    text = "".join(f"{MARKER} line {i}\n" for i in range(6000)).encode()
    resp = d.convert(key, text, "long.txt", "document", "pdf")
    assert resp.status_code == 202, resp.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(not p.name.startswith("input") for p in d.data_dir.glob("work/*/*")):
            os.kill(int(pid), signal.SIGKILL)
            break
        time.sleep(0.002)
    else:
        raise AssertionError("the long document's output never appeared")
    status = d.wait(key, resp.json()["job_id"])
    assert status["status"] == "finished", (status, d.log()[-3000:])
    out = requests.get(status["download_url"], headers={"X-API-Key": key}, timeout=30)
    pages, words = pdf_text(out.content)
    assert pages > 50 and "line 5999" in words, pages
    assert f"office instance {old} died during its hand-over;" in d.log(), d.log()[-3000:]
    assert not list(d.data_dir.glob("work/*/.~lock.*")), "LibreOffice still locks documents"


def test_profiles_live_as_long_as_their_instance(make_daemon: Any, tmp_path: Path) -> None:
    """The fourth stranger: a stopped daemon left office/profile-8, -9 and -11 (560 KiB each),
    and every restart left more. A retired or stopped instance's profile is removed, and the
    start sweeps those nobody holds: a crashed daemon's profile-N and a dead CLI's cli-PID-*,
    never a live CLI's."""
    office = tmp_path / "data" / "office"
    stale = [office / "profile-99", office / "cli-999999999-dead"]  # no pid is that high
    live = office / f"cli-{os.getpid()}-live"
    for folder in (*stale, live):
        (folder / "user").mkdir(parents=True)
    d = make_daemon(env={"CONVERTD_OFFICE_INSTANCES": "1", "CONVERTD_OFFICE_RECYCLE_AFTER": "2"})
    key = d.create_key("office", "--plan", "pro")
    wait_for_pids(d.data_dir, 1)
    assert not any(f.exists() for f in stale), sorted(p.name for p in office.iterdir())
    deadline = time.monotonic() + 120
    n = 0
    while len(re.findall(r"stopped after", d.log())) < 2:  # two instances retired
        assert time.monotonic() < deadline, d.log()[-3000:]
        numbered_document(d, key, n)
        n += 1
        time.sleep(0.3)
    assert d.stop() == 0
    assert sorted(p.name for p in office.iterdir()) == [live.name]


def test_a_one_off_conversion_never_recycles(tmp_path: Path) -> None:
    """The fourth stranger: `convertd convert` past office_recycle_after started a replacement
    soffice just before it exited; a one-off run never recycles."""
    sources = []
    for n in range(3):
        sources.append(tmp_path / f"doc{n}.txt")
        sources[-1].write_text(f"{MARKER} document {n}\n", encoding="utf-8")
    env = {"CONVERTD_OFFICE_RECYCLE_AFTER": "1"}
    run = run_cli(
        tmp_path / "d", "convert", *map(str, sources), "--to", "pdf", env=env, timeout=300
    )
    assert "3 converted, 0 failed" in run.stderr, run.stderr
    assert "recycled after" not in run.stderr, run.stderr
    assert len(re.findall(r"ready \(soffice pid", run.stderr)) == 1, run.stderr
    for n in range(3):
        pages, words = pdf_text((tmp_path / f"doc{n}.pdf").read_bytes())
        assert pages == 1 and f"document {n}" in words, words
