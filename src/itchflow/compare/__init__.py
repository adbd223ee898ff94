"""``itchflow compare``: every ingestion path on equal terms on this machine.

>>> from itchflow.compare import run_compare
>>> report = run_compare(messages=200_000, rate=50_000)
>>> report.to_dict()["rows"][0]["msgs_per_s"]
"""

from itchflow.compare.paths import ORDER, PATHS
from itchflow.compare.run import CompareReport, run_compare

__all__ = ["CompareReport", "ORDER", "PATHS", "run_compare"]
