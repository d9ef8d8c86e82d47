"""Formal property checkers for the bus ports (docs/spec.md §8, §12), as Amaranth components.

A checker sits beside a port and observes every signal of it (all its members are inputs). It
``Assume`` s what the other side of the port owes and ``Assert`` s what the design owes, so a
proof of the design with the checker beside it covers every legal behaviour of the other side.
Outstanding-transaction counters are outputs, so a proof can relate the design's own counters
to them (k-induction needs that).

There is no ``Past`` in Amaranth: each checker keeps the previous cycle's values in registers
of its own. Every checker takes ``rst`` from its domain: a reset clears its counters, and the
cycle after a reset is not compared with the one before it.
"""

from amaranth.hdl import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .signatures import AXI4LiteSignature, WishboneSignature


__all__ = ["AXI4LiteSubordinateChecker", "AXI4LiteWriteManagerChecker",
           "WishboneSubordinateChecker", "WishboneWriteManagerChecker"]


def _observer(signature):
    """Every member of a port signature as an input of the checker."""
    return {name: In(member.shape) for name, member in signature.members.items()}


class _History:
    """Previous-cycle copies of values. ``valid``: there is a previous cycle; ``compare``: and
    it was not a reset cycle, so values may be compared across it. (History registers must be
    made outside any ``If``: they update every cycle.)"""

    def __init__(self, m):
        self._m = m
        self.valid = Signal()
        m.d.sync += self.valid.eq(1)
        self.after_reset = self.past(ResetSignal())
        self.compare = self.valid & ~self.after_reset

    def past(self, value):
        past = Signal.like(value) if isinstance(value, Signal) else Signal(len(value))
        self._m.d.sync += past.eq(value)
        return past

    def hold_until_handshake(self, port, channel, payload, rule):
        """``rule`` (Assert or Assume) that a channel's valid, once high without ready, stays
        high with ``payload`` unchanged."""
        valid = getattr(port, f"{channel}valid")
        waiting = self.past(valid & ~getattr(port, f"{channel}ready"))
        held = [getattr(port, name) == self.past(getattr(port, name)) for name in payload]
        with self._m.If(self.compare & waiting):
            self._m.d.comb += [rule(valid), *(rule(same) for same in held)]

    def bounded(self, waiting, bound, name):
        """Assert that ``waiting`` is never high for more than ``bound`` cycles in a row."""
        waited = Signal(range(bound + 2), name=name)
        with self._m.If(~waiting):
            self._m.d.sync += waited.eq(0)
        with self._m.Elif(waited <= bound):
            self._m.d.sync += waited.eq(waited + 1)
        self._m.d.comb += Assert(waited <= bound)

    def quiet_after_reset(self, *valids):
        """Assert that none of ``valids`` is high in the cycle after a reset."""
        with self._m.If(self.valid & self.after_reset):
            self._m.d.comb += Assert(~Cat(*valids).any())


class AXI4LiteSubordinateChecker(wiring.Component):
    """Checks an AXI4-Lite subordinate port (docs/spec.md §8).

    Assumed of the manager: AWVALID, WVALID and ARVALID low in reset and, once high, held with
    their payload until the handshake.

    Asserted of the subordinate: BVALID and RVALID held with their payload until the handshake;
    a B only for a write whose AW and W have both been handshaken and not yet answered, an R
    only for an AR not yet answered; no response in the cycle after a reset; at most
    ``max_reads`` reads and ``max_writes`` writes outstanding; and, unless ``response_bound``
    is None, while the manager keeps BREADY (RREADY) high, a response within
    ``response_bound`` cycles of the request it answers becoming complete.

    Members
    -------
    All AXI4-Lite signals, as inputs.
    reads, writes_aw, writes_w : Out
        Reads issued and not answered; AW and W handshakes not yet answered by a B.
    """

    def __init__(self, addr_width, *, max_reads, max_writes, response_bound):
        self._max_reads = max_reads
        self._max_writes = max_writes
        self._bound = response_bound
        counter = range(max(max_reads, max_writes) + 2)
        if response_bound is not None and response_bound < 1:
            raise ValueError(f"response_bound must be a positive integer or None, "
                             f"not {response_bound!r}")
        super().__init__({
            **_observer(AXI4LiteSignature(addr_width)),
            "reads": Out(counter), "writes_aw": Out(counter), "writes_w": Out(counter),
        })

    def elaborate(self, platform):
        m = Module()
        rst = ResetSignal()
        history = _History(m)

        def handshake(channel):
            return getattr(self, f"{channel}valid") & getattr(self, f"{channel}ready")

        # ---- the manager's obligations
        with m.If(rst):
            m.d.comb += Assume(~self.awvalid & ~self.wvalid & ~self.arvalid)
        history.hold_until_handshake(self, "aw", ("awaddr", "awprot"), Assume)
        history.hold_until_handshake(self, "w", ("wdata", "wstrb"), Assume)
        history.hold_until_handshake(self, "ar", ("araddr", "arprot"), Assume)

        # ---- the subordinate's obligations
        history.hold_until_handshake(self, "b", ("bresp",), Assert)
        history.hold_until_handshake(self, "r", ("rdata", "rresp"), Assert)
        history.quiet_after_reset(self.bvalid, self.rvalid)

        # ---- outstanding transactions
        aw, w, ar = handshake("aw"), handshake("w"), handshake("ar")
        b, r = handshake("b"), handshake("r")
        m.d.sync += [
            self.writes_aw.eq(self.writes_aw + aw - b),
            self.writes_w.eq(self.writes_w + w - b),
            self.reads.eq(self.reads + ar - r),
        ]
        with m.If(self.bvalid):
            m.d.comb += Assert((self.writes_aw != 0) & (self.writes_w != 0))
        with m.If(self.rvalid):
            m.d.comb += Assert(self.reads != 0)
        m.d.comb += [
            Assert(self.reads <= self._max_reads),
            Assert(self.writes_aw <= self._max_writes),
            Assert(self.writes_w <= self._max_writes),
        ]

        # ---- bounded response while the manager is ready for it
        if self._bound is None:
            return m
        for channel, owed in (("b", (self.writes_aw != 0) & (self.writes_w != 0)),
                              ("r", self.reads != 0)):
            ready = getattr(self, f"{channel}ready")
            history.bounded(owed & ready & ~handshake(channel), self._bound,
                            f"{channel}_waited")
        return m


