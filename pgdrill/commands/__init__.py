"""`pgdrill` subcommands: one module per concern, each with `register(subparsers)`."""
