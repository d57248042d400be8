"""3D generation: view sets, aggregated conditioning, the sequential sampler, scene files."""

from ivid_jax.sampling.aggregate import aggregate_condition  # noqa: F401
