"""The bundled toy prior: its vocabulary, procedural dataset, training and sampling scripts. Loaded at run time
through priors/ like any diffusers folder; may import render/, guidance/ (view words), priors/ and images; nothing
imports it but tasks/ (its vocabulary) and tests."""
