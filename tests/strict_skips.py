"""A pytest plugin: under ``SPLITEXIT_REQUIRE_ENGINES=1`` (``.ci/run`` sets it) a skipped test fails.

Engine tests (Docker, network namespaces, Prometheus, Chromium, Node) skip loudly where their engine
cannot run, so a contributor without root still gets a green run that says what it did not test; in CI
the same skip is a failure, with the skip's own reason. Expected failures (xfail) are left alone.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

REQUIRE_ENGINES = "SPLITEXIT_REQUIRE_ENGINES"


def engines_required() -> bool:
    return os.environ.get(REQUIRE_ENGINES) == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not hasattr(report, "wasxfail") and engines_required():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and {REQUIRE_ENGINES}=1 makes a skip a failure: {reason}"


def pytest_report_header() -> str:
    if engines_required():
        return f"{REQUIRE_ENGINES}=1: a skipped test fails"
    return f"engine tests skip, loudly, where their engine cannot run ({REQUIRE_ENGINES}=1 makes that a failure)"
