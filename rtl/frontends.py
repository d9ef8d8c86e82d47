"""Moved to the bus layer: :mod:`virtio_mmio.bus` (``axi4lite.py``, ``wishbone.py``,
``skid.py``). These names stay importable from here for existing code."""

from .bus import AXI4LiteSubordinate, SkidBuffer, WishboneSubordinate


__all__ = ["SkidBuffer", "AXI4LiteSubordinate", "WishboneSubordinate"]
