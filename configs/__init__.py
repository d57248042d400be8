"""ml-collections configs of ivid-jax (installed as `ivid_jax.configs`)."""
