"""The bundled toy prior: its procedural dataset, training and sampling scripts."""
