"""The CI switch: a skip is a failure under ``SPLITEXIT_REQUIRE_ENGINES=1`` and a loud skip without it."""

from __future__ import annotations

import pytest

from tests.deploy_files import ROOT
from tests.strict_skips import REQUIRE_ENGINES

ENGINE_TEST = """
import pytest

def test_needs_an_engine():
    pytest.skip("NO ENGINE HERE, nothing tested")

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_to_fail():
    assert False
"""


def run_inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, switch: str | None) -> pytest.RunResult:
    pytester.makepyfile(ENGINE_TEST)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    if switch is None:
        monkeypatch.delenv(REQUIRE_ENGINES, raising=False)
    else:
        monkeypatch.setenv(REQUIRE_ENGINES, switch)
    return pytester.runpytest_subprocess("-p", "tests.strict_skips", "-ra", "-p", "no:cacheprovider")


def test_a_skip_fails_under_the_switch(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_inner(pytester, monkeypatch, "1")
    result.assert_outcomes(failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*makes a skip a failure*NO ENGINE HERE*"])


def test_a_skip_stays_a_loud_skip_without_it(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_inner(pytester, monkeypatch, None)
    result.assert_outcomes(skipped=1, xfailed=1)
    result.stdout.fnmatch_lines(["SKIPPED*NO ENGINE HERE*"])
