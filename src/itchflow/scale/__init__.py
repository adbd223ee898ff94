"""Archives of ITCH days on Dask: ``itchflow.batch(paths, job, out)``.

Days are independent tasks; a day can also be split by stock locate into shard files
(``itchflow.wire.shard``), one task per shard building books and writing outputs. Tasks pass
paths and small summaries, never large arrays. Outputs are a hive-partitioned Parquet dataset
(``date=YYYY-MM-DD/shard=K/``) written to temporary names and renamed, with a done marker per
task so a rerun resumes. ``dask.distributed`` is imported only when a batch runs.
"""

from __future__ import annotations


def batch(paths, job, out, client=None, shards=None, symbols=None, **job_options):
    """See ``itchflow.scale.batch.batch``."""
    from itchflow.scale.batch import batch as _batch

    return _batch(paths, job, out, client=client, shards=shards, symbols=symbols, **job_options)


__all__ = ["batch"]
