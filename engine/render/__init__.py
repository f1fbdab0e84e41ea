"""Rendering: the torch rasterizer (nvdiffrast's semantics; nvdiffrast when importable), volume rendering with an
occupancy grid, cameras and a user's camera rig. May import _optional, errors and the protocol's limits; nothing above."""
