"""Free-view rendering of generated scenes: the fusion renderer, trajectories, export."""
