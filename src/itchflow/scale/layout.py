"""Where a batch puts things, declared once, and how a file appears there atomically.

OUT/
  date=YYYY-MM-DD/shard=K/part-0.parquet    the dataset (stats, crosses, imbalances: date=YYYY-MM-DD/part-0.parquet)
  date=YYYY-MM-DD/_summary.json            the day's summary (readers skip names starting "_")
  _itchflow/job.json                       the job and options this directory holds
  _itchflow/lock                           held by the batch run writing the directory
  _itchflow/done/DATE/*.json               a marker per finished task, holding its summary
  _itchflow/scratch/DATE/shard-K.{itch,seq} shard files and their original sequence numbers
  _itchflow/scratch/DATE/shard-map.npy     the locate -> shard map the day was split with

pyarrow.dataset, pandas, dask.dataframe, DuckDB and Polars skip files and folders whose
names start with "_" or ".", so bookkeeping and temporary files never show in the dataset.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PART = "part-0.parquet"
TEMP_PREFIX = ".tmp-"
SUMMARY = "_summary.json"
META = "_itchflow"

_ISO = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
_EIGHT = re.compile(r"(?<!\d)(\d{8})(?!\d)")
_SIX = re.compile(r"(?<![A-Za-z\d])[A-Za-z]?(\d{6})(?!\d)")  # S013019-v50.txt: MMDDYY


def _valid(y: int, m: int, d: int) -> bool:
    """A date of the calendar (20190231 is not one) in the years an archive can hold."""
    if not 1990 <= y <= 2099:
        return False
    try:
        datetime.date(y, m, d)
    except ValueError:
        return False
    return True


def is_date_key(key: str) -> bool:
    """Whether a partition value (``day_key``) is a date of the calendar, not a file's stem
    (a stem can look like one: 2019-02-31.itch is named date=2019-02-31, and warned of)."""
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", key)
    return bool(m) and _valid(int(m[1]), int(m[2]), int(m[3]))


def day_key(path: str) -> str:
    """The partition value for a day's file: its date as YYYY-MM-DD when the name holds one
    (2019-01-30, 20190130, 01302019 as Nasdaq names its files, S013019), else its stem."""
    name = Path(str(path).rstrip("/")).name
    m = _ISO.search(name)
    if m and _valid(int(m[1]), int(m[2]), int(m[3])):
        return f"{m[1]}-{m[2]}-{m[3]}"
    m = _EIGHT.search(name)
    if m:
        s = m[1]
        if _valid(int(s[:4]), int(s[4:6]), int(s[6:])):
            return f"{s[:4]}-{s[4:6]}-{s[6:]}"
        if _valid(int(s[4:]), int(s[:2]), int(s[2:4])):
            return f"{s[4:]}-{s[:2]}-{s[2:4]}"
    m = _SIX.search(name)
    if m:
        s = m[1]
        if _valid(2000 + int(s[4:]), int(s[:2]), int(s[2:4])):
            return f"20{s[4:]}-{s[:2]}-{s[2:4]}"
    stem = name.split(".")[0] or name
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)


@dataclass(frozen=True)
class Layout:
    """Paths of one batch output directory (local, or a mount every worker sees)."""

    root: str

    def day_dir(self, day: str) -> str:
        return os.path.join(self.root, f"date={day}")

    def part(self, day: str, shard: int | None) -> str:
        d = self.day_dir(day) if shard is None else os.path.join(self.day_dir(day), f"shard={shard}")
        return os.path.join(d, PART)

    def summary(self, day: str) -> str:
        return os.path.join(self.day_dir(day), SUMMARY)

    def job_file(self) -> str:
        return os.path.join(self.root, META, "job.json")

    def done_dir(self, day: str | None = None) -> str:
        """The markers' folder: every day's, or one day's."""
        d = os.path.join(self.root, META, "done")
        return d if day is None else os.path.join(d, day)

    def marker(self, day: str, task: str) -> str:
        return os.path.join(self.done_dir(day), f"{task}.json")

    def scratch(self, day: str) -> str:
        return os.path.join(self.root, META, "scratch", day)

    def shard_file(self, day: str, shard: int) -> str:
        return os.path.join(self.scratch(day), f"shard-{shard}.itch")

    def seq_file(self, day: str, shard: int) -> str:
        return os.path.join(self.scratch(day), f"shard-{shard}.seq")

    def map_file(self, day: str) -> str:
        return os.path.join(self.scratch(day), "shard-map.npy")

    def lock_file(self) -> str:
        return os.path.join(self.root, META, "lock")


