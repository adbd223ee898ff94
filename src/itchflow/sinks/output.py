"""Output files that appear whole or not at all.

Every file a command writes (a generated day, a decoded table, an event stream, a research
table, a picture) is written under ``NAME.<unique>.part`` beside its final name and renamed when
it is complete (a name of this writer's own, made new, never an existing file or a link
followed: a ``NAME.part`` that was a link to the input had the input emptied, and two commands
writing one NAME shared a ``.part`` and left a mix of both: probe 30): a rename within a
directory is atomic, so a reader sees the old file, or nothing, or the whole new one. On any
error or interrupt (a full disk, a bad byte mid-day, Ctrl-C) the ``.part`` file is removed, so
a cut file is never left where the answer would be: a cut day is still a valid day, only
shorter, and would be read as one. An ``OSError`` while writing names
the final file (pyarrow's write errors name none).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator
from typing import NoReturn

from itchflow.errors import ScratchSpaceError

PART_SUFFIX = ".part"


def part_path(path: str | os.PathLike) -> str:
    """Where a live capture (``StreamOutput``) keeps what arrived when it does not complete
    (Ctrl-C, a session cut before its end): ``NAME.part``."""
    return os.fspath(path) + PART_SUFFIX


def new_part(path: str | os.PathLike) -> str:
    """A file of this writer's own beside ``path``, made now (``NAME.<pid>-<random>.part``,
    created exclusively: never an existing file, never a link followed), to write ``path``
    under until it is complete."""
    import secrets

    final = os.fspath(path)
    for _ in range(100):
        tmp = f"{final}.{os.getpid()}-{secrets.token_hex(4)}{PART_SUFFIX}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666))
            return tmp
        except FileExistsError:
            continue
        except OSError as e:
            if (e.errno == errno.ENAMETOOLONG and len(os.fsencode(os.path.basename(final))) <= 255
                    < len(os.fsencode(os.path.basename(tmp)))):
                # (the name alone is legal: "File name too long" about it read as a lie, probe 30; the
                # room is for any pid: it followed this process's, and a longer one failed later, probe 35)
                extra = len(f".{_LONGEST_PID}-{secrets.token_hex(4)}{PART_SUFFIX}")
                raise OSError(errno.ENAMETOOLONG, f"File name too long: it is written as NAME.<pid>-<random>.part "
                                                  f"until complete, {extra} bytes more than NAME, and a name may have "
                                                  f"255: keep it to {255 - extra}", final) from e
            raise_named(e, final)
    raise FileExistsError(errno.EEXIST, "no free name for the file being written", final)


def _longest_pid() -> str:
    """The widest process id this system gives (/proc/sys/kernel/pid_max), for a name's room."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return "9" * len(str(int(f.read()) - 1))
    except (OSError, ValueError):
        return "9" * 7   # Linux's largest pid_max, 4194304


_LONGEST_PID = _longest_pid()


def refuse_input_as_output(out: str | os.PathLike, *inputs) -> None:
    """ValueError when ``out`` is one of the inputs (the same file by any name): written, the
    input was replaced by the output and the command exited 0 (probe 30: ``bbo in.parquet
    --out in.parquet``, ``decode in.csv --out in.csv``)."""
    out = os.fspath(out)
    for src in inputs:
        if not isinstance(src, (str, os.PathLike)):
            continue
        with contextlib.suppress(OSError):
            if os.path.samefile(out, src):
                raise ValueError(f"{out}: is the input {os.fspath(src)}: writing it would replace the input")


# A process's own descriptors by name: /dev/stdout and the like are links to /proc/self/fd/N,
# which is a regular file when the descriptor was redirected to one (`-o /dev/stdout > f`):
# renamed over, the system's /dev/stdout link itself became a file (probe 19, as root)
_DESCRIPTOR_NAMES = re.compile(r"^/dev/(stdin|stdout|stderr|fd/\d+)$|^/proc/(self|thread-self|\d+)/fd/\d+$")


