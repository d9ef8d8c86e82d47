"""An MSI receiver for Amaranth's simulator: a bus subordinate on the endpoint's MSI manager
port (``m_axil_*`` or ``m_wb_*``) that takes each 32-bit write as a message and dispatches it
to the handler registered for its (address, data), as an interrupt controller would.

Random ready/ack timing and injected error responses exercise the manager's handshakes."""

import random

__all__ = ["MsiReceiver"]


class MsiReceiver:
    """Collects messages in :attr:`messages` as ``(cycle, address, data)``.

    ``busy`` is the probability that a ready (or ack) is withheld in a cycle; ``error`` the
    probability that a write gets an error response; ``stall_for`` (cycles) holds the port
    back completely from the start, for back-pressure tests.
    """

    def __init__(self, *, busy=0.0, error=0.0, seed=0, stall_for=0):
        # messages: (cycle the request was first presented, address, data)
        self.busy = busy
        self.error = error
        self.rng = random.Random(seed)
        self.stall_for = stall_for
        self.messages = []
        self.errors_sent = 0
        self.handlers = {}
        self.cycle = 0

    def on(self, address, data, handler):
        """Call ``handler(cycle)`` for every message (address, data)."""
        self.handlers[(address, data)] = handler

    def _take(self, address, data, started=None):
        """A message; ``started`` is the cycle its request was first presented."""
        cycle = self.cycle if started is None else started
        self.messages.append((cycle, address, data))
        handler = self.handlers.get((address, data))
        if handler is not None:
            handler(cycle)

    def _stalled(self):
        return self.cycle < self.stall_for or self.rng.random() < self.busy

    def process(self, dut):
        """The Amaranth process for ``dut``'s manager port."""
        if hasattr(dut.msi, "awvalid"):
            return self._axi(dut)
        return self._wishbone(dut)

    def _axi(self, dut):
        async def process(ctx):
            aw, w, responses = [], [], []     # responses: bresp of each completed write
            start = None                      # cycle the current AWVALID rose
            async for _, _, awv, awr, awaddr, wv, wr, wdata, wstrb, bv, br, bresp in \
                    ctx.tick().sample(
                        dut.msi.awvalid, dut.msi.awready, dut.msi.awaddr,
                        dut.msi.wvalid, dut.msi.wready, dut.msi.wdata,
                        dut.msi.wstrb, dut.msi.bvalid, dut.msi.bready,
                        dut.msi.bresp):
                if awv and start is None:
                    start = self.cycle
                if awv and awr:
                    aw.append((start, awaddr))
                    start = None
                if wv and wr:
                    assert wstrb == 0xF, "an MSI write must enable every byte lane"
                    w.append(wdata)
                while aw and w:
                    started, address = aw.pop(0)
                    self._take(address, w.pop(0), started)
                    responses.append(2 if self.rng.random() < self.error else 0)
                if bv and br:
                    responses.pop(0)
                    self.errors_sent += bresp != 0
                self.cycle += 1
                ctx.set(dut.msi.awready, not self._stalled())
                ctx.set(dut.msi.wready, not self._stalled())
                if bv and not br:
                    continue                  # a response stays until it is taken
                if responses and not self._stalled():
                    ctx.set(dut.msi.bvalid, 1)
                    ctx.set(dut.msi.bresp, responses[0])
                else:
                    ctx.set(dut.msi.bvalid, 0)
        return process

    def _wishbone(self, dut):
        pipelined = hasattr(dut.msi, "stall")

        async def process(ctx):
            answers = []          # pipelined: err flag of each accepted request, in order
            start = None          # cycle the current request's stb rose
            async for _, _, cyc, stb, we, adr, dat, sel, ack, err, *stall in ctx.tick().sample(
                    dut.msi.cyc, dut.msi.stb, dut.msi.we, dut.msi.adr, dut.msi.dat_w,
                    dut.msi.sel, dut.msi.ack, dut.msi.err,
                    *([dut.msi.stall] if pipelined else [])):
                answer = None
                if cyc and stb and start is None and (pipelined or not (ack or err)):
                    start = self.cycle
                if pipelined:
                    if cyc and stb and not stall[0]:
                        assert we and sel == 0xF
                        self._take(adr << 2, dat, start)
                        start = None
                        answers.append(self.rng.random() < self.error)
                    if answers and not self._stalled():
                        answer = answers.pop(0)
                    ctx.set(dut.msi.stall, self._stalled())
                elif cyc and stb and not (ack or err) and not self._stalled():
                    # Classic: in the cycle after an answer stb still shows that request.
                    assert we and sel == 0xF
                    self._take(adr << 2, dat, start)
                    start = None
                    answer = self.rng.random() < self.error
                ctx.set(dut.msi.ack, answer is False)
                ctx.set(dut.msi.err, answer is True)
                self.errors_sent += answer is True
                self.cycle += 1
        return process
