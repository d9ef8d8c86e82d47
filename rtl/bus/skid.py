"""A two-entry skid buffer: registered ready, with or without a bypass."""

from amaranth.hdl import *
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out


__all__ = ["SkidBuffer"]


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
