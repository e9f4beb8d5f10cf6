"""Subcommands of the `ivideogpt` command line."""
