"""A network cut into blocks, each with its exit head: the shape every early-exit model here has.

The classes live in the public packager (:mod:`splitexit.packaging.segments`), which
exports every model here, the CNN and the text models alike.
"""

from splitexit.packaging.segments import Segment, SegmentedModel

__all__ = ["Segment", "SegmentedModel"]
