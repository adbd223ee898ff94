"""itchflow: a Nasdaq TotalView-ITCH 5.0 feed handler.

Heavy parts (Numba kernels, pyarrow, pandas) load on first use, so ``import itchflow`` and
the CLI start fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

from itchflow import _kernel_cache

_kernel_cache.configure()   # before any kernel module imports Numba: see _kernel_cache.py

from itchflow.wire.itch import (  # noqa: F401  (light: numpy only)
    CODES,
    DTYPES,
    MESSAGES,
    float_to_price4,
    price4_to_float,
    price8_to_float,
)

_LAZY = {
    "read": ("itchflow.decode.reader", "read"),
    "scan": ("itchflow.decode.reader", "scan"),
    "stats": ("itchflow.decode.reader", "stats"),
    "Decoded": ("itchflow.decode.decoded", "Decoded"),
    "ITCHFormatError": ("itchflow.errors", "ITCHFormatError"),
    "encode": ("itchflow.decode.encoder", "encode"),
    "encode_message": ("itchflow.decode.encoder", "encode_message"),
    "Books": ("itchflow.book.books", "Books"),
    "replay": ("itchflow.book.replay", "replay"),
    "Events": ("itchflow.book.events", "Events"),
    "Ring": ("itchflow.ring", "Ring"),
    "run_pipeline": ("itchflow.pipeline", "run_pipeline"),
    "batch": ("itchflow.scale.batch", "batch"),
    "lobster": ("itchflow.sinks.lobster", "lobster"),
    "bars": ("itchflow.sinks.bars", "bars"),
    "auctions": ("itchflow.sinks.auctions", "auctions"),
}


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'itchflow' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


__all__ = ["CODES", "DTYPES", "MESSAGES", "price4_to_float", "price8_to_float",
           "float_to_price4", *_LAZY]
