"""Moved to the bus layer: :mod:`virtio_mmio.bus.checkers`. These names stay importable from
here for existing code."""

from .bus.checkers import (AXI4LiteSubordinateChecker, AXI4LiteWriteManagerChecker,
                           WishboneSubordinateChecker, WishboneWriteManagerChecker)


__all__ = ["AXI4LiteSubordinateChecker", "AXI4LiteWriteManagerChecker",
           "WishboneSubordinateChecker", "WishboneWriteManagerChecker"]
