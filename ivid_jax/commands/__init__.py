"""One module per `ivid-jax` subcommand: its docstring is its help, its flags its own.

Each module defines its flags at import and `main(argv)` (absl style), and imports nothing
heavier than absl and ml_collections at module level (JAX, NumPy and the library inside
`main`), so `ivid-jax COMMAND --help` answers without importing JAX. `ivid_jax.main` imports
only the module of the command being run. Shared flags live in their own modules, declared key
flags of the commands that use them: `outputs` (--overwrite and the overwrite rule) and
`sampler_flags` (the sampler's flags and presets, for sample and demo).

A command raises app.UsageError for a wrong flag or argument (exit 2, with its help) and lets
any other exception through: `ivid_jax.main` prints it as one line (exit 1).
"""
