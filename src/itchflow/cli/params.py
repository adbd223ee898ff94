"""Parameter types shared by the commands."""

from __future__ import annotations

import math
import os

import click

_SUFFIX = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000, "b": 1_000_000_000}


class Count(click.ParamType):
    """An integer that may be written 300k, 50M, 1.5e6 or 100_000_000."""

    name = "count"

    def convert(self, value, param, ctx):
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


class ImagePath(click.Path):
    """A picture's file name: its suffix says the format (none: PNG), checked before any work
    (matplotlib would only refuse it after the run)."""

    name = "image"
    FORMATS = ("png", "svg", "pdf", "jpg", "jpeg", "webp", "tif", "tiff", "eps", "ps", "svgz", "gif")

    def __init__(self):
        super().__init__(dir_okay=False)

    def convert(self, value, param, ctx):
        path = super().convert(value, param, ctx)
        suffix = os.path.splitext(os.fspath(path))[1][1:].lower()
        if suffix and suffix not in self.FORMATS:
            self.fail(f"{value!r}: .{suffix} is not an image format (one of: {', '.join(self.FORMATS)})", param, ctx)
        return path


IMAGE = ImagePath()
