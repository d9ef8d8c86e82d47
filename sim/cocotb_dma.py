"""Guest memory on the rng device's DMA manager port under cocotb (rtl/devices/rng.py), and a monitor of
that port.

* :class:`AxiLiteGuestRam`: cocotbext-axi's ``AxiLiteRam`` on ``m_dma_axil_*``, its store seen
  through a :class:`~virtio_mmio_sim.rng_driver.GuestMemory` (64-bit guest-physical windows);
  accesses outside every window answer SLVERR (the model's own error path). Random pauses on
  all five channels.
* :class:`WishboneGuestRam`: a Wishbone B4 subordinate with read data on ``m_dma_wb_*``,
  classic or pipelined, random ack delays and stall; ``err`` outside guest memory.
  (cocotbext-wishbone's ``WishboneSlave`` has no random answer delays and no error path.)
* :class:`DmaMonitor`: per clock, the DMA writes outstanding, and at every rising edge of
  ``irq`` whether a used-ring write was still unanswered (the device must answer every write
  before it raises the used-buffer event).
* :class:`UsedEventMonitor`: feeds an :class:`~virtio_mmio_sim.rng_driver.EventScoreboard`
  with the device's used_event reads, its ``rng_used_event`` pulses and device resets.

Both RAM models call :meth:`GuestRamBase.on_write` hooks with ``(address, data, strobe)`` for
every write they take (before answering it), so tests check each write as it lands, and
:meth:`GuestRamBase.on_read` hooks with ``(address, word)`` for every read they serve (the
EVENT_IDX scoreboard sees the used_event values the device decides on).
"""

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly
from cocotbext.axi import AxiLiteBus, AxiLiteRam

from .cocotb_bus import random_pauses, signal_value as _value
from .rng_driver import GuestMemory, UnmappedAccess


__all__ = ["GuestRamBase", "AxiLiteGuestRam", "WishboneGuestRam", "DmaMonitor",
           "UsedEventMonitor"]


class GuestRamBase:
    """What both RAM models share: the guest memory, the write hooks and counters."""

    def _init_guest(self, memory):
        self.guest = memory
        self.write_hooks = []
        self.read_hooks = []
        self.reads = 0
        self.writes = 0
        self.refused = 0

    def on_write(self, hook):
        """Call ``hook(address, data, strobe)`` for every write taken (``data`` the 32-bit
        word, ``address`` word-aligned)."""
        self.write_hooks.append(hook)

    def on_read(self, hook):
        """Call ``hook(address, word)`` for every read served (``address`` word-aligned,
        ``word`` the 32-bit value returned)."""
        self.read_hooks.append(hook)

    def _guest_read_word(self, address):
        self.reads += 1
        try:
            raw = self.guest.read(address & ~3, 4)
        except UnmappedAccess:
            self.refused += 1
            raise
        for hook in self.read_hooks:
            hook(address & ~3, int.from_bytes(raw, "little"))
        return raw

    def _guest_write_word(self, address, word, strobe):
        """Apply a write to guest memory; UnmappedAccess if any strobed byte is outside it."""
        self.writes += 1
        raw = word.to_bytes(4, "little")
        lanes = [lane for lane in range(4) if strobe >> lane & 1]
        # The hooks see every write the device makes, including one that is refused.
        for hook in self.write_hooks:
            hook(address, word, strobe)
        try:
            for lane in lanes:
                self.guest.translate(address + lane, 1)
        except UnmappedAccess:
            self.refused += 1
            raise
        for lane in lanes:
            self.guest.write(address + lane, raw[lane:lane + 1])


