"""The request interface between a bus subordinate and a register block, and the write
classifier it is generic over."""

from amaranth.hdl import Cat, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["RegisterBus", "WriteClassifier", "pack_tags"]


def pack_tags(layout, **fields):
    """A value of the :class:`~amaranth.lib.data.StructLayout` ``layout`` from its fields by
    name (every field, each of its width), placed at the layout's offsets: a classifier's tags
    are built by name, never by position."""
    names = {name for name, _ in layout}
    if set(fields) != names:
        raise ValueError(f"tags of {layout!r}: missing {sorted(names - set(fields))}, "
                         f"unknown {sorted(set(fields) - names)}")
    parts = []
    for name, field in sorted(layout, key=lambda item: item[1].offset):
        value = Value.cast(fields[name])
        if len(value) != field.width:
            raise ValueError(f"tag {name!r} is {len(value)} bits wide, not {field.width}")
        parts.append(value)
    return Cat(*parts)


class WriteClassifier:
    """What a register block tells its bus subordinates about a write, before the write
    reaches it: named tags decoded from the word address and from the data and byte lanes.

    A subordinate applies :meth:`address` and :meth:`data` where it first has the address
    and the data (the AXI4-Lite subordinate as it buffers AW and W, so that the block's
    decision to take a buffered write starts from flip-flops) and passes the tags beside the
    write on :class:`RegisterBus`. The bus layer never looks inside the tags.

    This class is the interface (and a classifier with no tags); a register block supplies
    its own, e.g. the transport's :class:`virtio_mmio.notify.WriteClassifier`.

    Attributes
    ----------
    address_layout, data_layout : :class:`amaranth.lib.data.StructLayout`
        The layouts of the two tag sets (fields name what each bit says).
    """

    def __init__(self, address_layout=None, data_layout=None):
        self.address_layout = address_layout or data.StructLayout({})
        self.data_layout = data_layout or data.StructLayout({})

    def address(self, word):
        """The address tags of word address ``word``: a value of :attr:`address_layout`
        (here none)."""
        return pack_tags(self.address_layout)

    def data(self, wdata, wstrb):
        """The data tags of the word ``wdata`` written with byte lanes ``wstrb``: a value of
        :attr:`data_layout` (here none)."""
        return pack_tags(self.data_layout)


class RegisterBus(wiring.Signature):
    """Subordinate → register block request interface (the subordinate is the manager).

    Parameters
    ----------
    addr_width : int
        Byte-address bits; the interface carries word addresses (``addr_width - 2`` bits).
    address_layout, data_layout : :class:`amaranth.lib.data.StructLayout`
        The tags the block's :class:`WriteClassifier` decodes (``w_address_tags``,
        ``w_data_tags``).

    Members
    -------
    r_valid, r_addr : In at the block
        A read of word ``r_addr`` this cycle. Reads are always accepted.
    r_data : Out at the block
        The word read, valid exactly one cycle after ``r_valid`` (not held).
    w_valid, w_addr, w_data, w_strb : In at the block
        A write of ``w_data`` with byte lanes ``w_strb`` to word ``w_addr``.
    w_address_tags, w_data_tags : In at the block
        The write's address and data decoded by the block's classifier; a subordinate may
        decode them earlier, as it buffers the address and the data.
    w_ready : Out at the block
        The write is taken in a cycle with ``w_valid & w_ready`` (combinational from the write
        request and whatever the block waits for).
    w_conflict : Out at the block
        The write waits only because of the read of this cycle. A subordinate that can issue
        reads every cycle must then hold reads back for a cycle, or a stream of such reads
        could starve the write.
    """

    def __init__(self, addr_width, address_layout, data_layout):
        self.addr_width = addr_width
        self.address_layout = address_layout
        self.data_layout = data_layout
        super().__init__({
            "r_valid": Out(1), "r_addr": Out(addr_width - 2), "r_data": In(32),
            "w_valid": Out(1), "w_addr": Out(addr_width - 2), "w_data": Out(32),
            "w_strb": Out(4), "w_address_tags": Out(address_layout),
            "w_data_tags": Out(data_layout),
            "w_ready": In(1), "w_conflict": In(1),
        })