class WishboneSubordinateChecker(wiring.Component):
    """Checks a Wishbone B4 subordinate port, classic or pipelined (docs/spec.md §8).

    Assumed of the manager: ``stb`` only inside ``cyc`` and never in reset. Classic: a request
    (``stb``) and its ``adr``/``we``/``dat_w``/``sel`` held until ``ack`` or ``err``.
    Pipelined: a stalled request held likewise; ``cyc`` held while answers are outstanding.

    Asserted of the subordinate: never ``ack`` and ``err`` together; no answer in the cycle
    after a reset; classic: an answer only to a request presented in that cycle; pipelined: an
    answer only for an accepted, unanswered request, at most ``max_outstanding`` of them; and,
    unless ``response_bound`` is None, a request answered (classic) or accepted and answered
    (pipelined) within ``response_bound`` cycles.

    Members
    -------
    The Wishbone signals, as inputs. ``outstanding`` : Out — accepted, unanswered requests
    (pipelined).
    """

    def __init__(self, addr_width, *, mode, max_outstanding=1, response_bound=None):
        self._mode = mode
        self._max = max_outstanding
        self._bound = response_bound
        if response_bound is not None and response_bound < 1:
            raise ValueError(f"response_bound must be a positive integer or None, "
                             f"not {response_bound!r}")
        super().__init__({
            **_observer(WishboneSignature(addr_width, mode=mode)),
            "outstanding": Out(range(max_outstanding + 2)),
        })

    def elaborate(self, platform):
        m = Module()
        rst = ResetSignal()
        history = _History(m)
        compare = history.compare
        answer = self.ack | self.err
        payload = (self.adr, self.we, self.dat_w, self.sel)

        m.d.comb += Assume(~self.stb | self.cyc)
        with m.If(rst):
            m.d.comb += Assume(~self.stb)
        m.d.comb += Assert(~(self.ack & self.err))
        history.quiet_after_reset(answer)

        if self._mode == "classic":
            waiting = history.past(self.stb & ~answer)
            held = [value == history.past(value) for value in payload]
            with m.If(compare & waiting):
                m.d.comb += [Assume(self.stb), *(Assume(same) for same in held)]
            with m.If(answer):
                m.d.comb += Assert(self.cyc & self.stb)
            pending = self.stb & ~answer
        else:
            stalled = history.past(self.stb & self.stall)
            held = [value == history.past(value) for value in payload]
            with m.If(compare & stalled):
                m.d.comb += [Assume(self.stb), *(Assume(same) for same in held)]
            with m.If(self.outstanding != 0):
                m.d.comb += Assume(self.cyc)
            accepted = self.cyc & self.stb & ~self.stall
            m.d.sync += self.outstanding.eq(self.outstanding + accepted - answer)
            with m.If(answer):
                m.d.comb += Assert(self.outstanding != 0)
            m.d.comb += Assert(self.outstanding <= self._max)
            pending = (self.stb & self.stall) | ((self.outstanding != 0) & ~answer)

        if self._bound is not None:
            history.bounded(pending, self._bound, "answer_waited")
        return m


