"""Small end-to-end programs behind the `ivid-jax` command."""
