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
    pipeline : bool
        A request stage in front of the block (see "Pipelined").

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

    Pipelined
    ---------
    With ``pipeline``, a read is issued to the block from a register a clock after its AR
    handshake (RVALID two clocks after it, read latency 2), and a joined write waits in a
    two-entry stage (registered ready) from which the block takes it a clock later; B counts
    a write only once the block has taken it, so a read issued after its B sees it. Still one
    read and one write per clock: up to three reads outstanding (four entries of R buffer),
    up to three writes joined and not yet answered.

    Reset
    -----
    Synchronous ``rst`` empties every buffer.

    Observation members (for proofs; leave unconnected)
    ---------------------------------------------------
    reads_issued : Out
        Reads accepted on AR and not taken on R (the count that gates ARREADY).
    reads_staged, reads_in_flight, reads_held : Out
        (Pipelined) a read in the stage; reads issued to the block last cycle (their data
        lands now); results held in the R buffer.
    aw_held, w_held, w_staged, b_pending : Out
        AW and W entries waiting to be joined; (pipelined) joined writes in the stage; writes
        done and not yet answered on B.
    consistent : Out
        Every AW and W entry held carries the tags of its own address or data, and the
        flip-flops that mirror the buffers' levels and the B count (not empty, room for a
        response) agree with them.
    """

    def __init__(self, addr_width, classifier, *, pipeline=False):
        if not isinstance(pipeline, bool):
            raise TypeError(f"pipeline must be True or False, not {pipeline!r}")
        self._addr_width = addr_width
        self._classifier = classifier
        self._pipeline = pipeline
        super().__init__({
            "axi": In(AXI4LiteSignature(addr_width)),
            "reg": Out(RegisterBus(addr_width, classifier.address_layout,
                                   classifier.data_layout)),
            "reads_issued": Out(range(4)), "reads_staged": Out(1), "reads_in_flight": Out(1),
            "reads_held": Out(range(5)),
            "aw_held": Out(range(3)), "w_held": Out(range(3)), "w_staged": Out(range(3)),
            "b_pending": Out(range(4)),
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

        def consistent(buffer, entry_ok):
            return (((buffer.level == 0) | entry_ok(buffer.head)) &
                    ((buffer.level < 2) | entry_ok(buffer.tail)))

        def aw_ok(entry):
            return classify.address(entry[:word_width]) == entry[word_width:]

        def w_ok(entry):
            return classify.data(entry[:32], entry[32:36]) == entry[36:]
        tags_ok = consistent(aw, aw_ok) & consistent(w, w_ok)

        # Writes done by the block and not yet answered on B, and (pipelined) writes joined
        # and not yet answered: at most three, so that B never needs more than a 2-bit count.
        b_pending = Signal(range(4))
        b_fire = axi.bvalid & axi.bready
        joined = aw.o.valid & w.o.valid
        if self._pipeline:
            # The joined write waits in a stage (a skid buffer, registered ready) and reaches
            # the block from its flip-flops; B counts it once the block has taken it.
            m.submodules.w_stage = stage = SkidBuffer(len(aw.o.payload) + len(w.o.payload),
                                                      bypass=False)
            accepted = Signal(range(4))
            room = Signal(init=1)      # accepted != 3 after this cycle, as a flip-flop
            m.d.comb += [
                stage.i.valid.eq(joined & room),
                stage.i.payload.eq(Cat(aw.o.payload, w.o.payload)),
                aw.o.ready.eq(stage.i.valid & stage.i.ready),
                w.o.ready.eq(stage.i.valid & stage.i.ready),
            ]
            write_in = stage.o.payload
            aw_payload = write_in[:len(aw.o.payload)]
            w_payload = write_in[len(aw.o.payload):]
            m.d.comb += [reg.w_valid.eq(stage.o.valid), stage.o.ready.eq(reg.w_ready)]
            accepted_next = Signal(range(4))
            m.d.comb += accepted_next.eq(accepted + (stage.i.valid & stage.i.ready) - b_fire)
            m.d.sync += [accepted.eq(accepted_next), room.eq(accepted_next != 3)]
            m.d.comb += self.w_staged.eq(stage.level)
            aw_width = len(aw.o.payload)
            counts_ok = ((room == (accepted != 3)) & (accepted == b_pending + stage.level) &
                         (stage.o.valid == (stage.level != 0)) &
                         consistent(stage, lambda entry: aw_ok(entry[:aw_width]) &
                                    w_ok(entry[aw_width:])))
        else:
            room = Signal(init=1)      # b_pending != 3, as a flip-flop
            aw_payload, w_payload = aw.o.payload, w.o.payload
            m.d.comb += reg.w_valid.eq(joined & room)
            counts_ok = room == (b_pending != 3)
        m.d.comb += [
            reg.w_addr.eq(aw_payload[:word_width]),
            reg.w_address_tags.eq(aw_payload[word_width:]),
            reg.w_data.eq(w_payload[:32]),
            reg.w_strb.eq(w_payload[32:36]),
            reg.w_data_tags.eq(w_payload[36:]),
        ]
        w_fire = reg.w_valid & reg.w_ready
        if not self._pipeline:
            m.d.comb += [aw.o.ready.eq(w_fire), w.o.ready.eq(w_fire)]
        m.d.comb += self.consistent.eq(
            tags_ok & counts_ok &
            (aw.o.valid == (aw.level != 0)) & (w.o.valid == (w.level != 0)))
        b_next = Signal(range(4))
        m.d.comb += b_next.eq(b_pending + w_fire - b_fire)
        m.d.sync += b_pending.eq(b_next)
        if not self._pipeline:
            m.d.sync += room.eq(b_next != 3)
        m.d.comb += [self.b_pending.eq(b_pending), self.aw_held.eq(aw.level),
                     self.w_held.eq(w.level)]
        m.d.comb += [axi.bvalid.eq(self._bvalid(b_pending)), axi.bresp.eq(0)]

        # ---- read: issue on the AR handshake (pipelined: from a stage a cycle later), the
        # result lands a cycle after the issue into R.
        arready = Signal(init=1)
        in_flight = Signal()
        outstanding = Signal(range(4))     # issued and not yet taken on R
        ar_fire = axi.arvalid & arready
        r_fire = axi.rvalid & axi.rready
        if self._pipeline:
            staged = Signal()
            staged_addr = Signal(word_width)
            m.d.sync += [staged.eq(ar_fire), staged_addr.eq(axi.araddr[2:])]
            m.d.comb += [reg.r_valid.eq(staged), reg.r_addr.eq(staged_addr),
                         self.reads_staged.eq(staged)]
            # Up to three reads outstanding: four entries of R buffer (two skid buffers in a
            # row, both with a bypass, so a result is on R in the cycle it lands).
            m.submodules.r_first = r_first = SkidBuffer(32)
            m.submodules.r = r = SkidBuffer(32)
            m.d.comb += [
                r_first.i.valid.eq(in_flight), r_first.i.payload.eq(reg.r_data),
                r.i.valid.eq(r_first.o.valid), r.i.payload.eq(r_first.o.payload),
                r_first.o.ready.eq(r.i.ready),
                self.reads_held.eq(r_first.level + r.level),
            ]
            issued = staged
            most = 2
        else:
            m.submodules.r = r = SkidBuffer(32)
            m.d.comb += [
                reg.r_valid.eq(ar_fire), reg.r_addr.eq(axi.araddr[2:]),
                r.i.valid.eq(in_flight), r.i.payload.eq(reg.r_data),
                self.reads_held.eq(r.level),
            ]
            issued = ar_fire
            most = 1
        m.d.comb += [
            axi.arready.eq(arready),
            axi.rvalid.eq(self._rvalid(r)),
            axi.rdata.eq(r.o.payload),
            axi.rresp.eq(0),
            r.o.ready.eq(axi.rready),
        ]
        outstanding_next = outstanding + ar_fire - r_fire
        m.d.comb += [self.reads_issued.eq(outstanding), self.reads_in_flight.eq(in_flight)]
        # Accept a read only if its result fits even when R stalls from now on: at most
        # ``most`` results held or on their way, plus the new one.
        # A write kept from the config port by a config read goes first in the next cycle.
        m.d.sync += [
            in_flight.eq(issued),
            outstanding.eq(outstanding_next),
            arready.eq((outstanding_next <= most) & ~reg.w_conflict),
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
