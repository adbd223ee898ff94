"""Parameter types shared by the commands."""

from __future__ import annotations

import math
import os
from pathlib import Path

import click

_SUFFIX = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000, "b": 1_000_000_000}


class Count(click.ParamType):
    """An integer that may be written 300k, 50M, 1.5e6 or 100_000_000; ``low``: the least it
    may be (0 by default; 1 where none of a thing leaves nothing to measure)."""

    name = "count"

    def __init__(self, low: int = 0):
        self.low = low

    def convert(self, value, param, ctx):
        number = self._whole(value, param, ctx)
        if number < self.low:
            self.fail(f"{value!r} is less than {self.low:,}", param, ctx)
        return number

    def _whole(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower().replace("_", "").replace(",", "")
        mult = 1
        if text and text[-1] in _SUFFIX:
            mult, text = _SUFFIX[text[-1]], text[:-1]
        if text.isdigit():                     # exact, however large (a float loses digits)
            return int(text) * mult
        try:
            number = float(text) * mult
        except ValueError:
            self.fail(f"{value!r} is not a count (e.g. 300k, 50M, 1e6)", param, ctx)
        if not math.isfinite(number) or number != int(number) or number < 0:
            self.fail(f"{value!r} is not a whole non-negative count", param, ctx)
        return int(number)


class Number(click.ParamType):
    """A finite float within [low, high] (``low_open``: above low): a NaN, an infinity or a
    negative time would otherwise pass every comparison a command makes, or none."""

    name = "number"

    def __init__(self, low: float | None = None, high: float | None = None, low_open: bool = False):
        self.low, self.high, self.low_open = low, high, low_open

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.low is not None and (number <= self.low if self.low_open else number < self.low):
            self.fail(f"{value!r} must be {'above' if self.low_open else 'at least'} {self.low:g}", param, ctx)
        if self.high is not None and number > self.high:
            self.fail(f"{value!r} must be at most {self.high:g}", param, ctx)
        return number


SECONDS = Number(0, 1e9, low_open=True)   # a time-out or a duration: positive, under 32 years (kept in ns)
SECONDS_OR_OFF = Number(0, 1e9)           # a time-out where 0 turns it off
POSITIVE = Number(0, low_open=True)    # a rate, a bandwidth
NON_NEGATIVE = Number(0)               # a wait that may be none, a rate where 0 means flat out
FRACTION = Number(0, 1)                # a share of packets
SEED = click.IntRange(0)                # numpy's generators take non-negative seeds
BYTES = click.IntRange(1)               # a size in bytes
RUNS = click.IntRange(1)                # runs to take the best of, rounds, days, workers
THREADS = click.IntRange(1, 255)        # threads or shards of the books (shard numbers are uint8)
STOCKS = click.IntRange(1, 20_000)      # stocks of a generated day (sim.generator.MAX_STOCKS)
LOBSTER_LEVELS = click.IntRange(1, 1000)  # levels a side of a LOBSTER book file (sinks.lobster.MAX_LEVELS)


def shape_usage_error(error, ctx=None) -> click.BadParameter:
    """A ``sim.generator.ShapeError`` as a usage error naming its option (--stocks, --messages, ...)."""
    return click.BadParameter(str(error), ctx=ctx, param_hint="--" + error.knob.replace("_", "-"))


class BenchCommand(click.Command):
    """A benchmark: a generated day's shape out of range (a ``sim.generator.ShapeError``: too
    few messages for its stocks, say) is a usage error naming the option, not a traceback; a
    cache folder it cannot write (read-only, full) is an error naming the file and the
    variable that moves it."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ValueError as e:
            from itchflow.sim.generator import ShapeError

            if not isinstance(e, ShapeError):
                raise
            raise shape_usage_error(e, ctx) from None
        except OSError as e:
            from itchflow.bench.common import BENCH_DIR

            where = Path(e.filename).resolve() if getattr(e, "filename", None) else None
            if where is None or not where.is_relative_to(BENCH_DIR.resolve()):
                raise
            raise click.ClickException(f"the benchmark cache {BENCH_DIR}: {e.strerror or e}: {e.filename} "
                                       f"(ITCHFLOW_BENCH_DIR moves it)") from None


class BenchGroup(click.Group):
    command_class = BenchCommand


HEARTBEAT = Number(0.001, 1e9)          # a heartbeat time-out: at least a millisecond (kept in ns)
MESSAGE_RATE = Number(0.001, 1e12)     # messages a second to pace a replay at


class PowerOfTwo(click.ParamType):
    """A whole number of bytes that is a power of two, at least ``low`` (a ring's capacity)."""

    name = "bytes"

    def __init__(self, low: int):
        self.low = low

    def convert(self, value, param, ctx):
        try:
            n = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a whole number of bytes", param, ctx)
        if n < self.low or n & (n - 1):
            self.fail(f"{value!r} is not a power of two of at least {self.low:,}", param, ctx)
        return n


RING_CAPACITY = PowerOfTwo(4096)
# an ITCH feed's ring (run --capacity): room for the largest message behind a batch header, a
# quarter of the ring at most (pipeline.publish.feed_max_payload; a test holds them equal)
FEED_RING_CAPACITY = PowerOfTwo(1 << 19)


class RingName(click.ParamType):
    """A ring's name or path: not empty (``--ring ''`` made a private ring, silently)."""

    name = "name"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, str) and value.strip():
            return value
        self.fail("a ring needs a name or a path, not an empty text", param, ctx)


RING_NAME = RingName()


class CpuList(click.ParamType):
    """'0,1': the CPUs to pin to ('' for none), each one this process may run on; ``one``: a
    single CPU, returned as an int."""

    name = "cpus"

    def __init__(self, one: bool = False):
        self.one = one
        if one:
            self.name = "cpu"

    def convert(self, value, param, ctx):
        from itchflow.hw.affinity import parse_cpus

        if value is None:
            return None
        if isinstance(value, tuple):           # a default given as the converted value
            value = ",".join(map(str, value))
        try:
            cpus = parse_cpus(str(value).strip())
        except ValueError as e:
            what = "a CPU number" if self.one else "a comma-separated list of CPU numbers"
            self.fail(str(e) if "not available" in str(e) else f"{value!r} is not {what}", param, ctx)
        if not self.one:
            return cpus
        if cpus is None or len(cpus) != 1:
            self.fail(f"{value!r} is not one CPU number", param, ctx)
        return cpus[0]


CPUS = CpuList()
CPU = CpuList(one=True)


def _ipv4_host(host: str) -> str | None:
    """Why host is no IPv4 address or name of one (None when it is)."""
    import socket

    from itchflow.sources.udp import IPV6_REFUSED, written_as_ipv6

    if written_as_ipv6(host):
        return IPV6_REFUSED
    try:
        socket.getaddrinfo(host, 0, socket.AF_INET, socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as e:
        return f"host {host!r} has no IPv4 address ({e})"
    return None


class Host(click.ParamType):
    """A local IPv4 address, or a name of one (an interface to join or send on, an address to
    listen on)."""

    name = "host"

    def convert(self, value, param, ctx):
        text = str(value).strip()
        why = _ipv4_host(text) if text else "give an address"
        if why:
            self.fail(f"{value!r}: {why}", param, ctx)
        return text


HOST = Host()


class Endpoint(click.ParamType):
    """HOST:PORT or PORT (on ``default_host``), an IPv4 address or a name that resolves to one;
    ``destination``: a place to send to, so port 0 is refused (bound, 0 means any free port);
    ``fd_ok``: fd:N (an inherited socket) passes through as it is."""

    name = "endpoint"

    def __init__(self, default_host: str, destination: bool = False, fd_ok: bool = False):
        self.default_host, self.destination, self.fd_ok = default_host, destination, fd_ok

    def convert(self, value, param, ctx):
        from itchflow.sources.udp import parse_endpoint

        if value is None or isinstance(value, tuple):
            return value
        text = str(value).strip()
        if self.fd_ok and text.startswith("fd:"):
            if not text[3:].isdigit():
                self.fail(f"{value!r}: expected fd:N, an inherited socket's file descriptor", param, ctx)
            return text
        try:
            host, port = parse_endpoint(text, self.default_host)
        except ValueError as e:
            self.fail(str(e), param, ctx)
        if self.destination and port == 0:
            self.fail(f"{value!r}: port 0 is not a place to send to", param, ctx)
        why = _ipv4_host(host)
        if why:
            self.fail(f"{value!r}: {why}", param, ctx)
        return host, port


class ClockTime(click.ParamType):
    """A time of day, HH:MM[:SS[.fffffffff]] (24:00 allowed), checked when the command line is
    read: nanoseconds after midnight; ``many``: comma-separated, at least one (a list);
    ``keep_text``: the text itself, for an API that parses it again."""

    name = "time"

    def __init__(self, many: bool = False, keep_text: bool = False):
        self.many, self.keep_text = many, keep_text
        if many:
            self.name = "times"

    def convert(self, value, param, ctx):
        from itchflow.sinks._clock import clock_ns

        if isinstance(value, list) or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        parts = [p.strip() for p in str(value).split(",")] if self.many else [str(value)]
        if self.many:
            parts = [p for p in parts if p]
            if not parts:
                self.fail(f"{value!r}: give at least one time, HH:MM[:SS[.fffffffff]]", param, ctx)
        try:
            times = [clock_ns(p) for p in parts]
        except ValueError as e:
            self.fail(str(e).removeprefix("time: "), param, ctx)
        if self.keep_text:
            return value
        # a time given twice (9:30,09:30:00) is one time: it wrote two identical sets of rows (probe 39)
        return list(dict.fromkeys(times)) if self.many else times[0]


TIMES = ClockTime(many=True)
TIME_TEXT = ClockTime(keep_text=True)


class Interval(click.ParamType):
    """A bar length ('1s', '250ms', '1min', '1h'), checked when the command line is read and
    passed on as written."""

    name = "interval"

    def convert(self, value, param, ctx):
        from itchflow.sinks._clock import every_ns

        try:
            every_ns(value)
        except ValueError as e:
            self.fail(str(e).removeprefix("every: "), param, ctx)
        return value


INTERVAL = Interval()


class SoupField(click.ParamType):
    """A SoupBinTCP login field (username 6, password and session 10 characters; a MoldUDP64
    session name is the same 10-character field): printable
    ASCII without spaces (the wire pads with spaces, so a space inside or at the end could not
    be told apart), at most ``width``; empty only where ``blank_ok`` (a client's session:
    the server's current one)."""

    name = "text"

    def __init__(self, width: int, blank_ok: bool = False):
        self.width, self.blank_ok = width, blank_ok

    def convert(self, value, param, ctx):
        text = str(value)
        if not text and not self.blank_ok:
            self.fail("must not be empty", param, ctx)
        if len(text) > self.width:
            self.fail(f"{text!r} is longer than {self.width} characters", param, ctx)
        if not all(0x21 <= ord(c) <= 0x7E for c in text):
            self.fail(f"{text!r}: only printable ASCII without spaces", param, ctx)
        return text


SOUP_USER, SOUP_PASSWORD, SOUP_SESSION = SoupField(6), SoupField(10), SoupField(10)


class InputFile(click.Path):
    """A file that must exist, or a usage error saying why it cannot be read: a loop of links
    and a dangling link were "does not exist", as a mistyped name is (probe 30)."""

    def __init__(self):
        super().__init__(exists=True, dir_okay=False)

    def convert(self, value, param, ctx):
        if not os.path.exists(os.fspath(value)):
            from itchflow.errors import missing_file

            self.fail(str(missing_file(value)), param, ctx)
        return super().convert(value, param, ctx)


INPUT_FILE = InputFile()


class InputPath(click.Path):
    """A day's name as the reading commands take it (a file, ``-``, a URL): '' is a usage error
    (it was read as the current folder, "'.': is a directory": probe 52), as a folder is."""

    def __init__(self):
        super().__init__(dir_okay=False)

    def convert(self, value, param, ctx):
        if os.fspath(value) == "":
            self.fail("'' is not a file name", param, ctx)
        return super().convert(value, param, ctx)


INPUT_PATH = InputPath()


class SourceText(click.ParamType):
    """A source string of `run` (pipeline.sources): what the string alone gets wrong (an unknown
    option, port 0, a time-out out of range) is a usage error, exit 2 (it was exit 1, as a
    failure of the run: probe 34); a missing file or ring is found when the run starts."""

    name = "source"

    def convert(self, value, param, ctx):
        from itchflow.pipeline.sources import check_source_text, parse_source

        try:
            spec = parse_source(value)
            check_source_text(spec)
        except ValueError as e:
            self.fail(str(e), param, ctx)
        if spec.kind == "file" and not spec.reads_stdin and (spec.path == "" or os.path.isdir(spec.path)):
            # (as the other commands' PATH: it was exit 1, as a failure of the run: probe 52)
            self.fail("'' is not a file name" if spec.path == "" else
                      f"{spec.path!r} is a directory, not an ITCH file or capture", param, ctx)
        return value


SOURCE = SourceText()


class FormatPath(click.Path):
    """A file name whose suffix says the format, checked before any work (matplotlib refused
    a picture's only after the run; ``trades -o t.csv`` wrote Parquet into t.csv). No suffix
    is the first format. ``refusal`` words the error: {value}, {suffix}, {formats}."""

    def __init__(self, name: str, formats: tuple[str, ...], refusal: str, bare_ok: bool = True,
                 folder_made: bool = False):
        super().__init__(dir_okay=False)
        self.name, self.formats, self.refusal, self.bare_ok = name, formats, refusal, bare_ok
        self.folder_made = folder_made   # the command may make the folder (auctions' --out): checked again there

    def convert(self, value, param, ctx):
        path = super().convert(value, param, ctx)
        suffix = os.path.splitext(os.fspath(path))[1][1:].lower()
        if not suffix and not self.bare_ok:   # (a usage error, as a wrong suffix is: it was exit 1, probe 30)
            self.fail(f"{value!r}: the name's suffix gives the format: " + " or ".join("." + f for f in self.formats),
                      param, ctx)
        if suffix and suffix not in self.formats:
            self.fail(self.refusal.format(value=repr(value), suffix=suffix, formats=", ".join(self.formats)),
                      param, ctx)
        why = cannot_write_beside(os.fspath(path), missing_ok=self.folder_made)
        if why:   # (now, not after the work: `bars --plot RO/p.png` failed once its tables were written, probe 30)
            self.fail(f"{value!r}: cannot write a file there: {why}", param, ctx)
        return path


def cannot_write_beside(path: str, missing_ok: bool = False) -> str | None:
    """Why a file cannot be made in path's folder (a read-only one; a missing one unless
    missing_ok), or None. missing_ok: a missing folder is judged by the nearest one there, which
    a command may make it in (`auctions -o DIR --plot DIR/p.png` makes DIR: probe 33). A device
    or descriptor (/dev/null, /dev/stdout) is written in place: not checked."""
    import tempfile

    from itchflow.sinks.output import written_in_place

    if written_in_place(path):
        return None
    folder = os.path.dirname(os.path.abspath(path))
    while missing_ok and not os.path.lexists(folder) and folder != os.path.dirname(folder):
        folder = os.path.dirname(folder)   # (a file or link in the way is judged as itself: it fails)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        return e.strerror or str(e)
    return None


IMAGE_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg", "webp", "tif", "tiff", "eps", "ps", "svgz", "gif")
IMAGE = FormatPath("image", IMAGE_FORMATS, "{value}: .{suffix} is not an image format (one of: {formats})")
# a picture in a folder the command makes (auctions --plot OUT/close.png: refused before, probe 33)
IMAGE_IN_MADE_FOLDER = FormatPath("image", IMAGE_FORMATS, "{value}: .{suffix} is not an image format (one of: "
                                  "{formats})", folder_made=True)


def table_path(*formats: str, bare_ok: bool = True) -> FormatPath:
    """A table's file name: one of these formats (the first when there is no suffix, unless
    not bare_ok: then a suffix is needed)."""
    return FormatPath("table", formats, "{value}: this command writes "
                      + " or ".join("." + f for f in formats) + ", not .{suffix}", bare_ok)


PARQUET = table_path("parquet", "pq")


class MessageTypes(click.ParamType):
    """--types of decode and batch: letters, names or all; none, or a letter that is no type,
    is a usage error naming the option (it was exit 1: probe 52)."""

    name = "types"

    def convert(self, value, param, ctx):
        from itchflow.decode.reader import type_codes

        try:
            codes = type_codes(value)
        except ValueError as e:
            self.fail(str(e).removeprefix("types: "), param, ctx)
        if not codes:
            self.fail("no message types: give letters such as AF, or all", param, ctx)
        return value


MESSAGE_TYPES = MessageTypes()


def symbols_option(text: str | None) -> list[str] | None:
    """--symbols as given: None when left out (every stock); each symbol once; given and
    naming none (``-s ,``) is a usage error, not an empty output."""
    from itchflow.sinks._symbols import symbol_list

    try:
        return symbol_list(text, "--symbols")
    except ValueError:
        raise click.BadParameter("give at least one symbol, or leave the option out for every stock",
                                 param_hint="--symbols") from None
