"""Datasets and the input pipeline: preprocessing, TFDS builders, grain loaders."""
