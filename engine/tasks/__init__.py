"""The optimisation loops: texture, generate, edit."""