def temp_name(final: str) -> str:
    """A hidden sibling of final, unique to this attempt (readers skip dot files); it keeps
    final's suffix, which writers look at."""
    d, name = os.path.split(final)
    return os.path.join(d, f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}.{name}")


@contextlib.contextmanager
def hold_directory(lay: Layout) -> Iterator[None]:
    """Hold the output directory for one batch run (an advisory lock on ``_itchflow/lock``,
    let go when the run ends or its process dies): a second run into the same directory is
    refused naming the first, where it failed on the first's temporary files (probe 30)."""
    import fcntl

    from itchflow.sinks.output import raise_named

    path = lay.lock_file()
    made = []   # the folders made here: gone again if the run left nothing in them (probe 33)
    folder = os.path.dirname(path)
    while not os.path.isdir(folder) and folder != os.path.dirname(folder):
        made.append(folder)
        folder = os.path.dirname(folder)
    held = False   # (only the holder may remove the lock: another's would be freed under it)
    fd = -1
    try:
        for _ in range(100):   # the file at the path when locked, not one a finishing run removed meanwhile
            try:               # (two runs could both hold OUT that way: probe 35)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
            except OSError as e:
                raise_named(e, lay.root)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
                raise ValueError(f"{lay.root}: another batch run (process {holder}) is writing this directory; "
                                 "wait for it to end or give another directory") from None
            except OSError as e:
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise_named(e, lay.root)
                break   # a file system without locks (NFS without lockd, some FUSE mounts): unheld, as before
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            os.close(fd)
            fd = -1
        if fd < 0:
            raise OSError(errno.EAGAIN, "its lock file was replaced at every try", lay.root)
        held = True
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            raise_named(e, lay.root)
        yield
    finally:
        with contextlib.suppress(OSError):
            if held and os.listdir(os.path.dirname(path)) == ["lock"]:   # nothing but the lock: a run that
                # never started; removed while still held, so that no run locks the file being removed
                os.remove(path)
                for d in made:   # (innermost first; one not empty stops the walk)
                    os.rmdir(d)
        if fd >= 0:
            os.close(fd)


def refuse_nested(lay: Layout) -> None:
    """ValueError when the output directory is inside another batch run's, or holds one: a
    dataset is read as every file under its root, so the outer one took in the inner one's days
    (probe 48: `-o out` and `-o out/inner`, both exit 0, and `out` read as two days' rows).
    Called with the directory held (its ``_itchflow/`` made): of two runs started at once, the
    second to look sees the first."""
    def is_batch_output(folder: str) -> bool:   # (an _itchflow/ of a batch run, not any folder so named)
        lay_there = Layout(folder)
        return os.path.exists(lay_there.lock_file()) or os.path.exists(lay_there.job_file())

    root = os.path.realpath(lay.root)
    up = os.path.dirname(root)
    while True:
        if is_batch_output(up):
            raise ValueError(f"{lay.root}: inside another batch run's output directory {up} (its dataset would "
                             "take in this run's files); give a directory outside it")
        if up == os.path.dirname(up):
            break
        up = os.path.dirname(up)
    for folder, subdirs, _ in os.walk(root):
        if folder != root and META in subdirs and is_batch_output(folder):
            raise ValueError(f"{lay.root}: holds another batch run's output directory {folder} (this dataset "
                             "would take in its files); give a directory that does not")
        # (this run's own records and days are not walked: a day's folders hold only its files)
        subdirs[:] = [d for d in subdirs if d != META and not d.startswith("date=")]


def publish(tmp: str, final: str) -> None:
    """Make a finished temporary file visible under its final name (atomic on one filesystem)."""
    os.replace(tmp, final)


def clear_temps(directory: str) -> None:
    """Remove what an earlier, killed attempt left half written in directory."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for n in names:
        if n.startswith(TEMP_PREFIX):
            try:
                os.remove(os.path.join(directory, n))
            except FileNotFoundError:
                pass


def write_json(path: str, obj) -> None:
    """path written whole or not at all; an error names it (a full disk said only "[Errno 28]
    No space left on device" and left an empty temporary file: probe 30)."""
    from itchflow.sinks.output import raise_named

    tmp = temp_name(path)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise_named(e, path)


def read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
