"""Rasterisation (torch reference, nvdiffrast when importable) and cameras."""
