"""AXI4-Lite (docs/spec.md §8): the subordinate in front of a :class:`~.register_bus.RegisterBus`,
the write manager (posted 32-bit writes, the MSI port) and the DMA manager (one access at a
time)."""

from amaranth.hdl import *
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from .register_bus import RegisterBus
from .signatures import AXI4LiteSignature, DmaAccessSignature, WriteMessage
from .skid import SkidBuffer


__all__ = ["AXI4LiteSubordinate", "AXI4LiteWriteManager", "AXI4LiteDmaManager"]


class AXI4LiteSubordinate(wiring.Component):
    """AXI4-Lite subordinate in front of a :class:`RegisterBus` (docs/spec.md §8).

    Parameters
    ----------
    addr_width : int
        Byte-address bits of ``awaddr``/``araddr``; bits 1:0 are ignored (every access is to a
        whole word, with ``wstrb`` for the lanes).
    classifier : :class:`~.register_bus.WriteClassifier`
        The register block's (the endpoint's: :attr:`RegisterCore.classifier`): AW and W
        entries are tagged with it as they are buffered.

    Members
    -------
    axi : ``In(AXI4LiteSignature(addr_width))``
    reg : ``Out(RegisterBus(addr_width, classifier.address_layout, classifier.data_layout))``

    Latency and throughput
    ----------------------
    Read: RVALID one clock after the AR handshake. Write: AW and W are registered (no bypass,
    so the address decode starts from flip-flops); the register is written in the cycle after
    the later of the AW and W handshakes (AW and W may come in either order, any number of
    cycles apart), BVALID follows one clock later. (In the endpoint a notification written that
    way is on the notify stream in that same cycle, so write handshake → ``notify_valid`` is one
    clock.) One read and one write per clock,
    sustained and concurrently, while the manager keeps RREADY and BREADY high. All ready and
    valid outputs are flip-flops; every response is OKAY. AW and W are buffered two deep, B is
    a count of up to three responses, and at most two reads are outstanding (issued and not yet
    taken on R, held in a two-entry buffer); when those fill under back-pressure the ready
    signals drop and nothing is lost. A write the block cannot take yet
    (in the endpoint: a notification while the notify stream is full) waits in the buffers
    while reads go on.

    Reset
    -----
    Synchronous ``rst`` empties every buffer.

    Observation members (for proofs; leave unconnected)
    ---------------------------------------------------
    reads_issued : Out
        Reads issued and not taken on R (the count that gates ARREADY).
    reads_in_flight, reads_held : Out
        Reads issued last cycle (their data lands now), results held in the R buffer.
    aw_held, w_held, b_pending : Out
        AW and W entries waiting to be joined; writes done and not yet answered on B.
    consistent : Out
        Every AW and W entry held carries the tags of its own address or data, and the
        flip-flops that mirror the buffers' levels and the B count (not empty, room for a
        response) agree with them.
    """

    def __init__(self, addr_width, classifier):
        self._addr_width = addr_width
        self._classifier = classifier
        super().__init__({
            "axi": In(AXI4LiteSignature(addr_width)),
            "reg": Out(RegisterBus(addr_width, classifier.address_layout,
                                   classifier.data_layout)),
            "reads_issued": Out(range(4)), "reads_in_flight": Out(1), "reads_held": Out(range(3)),
            "aw_held": Out(range(3)), "w_held": Out(range(3)), "b_pending": Out(range(4)),
            "consistent": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        axi, reg = self.axi, self.reg
        word_width = self._addr_width - 2

        # ---- write: AW and W buffers, joined when both have an entry and B has room
        # Each entry carries its tags (WriteClassifier), decoded on the way in.
        classify = self._classifier
        address_layout, data_layout = classify.address_layout, classify.data_layout
        aw_tags = Signal(address_layout)
        w_tags = Signal(data_layout)
        m.d.comb += [aw_tags.eq(classify.address(axi.awaddr[2:])),
                     w_tags.eq(classify.data(axi.wdata, axi.wstrb))]
        m.submodules.aw = aw = SkidBuffer(word_width + address_layout.size, bypass=False)
        m.submodules.w = w = SkidBuffer(36 + data_layout.size, bypass=False)
        m.d.comb += [
            aw.i.valid.eq(axi.awvalid), aw.i.payload.eq(Cat(axi.awaddr[2:], aw_tags)),
            axi.awready.eq(aw.i.ready),
            w.i.valid.eq(axi.wvalid), w.i.payload.eq(Cat(axi.wdata, axi.wstrb, w_tags)),
            axi.wready.eq(w.i.ready),
        ]

        def consistent(buffer, tags_of):
            def entry_ok(entry):
                tags = tags_of(entry)
                return tags == entry[len(entry) - len(tags):]
            return (((buffer.level == 0) | entry_ok(buffer.head)) &
                    ((buffer.level < 2) | entry_ok(buffer.tail)))
        tags_ok = (consistent(aw, lambda entry: classify.address(entry[:word_width])) &
                   consistent(w, lambda entry: classify.data(entry[:32], entry[32:36])))

        b_pending = Signal(range(4))
        b_room = Signal(init=1)     # b_pending != 3, as a flip-flop
        m.d.comb += [
            reg.w_valid.eq(aw.o.valid & w.o.valid & b_room),
            reg.w_addr.eq(aw.o.payload[:word_width]),
            reg.w_address_tags.eq(aw.o.payload[word_width:]),
            reg.w_data.eq(w.o.payload[:32]),
            reg.w_strb.eq(w.o.payload[32:36]),
            reg.w_data_tags.eq(w.o.payload[36:]),
        ]
        w_fire = reg.w_valid & reg.w_ready
        m.d.comb += [aw.o.ready.eq(w_fire), w.o.ready.eq(w_fire)]
        m.d.comb += self.consistent.eq(
            tags_ok & (b_room == (b_pending != 3)) &
            (aw.o.valid == (aw.level != 0)) & (w.o.valid == (w.level != 0)))
        b_fire = axi.bvalid & axi.bready
        b_next = Signal(range(4))
        m.d.comb += b_next.eq(b_pending + w_fire - b_fire)
        m.d.sync += [b_pending.eq(b_next), b_room.eq(b_next != 3)]
        m.d.comb += [self.b_pending.eq(b_pending), self.aw_held.eq(aw.level),
                     self.w_held.eq(w.level)]
        m.d.comb += [axi.bvalid.eq(self._bvalid(b_pending)), axi.bresp.eq(0)]

        # ---- read: issue on the AR handshake, the result lands a cycle later into R
        arready = Signal(init=1)
        in_flight = Signal()
        outstanding = Signal(range(4))     # issued and not yet taken on R
        m.submodules.r = r = SkidBuffer(32)
        ar_fire = axi.arvalid & arready
        r_fire = axi.rvalid & axi.rready
        m.d.comb += [
            axi.arready.eq(arready),
            reg.r_valid.eq(ar_fire),
            reg.r_addr.eq(axi.araddr[2:]),
            r.i.valid.eq(in_flight),
            r.i.payload.eq(reg.r_data),
            axi.rvalid.eq(self._rvalid(r)),
            axi.rdata.eq(r.o.payload),
            axi.rresp.eq(0),
            r.o.ready.eq(axi.rready),
        ]
        outstanding_next = outstanding + ar_fire - r_fire
        m.d.comb += [self.reads_issued.eq(outstanding), self.reads_in_flight.eq(in_flight),
                     self.reads_held.eq(r.level)]
        # Accept a read only if its result fits even when R stalls from now on:
        # at most two results held plus the new one in flight.
        # A write kept from the config port by a config read goes first in the next cycle.
        m.d.sync += [
            in_flight.eq(ar_fire),
            outstanding.eq(outstanding_next),
            arready.eq((outstanding_next <= 1) & ~reg.w_conflict),
        ]
        return m

    def _bvalid(self, pending):
        """BVALID: ``pending`` (writes done and not yet answered) is not zero."""
        return pending != 0

    def _rvalid(self, results):
        """RVALID: the R buffer ``results`` holds a read's result."""
        return results.o.valid


class AXI4LiteWriteManager(wiring.Component):
    """Sends :data:`~.signatures.WriteMessage` s as AXI4-Lite writes (docs/spec.md §8: 64-bit
    address, full strobes); the endpoint's MSI manager port.

    AW and W are raised together from the message and each drops on its own handshake; the
    message is taken when both are done. B is always accepted; a non-OKAY response is counted
    in ``errors`` and latched on ``error`` (until ``rst``).

    Latency and throughput: AWVALID/WVALID in the cycle the message is presented (from
    registers, no combinational path from the bus inputs); one message per clock while AWREADY
    and WREADY are high, any number of writes outstanding. ``message.ready`` depends on AWREADY,
    WREADY and the two "done" flags only, never on ``message.valid``.
    """

    def __init__(self):
        super().__init__({
            "message": In(stream.Signature(WriteMessage)),
            "axi": Out(AXI4LiteSignature(64, read=False)),
            "error": Out(1), "errors": Out(32),
            # Observation (for proofs): the current message's AW / W already handshaken.
            "aw_sent": Out(1), "w_sent": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        axi, msg = self.axi, self.message
        aw_done = Signal()
        w_done = Signal()
        aw_now = axi.awvalid & axi.awready
        w_now = axi.wvalid & axi.wready
        m.d.comb += [
            axi.awvalid.eq(msg.valid & ~aw_done),
            axi.awaddr.eq(msg.payload.address),
            axi.awprot.eq(0),
            axi.wvalid.eq(msg.valid & ~w_done),
            axi.wdata.eq(msg.payload.data),
            axi.wstrb.eq(0xF),
            axi.bready.eq(1),
            # Not from msg.valid (that is what sets AWVALID/WVALID): equal to "both channels
            # done or handshaking now" whenever a message is presented, and the issue logic
            # behind the message register does not wait on its own valid.
            msg.ready.eq((aw_done | axi.awready) & (w_done | axi.wready)),
        ]
        with m.If(msg.valid & msg.ready):
            m.d.sync += [aw_done.eq(0), w_done.eq(0)]
        with m.Else():
            with m.If(aw_now):
                m.d.sync += aw_done.eq(1)
            with m.If(w_now):
                m.d.sync += w_done.eq(1)
        with m.If(axi.bvalid & (axi.bresp != 0)):
            m.d.sync += [self.error.eq(1), self.errors.eq(self.errors + 1)]
        m.d.comb += [self.aw_sent.eq(aw_done), self.w_sent.eq(w_done)]
        return m


class AXI4LiteDmaManager(wiring.Component):
    """:class:`DmaAccessSignature` onto AXI4-Lite (64-bit address, 32-bit data, strobes).

    A read raises ARVALID, a write AWVALID and WVALID together (each drops on its own
    handshake); RREADY and BREADY are always high. The access is done on R or B; any response
    but OKAY is an error.

    Latency and throughput: ARVALID/AWVALID/WVALID in the cycle the request is presented
    (nothing registered in between); ``done`` in the cycle R or B is valid. With a subordinate
    that is always ready and answers in the next cycle, and a requester that presents the next
    access right after ``done``, one access every two clocks.
    """

    def __init__(self):
        super().__init__({
            "access": In(DmaAccessSignature()),
            "axi": Out(AXI4LiteSignature(64)),
        })

    def elaborate(self, platform):
        m = Module()
        axi, access = self.axi, self.access
        ar_sent, aw_sent, w_sent = Signal(), Signal(), Signal()
        read = access.valid & ~access.write
        write = access.valid & access.write
        word_address = Cat(C(0, 2), access.address[2:])
        m.d.comb += [
            axi.araddr.eq(word_address), axi.arprot.eq(0), axi.arvalid.eq(read & ~ar_sent),
            axi.awaddr.eq(word_address), axi.awprot.eq(0), axi.awvalid.eq(write & ~aw_sent),
            axi.wdata.eq(access.data), axi.wstrb.eq(access.strobe),
            axi.wvalid.eq(write & ~w_sent),
            axi.rready.eq(1), axi.bready.eq(1),
            access.done.eq((read & axi.rvalid) | (write & axi.bvalid)),
            access.rdata.eq(axi.rdata),
            access.error.eq(Mux(access.write, axi.bresp != 0, axi.rresp != 0)),
        ]
        with m.If(access.done):
            m.d.sync += [ar_sent.eq(0), aw_sent.eq(0), w_sent.eq(0)]
        with m.Else():
            with m.If(axi.arvalid & axi.arready):
                m.d.sync += ar_sent.eq(1)
            with m.If(axi.awvalid & axi.awready):
                m.d.sync += aw_sent.eq(1)
            with m.If(axi.wvalid & axi.wready):
                m.d.sync += w_sent.eq(1)
        return m
