"""Parameter types shared by the commands."""

from __future__ import annotations

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
        try:
            number = float(text) * mult
        except ValueError:
            self.fail(f"{value!r} is not a count (e.g. 300k, 50M, 1e6)", param, ctx)
        if number != int(number) or number < 0:
            self.fail(f"{value!r} is not a whole non-negative count", param, ctx)
        return int(number)
