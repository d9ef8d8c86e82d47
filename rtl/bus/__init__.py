"""The bus layer: AXI4-Lite and Wishbone B4 signatures, subordinates, managers and protocol
checkers, with the generic pieces they are built from. It knows nothing of virtio: a register
block plugs in through :class:`RegisterBus` and its :class:`WriteClassifier`
(``tests/test_bus_layer.py`` checks that nothing here imports the transport).

* :mod:`.signatures` — :class:`AXI4LiteSignature`, :class:`WishboneSignature` (manager's
  view), :data:`WriteMessage`, :class:`DmaAccessSignature`;
* :mod:`.register_bus` — :class:`RegisterBus`, :class:`WriteClassifier`, :func:`pack_tags`;
* :mod:`.axi4lite`, :mod:`.wishbone` — the subordinates in front of a register block, the
  write managers (posted writes: the MSI port) and the DMA managers (one access at a time);
* :mod:`.skid` — :class:`SkidBuffer`; :mod:`.arbiter` — :func:`round_robin`,
  :func:`onehot_index`, :func:`lowest_set`, :func:`below_constant`;
* :mod:`.checkers` — formal protocol checkers of the subordinate and write-manager sides.
"""

from .signatures import (AXI4LiteSignature, WishboneSignature, WISHBONE_MODES, WriteMessage,
                         DmaAccessSignature)
from .register_bus import RegisterBus, WriteClassifier, pack_tags
from .skid import SkidBuffer
from .arbiter import below_constant, lowest_set, onehot_index, round_robin
from .axi4lite import AXI4LiteSubordinate, AXI4LiteWriteManager, AXI4LiteDmaManager
from .wishbone import WishboneSubordinate, WishboneWriteManager, WishboneDmaManager


__all__ = ["AXI4LiteSignature", "WishboneSignature", "WISHBONE_MODES", "WriteMessage",
           "DmaAccessSignature", "RegisterBus", "WriteClassifier", "pack_tags", "SkidBuffer",
           "below_constant", "lowest_set", "onehot_index", "round_robin",
           "AXI4LiteSubordinate", "AXI4LiteWriteManager", "AXI4LiteDmaManager",
           "WishboneSubordinate", "WishboneWriteManager", "WishboneDmaManager"]
