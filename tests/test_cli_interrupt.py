"""Ctrl-C in any command ends with a sentence and status 130: trades, bbo, snapshots, decode
and gen printed click's bare "Aborted!" and exited 1, where the others said what was kept."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from itchflow.cli import main


@pytest.mark.parametrize("args, target", [
    (["trades", "day.itch", "-o", "t.parquet"], "itchflow.sinks.events.events_to_parquet"),
    (["bbo", "day.itch", "-o", "b.parquet"], "itchflow.sinks.events.events_to_parquet"),
    (["gen", "day.itch", "-n", "20k", "-q"], "itchflow.sim.generator.write_day"),
])
def test_ctrl_c_exits_130_with_a_sentence(monkeypatch, tmp_path, args, target):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    (tmp_path / "day.itch").write_bytes(b"")
    monkeypatch.setattr(target, interrupted)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 130, res.output
    assert "interrupted (Ctrl-C)" in res.output and "Aborted" not in res.output


def test_running_out_of_memory_is_an_error_line_not_a_traceback(monkeypatch, tmp_path):
    import numpy as np

    def no_memory(*a, **k):
        np.zeros(1 << 62, np.uint8)   # numpy's _ArrayMemoryError, a MemoryError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "day.itch").write_bytes(b"")
    monkeypatch.setattr("itchflow.sinks.events.events_to_parquet", no_memory)
    res = CliRunner().invoke(main, ["trades", "day.itch", "-o", "t.parquet"])
    assert res.exit_code == 1 and "itchflow: error: out of memory (Unable to allocate" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
