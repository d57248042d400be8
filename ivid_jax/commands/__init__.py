"""One module per `ivid-jax` subcommand: its docstring is its help, its flags its own.

Each module defines its flags at import and `main(argv)` (absl style);
`ivid_jax.main` imports only the module of the command being run, so
`ivid-jax COMMAND --help` lists that command's flags and nothing else.
"""
