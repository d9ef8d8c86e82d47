"""Bus front-ends of the register core (SPEC §8): AXI4-Lite and Wishbone B4 subordinates."""

from amaranth.hdl import *
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from .bus import AXI4LiteSignature, WishboneSignature
from .core import RegisterBus
from .notify import DataTags


__all__ = ["SkidBuffer", "AXI4LiteSubordinate", "WishboneSubordinate"]


class SkidBuffer(wiring.Component):
    """A two-entry buffer with a registered ``i.ready``, with or without a bypass.

    With ``bypass`` (default), ``o`` presents the incoming payload in the same cycle when the
    buffer is empty, so the buffer adds no latency. Without, ``o`` comes from flip-flops only
    (one clock of latency, and nothing from ``i`` reaches ``o`` combinationally; ``o.valid``
    is a flip-flop of its own). ``i.ready``
    is a flip-flop (high while fewer than two entries are held), so no combinational path runs
    from ``o.ready`` to ``i.ready``. Throughput: one transfer per cycle. ``level`` is the
    number of entries held; ``head`` and ``tail`` are the entries (observation, for proofs).
    """

    def __init__(self, width, bypass=True):
        self._width = width
        self._bypass = bypass
        super().__init__({
            "i": In(stream.Signature(width)),
            "o": Out(stream.Signature(width)),
            "level": Out(range(3)),
            "head": Out(width), "tail": Out(width),
        })

    def elaborate(self, platform):
        m = Module()
        head, tail, level = self.head, self.tail, self.level
        m.d.comb += self.i.ready.eq(level < 2)  # level is a register: i.ready is registered
        push = self.i.valid & self.i.ready
        pop = self.o.valid & self.o.ready
        if self._bypass:
            m.d.comb += [
                self.o.valid.eq((level != 0) | self.i.valid),
                self.o.payload.eq(Mux(level != 0, head, self.i.payload)),
            ]
        else:
            # "Not empty" has a flip-flop of its own: o.valid is then a register output.
            nonempty = Signal()
            level_next = Signal(range(3))
            m.d.comb += level_next.eq(level + push - pop)
            m.d.sync += nonempty.eq(level_next != 0)
            m.d.comb += [self.o.valid.eq(nonempty), self.o.payload.eq(head)]
        with m.If(push & ~pop):
            m.d.sync += level.eq(level + 1)
            with m.If(level == 0):
                m.d.sync += head.eq(self.i.payload)
            with m.Else():
                m.d.sync += tail.eq(self.i.payload)
        with m.Elif(pop & ~push):
            m.d.sync += [level.eq(level - 1), head.eq(tail)]
        with m.Elif(pop & push):
            # level 0: the input went straight through. level 1: it becomes the head.
            with m.If(level == 1):
                m.d.sync += head.eq(self.i.payload)
            with m.Elif(level == 2):
                m.d.sync += [head.eq(tail), tail.eq(self.i.payload)]
        return m


