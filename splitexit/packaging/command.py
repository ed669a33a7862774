"""``splitexit package FILE.py:FUNCTION --out models/NAME``: load a user's description and write its package."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

from splitexit.packaging.description import EarlyExitNetwork, PackagingError
from splitexit.packaging.parity import first_line
from splitexit.packaging.writer import write_package


def call_target(target: str, example: str = "docs/tutorial/tiny_net.py:describe") -> object:
    """Import ``FILE.py`` and return what ``FUNCTION()`` returns; :class:`PackagingError` (one line) if either is
    missing or the call fails. ``example`` is the target the error for a malformed one suggests."""
    file, _, function = target.rpartition(":")
    path = Path(file)
    if not file or not function or path.suffix != ".py":
        raise PackagingError(f"{target!r}: expected FILE.py:FUNCTION, e.g. {example}")
    if not path.is_file():
        raise PackagingError(f"{path} is not a file")
    spec = importlib.util.spec_from_file_location(f"splitexit_user_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    search = [str(path.resolve().parent), str(Path.cwd())]  # the user's file may import its neighbours, or the repo's
    sys.path[:0] = search
    try:
        spec.loader.exec_module(module)
        call = getattr(module, function, None)
        if not callable(call):
            raise PackagingError(f"{path} has no function {function!r}")
        return call()
    except PackagingError:
        raise
    except Exception as exc:
        raise PackagingError(f"{target}: {type(exc).__name__}: {first_line(exc)}") from None
    finally:
        for folder in search:
            sys.path.remove(folder)


def load_description(target: str) -> EarlyExitNetwork:
    """What ``FILE.py:FUNCTION`` returns, which must be an :class:`EarlyExitNetwork`."""
    network = call_target(target)
    if not isinstance(network, EarlyExitNetwork):
        raise PackagingError(f"{target} returned {type(network).__name__}, not a splitexit.packaging.EarlyExitNetwork")
    return network


def run(target: str, out: Path) -> str:
    """Package what ``target`` describes into ``out``; the summary line to print."""
    started = time.perf_counter()
    network = load_description(target)
    described = time.perf_counter()
    manifest = write_package(network, out)
    seconds = time.perf_counter() - described
    accuracy = (
        f"exit accuracy {manifest.exit_accuracy}" if manifest.exit_accuracy else "no labelled data: no exit accuracy"
    )
    return (
        f"packaged {manifest.name} into {out}: {manifest.num_blocks} blocks, {len(manifest.labels)} labels, "
        f"{accuracy}; describing took {described - started:.1f} s, packaging {seconds:.1f} s"
    )
