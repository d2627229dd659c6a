"""The `sandzmq` command (SPEC 5): parse, load the config, call the library, print.

Every command turns a ConfigError into one line, `sandzmq: <file>: <key>:
<problem>`, on stderr and exit status 2, with no traceback (SPEC 4); other
deliberate errors (SandzmqError) into `sandzmq: <message>` and status 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from sandzmq.config import check_node_ids, load_config
from sandzmq.errors import ConfigError, SandzmqError

app = typer.Typer(
    name="sandzmq",
    help="sandzmq: a Raft replicated log for Python, built as an actor system on ZeroMQ.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ConfigOption = Annotated[str, typer.Option("--config", "-c", help="The cluster's TOML config file.", metavar="FILE")]


@contextmanager
def _errors() -> Iterator[None]:
    """The command line's error contract (see the module docstring)."""
    try:
        yield
    except ConfigError as exc:
        typer.echo(f"sandzmq: {exc}", err=True)
        raise typer.Exit(2) from None
    except SandzmqError as exc:
        typer.echo(f"sandzmq: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def start(
    config: ConfigOption,
    node: Annotated[
        list[str] | None,
        typer.Option(
            "--node", "-n", help="A node to run (repeatable); all nodes of the file when none is named.", metavar="ID"
        ),
    ] = None,
    parent_fd: Annotated[
        int | None,
        typer.Option(
            "--parent-fd", hidden=True, help="Stop when this inherited pipe reaches EOF (the parent is gone)."
        ),
    ] = None,
) -> None:
    """Run nodes in the foreground: each node's log-store, apply and raft actors,
    restarted when they die, until SIGINT or SIGTERM (then exit 0), or until an
    actor cannot be restarted (then all are stopped, exit 1)."""
    from sandzmq.actors import supervisor

    with _errors():
        cluster = load_config(config)
        check_node_ids(cluster, node or ())
        code = supervisor.run(config, node or (), parent_fd=parent_fd)
    raise typer.Exit(code)


@app.command()
def status(
    config: ConfigOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (the format SPEC 5 fixes).")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each node.", metavar="S", min=0.01)] = 1.0,
) -> None:
    """One row per node: role, term, leader, log indexes, dropped messages, actor pids.
    A node that does not answer is `unreachable`."""
    from sandzmq.cli import status as st
    from sandzmq.replicator.status import collect

    with _errors():
        cluster = load_config(config)
        results = collect(cluster, timeout=timeout)
    if as_json:
        typer.echo(json.dumps(st.spec_document(results)))
    else:
        typer.echo(st.render(results))


@app.command()
def bench(
    config: ConfigOption,
    spawn: Annotated[
        bool, typer.Option("--spawn", help="Start the cluster of the file first, and stop it afterwards.")
    ] = False,
    clients: Annotated[int, typer.Option(help="Client sessions driving load.", metavar="N", min=1)] = 4,
    inflight: Annotated[int, typer.Option(help="Commands each client keeps in flight.", metavar="N", min=1)] = 64,
    size: Annotated[int, typer.Option(help="Bytes of each command's value.", metavar="BYTES", min=0)] = 128,
    duration: Annotated[float, typer.Option(help="Seconds measured (after the warm-up).", metavar="S", min=0.1)] = 10.0,
    warmup: Annotated[float, typer.Option(help="Seconds of load before measuring.", metavar="S", min=0.0)] = 1.0,
    timeout: Annotated[
        float, typer.Option(help="Each command's replicate timeout, seconds.", metavar="S", min=0.01)
    ] = 5.0,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the results as JSON to this file.", metavar="OUT")
    ] = None,
) -> None:
    """Drive replicate() load at the cluster and report committed ops/s and latency
    percentiles (p50, p90, p99, max), with live progress."""
    from sandzmq.benchmark import BenchOptions
    from sandzmq.cli import bench as bench_cli

    with _errors():
        cluster = load_config(config)
        options = BenchOptions(
            spawn=spawn, clients=clients, inflight=inflight, size=size,
            duration=duration, warmup=warmup, timeout=timeout,
        )  # fmt: skip
        code = bench_cli.run(cluster, options, json_out)
    raise typer.Exit(code)


def main() -> None:
    """The console script's entry point."""
    app(prog_name="sandzmq")


if __name__ == "__main__":  # `python -m sandzmq.cli.main`, as the supervisor is spawned
    main()
