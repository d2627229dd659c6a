"""The `sandzmq` command line: `main` (the typer app and its commands), `status`, `bench`."""
