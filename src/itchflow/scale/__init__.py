"""Archives of ITCH days on Dask: ``itchflow.batch(paths, job, out)``.

Days are independent tasks; a day can also be split by stock locate into shard files
(``itchflow.wire.shard``), one task per shard building books and writing outputs. Tasks pass
paths and small summaries, never large arrays. Outputs are a hive-partitioned Parquet dataset
(``date=YYYY-MM-DD/shard=K/``) written to temporary names and renamed, with a done marker per
task so a rerun resumes. ``dask.distributed`` is imported only when a batch runs.
"""

from __future__ import annotations

# Imported here, not wrapped: a function named like its submodule is replaced by the module
# when that submodule is first imported (by the CLI, a job, a user), and ``itchflow.batch(...)``
# then called a module. Importing the submodule now makes the function the last binding.
from itchflow.scale.batch import batch

__all__ = ["batch"]
