"""Fast-SAM3D step caching and token pruning for two-stage flow pipelines (see the Fast-SAM3D issue)."""
