"""PNG plots of what a person would rather look at than read: latency distributions, depth.

matplotlib is imported only here and only when a plot is asked for (it is in the ``bench``
extra, not a base dependency): without it the caller gets a clear error, not a traceback.
"""

from __future__ import annotations

import numpy as np

from itchflow.sinks.output import save_figure
from itchflow.wire.itch import price4_to_float


def pyplot():
    """matplotlib.pyplot on the Agg backend, or a clear error when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("plots need matplotlib: pip install matplotlib (or itchflow[bench])") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def legend(ax, note: str, **kwargs) -> None:
    """The axes' legend, or when nothing labelled was drawn (matplotlib would warn "No artists
    with labels found") ``note`` in the middle of the empty axes instead."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)
    else:
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", color="gray")


def latency_plot(stages: dict[str, np.ndarray], path: str, title: str) -> str:
    """Complementary CDF per stage (log-log): how often a batch waited longer than x."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, ns in stages.items():
        v = np.sort(np.asarray(ns, np.float64)) / 1e3
        v = v[v > 0]
        if not len(v):
            continue
        ccdf = 1.0 - np.arange(len(v)) / len(v)
        ax.step(v, ccdf, where="post", label=f"{name}  (p50 {np.percentile(v, 50):,.1f} us, "
                                             f"p99 {np.percentile(v, 99):,.1f} us)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("latency per batch (us)")
    ax.set_ylabel("fraction of batches slower")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", lw=0.3)
    legend(ax, "no latency samples", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


def depth_plot(symbol: str, bids: np.ndarray, asks: np.ndarray, title: str, path: str) -> str:
    """Depth chart: cumulative shares away from the touch, bids left, asks right; prices in dollars.

    bids, asks: ``Books.depth`` arrays (fields price, shares), best level first."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for levels, color, label in ((bids, "tab:green", "bids"), (asks, "tab:red", "asks")):
        if len(levels):
            dollars, total = price4_to_float(levels["price"]), np.cumsum(levels["shares"])
            ax.step(dollars, total, where="post", color=color, label=label)
            ax.fill_between(dollars, total, step="post", color=color, alpha=0.25)
    ax.set_xlabel("price ($)")
    ax.set_ylabel("cumulative shares")
    ax.set_title(f"{symbol}: {title}", fontsize=10)
    ax.grid(True, lw=0.3)
    legend(ax, "no orders on either side", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path
