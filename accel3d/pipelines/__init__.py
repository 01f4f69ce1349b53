"""Pipelines: each names the stages that accelerators attach to."""