class AXI4LiteSubordinate(wiring.Component):
    """AXI4-Lite subordinate in front of a :class:`RegisterBus` (SPEC §8).

    Parameters
    ----------
    addr_width : int
        Byte-address bits of ``awaddr``/``araddr``; bits 1:0 are ignored (every access is to a
        whole word, with ``wstrb`` for the lanes).
    classifier : :class:`WriteClassifier`
        The core's (:attr:`RegisterCore.classifier`): AW and W entries are tagged with it as
        they are buffered.

    Members
    -------
    axi : ``In(AXI4LiteSignature(addr_width))``
    reg : ``Out(RegisterBus(addr_width, classifier.address_layout))``

    Latency and throughput
    ----------------------
    Read: RVALID one clock after the AR handshake. Write: AW and W are registered (no bypass,
    so the address decode starts from flip-flops); the register is written in the cycle after
    the later of the AW and W handshakes (AW and W may come in either order, any number of
    cycles apart), BVALID follows one clock later. A notification written that way is on the
    notify stream in that same cycle (the notify queue passes it straight through), so write
    handshake → ``notify_valid`` is one clock. One read and one write per clock,
    sustained and concurrently, while the manager keeps RREADY and BREADY high. All ready and
    valid outputs are flip-flops; every response is OKAY. AW and W are buffered two deep, B is
    a count of up to three responses, and at most two reads are outstanding (issued and not yet
    taken on R, held in a two-entry buffer); when those fill under back-pressure the ready
    signals drop and nothing is lost. A write the core cannot take yet
    (a notification while the notify stream is full) waits in the buffers while reads go on.

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
            "reg": Out(RegisterBus(addr_width, classifier.address_layout)),
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
        address_layout = classify.address_layout
        aw_tags = Signal(address_layout)
        w_tags = Signal(DataTags)
        m.d.comb += [aw_tags.eq(classify.address(axi.awaddr[2:])),
                     w_tags.eq(classify.data(axi.wdata, axi.wstrb))]
        m.submodules.aw = aw = SkidBuffer(word_width + address_layout.size, bypass=False)
        m.submodules.w = w = SkidBuffer(36 + DataTags.size, bypass=False)
        m.d.comb += [
            aw.i.valid.eq(axi.awvalid), aw.i.payload.eq(Cat(axi.awaddr[2:], aw_tags)),
            axi.awready.eq(aw.i.ready),
            w.i.valid.eq(axi.wvalid), w.i.payload.eq(Cat(axi.wdata, axi.wstrb, w_tags)),
            axi.wready.eq(w.i.ready),
        ]

        def consistent(buffer, tags_of):
            def entry_ok(entry):
                tags = tags_of(entry)
                return tags == entry[-len(tags):]
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
        m.d.comb += [axi.bvalid.eq(b_pending != 0), axi.bresp.eq(0)]

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
            axi.rvalid.eq(r.o.valid),
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


class WishboneSubordinate(wiring.Component):
    """Wishbone B4 subordinate in front of a :class:`RegisterBus` (SPEC §8).

    Parameters
    ----------
    addr_width : int
        Byte-address bits of the endpoint's window; ``adr`` is the word address
        (``addr_width - 2`` bits), ``sel`` the byte lanes.
    classifier : :class:`WriteClassifier`
        The core's (:attr:`RegisterCore.classifier`), applied to each request.
    mode : ``"classic"`` or ``"pipelined"``

    Members
    -------
    wb : ``In(WishboneSignature(addr_width - 2, mode=mode))``
    reg : ``Out(RegisterBus(addr_width, classifier.address_layout))``

    Latency and throughput
    ----------------------
    Classic: ``ack`` one clock after ``stb`` (registered feedback), so an access takes two
    clocks when the manager drops ``stb`` on ``ack``. Pipelined: one access per clock, ``ack``
    one clock after the request; ``stall`` rises (combinationally, from the request) only for a
    notify write while the notify stream is full. Classic holds ``ack`` back the same way.
    ``err`` is never asserted: every access is acknowledged.

    Reset
    -----
    Synchronous ``rst`` drops a pending ``ack``.
    """

    def __init__(self, addr_width, classifier, *, mode="classic"):
        self._addr_width = addr_width
        self._classifier = classifier
        self._mode = mode
        super().__init__({
            "wb": In(WishboneSignature(addr_width - 2, mode=mode)),
            "reg": Out(RegisterBus(addr_width, classifier.address_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        wb, reg = self.wb, self.reg
        ack = Signal()
        request = wb.cyc & wb.stb
        if self._mode == "classic":
            # In the ack cycle stb still shows the request just answered: not a new one.
            request = request & ~ack
        m.d.comb += [
            reg.r_valid.eq(request & ~wb.we),
            reg.r_addr.eq(wb.adr),
            reg.w_valid.eq(request & wb.we),
            reg.w_addr.eq(wb.adr),
            reg.w_data.eq(wb.dat_w),
            reg.w_strb.eq(wb.sel),
            reg.w_address_tags.eq(self._classifier.address(wb.adr)),
            reg.w_data_tags.eq(self._classifier.data(wb.dat_w, wb.sel)),
        ]
        accepted = request & (~wb.we | reg.w_ready)
        if self._mode == "pipelined":
            m.d.comb += wb.stall.eq(request & wb.we & ~reg.w_ready)
        m.d.sync += ack.eq(accepted)
        m.d.comb += [wb.ack.eq(ack), wb.dat_r.eq(reg.r_data), wb.err.eq(0)]
        return m
