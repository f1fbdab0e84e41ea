"""Meshes: load and validate, normalise, UV unwrap, bake a field into a UV texture, export."""
