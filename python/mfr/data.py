"""Multi-domain face data: :class:`FaceIndex` (Rust core in ``src/data``).

A dataset is a set of *domains* (datasets, cameras, sensors...), each with identities and their
images. Build an index from a folder laid out ``<root>/<domain>/<identity>/<image>``
(``FaceIndex.from_folder``), from a list file of ``path domain identity`` lines
(``FaceIndex.from_list``) or from arrays (``FaceIndex.from_arrays``).
"""

from __future__ import annotations

from ._core import FaceIndex

__all__ = ["FaceIndex"]
