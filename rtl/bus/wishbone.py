"""Wishbone B4 (docs/spec.md §8), classic and pipelined: the subordinate in front of a
:class:`~.register_bus.RegisterBus`, the write manager (the MSI port) and the DMA manager."""

from amaranth.hdl import *
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from .register_bus import RegisterBus
from .signatures import DmaAccessSignature, WishboneSignature, WriteMessage


__all__ = ["WishboneSubordinate", "WishboneWriteManager", "WishboneDmaManager"]


class WishboneSubordinate(wiring.Component):
    """Wishbone B4 subordinate in front of a :class:`RegisterBus` (docs/spec.md §8).

    Parameters
    ----------
    addr_width : int
        Byte-address bits of the endpoint's window; ``adr`` is the word address
        (``addr_width - 2`` bits), ``sel`` the byte lanes.
    classifier : :class:`~.register_bus.WriteClassifier`
        The register block's (the endpoint's: :attr:`RegisterCore.classifier`), applied to
        each request.
    mode : ``"classic"`` or ``"pipelined"``
    pipeline : bool
        A request stage in front of the block (see "Latency and throughput").

    Members
    -------
    wb : ``In(WishboneSignature(addr_width - 2, mode=mode))``
    reg : ``Out(RegisterBus(addr_width, classifier.address_layout, classifier.data_layout))``
    staged, busy, consistent : Out
        Observation (for proofs): with ``pipeline``, a request is in the stage; (classic) a
        request is taken and not yet answered; a staged request's tags are those of its own
        address and data.

    Latency and throughput
    ----------------------
    Classic: ``ack`` one clock after ``stb`` (registered feedback), so an access takes two
    clocks when the manager drops ``stb`` on ``ack``. Pipelined: one access per clock, ``ack``
    one clock after the request; ``stall`` rises (combinationally, from the request) only for a
    write the register block cannot take yet (``w_ready`` low; in the endpoint, a notify write
    while the notify stream is full). Classic holds ``ack`` back the same way.

    With ``pipeline``, every request is first registered (with its write tags) and reaches the
    block from flip-flops a clock later: ``ack`` comes two clocks after the request (a read's
    data with it; a write once the block has taken it, so a later access sees it).
    Pipelined: still one access per clock; ``stall`` rises while the stage holds a write the
    block cannot take yet. Classic: three clocks per access when the manager drops ``stb`` on
    ``ack``.
    ``err`` is never asserted: every access is acknowledged.

    Reset
    -----
    Synchronous ``rst`` drops a pending ``ack``.
    """

    def __init__(self, addr_width, classifier, *, mode="classic", pipeline=False):
        if not isinstance(pipeline, bool):
            raise TypeError(f"pipeline must be True or False, not {pipeline!r}")
        self._addr_width = addr_width
        self._classifier = classifier
        self._mode = mode
        self._pipeline = pipeline
        super().__init__({
            "wb": In(WishboneSignature(addr_width - 2, mode=mode)),
            "reg": Out(RegisterBus(addr_width, classifier.address_layout,
                                   classifier.data_layout)),
            "staged": Out(1), "busy": Out(1), "consistent": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        wb, reg = self.wb, self.reg
        ack = Signal()
        request = wb.cyc & wb.stb
        if self._pipeline:
            return self._elaborate_pipelined(m, request, ack)
        if self._mode == "classic":
            # In the ack cycle stb still shows the request just answered: not a new one.
            request = request & ~ack
        self._present(m, request, wb.we, wb.adr, wb.dat_w, wb.sel,
                      self._classifier.address(wb.adr), self._classifier.data(wb.dat_w, wb.sel))
        accepted = request & (~wb.we | reg.w_ready)
        if self._mode == "pipelined":
            m.d.comb += wb.stall.eq(request & wb.we & ~reg.w_ready)
        self._answer(m, ack, accepted)
        return m

    def _present(self, m, valid, we, adr, dat_w, sel, address_tags, data_tags):
        """The request on :class:`RegisterBus`: a read or a write (``we``) of word ``adr``
        while ``valid``, with its data, lanes and tags."""
        reg = self.reg
        m.d.comb += [
            reg.r_valid.eq(valid & ~we),
            reg.r_addr.eq(adr),
            reg.w_valid.eq(valid & we),
            reg.w_addr.eq(adr),
            reg.w_data.eq(dat_w),
            reg.w_strb.eq(sel),
            reg.w_address_tags.eq(address_tags),
            reg.w_data_tags.eq(data_tags),
        ]

    def _answer(self, m, ack, answered):
        """``ack`` (with the block's read data) in the cycle after ``answered``; never
        ``err``."""
        m.d.sync += ack.eq(answered)
        m.d.comb += [self.wb.ack.eq(ack), self.wb.dat_r.eq(self.reg.r_data),
                     self.wb.err.eq(0)]

    def _elaborate_pipelined(self, m, request, ack):
        """The request stage: a request is registered (with its write tags) and reaches the
        block from flip-flops in the next cycle; a read is answered the cycle after that, a
        write the cycle after the block takes it."""
        wb, reg = self.wb, self.reg
        staged, we = Signal(), Signal()
        adr, dat_w, sel = Signal.like(wb.adr), Signal.like(wb.dat_w), Signal.like(wb.sel)
        address_tags = Signal(self._classifier.address_layout)
        data_tags = Signal(self._classifier.data_layout)
        leaving = staged & (~we | reg.w_ready)
        room = ~staged | leaving
        if self._mode == "classic":
            # One request at a time: from its acceptance until its ack (the manager holds
            # stb meanwhile), it is not a new one.
            busy = Signal()
            request = request & ~busy
            m.d.sync += busy.eq((request & room) | (busy & ~ack))
            m.d.comb += self.busy.eq(busy)
        else:
            m.d.comb += wb.stall.eq(request & ~room)
        with m.If(room):
            m.d.sync += [
                staged.eq(request), we.eq(wb.we), adr.eq(wb.adr), dat_w.eq(wb.dat_w),
                sel.eq(wb.sel),
                address_tags.eq(self._classifier.address(wb.adr)),
                data_tags.eq(self._classifier.data(wb.dat_w, wb.sel)),
            ]
        self._present(m, staged, we, adr, dat_w, sel, address_tags, data_tags)
        m.d.comb += [
            self.staged.eq(staged),
            self.consistent.eq(
                ~staged | ((address_tags.as_value() == self._classifier.address(adr)) &
                           (data_tags.as_value() == self._classifier.data(dat_w, sel)))),
        ]
        self._answer(m, ack, leaving)
        return m


class WishboneWriteManager(wiring.Component):
    """Sends :data:`~.signatures.WriteMessage` s as Wishbone writes (word address = address[63:2], ``sel``
    0xF).

    Classic: ``cyc``/``stb`` with the message until ``ack`` or ``err`` (one message per two
    clocks with a registered-feedback subordinate). Pipelined: a request per clock while
    ``stall`` is low; ``cyc`` stays high until every request is answered. ``err`` is counted in
    ``errors`` and latched on ``error`` (until ``rst``).
    """

    def __init__(self, mode="classic"):
        self._mode = mode
        super().__init__({
            "message": In(stream.Signature(WriteMessage)),
            "wb": Out(WishboneSignature(62, mode=mode, read=False)),
            "error": Out(1), "errors": Out(32),
            # Observation (for proofs): pipelined requests accepted and not yet answered.
            "outstanding": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        wb, msg = self.wb, self.message
        answered = wb.ack | wb.err
        m.d.comb += [
            wb.stb.eq(self._stb(m, msg, answered)),
            wb.we.eq(1),
            wb.sel.eq(0xF),
            wb.adr.eq(msg.payload.address[2:]),
            wb.dat_w.eq(msg.payload.data),
        ]
        if self._mode == "classic":
            m.d.comb += [wb.cyc.eq(msg.valid), msg.ready.eq(answered)]
        else:
            outstanding = Signal(range(1 << 16))
            sent = msg.valid & ~wb.stall
            m.d.comb += [wb.cyc.eq(msg.valid | (outstanding != 0)), msg.ready.eq(~wb.stall)]
            m.d.sync += outstanding.eq(outstanding + sent - answered)
            m.d.comb += self.outstanding.eq(outstanding)
        with m.If(wb.err):
            m.d.sync += [self.error.eq(1), self.errors.eq(self.errors + 1)]
        return m

    def _stb(self, m, message, answered):
        """``stb``: raised while ``message`` is valid, however long it waits to be ``answered``
        (``m``: the module, for a rule with state of its own)."""
        return message.valid


class WishboneDmaManager(wiring.Component):
    """:class:`DmaAccessSignature` onto Wishbone B4 (62-bit word address, 32-bit data, ``sel``
    per byte; reads with ``sel = 0xF``).

    Classic: ``cyc``/``stb`` with the request until ``ack`` or ``err`` (which may come in the
    same cycle). Pipelined: ``stb`` until a cycle without ``stall``, ``cyc`` until the answer.
    ``err`` is an error.

    Latency and throughput: ``cyc``/``stb`` in the cycle the request is presented; ``done`` in
    the cycle of ``ack``/``err``. With a subordinate that acknowledges one clock after the
    request, one access every two clocks.
    """

    def __init__(self, mode="classic"):
        self._mode = mode
        super().__init__({
            "access": In(DmaAccessSignature()),
            "wb": Out(WishboneSignature(62, mode=mode)),
        })

    def elaborate(self, platform):
        m = Module()
        wb, access = self.wb, self.access
        m.d.comb += [
            wb.cyc.eq(access.valid),
            wb.we.eq(access.write),
            wb.adr.eq(access.address[2:]),
            wb.dat_w.eq(access.data),
            wb.sel.eq(Mux(access.write, access.strobe, 0xF)),
            access.done.eq(access.valid & (wb.ack | wb.err)),
            access.rdata.eq(wb.dat_r),
            access.error.eq(wb.err),
        ]
        if self._mode == "classic":
            m.d.comb += wb.stb.eq(access.valid)
        else:
            sent = Signal()
            m.d.comb += wb.stb.eq(access.valid & ~sent)
            with m.If(access.done):
                m.d.sync += sent.eq(0)
            with m.Elif(wb.stb & ~wb.stall):
                m.d.sync += sent.eq(1)
        return m
