"""The data directory's layout and the only place paths inside it are made.

    <data dir>/convertd.db          the database (unless `database` names a PostgreSQL server)
    <data dir>/convertd.lock        held by the one daemon serving this data dir
    <data dir>/uploads/<token>/<name>   files clients sent
    <data dir>/work/<job id>/       a job's scratch space, removed when the job ends
    <data dir>/results/<job id>/<name>  a finished job's output
    <data dir>/tasks/<task id>/<name>   a /v2 task's files (imported, converted, archived)
    <data dir>/signing.key          the secret that signs /v2 upload forms and download links
    <data dir>/office/profile-<n>/  a warm LibreOffice instance's private profile
    <data dir>/browser/chromium-<n>.sh  the script that starts Chromium under its limits
    <data dir>/drops-status.json    what the drop folders are waiting for and skipping
    <data dir>/drop/                the embedded drop folders (unless `drop_root` moves them)

Client-supplied names are only ever used as the last component, after `safe_filename`; client
supplied upload paths are looked up in the database, never joined onto a directory as given.

With `storage` set (several nodes), uploads/, results/, tasks/ and signing.key live there
instead, on the folder every node mounts, so any node can serve what another made; the rest
stays in the node's own data dir.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import unicodedata
from pathlib import Path

from convertd.config import Config

MAX_NAME_BYTES = 180
_UPLOAD_PATH = re.compile(r"^[0-9a-f]{16}/[^/\\\x00]{1,255}$")
_JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def safe_filename(name: str, default: str = "file") -> str:
    """A harmless single path component that keeps the user's name where it can."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    # Drop control characters (NUL, newlines) and format characters such as the RTL override.
    name = "".join(ch for ch in name if unicodedata.category(ch) not in {"Cc", "Cf", "Cs"})
    name = name.strip().strip(".")
    name = name.lstrip("-")  # a name must never look like an option to a tool
    if not name:
        return default
    ext = name[len(name) - len(extension_of(name)) :] if extension_of(name) else ""
    stem = name[: -len(ext) - 1] if ext else name
    if len(ext) > 16:
        stem, ext = name, ""
    while len(stem.encode()) + len(ext) + 1 > MAX_NAME_BYTES:
        stem = stem[:-1]
    if not stem:
        return default + (f".{ext}" if ext else "")
    return f"{stem}.{ext}" if ext else stem


# Extensions of two parts; everything else is the part after the last dot.
COMPOUND_EXTENSIONS = ("tar.gz", "tar.bz2", "tar.xz", "tar.zst")


def extension_of(name: str) -> str:
    lower = name.lower()
    for compound in COMPOUND_EXTENSIONS:
        if lower.endswith("." + compound) and len(name) > len(compound) + 1:
            return compound
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem else ""


def stem_of(name: str) -> str:
    ext = extension_of(name)
    return name[: -len(ext) - 1] if ext else name


def is_job_id(value: str) -> bool:
    return bool(_JOB_ID.match(value))


class StorageMissing(Exception):
    """The storage folder is not there, or cannot be written."""


