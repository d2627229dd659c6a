"""The `sandzmq` command line: `main` (the typer app and its commands), and how
`status` and `bench` show what the library returns."""