class AxiLiteGuestRam(AxiLiteRam, GuestRamBase):
    """``AxiLiteRam`` serving ``memory`` (a GuestMemory whose store is this RAM: pass
    ``windows`` and the RAM builds it) on the ``prefix`` ports."""

    CHANNELS = ("aw", "w", "b", "ar", "r")

    def __init__(self, dut, windows, *, prefix="m_dma_axil", size=1 << 20):
        super().__init__(AxiLiteBus.from_prefix(dut, prefix), dut.clk, dut.rst, size=size)
        memory = GuestMemory(store=self)
        for base, length in windows:
            memory.add_window(base, length)
        self._init_guest(memory)
        # cocotbext-axi's model calls these per beat; route them through guest memory. The
        # write path gets the strobed bytes of one word; rebuild (word, strobe) from them.
        self.write_if._write = self._axi_write
        self.read_if._read = self._axi_read
        for side in (self.write_if, self.read_if):
            side.log.setLevel("WARNING")

    async def _axi_read(self, address, length):
        return self._guest_read_word(address)

    async def _axi_write(self, address, data):
        word_address = address & ~3
        lane = address & 3
        word = int.from_bytes(bytes(lane) + bytes(data) + bytes(4 - lane - len(data)), "little")
        strobe = ((1 << len(data)) - 1) << lane
        self._guest_write_word(word_address, word, strobe)

    def _channel(self, name):
        side = self.write_if if name in ("aw", "w", "b") else self.read_if
        return getattr(side, f"{name}_channel")

    def set_backpressure(self, rng, busy=(0.2, 0.5)):
        """Random pauses on every channel, each at a rate drawn from ``busy``; ``rng`` None:
        full speed."""
        for name in self.CHANNELS:
            channel = self._channel(name)
            if rng is None:
                channel.clear_pause_generator()
                channel.pause = False
            else:
                channel.set_pause_generator(random_pauses(rng.choice(busy), rng))


class WishboneGuestRam(GuestRamBase):
    """A Wishbone B4 subordinate serving ``windows`` of guest memory on ``prefix`` ports.

    Classic: a request is answered ``delay()`` cycles after ``stb`` rose (0: in the same
    cycle). Pipelined (``{prefix}_stall`` exists): ``stall`` with the set probability; each
    request taken is answered at least one cycle later, in order. Samples and drives on the
    falling clock edge. Protocol slips of the manager are collected in :attr:`errors`."""

    def __init__(self, dut, windows, *, prefix="m_dma_wb", size=1 << 20):
        self.dut = dut
        memory = GuestMemory(size=size)
        for base, length in windows:
            memory.add_window(base, length)
        self._init_guest(memory)
        self.pipelined = hasattr(dut, f"{prefix}_stall")
        self.rng = None
        self.delay = lambda: 0
        self.stall = 0.0
        self.errors = []
        names = ("cyc", "stb", "we", "adr", "dat_w", "dat_r", "sel", "ack", "err") + \
            (("stall",) if self.pipelined else ())
        self._s = {name: getattr(dut, f"{prefix}_{name}") for name in names}
        self._drive(0, 0, 0, 0)
        cocotb.start_soon(self._run())

    def set_backpressure(self, rng, busy=(0.2, 0.5)):
        self.rng = rng
        if rng is None:
            self.delay, self.stall = (lambda: 0), 0.0
        else:
            self.delay = lambda: rng.choice((0, 0, 1, 1, 2, 3))
            self.stall = rng.choice(busy)

    def _drive(self, ack, err, data, stall):
        s = self._s
        s["ack"].value = ack
        s["err"].value = err
        s["dat_r"].value = data
        if self.pipelined:
            s["stall"].value = stall

    def _serve(self, address, we, data, sel):
        """``(rdata, error)`` of one request."""
        try:
            if we:
                self._guest_write_word(address, data, sel)
                return 0, False
            return int.from_bytes(self._guest_read_word(address), "little"), False
        except UnmappedAccess:
            return 0, True

    async def _run(self):
        s = self._s
        falling = FallingEdge(self.dut.clk)
        cycle = 0
        due = None              # classic: the cycle the current request is answered
        owed = []               # pipelined: (cycle due, rdata, error) per request taken
        while True:
            await falling
            cycle += 1
            if _value(self.dut.rst):
                owed.clear()
                due = None
                self._drive(0, 0, 0, 0)
                continue
            cyc, stb = _value(s["cyc"]), _value(s["stb"])
            request = cyc and stb
            ack = err = data = stall = 0
            if self.pipelined:
                stall = int(self.rng is not None and self.rng.random() < self.stall)
                if owed and not cyc:
                    self.errors.append(f"cycle {cycle}: cyc dropped with answers owed")
                    owed.clear()
                if request and not stall:
                    rdata, refused = self._serve(_value(s["adr"]) << 2, _value(s["we"]),
                                                 _value(s["dat_w"]), _value(s["sel"]))
                    owed.append((cycle + 1 + self.delay(), rdata, refused))
                if owed and owed[0][0] <= cycle:
                    _, data, refused = owed.pop(0)
                    ack, err = int(not refused), int(refused)
            else:
                if not request:
                    if due is not None:
                        self.errors.append(f"cycle {cycle}: stb dropped before the answer")
                    due = None
                else:
                    if due is None:
                        due = cycle + self.delay()
                    if cycle >= due:
                        data, refused = self._serve(_value(s["adr"]) << 2, _value(s["we"]),
                                                    _value(s["dat_w"]), _value(s["sel"]))
                        ack, err = int(not refused), int(refused)
                        due = None
            self._drive(ack, err, data, stall)


