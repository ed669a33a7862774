"""Package an early-exit network for the tiers (needs ``pip install 'splitexit[package]'``: torch, onnx and tqdm).

Describe the network as an :class:`EarlyExitNetwork` (its blocks, an exit head
after each, an example input, labels and preprocessing) and call
:func:`write_package`, or return the description from a function and run
``splitexit package FILE.py:FUNCTION --out models/NAME``. Serving never
imports this package.
"""

from splitexit.packaging.description import (
    CheckData,
    EarlyExitNetwork,
    PackagingError,
    Preprocessing,
    TextPreprocessing,
)
from splitexit.packaging.parity import ParityError
from splitexit.packaging.writer import write_package
from splitexit.shared.manifest import BlockRange, ImageInput
from splitexit.shared.tiers import Tier

__all__ = [
    "BlockRange",
    "CheckData",
    "EarlyExitNetwork",
    "ImageInput",
    "PackagingError",
    "ParityError",
    "Preprocessing",
    "TextPreprocessing",
    "Tier",
    "write_package",
]
