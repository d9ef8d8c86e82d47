"""The building block of the transport: one function of the virtio-mmio register file.

A :class:`Block` is configuration (a frozen dataclass, shared by every endpoint of a profile)
and owns everything about its function:

* :meth:`Block.rows`: its registers (:class:`~virtio_mmio.regmap.Register`), with the reset
  values the artefacts and the proofs read;
* :meth:`Block.address_tags` and :meth:`Block.data_tags`: what a bus subordinate decodes for it
  where it first has a write's address and data (named fields of the tags, see
  :class:`~virtio_mmio.transport.classifier.TransportClassifier`);
* :meth:`Block.logic`: its gateware, a :class:`BlockLogic` made afresh for each endpoint.

A profile (:mod:`~virtio_mmio.transport.profiles`) is a version and a list of configured
blocks; :class:`~virtio_mmio.transport.core.RegisterCore` builds the logic of each and joins them with the
bus: the read multiplexer over every block's :meth:`BlockLogic.read`, the write strobes, and a
device reset that every block's :meth:`BlockLogic.device_reset` takes part in.
"""

from amaranth.hdl import Signal


__all__ = ["Block", "BlockLogic", "Transport"]


class Block:
    """One configured function of the transport (subclasses are frozen dataclasses).

    ``name`` (a class attribute) names the block; it is unique inside a profile and is how
    other blocks find its logic (``t["status"]``). ``Logic`` is its :class:`BlockLogic` class.
    ``decodes_own_writes``: writable rows whose writes the block recognises from its own
    address tags, so they get no per-register tag (QueueNotify: every doorbell is one).
    """

    name = None
    Logic = None
    decodes_own_writes = ()

    def rows(self, profile):
        """The block's registers in ``profile`` (a :class:`~.profiles.Profile`)."""
        return ()

    def address_tags(self, params, regmap):
        """``{tag: function(word address) -> 1-bit value}``: tags beside the per-register ones."""
        return {}

    def data_tags(self, params):
        """``{tag: function(data, byte lanes) -> 1-bit value}``: what this block needs to know
        of a write's data, decoded ahead (other blocks may read them too)."""
        return {}

    def logic(self, params, regmap):
        """A fresh :class:`BlockLogic` for one endpoint."""
        return self.Logic(self, params, regmap)


class BlockLogic:
    """The gateware of one block in one endpoint.

    Its state signals are made in ``__init__`` (so that every block can refer to any other's
    state, whatever the order of elaboration); :meth:`elaborate` adds its logic.
    """

    def __init__(self, block, params, regmap):
        self.block = block
        self.params = params
        self.regmap = regmap

    def elaborate(self, m, t):
        """Add the block's logic to ``m``; ``t`` is the :class:`Transport`."""

    def read(self, t):
        """``{register name: value}`` for each readable row of the block (a 16-bit register's
        value is its own 16 bits; the core places it in its lanes)."""
        return {}

    def window_read(self, t):
        """``(hit, data)`` when the block answers reads of an address range outside the
        register rows itself: ``hit`` is the request's condition (this cycle), ``data`` the
        answer in the next cycle. ``None`` otherwise."""
        return None

    def device_reset(self):
        """Statements (``sync``) that a device reset applies to the block's registers; they
        are added after every block's logic, so they win in the reset cycle."""
        return []


class Transport:
    """What blocks share inside one :class:`~virtio_mmio.transport.core.RegisterCore`.

    Members: ``core`` (the component: its ports), ``params``, ``regmap``, ``bus`` (the
    :class:`~virtio_mmio.bus.RegisterBus`), ``classifier``; a write's ``word``, ``data``,
    ``strb`` and tags ``at`` (address) and ``dt`` (data), ``full`` (all four lanes);
    ``write``: a register write is offered this cycle (registers never hold a write back, so
    their strobes need not wait for ``w_ready``); ``we``: a write is accepted this cycle;
    ``device_reset``: a device reset happens at the next edge (driven by the status block).
    ``t[name]`` is another block's logic.
    """

    def __init__(self, core, params, regmap, classifier, logics):
        self.core = core
        self.params = params
        self.regmap = regmap
        self.classifier = classifier
        self._logics = logics
        bus = core.bus
        self.bus = bus
        self.word = bus.w_addr
        self.data = bus.w_data
        self.strb = bus.w_strb
        self.at = bus.w_address_tags
        self.dt = bus.w_data_tags
        self.full = bus.w_data_tags.full
        self.write = bus.w_valid
        self.we = Signal()
        self.device_reset = Signal()
        #: Conditions under which a write must wait (``w_ready`` low), added by blocks.
        self.write_holds = []

    def __getitem__(self, name):
        return self._logics[name]

    def written(self, name):
        """A write to register ``name`` (its word's tag) is offered this cycle."""
        return self.write & self.at[name]
