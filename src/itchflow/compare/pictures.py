"""Pictures of the comparison (matplotlib, imported only when asked for):

  paths.png          one panel per path: the steps from the sender's bytes to the book engine,
                     in lanes (sender, kernel, shared memory, receiver, books); red arrows copy
                     the bytes, the grey band is the kernel, the poller is marked; beside it the
                     measured figures of that path
  latency_ccdf.png   every path's paced latency (sender's stamp -> applied) as a CCDF, log-log
"""

from __future__ import annotations

import os
import textwrap

from itchflow.compare.paths import BOOKS, KERNEL, PATHS, RECV, SEND, SHM
from itchflow.compare.row import OK
from itchflow.sinks.output import save_figure

LANES = (SEND, KERNEL, SHM, RECV, BOOKS)
LANE_Y = {SEND: 4, KERNEL: 3, SHM: 2, RECV: 1, BOOKS: 0}
LANE_NAME = {SEND: "sender (user)", KERNEL: "kernel", SHM: "shared memory", RECV: "receiver (user)",
             BOOKS: "book engine"}


def _figures(r) -> str:
    if r is None:
        return "not run"
    if r.status != OK:
        return f"{r.status}:\n" + textwrap.fill(r.reason, 34)
    p = r.latency.get("paced", {})
    lines = [f"{r.msgs_per_s / 1e6:,.2f} M msg/s flat out",
             f"{r.cpu_ns_per_msg:,.0f} ns CPU/msg" if r.cpu_ns_per_msg else "CPU: -",
             f"{r.syscalls_per_msg:.4f} syscalls/msg" if r.syscalls_per_msg is not None else "syscalls: -",
             f"{PATHS[r.key].copies} copies/msg",
             f"paced p50 {p['p50_us']:,.1f} us, p99 {p['p99_us']:,.0f} us" if p.get("samples") else "paced: -",
             "books equal" if r.books_equal else "BOOKS DIFFER"]
    return "\n".join(lines)


def draw_paths(report, path: str) -> str:
    from itchflow.sinks.plots import pyplot

    plt = pyplot()
    keys = [r.key for r in report.rows] or list(PATHS)
    width = max(len(PATHS[k].steps) for k in keys) + 2
    fig, axes = plt.subplots(len(keys), 1, figsize=(2.0 * width + 2, 2.5 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        info = PATHS[key]
        row = report.row(key)
        steps = info.steps
        ax.axhspan(LANE_Y[KERNEL] - 0.45, LANE_Y[KERNEL] + 0.45, color="0.88", zorder=0)
        for lane in LANES:
            ax.text(-0.6, LANE_Y[lane], LANE_NAME[lane], ha="right", va="center", fontsize=7.5, color="0.35")
        for i, (label, where, copies) in enumerate(steps):
            y = LANE_Y[where]
            ax.text(i, y, textwrap.fill(label, 22), ha="center", va="center", fontsize=8, wrap=True, zorder=3,
                    bbox=dict(boxstyle="round,pad=0.3", fc="mistyrose" if copies else "white",
                              ec="tab:red" if copies else "0.3", lw=1.2 if copies else 0.8))
            if i:
                py = LANE_Y[steps[i - 1][1]]
                ax.annotate("", xy=(i - 0.28, y), xytext=(i - 1 + 0.28, py), zorder=2,
                            arrowprops=dict(arrowstyle="->", color="tab:red" if copies else "0.3",
                                            lw=2.0 if copies else 1.0))
                if copies:
                    ax.text(i - 0.5, (y + py) / 2 + 0.25, "copy", color="tab:red", fontsize=7, ha="center")
                if (where == KERNEL) != (steps[i - 1][1] == KERNEL):
                    ax.plot([i - 0.5], [LANE_Y[KERNEL] + (0.45 if max(y, py) > LANE_Y[KERNEL] else -0.45)],
                            marker="x", color="black", ms=7, zorder=4)
        if info.poller:
            ax.text(len(steps) - 1, -1.05, f"polls: {info.poller}", ha="center", fontsize=7, color="tab:blue")
        ax.text(width - 1.6, 2, _figures(row), ha="left", va="center", fontsize=9, family="monospace",
                bbox=dict(boxstyle="round", fc="whitesmoke", ec="0.6"))
        ax.set_xlim(-1.4, width + 0.4)
        ax.set_ylim(-1.35, 4.6)
        ax.set_title(f"{info.title}: {info.copies} copies, kernel crossed {info.kernel_crossings}x (x), "
                     f"{info.wakeup}", fontsize=10, loc="left")
        ax.axis("off")
    fig.suptitle(f"itchflow compare: the packet path of each method ({report.terms.get('messages', 0):,} messages)",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path


def draw_ccdf(report, path: str) -> str:
    from itchflow.sinks.plots import latency_plot

    stages = {PATHS[r.key].title + " (paced)": r.samples["paced"] for r in report.rows
              if r.status == OK and len(r.samples.get("paced", ())) > 0}
    t = report.terms
    return latency_plot(stages, path, f"sender's stamp -> applied to the book, paced at "
                                      f"{t.get('rate_msgs_per_s', 0):,.0f} msg/s, one sample per packet/record")


def draw_all(report, folder: str) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    return [draw_paths(report, os.path.join(folder, "paths.png")),
            draw_ccdf(report, os.path.join(folder, "latency_ccdf.png"))]