class AXI4LiteWriteManagerChecker(wiring.Component):
    """Checks an AXI4-Lite write-only manager port (the MSI port, docs/spec.md §8).

    Assumed of the subordinate: a B only for a write whose AW and W it has taken and not yet
    answered, BVALID held with BRESP until BREADY, and no more than ``max_writes`` writes
    taken and unanswered (AWREADY/WREADY low at that limit).

    Asserted of the manager: AWVALID and WVALID held with their payload until the handshake,
    neither in the cycle after a reset, and every write with all four byte lanes
    (``full_strobes``).

    Members
    -------
    The write-channel signals, as inputs. ``writes_aw``, ``writes_w`` : Out — AW and W
    handshakes not yet answered by a B.
    """

    def __init__(self, addr_width, *, max_writes=3, full_strobes=True):
        self._max = max_writes
        self._full_strobes = full_strobes
        counter = range(max_writes + 2)
        super().__init__({
            **_observer(AXI4LiteSignature(addr_width, read=False)),
            "writes_aw": Out(counter), "writes_w": Out(counter),
        })

    def elaborate(self, platform):
        m = Module()
        rst = ResetSignal()
        history = _History(m)
        history.hold_until_handshake(self, "aw", ("awaddr", "awprot"), Assert)
        history.hold_until_handshake(self, "w", ("wdata", "wstrb"), Assert)
        history.quiet_after_reset(self.awvalid, self.wvalid)
        if self._full_strobes:
            with m.If(self.wvalid):
                m.d.comb += Assert(self.wstrb == 0xF)

        aw = self.awvalid & self.awready
        w = self.wvalid & self.wready
        b = self.bvalid & self.bready
        m.d.sync += [
            self.writes_aw.eq(self.writes_aw + aw - b),
            self.writes_w.eq(self.writes_w + w - b),
        ]
        with m.If(rst):
            m.d.comb += Assume(~self.bvalid)
        with m.If(self.bvalid):
            m.d.comb += Assume((self.writes_aw != 0) & (self.writes_w != 0))
        history.hold_until_handshake(self, "b", ("bresp",), Assume)
        with m.If(self.writes_aw >= self._max):
            m.d.comb += Assume(~self.awready)
        with m.If(self.writes_w >= self._max):
            m.d.comb += Assume(~self.wready)
        return m


class WishboneWriteManagerChecker(wiring.Component):
    """Checks a Wishbone B4 write-only manager port (the MSI port, docs/spec.md §8), classic or
    pipelined.

    Assumed of the subordinate: never ``ack`` and ``err`` together; classic: an answer only to
    the request presented in that cycle; pipelined: an answer only for an accepted, unanswered
    request, and ``stall`` high while ``max_outstanding`` requests are unanswered (the limit a
    real subordinate sets with its own queue).

    Asserted of the manager: ``stb`` only inside ``cyc``; every request a write (``we``) with
    all four byte lanes (``full_lanes``); classic: a request and its ``adr``/``dat_w``/``sel``
    held until ``ack`` or ``err``; pipelined: held while stalled, and ``cyc`` held while
    answers are outstanding; neither ``cyc`` nor ``stb`` in the cycle after a reset; at most
    ``max_outstanding`` requests unanswered.

    Members
    -------
    The Wishbone signals (without ``dat_r``), as inputs. ``outstanding`` : Out — requests
    accepted and not yet answered (classic: 1 while a request presented in an earlier cycle
    waits for its answer).
    """

    def __init__(self, addr_width, *, mode, max_outstanding=2, full_lanes=True):
        if not isinstance(max_outstanding, int) or max_outstanding < 1:
            raise ValueError(f"max_outstanding must be a positive integer, "
                             f"not {max_outstanding!r}")
        self._mode = mode
        self._max = 1 if mode == "classic" else max_outstanding
        self._full_lanes = full_lanes
        super().__init__({
            **_observer(WishboneSignature(addr_width, mode=mode, read=False)),
            "outstanding": Out(range(self._max + 2)),
        })

    def elaborate(self, platform):
        m = Module()
        history = _History(m)
        answer = self.ack | self.err
        payload = (self.adr, self.we, self.dat_w, self.sel)
        held = [value == history.past(value) for value in payload]

        # ---- the subordinate's obligations
        m.d.comb += Assume(~(self.ack & self.err))

        # ---- the manager's obligations
        m.d.comb += Assert(~self.stb | self.cyc)
        with m.If(self.stb):
            m.d.comb += Assert(self.we)
            if self._full_lanes:
                m.d.comb += Assert(self.sel == 0xF)
        history.quiet_after_reset(self.cyc, self.stb)

        if self._mode == "classic":
            with m.If(answer):
                m.d.comb += Assume(self.cyc & self.stb)
            waiting = history.past(self.stb & ~answer)
            with m.If(history.compare & waiting):
                m.d.comb += [Assert(self.stb), *(Assert(same) for same in held)]
            m.d.comb += self.outstanding.eq(history.compare & waiting)
        else:
            stalled = history.past(self.stb & self.stall)
            with m.If(history.compare & stalled):
                m.d.comb += [Assert(self.stb), *(Assert(same) for same in held)]
            accepted = self.cyc & self.stb & ~self.stall
            m.d.sync += self.outstanding.eq(self.outstanding + accepted - answer)
            with m.If(answer):
                m.d.comb += Assume(self.outstanding != 0)
            with m.If(self.outstanding >= self._max):
                m.d.comb += Assume(self.stall)
            with m.If(self.outstanding != 0):
                m.d.comb += Assert(self.cyc)
        m.d.comb += Assert(self.outstanding <= self._max)
        return m