def written_in_place(path: str) -> bool:
    """A device, FIFO or socket (``/dev/null``, ``/dev/stdout``), or a descriptor named by
    its path, is written in place: it cannot be renamed over, and whoever reads it takes the
    bytes as they come anyway."""
    if _DESCRIPTOR_NAMES.match(os.path.abspath(path)):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def named(error: OSError, path: str) -> OSError:
    """The error naming ``path`` if it is a system error about the file being written: one
    naming the ``.part`` file, or naming no file at all (pyarrow's write errors). An error
    that names another file (the input), carries no errno (our own messages, which say what
    they are about) or is about our temporary files ($TMPDIR, probe 57), is left as it is."""
    if (not error.errno or isinstance(error, ScratchSpaceError)
            or (error.filename is not None and not _is_part_of(error.filename, path))):
        return error
    return type(error)(error.errno, os.strerror(error.errno), path)


def _is_part_of(name, path: str) -> bool:
    """Whether ``name`` is a file ``path`` is written under (``new_part``, ``part_path``)."""
    name = os.fspath(name) if isinstance(name, (str, os.PathLike)) else ""
    return name.startswith(os.fspath(path) + ".") and name.endswith(PART_SUFFIX)


def raise_special(error: OSError, path: str) -> NoReturn:
    """Raise an error met writing the device, FIFO or pipe ``path`` in place, naming it: a
    full device said "[Errno 28] No space left on device" and no file, and a Parquet file
    sent to a pipe said only "lseek failed" (pyarrow's, with no errno: probe 30)."""
    if error.errno:
        raise_named(error, path)   # (an error naming another file, the input, is left as it is)
    why = str(error)
    if "seek" not in why.lower():   # not the writer's own (a missing input said "/dev/null: day.itch: no
        raise error                 # such file": probe 33)
    raise OSError(f"{path}: {why} (this output is written as a file it can seek in, not to a pipe or FIFO: "
                  "write it to a file)") from error


def raise_named(error: OSError, path: str) -> NoReturn:
    """Raise ``named(error, path)``, chained to error when it is another error, else error
    itself: ``raise e from e`` makes an error its own cause, and Dask's walk of a failed
    task's causes then never ended (a hung batch, a worker's memory growing without bound)."""
    renamed = named(error, path)
    if renamed is error:
        raise error
    raise renamed from error


@contextlib.contextmanager
def folders_made_for(out: str | os.PathLike) -> Iterator[None]:
    """The folders of ``out`` that do not exist yet (it and the parents made with it) are
    removed again if what runs inside fails and leaves them empty: a failed lobster left an
    empty OUT behind (probe 37). What was there before is never touched."""
    missing, p = [], os.path.abspath(os.fspath(out))
    while p and not os.path.lexists(p) and p != os.path.dirname(p):
        missing.append(p)
        p = os.path.dirname(p)
    try:
        yield
    except BaseException:
        for folder in missing:   # deepest first; one not empty keeps it and those above it
            if not os.path.lexists(folder):   # never made (its name refused): those above it may have been
                continue
            try:
                os.rmdir(folder)
            except OSError:
                break
        raise


@contextlib.contextmanager
def output_file(path: str | os.PathLike, inputs=()) -> Iterator[str]:
    """Yield the path to write (``new_part``: a file of this writer's own); rename it to
    ``path`` when the block ends normally, remove it when it raises. An OSError raised in the
    block or by the rename comes out naming ``path``. inputs: paths the output must not be
    (``refuse_input_as_output``)."""
    final = os.fspath(path)
    if os.path.isdir(final):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), final)
    refuse_input_as_output(final, *inputs)
    if written_in_place(final):
        try:
            yield final
        except OSError as e:   # (a device's write errors named no file: probe 30)
            raise_special(e, final)
        return
    tmp = new_part(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise_named(e, final)
        raise


def save_figure(fig, path: str | os.PathLike, **kwargs) -> str:
    """``fig.savefig`` through ``output_file``; the format comes from the final name's suffix
    (matplotlib would take it from ``.part``), PNG when it has none; ValueError naming the file
    for a suffix that is not an image format."""
    final = os.fspath(path)
    fmt = os.path.splitext(final)[1][1:].lower() or "png"
    known = fig.canvas.get_supported_filetypes()
    if fmt not in known:
        raise ValueError(f"{final}: .{fmt} is not an image format (one of: {', '.join(sorted(known))})")
    with output_file(final) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)
    return final


