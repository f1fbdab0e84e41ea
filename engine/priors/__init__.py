"""Diffusion priors behind one interface (Stable Diffusion, DeepFloyd IF, ControlNet, the toy prior)."""
