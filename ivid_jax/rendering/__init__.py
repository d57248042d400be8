"""Free-view rendering of generated scenes: the fusion renderer, trajectories, export."""

from ivid_jax.rendering.fusion import render_scene  # noqa: F401
