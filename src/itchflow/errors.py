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
