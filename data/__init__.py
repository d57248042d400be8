"""Data files bundled with ivid-jax (installed as `ivid_jax.bundled_data`)."""
