"""The repository stands on its own: its tests and benchmarks read nothing outside it, and the
copied corpus is what its manifest records."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CORPUS, ROOT, outside_repo

# Ways a path can climb out of the repository from a file inside it. Hostile-input payloads
# such as "../../secret.png" are data sent to the daemon, not paths these files read.
OUTSIDE = re.compile(
    r"ROOT\.parent\b|\.parents\[[2-9]\]|(\.parent){3,}|os\.pardir|['\"]/work/|shared/corpus|"
    r"['\"]\.\./shared"
)


def repo_sources() -> list[Path]:
    files = [*ROOT.joinpath("tests").rglob("*.py"), *ROOT.joinpath("bench").rglob("*.py")]
    files += [ROOT / "bench" / "run", *ROOT.joinpath("packaging").iterdir(), ROOT / ".ci" / "run"]
    return [f for f in files if f.is_file() and f.resolve() != Path(__file__).resolve()]


def references_outside(text: str) -> list[str]:
    return [m.group(0) for m in OUTSIDE.finditer(text)]


def test_the_check_sees_a_path_out_of_the_repo() -> None:
    assert references_outside('CORPUS = ROOT.parent / "shared" / "corpus"')
    assert references_outside("HERE = Path(__file__).parent.parent.parent")
    assert references_outside("open('../shared/seeds/v1.txt')")
    assert not references_outside('CORPUS = ROOT / "tests" / "corpus"')
    assert outside_repo(os.path.join(os.path.dirname(ROOT), "shared", "corpus", "a.png"))
    assert not outside_repo(str(CORPUS / "image" / "a.png"))
    assert not outside_repo("/tmp/x") and not outside_repo("/usr/lib/python3/x.py")


@pytest.mark.parametrize("path", repo_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_test_or_bench_file_reads_outside_the_repo(path: Path) -> None:
    found = references_outside(path.read_text(encoding="utf-8", errors="replace"))
    assert not found, f"{path.relative_to(ROOT)} reaches outside the repository: {found}"


def test_corpus_matches_its_manifest() -> None:
    manifest = (CORPUS / "MANIFEST.md").read_text(encoding="utf-8")
    recorded = dict(
        (m.group(2), m.group(1))
        for m in re.finditer(r"^([0-9a-f]{64})  (\S.*)$", manifest, flags=re.M)
    )
    present = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*") if p.is_file()} - {
        "MANIFEST.md"
    }
    assert present == set(recorded), "every corpus file has a manifest row, and only those"
    for name, digest in recorded.items():
        assert hashlib.sha256((CORPUS / name).read_bytes()).hexdigest() == digest, name


def repo_files(root: Path) -> list[Path]:
    """The files git would commit here: tracked, or new and not ignored."""
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout
    return [root / os.fsdecode(name) for name in out.split(b"\0") if name]


def stray_binaries(root: Path) -> list[str]:
    """Binary or large files outside tests/corpus (a downloaded wheel, a build artefact); the
    README's screenshots in docs/ are allowed while small."""
    corpus = root / "tests" / "corpus"
    found = []
    for path in repo_files(root):
        if corpus in path.parents or path.is_symlink() or not path.is_file():
            continue
        docs_image = path.parent == root / "docs" and path.suffix == ".png"
        if docs_image and path.stat().st_size <= 256 * 1024:
            continue
        with path.open("rb") as fh:
            head = fh.read(8192)
        if b"\0" in head or path.stat().st_size > 1024**2:
            found.append(path.relative_to(root).as_posix())
    return found


def test_the_binary_check_sees_a_stray_file(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "tool.whl").write_bytes(b"PK\x03\x04\0\0")
    assert stray_binaries(tmp_path) == ["pkg/tool.whl"]


def test_no_binaries_outside_the_corpus() -> None:
    assert stray_binaries(ROOT) == []


def mode_mismatches(root: Path) -> list[str]:
    """Tracked files whose exec bit and first line disagree: a `#!` script that cannot be run
    as a command, or an executable with no interpreter line."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-s", "-z"], capture_output=True, check=True
    ).stdout.decode()
    found = []
    for entry in filter(None, listed.split("\0")):
        mode, _, rest = entry.partition(" ")
        name = rest.partition("\t")[2]
        with (root / name).open("rb") as fh:
            script = fh.read(2) == b"#!"
        if script != (mode == "100755"):
            found.append(f"{name} ({mode}, {'a' if script else 'no'} #! line)")
    return found


def test_the_mode_check_sees_a_script_without_its_exec_bit(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "run").write_text("#!/bin/sh\necho hi\n")
    (tmp_path / "mod.py").write_text("x = 1\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "run", "mod.py"], check=True)
    assert mode_mismatches(tmp_path) == ["run (100644, a #! line)"]


def test_every_script_can_be_run_and_every_executable_is_a_script() -> None:
    """bench/bench.py is a module (no #! line: it runs on the venv's Python, by bench/run),
    and every command (bench/run, packaging/*, .ci/run) keeps its exec bit."""
    assert mode_mismatches(ROOT) == []