class StreamOutput:
    """A file written as a stream arrives (``listen --out``, ``soup fetch --out``), under a
    ``.part`` name of its own as every output (``new_part``): an earlier NAME stays whole until
    the new one is done (opening NAME itself truncated an earlier day before the first packet
    came), and two captures to one NAME write apart (they shared ``NAME.part``, and one exited 0
    with a mix of both days: probe 48). ``commit`` renames it to NAME (the last capture done
    wins, whole); ``discard`` removes it (an error, SIGTERM); ``keep_part`` renames what arrived
    to ``NAME.part`` (Ctrl-C of a live capture: not the answer, but not thrown away either) and
    returns that path. A device (``/dev/stdout``) is written in place."""

    def __init__(self, path: str | os.PathLike):
        self.final = os.fspath(path)
        if os.path.isdir(self.final):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), self.final)
        in_place = written_in_place(self.final)
        self.path = self.final if in_place else new_part(self.final)
        try:   # (a part made new, never a link followed: one to the served file would have emptied it)
            flags = os.O_WRONLY | (os.O_CREAT | os.O_TRUNC if in_place else getattr(os, "O_NOFOLLOW", 0))
            self.file = NamedWrites(os.fdopen(os.open(self.path, flags, 0o666), "wb"), self.final)
        except OSError as e:
            if not in_place:
                with contextlib.suppress(OSError):
                    os.remove(self.path)
            raise_named(e, self.final)

    def _close(self) -> None:
        if not self.file.closed:
            self.file.close()

    def commit(self) -> str:
        self._close()
        if self.path != self.final:
            try:
                os.replace(self.path, self.final)
            except OSError as e:
                raise_named(e, self.final)
        return self.final

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._close()
        if self.path != self.final:
            with contextlib.suppress(OSError):
                os.remove(self.path)

    def keep_part(self) -> str:
        self._close()
        if self.path == self.final:
            return self.path
        kept = part_path(self.final)
        try:
            os.replace(self.path, kept)
        except OSError:   # (NAME.part a folder, say): what arrived stays where it is, and is named
            return self.path
        self.path = kept
        return kept

    def nothing_written(self) -> bool:
        """True when the part is empty: a listener that got no packet (kept, it was an empty
        .part said to hold "what arrived": probe 34). A device written in place is never empty."""
        self._close()
        try:
            return self.path != self.final and os.path.getsize(self.path) == 0
        except OSError:
            return False


class NamedWrites:
    """A binary file whose write errors name the output (a full disk under `listen --out` said
    "[Errno 28] No space left on device" and no file): the receive loops write to it, and the
    commands cannot tell its errors from the network's, which name no file either; a batch
    split writes its shards through it."""

    def __init__(self, raw, final: str):
        self._raw, self._final = raw, final

    def write(self, data) -> int:
        try:
            return self._raw.write(data)
        except OSError as e:
            raise_named(e, self._final)

    def flush(self) -> None:
        try:
            self._raw.flush()
        except OSError as e:
            raise_named(e, self._final)

    def close(self) -> None:
        try:
            self._raw.close()
        except OSError as e:
            raise_named(e, self._final)

    @property
    def closed(self) -> bool:
        return self._raw.closed

    def fileno(self) -> int:
        return self._raw.fileno()

    def tell(self) -> int:
        return self._raw.tell()
