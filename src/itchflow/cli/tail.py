"""``itchflow write-slowly``: append a day to a file at a chosen rate, to try tail mode by hand.

In one terminal:   itchflow write-slowly day.itch live.itch --rate 200000
in another:        itchflow stats tail:live.itch
"""

from __future__ import annotations

import click

from itchflow.cli import main
from itchflow.cli.params import BYTES, INPUT_FILE, NON_NEGATIVE, SEED

MIN_RATE = 1.0  # messages a second: slower is not a feed


@main.command("write-slowly")
@click.argument("src", type=INPUT_FILE)
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--rate", type=NON_NEGATIVE, default=100_000, show_default=True, help="Messages per second (0: flat out).")
@click.option("--piece-bytes", type=BYTES, default=4093, show_default=True,
              help="Largest write; sizes are random, cutting messages anywhere.")
@click.option("--seed", type=SEED, default=0, show_default=True)
def write_slowly(src: str, dst: str, rate: float, piece_bytes: int, seed: int) -> None:
    """Append SRC to DST in odd-sized pieces at about RATE messages/s."""
    from itchflow.cli.decode import fail
    from itchflow.errors import ITCHFormatError
    from itchflow.sim.write_slowly import append_slowly
    from itchflow.sinks.output import named

    if 0 < rate < MIN_RATE:   # 1e-300 messages/s overflowed the sleep after the first piece
        raise click.BadParameter(f"at least {MIN_RATE:g} message a second (0: flat out), not {rate:g}",
                                 param_hint="'--rate'")
    import os
    import sys

    from itchflow.cli.signals import sigterm_exits

    before = os.path.getsize(dst) if os.path.isfile(dst) else 0
    # DST is the growing file a reader follows: what was appended stays (the command line's
    # "unfinished output was removed" was untrue here: probe 41)
    kept = f"{dst} keeps what was appended so far (a message may be cut at its end)"
    try:
        with sigterm_exits(f"stopped; {kept}"):
            n = append_slowly(src, dst, rate=rate or None, piece_bytes=piece_bytes, seed=seed)
    except KeyboardInterrupt:
        grown = (os.path.getsize(dst) if os.path.isfile(dst) else before) - before
        click.echo(f"itchflow: interrupted (Ctrl-C) after {grown:,} bytes; {kept}", err=True)
        sys.exit(130)
    except OSError as e:   # a missing directory, a full disk: name the file, no traceback
        fail(named(e, dst))
    except (ITCHFormatError, ValueError) as e:
        fail(e)
    click.echo(f"appended {n:,} bytes to {dst}")
