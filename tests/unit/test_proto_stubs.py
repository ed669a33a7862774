"""The committed gRPC stubs are exactly what `make proto` generates from protos/."""

from __future__ import annotations

from pathlib import Path

from protos.generate import ROOT, STUBS, generate


def test_stubs_match_the_proto(tmp_path: Path) -> None:
    generate(tmp_path)
    for name in STUBS:
        generated = (tmp_path / name).read_text()
        committed = (ROOT / "shared" / "proto" / name).read_text()
        assert generated == committed, f"shared/proto/{name} is stale: run `make proto` and commit"
