"""Grids, dense volume decoding, surfaces, meshes, metrics and analytic shapes shared by all strategies."""
