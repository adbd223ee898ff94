"""The record the pipeline's producer puts in the ring: a header, then whole ITCH messages.

Every field is one little-endian int64 word, so the header stays 8-byte aligned wherever
the ring places the payload (payloads start 8-byte aligned) and the producer writes each
field with one store. The messages after it are BinaryFILE-framed (2-byte length + message),
exactly as in a file, so the consumer hands the payload past the header to the book engine
as is, without a copy.

    word  field            meaning
    0     first_sequence   sequence number of the batch's first message
    1     source_offset    byte offset of that message in the (decompressed) source; -1 when
                           the source has no byte offsets (captures, network feeds)
    2     receive_ns       CLOCK_REALTIME when the data arrived: the kernel's receive timestamp
                           of the UDP packet, or the TCP client's read; 0 for files
    3     publish_tsc      cycle counter read just before the record is published
    4     message_count    whole messages in the batch
"""

from __future__ import annotations

import numpy as np

FIELDS = (
    ("first_sequence", "sequence number of the batch's first message"),
    ("source_offset", "byte offset of the first message in the source, -1 if none"),
    ("receive_ns", "CLOCK_REALTIME when the data arrived (kernel UDP timestamp, TCP read), 0 for files"),
    ("publish_tsc", "cycle counter read just before the record is published"),
    ("message_count", "whole messages in the batch"),
)

WORD = {name: i for i, (name, _) in enumerate(FIELDS)}
HEADER_WORDS = len(FIELDS)
HEADER_BYTES = 8 * HEADER_WORDS
HEADER_DTYPE = np.dtype([(name, "<i8") for name, _ in FIELDS])
assert HEADER_DTYPE.itemsize == HEADER_BYTES

W_FIRST_SEQUENCE = WORD["first_sequence"]
W_SOURCE_OFFSET = WORD["source_offset"]
W_RECEIVE_NS = WORD["receive_ns"]
W_PUBLISH_TSC = WORD["publish_tsc"]
W_MESSAGE_COUNT = WORD["message_count"]

RECORD_TYPE = 1          # ring record type of an ITCH batch (0 is left for plain records)


def describe() -> str:
    """The pipeline's ring record as text (``itchflow ring layout`` prints it after the ring's)."""
    lines = [f"pipeline record (run --source ring:NAME reads it as consumer 'book'; listen/soup fetch --ring "
             f"write it): type {RECORD_TYPE}, a {HEADER_BYTES}-byte header of little-endian int64 words, then "
             "BinaryFILE-framed messages (2-byte big-endian length, message), as in a day file"]
    for i, (name, doc) in enumerate(FIELDS):
        lines.append(f"    byte {8 * i:3d}  {name}: {doc}")
    return "\n".join(lines)
