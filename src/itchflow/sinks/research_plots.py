"""PNG pictures of the research tables: one stock's day from the bars, the imbalance path
into the close from the auctions. matplotlib is imported only when a plot is asked for."""

from __future__ import annotations

import numpy as np

from itchflow.sinks.output import save_figure
from itchflow.sinks.plots import pyplot as _pyplot


def _hours(ns) -> np.ndarray:
    return np.asarray(ns, np.float64) / 3.6e12


def _clock_axis(ax) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda h, _: f"{int(h):02d}:{int(round((h % 1) * 60)) % 60:02d}"))


def bars_rows(table, symbol: str):
    """The rows of one stock ``bars_plot`` draws; ValueError when there are none."""
    import pyarrow.compute as pc

    t = table.filter(pc.equal(table["symbol"], symbol))
    if t.num_rows == 0:
        raise ValueError(f"no bars for {symbol!r}")
    return t


def bars_plot(table, symbol: str, path: str, title: str = "") -> str:
    """Price (bid/ask band, trade close and VWAP), time-weighted spread and volume of one
    stock over the day, from a ``bars`` table."""
    t = bars_rows(table, symbol)
    c = {name: t[name].to_numpy(zero_copy_only=False) for name in
         ("start_ns", "bid", "ask", "close", "vwap", "spread", "volume")}
    step = (c["start_ns"][1] - c["start_ns"][0]) if len(c["start_ns"]) > 1 else 60_000_000_000
    x = _hours(c["start_ns"] + step)  # the quote is the one at the end of each interval
    plt = _pyplot()
    fig, (ax_p, ax_s, ax_v) = plt.subplots(3, 1, figsize=(10, 7), sharex=True,
                                           gridspec_kw={"height_ratios": [3, 1.2, 1.5]})
    ax_p.fill_between(x, c["bid"], c["ask"], step="pre", color="tab:blue", alpha=0.2, lw=0, label="bid-ask")
    ax_p.step(x, c["bid"], where="pre", color="tab:green", lw=0.6, label="bid")
    ax_p.step(x, c["ask"], where="pre", color="tab:red", lw=0.6, label="ask")
    traded = ~np.isnan(c["close"])
    ax_p.plot(_hours(c["start_ns"][traded] + step / 2), c["close"][traded], ".", ms=3, color="black",
              label="last trade")
    ax_p.plot(_hours(c["start_ns"][traded] + step / 2), c["vwap"][traded], "_", ms=5, color="tab:orange",
              label="VWAP")
    ax_p.set_ylabel("price ($)")
    ax_p.legend(fontsize=8, ncol=5, loc="upper left")
    ax_p.grid(True, lw=0.3)
    ax_s.step(x, c["spread"] * 100, where="pre", color="tab:purple", lw=0.8)
    ax_s.set_ylabel("spread (cents,\ntime-weighted)")
    ax_s.grid(True, lw=0.3)
    ax_v.bar(_hours(c["start_ns"]), c["volume"], width=step / 3.6e12, align="edge", color="tab:gray")
    ax_v.set_ylabel("volume (shares)")
    ax_v.set_xlabel("time of day")
    ax_v.grid(True, lw=0.3)
    _clock_axis(ax_v)
    fig.suptitle(f"{symbol}: {title}" if title else symbol, fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


def imbalance_rows(imbalances, symbol: str, cross_type: str):
    """The NOII rows ``imbalance_plot`` draws; ValueError when there are none (checked before a
    command writes its tables: it failed after, probe 32)."""
    import pyarrow.compute as pc

    imb = imbalances.filter(pc.and_(pc.equal(imbalances["symbol"], symbol),
                                    pc.equal(imbalances["cross_type"], cross_type)))
    if imb.num_rows == 0:
        raise ValueError(f"no imbalance messages for {symbol!r} with cross type {cross_type!r}")
    return imb


def imbalance_plot(auctions, symbol: str, path: str, cross_type: str = "C") -> str:
    """The NOII path into one cross of a stock (the closing cross by default): signed
    imbalance and paired shares, and far, near and reference prices with the cross price."""
    import pyarrow.compute as pc

    imb = imbalance_rows(auctions.imbalances, symbol, cross_type)
    cr = auctions.crosses
    cr = cr.filter(pc.and_(pc.equal(cr["symbol"], symbol), pc.equal(cr["cross_type"], cross_type)))
    c = {n: imb[n].to_numpy(zero_copy_only=False) for n in
         ("timestamp_ns", "signed_imbalance", "paired_shares", "far_price", "near_price", "reference_price")}
    x = _hours(c["timestamp_ns"])
    plt = _pyplot()
    fig, (ax_q, ax_p) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    ax_q.step(x, c["paired_shares"], where="post", color="tab:blue", lw=1, label="paired shares")
    colors = np.where(c["signed_imbalance"] >= 0, "tab:green", "tab:red")
    ax_q.bar(x, c["signed_imbalance"], width=(x.max() - x.min() + 1e-6) / max(len(x), 1) * 0.8,
             color=colors, align="edge", label="imbalance (+ buy, - sell)")
    ax_q.axhline(0, color="black", lw=0.5)
    ax_q.set_ylabel("shares")
    ax_q.legend(fontsize=8, loc="upper left")
    ax_q.grid(True, lw=0.3)
    for name, color in (("reference_price", "black"), ("near_price", "tab:orange"), ("far_price", "tab:purple")):
        ax_p.step(x, c[name], where="post", color=color, lw=1, label=name.replace("_", " "))
    if cr.num_rows:
        tx = _hours(cr["timestamp_ns"].to_numpy())
        px = cr["price"].to_numpy()
        ax_p.plot(tx, px, "*", ms=12, color="tab:red", label="cross price")
        for ax in (ax_q, ax_p):
            for t in tx:
                ax.axvline(t, color="tab:red", lw=0.6, ls="--")
    ax_p.set_ylabel("price ($)")
    ax_p.set_xlabel("time of day")
    ax_p.legend(fontsize=8, loc="upper left")
    ax_p.grid(True, lw=0.3)
    from matplotlib.ticker import FuncFormatter

    ax_p.xaxis.set_major_formatter(FuncFormatter(
        lambda h, _: f"{int(h):02d}:{int((h % 1) * 60):02d}:{int(round(((h * 60) % 1) * 60)) % 60:02d}"))
    name = {"O": "opening", "C": "closing", "H": "halt/IPO", "A": "extended close"}.get(cross_type, cross_type)
    fig.suptitle(f"{symbol}: imbalance into the {name} cross", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path
