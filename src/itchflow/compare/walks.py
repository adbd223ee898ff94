"""The receive loops alone: what one packet costs in the call or the ring walk itself, apart
from the rest of the receive path (the MoldUDP64 in-order path, Python between runs).

The network rows measure the whole receive path beyond the in-process baseline. The claims
"recv ~1,000 ns per packet" and "a bypass loop < 100 ns per packet" are about the call and the
walk alone, so they are judged on these figures, measured by ``itchflow bench net``'s drains
(``bench.net.run_veth``): the same queued datagrams (as large as the comparison's packets)
drained by recv from Python, recv compiled, recvmmsg compiled, the TPACKET_V3 ring walk and the
AF_XDP ring walk, each with the same compiled header read per packet; wall ns per packet (best
round), the draining thread's CPU per packet and the system calls it made per packet, counted by
the kernel (the raw_syscalls:sys_enter tracepoint on that thread).

Over a veth pair between two namespaces of its own (root; removed afterwards, however it ends),
or on loopback (recv, recvmmsg, and TPACKET_V3 with CAP_NET_RAW; no AF_XDP, no system-call count)
when the comparison's network runs on loopback.
"""

from __future__ import annotations

# bench net's method names -> the keys the comparison uses
_KEYS = {"recv (Python)": "recv_python", "recv (compiled)": "recv", "TPACKET_V3 ring walk (compiled)": "tpacket",
         "AF_XDP copy, ring walk (compiled)": "af_xdp"}
PACKETS = 4096
ROUNDS = 3
WHAT = ("one queued datagram drained: the call or the ring walk alone, plus the same compiled header read "
        "per packet (no MoldUDP64 state machine, no book, no Python per run)")


def _key(name: str) -> str:
    if name.startswith("recvmmsg"):
        return "recvmmsg"
    if name.startswith("AF_XDP copy + busy poll"):
        return "af_xdp_busy_poll"
    return _KEYS.get(name, name)


def measure_walks(net_kind: str, datagram_bytes: int, packets: int = PACKETS, rounds: int = ROUNDS) -> dict:
    """{"transport", "walks": {key: {method, ns_per_packet, cpu_ns_per_packet, syscalls_per_packet,
    ...}}, "notes": [why a method was not measured]}; "reason" instead when nothing could run."""
    from itchflow.bench import net as bench_net

    notes: list[str] = []

    def echo(line: str) -> None:
        if line.strip().startswith("("):      # bench net's notes: a method skipped and why
            notes.append(line.strip().strip("()"))

    out = {"packets": packets, "rounds": rounds, "datagram_bytes": datagram_bytes, "what": WHAT}
    if net_kind == "veth":
        res = bench_net.run_veth(packets=packets, rounds=rounds, size=datagram_bytes, echo=echo)
        figures = res.get("veth", {})
        out["transport"] = "a veth pair between two namespaces of its own (made and removed by bench net)"
        out["xdp"] = {k: v for k, v in res.get("xdp", {}).items() if isinstance(v, (int, float, str, bool))}
    else:
        figures = bench_net.run(packets=packets, rounds=rounds, size=datagram_bytes, echo=echo)
        out["transport"] = "loopback (no AF_XDP there; system calls per packet not counted)"
    out["walks"] = {_key(name): {"method": name, **f} for name, f in figures.items()}
    out["notes"] = notes
    if not figures:
        out["reason"] = "; ".join(notes) or "no method measured"
    return out
