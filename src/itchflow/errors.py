"""Exceptions that name where bad input is: file, byte offset, packet."""

from __future__ import annotations


class ITCHFormatError(ValueError):
    """Malformed input: says which source, at which byte offset (or packet), and what."""

    def __init__(self, message: str, *, source: str | None = None, offset: int | None = None,
                 packet: int | None = None):
        self.source = source
        self.offset = offset
        self.packet = packet
        where = []
        if source is not None:
            where.append(str(source))
        if packet is not None:
            where.append(f"packet {packet}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        self.detail = message
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class ScratchSpaceError(OSError):
    """A temporary file of ours (a decompressed capture kept whole) could not be written: the
    error is about $TMPDIR, not the output being written, and says so (an output's error
    handling must not rename it to the output file)."""


def missing_file(path) -> OSError:
    """The error for an input path that cannot be read as a file, saying why: a loop of links
    and a dangling link used to be "no such file" like a mistyped name (probe 30)."""
    import errno
    import os

    name = os.fspath(path)
    try:
        os.stat(name)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return OSError(f"{name}: a loop of symbolic links")
        if e.errno == errno.ENOENT and os.path.islink(name):   # (to the end of a chain of links)
            return FileNotFoundError(f"{name}: a symbolic link to {os.path.realpath(name)!r}, which does "
                                     f"not exist")
        if e.errno not in (errno.ENOENT, None):
            return type(e)(f"{name}: {e.strerror}")
    return FileNotFoundError(f"{name}: no such file")
