"""Pipeline: a source read in one process, handed over a shared-memory ring, books built in
another. ``run_pipeline(source)`` runs it to the end and returns a ``PipelineReport``."""

from itchflow.pipeline.run import PipelineError, PipelineInterrupted, PipelineReport, run_pipeline
from itchflow.pipeline.sources import SourceSpec, parse_source

__all__ = ["PipelineError", "PipelineInterrupted", "PipelineReport", "SourceSpec", "parse_source", "run_pipeline"]