class DataDir:
    def __init__(
        self,
        root: Path,
        drop_root: Path | None = None,
        storage: Path | None = None,
        database: str | None = None,
    ) -> None:
        self.root = root.resolve()
        self.storage_given = storage is not None
        self.storage = storage.resolve() if storage is not None else self.root
        # What Database.open is given: a PostgreSQL URL, or the SQLite file here.
        self.database: Path | str = database or self.root / "convertd.db"
        self.lock = self.root / "convertd.lock"
        self.uploads = self.storage / "uploads"
        self.work = self.root / "work"
        self.results = self.storage / "results"
        self.tasks = self.storage / "tasks"
        self.signing_key = self.storage / "signing.key"
        self.office = self.root / "office"  # LibreOffice profiles, one per instance
        self.browser = self.root / "browser"  # the scripts that start Chromium under limits
        # In the storage: the leading node watches them, and the lead may move (cluster/).
        self.drops_status = self.storage / "drops-status.json"
        self.drop_root = drop_root or self.storage / "drop"
        self.write_probe = self.root / ".doctor-probe"  # `convertd doctor` writes and removes it

    @classmethod
    def of(cls, config: Config) -> DataDir:
        return cls(config.data_dir, config.drop_root, config.storage, config.database)

    def ensure(self) -> None:
        self.ensure_local()
        self.ensure_storage()

    def ensure_local(self) -> None:
        """The node's own folders; and the storage folder, if given, must be there already: a
        missing one is a share that is not mounted, and files written there would be lost."""
        if self.storage_given and not self.storage.is_dir():
            raise StorageMissing(
                f"the storage folder {self.storage} does not exist: mount the shared folder "
                "there (or create it), then start again"
            )
        for path in (self.root, self.work):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)

    def ensure_storage(self) -> None:
        """The folders in the storage, once it is known to be the right one (cluster/storage)."""
        try:
            for path in (self.storage, self.uploads, self.results, self.tasks):
                path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StorageMissing(
                f"cannot write in the storage folder {self.storage}: {exc.strerror}"
            ) from None

    def new_upload_path(self, file_name: str) -> tuple[str, Path]:
        """A fresh `<token>/<name>` for a file being uploaded, and where to write it."""
        file_path, dest = self.upload_path_for(file_name)
        dest.parent.mkdir(mode=0o700)
        return file_path, dest

    def upload_path_for(self, file_name: str) -> tuple[str, Path]:
        """new_upload_path's names, its folder not made yet (nothing touches the disk)."""
        token = secrets.token_hex(8)
        name = safe_filename(file_name)
        return f"{token}/{name}", self.uploads / token / name

    def upload_file(self, file_path: str) -> Path:
        """The file for a `file_path` that the database says exists; never leaves uploads/."""
        if not _UPLOAD_PATH.match(file_path) or ".." in file_path.split("/"):
            raise ValueError("not an upload path")
        path = (self.uploads / file_path).resolve()
        if path.parent.parent != self.uploads:
            raise ValueError("upload path escapes the upload area")
        return path

    def remove_upload(self, file_path: str) -> None:
        try:
            path = self.upload_file(file_path)
        except ValueError:
            return
        shutil.rmtree(path.parent, ignore_errors=True)

    def work_dir(self, job_id: str) -> Path:
        assert is_job_id(job_id)
        return self.work / job_id

    def result_dir(self, job_id: str) -> Path:
        assert is_job_id(job_id)
        return self.results / job_id

    def result_file(self, job_id: str, name: str) -> Path:
        return self.result_dir(job_id) / safe_filename(name)

    def remove_job_files(self, job_id: str) -> None:
        shutil.rmtree(self.work_dir(job_id), ignore_errors=True)
        shutil.rmtree(self.result_dir(job_id), ignore_errors=True)

    def fresh_work_dir(self, job_id: str) -> Path:
        """An empty scratch directory for one attempt at a job."""
        return _fresh_dir(self.work_dir(job_id))

    def publish_result(self, job_id: str, produced: Path, name: str) -> Path:
        """Move a finished output into results/ in one rename, so it appears whole or not at all."""
        final_dir = self.result_dir(job_id)
        staging = _fresh_dir(_staging_of(final_dir))
        target = staging / safe_filename(name)
        # A move, not a rename: the storage several nodes share is another filesystem than
        # the node's own scratch space (the swap below is the rename that makes it appear).
        shutil.move(produced, target)
        _swap_in(staging, final_dir)
        return final_dir / target.name

    def task_dir(self, task_id: str) -> Path:
        assert is_job_id(task_id)
        return self.tasks / task_id

    def task_file(self, task_id: str, name: str) -> Path:
        return self.task_dir(task_id) / safe_filename(name)

    def fresh_task_staging(self, task_id: str) -> Path:
        """An empty directory where a task's files are made before they are published."""
        return _fresh_dir(_staging_of(self.task_dir(task_id)))

    def publish_task_files(self, task_id: str, staging: Path) -> None:
        """Put a task's files in place in one rename, so they appear whole or not at all."""
        _swap_in(staging, self.task_dir(task_id))

    def remove_task_files(self, task_id: str) -> None:
        final = self.task_dir(task_id)
        shutil.rmtree(final, ignore_errors=True)
        shutil.rmtree(_staging_of(final), ignore_errors=True)

    def task_dirs_older_than(self, cutoff: float) -> list[str]:
        """Ids of the task directories (published or staging) last changed before `cutoff`."""
        found = []
        for entry in self.tasks.iterdir():
            task_id = entry.name.removeprefix(".").removesuffix(STAGING_SUFFIX)
            try:
                if is_job_id(task_id) and entry.stat().st_mtime < cutoff:
                    found.append(task_id)
            except OSError:
                continue
        return found


# A directory is made beside its final place under this name, then renamed into it whole.
STAGING_SUFFIX = ".tmp"


def _staging_of(final: Path) -> Path:
    return final.with_name(f".{final.name}{STAGING_SUFFIX}")


# Both try the common case first (nothing there yet): a removal of what is not there costs
# a dozen calls, at every job.
def _fresh_dir(path: Path) -> Path:
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(mode=0o700)
    return path


def _swap_in(staging: Path, final: Path) -> None:
    """`staging` becomes `final` (replacing what was there) in one rename."""
    try:
        os.rename(staging, final)  # a directory onto a directory that is there fails
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
