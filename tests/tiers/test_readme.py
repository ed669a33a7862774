"""The README's Python example runs as written against three real tiers (only the address differs)."""

from __future__ import annotations

import re

import pytest

from splitexit.testbed import Testbed
from tests.deploy_files import ROOT


def test_the_readme_python_example_runs(testbed: Testbed, capsys: pytest.CaptureFixture[str]) -> None:
    (example,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert '"127.0.0.1:50051"' in example
    exec(compile(example.replace('"127.0.0.1:50051"', repr(testbed.device_address)), "README.md", "exec"), {})
    image_line, text_line = capsys.readouterr().out.splitlines()
    label, confidence, tier, block = image_line.split()
    assert label == "Coat" and 0 < float(confidence) <= 1 and tier in {"DEVICE", "EDGE", "CLOUD"} and int(block) >= 1
    assert text_line.startswith(("positive ", "negative ")) and "DEVICE" in text_line
