"""Shared test set-up: soak tests (marked `slow`) run only when SANDZMQ_SOAK is set."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("SANDZMQ_SOAK"):
        return
    skip = pytest.mark.skip(reason="soak test: set SANDZMQ_SOAK=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# --- integration tests (tests/cluster.py) -------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; repeated here so the marker is known
    # however pytest is invoked (e.g. with another ini file).
    config.addinivalue_line("markers", "integration: real processes, sockets and disk")
    # A test run stopped with SIGTERM (a CI timeout) must not leave cluster nodes
    # running: kill their process groups, then die of SIGTERM as before.
    import signal

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def on_sigterm(signum, frame):  # type: ignore[no-untyped-def]
            import sys

            cluster_module = sys.modules.get("cluster")
            if cluster_module is not None:
                cluster_module.kill_all_live()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """When a test (or its set-up) fails, add the tail of every live cluster's
    node logs to its report, where the failure is shown."""
    report = yield
    if report.failed and call.when in ("setup", "call"):
        import sys

        cluster_module = sys.modules.get("cluster")
        for c in list(getattr(cluster_module, "LIVE", ())):
            try:
                report.sections.append((f"node logs of {c.root}", c.tail_logs(60)))
            except Exception as exc:  # noqa: BLE001 - never hide the test's own failure
                report.sections.append(("node logs", f"could not read them: {exc!r}"))
    return report


@pytest.fixture
def make_cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Factory of tests/cluster.py Clusters, each in its own temp dir, all
    closed (every process group killed) when the test ends, pass or fail."""
    from cluster import Cluster

    made: list[Cluster] = []

    def make(**kwargs):  # type: ignore[no-untyped-def]
        name = request.node.name[:40].replace("[", "_").replace("]", "")
        c = Cluster(tmp_path_factory.mktemp(name), **kwargs)
        made.append(c)
        return c

    yield make
    errors = []
    for c in made:
        try:
            c.close()
        except Exception as exc:  # noqa: BLE001 - close every cluster, then report
            errors.append(exc)
    if errors:
        raise errors[0]


# --- failures that involve messages read as a protocol trace ------------------------


def _described(value: object) -> list[str] | None:
    """describe() lines for a registered message or a list/tuple of them, else None."""
    from sandzmq.protocol import REGISTRY, describe

    items = value if isinstance(value, (list, tuple)) else [value]
    if not items or not all(REGISTRY.by_cls(type(item)) is not None for item in items):
        return None
    return [describe(item) for item in items]


def pytest_assertrepr_compare(config: pytest.Config, op: str, left: object, right: object) -> list[str] | None:
    """`assert a == b` on messages (or lists of them) shows both sides as
    protocol trace lines (sandzmq.protocol.describe) instead of reprs."""
    if op != "==":
        return None
    lines_left, lines_right = _described(left), _described(right)
    if lines_left is None and lines_right is None:
        return None
    out = ["messages differ:", "left:"]
    out += [f"  {line}" for line in lines_left or [repr(left)]]
    out += ["right:"] + [f"  {line}" for line in lines_right or [repr(right)]]
    return out