class DmaMonitor:
    """Watches the DMA port and ``irq`` once per clock (after the falling edge, the values the
    next rising edge sees).

    :attr:`irq_rises` counts rising edges of ``irq``; :attr:`violations` lists every rise that
    came while a DMA write was still unanswered, or without a new used.idx in memory since the
    previous rise (``used_idx`` is a callable reading it), when :attr:`check` is on.
    """

    def __init__(self, dut, bus, used_idx):
        self.dut = dut
        self.axi = bus == "axil"
        self.used_idx = used_idx
        self.check = True
        self.outstanding = 0
        self.irq_rises = 0
        self.violations = []
        self._last_irq = 0
        self._last_used = None
        self.cycle = 0
        prefix = "m_dma_axil" if self.axi else "m_dma_wb"
        names = ("awvalid", "awready", "bvalid", "bready") if self.axi else \
            ("cyc", "stb", "we", "ack", "err")
        self._s = {name: getattr(dut, f"{prefix}_{name}") for name in names}
        cocotb.start_soon(self._run())

    async def _run(self):
        falling = FallingEdge(self.dut.clk)
        while True:
            await falling
            await ReadOnly()
            self.cycle += 1
            v = {name: _value(handle) for name, handle in self._s.items()}
            irq = _value(self.dut.irq)
            if irq and not self._last_irq:
                self.irq_rises += 1
                if self.check:
                    used = self.used_idx()
                    if self.outstanding:
                        self.violations.append(f"cycle {self.cycle}: irq rose with "
                                               f"{self.outstanding} DMA write(s) unanswered")
                    if used == self._last_used:
                        self.violations.append(f"cycle {self.cycle}: irq rose without a new "
                                               f"used.idx (still {used})")
                    self._last_used = used
            self._last_irq = irq
            # Writes in flight as of the end of this cycle.
            if self.axi:
                self.outstanding += (v["awvalid"] and v["awready"]) - \
                    (v["bvalid"] and v["bready"])
            else:
                self.outstanding = int(bool(v["cyc"] and v["we"] and
                                            not (v["ack"] or v["err"])))


class UsedEventMonitor:
    """Replays the device's used-buffer event decisions (EVENT_IDX) on ``scoreboard``.

    A read of the word holding used_event (``layout.used_event``) is a decision, taken with
    the used index then in ``ram``'s memory; each clock with ``rng_used_event`` high is an
    event; ``device_reset`` resets the scoreboard. ``active`` is a callable: whether EVENT_IDX
    is negotiated for ``layout`` right now (nothing is fed otherwise)."""

    def __init__(self, dut, ram, layout, scoreboard, active):
        self.dut = dut
        self.layout = layout
        self.scoreboard = scoreboard
        self.active = active
        self.memory = ram.guest
        ram.on_read(self._on_read)
        cocotb.start_soon(self._run())

    def _on_read(self, address, word):
        layout = self.layout
        if self.active() and address == layout.used_event & ~3:
            used_event = word >> 8 * (layout.used_event & 3) & 0xFFFF
            self.scoreboard.decision(self.memory.read_u16(layout.used + 2), used_event)

    async def _run(self):
        falling = FallingEdge(self.dut.clk)
        while True:
            await falling
            await ReadOnly()
            if _value(self.dut.device_reset):
                self.scoreboard.reset()
            if _value(self.dut.rng_used_event) and self.active():
                self.scoreboard.event()
