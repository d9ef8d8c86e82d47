"""MSI on the generated Verilog under cocotb (docs/spec.md §7, §8): real subordinate models on the
endpoint's MSI manager port, an MSI receiver that turns every write into a vector, a
cycle-accurate monitor of the port, and the reference model of docs/spec.md §7 that the event-storm
scoreboard replays.

* :class:`MsiLayout`: where the tests point each vector (a mailbox per vector in a small RAM
  page, a second page answered with errors, addresses outside the MSI window).
* :class:`MsiReceiver`: the interrupt controller's side: decodes (address, data) to a vector by
  the targets the driver programmed and calls the vector's handlers.
* :class:`AxiLiteMsiRam`: cocotbext-axi's write-side RAM (``AxiLiteRamWrite``) on ``m_axil_*``,
  mapped at the layout's page, answering SLVERR outside it; random pauses on AW, W and B.
* :class:`WishboneMsiSubordinate`: a Wishbone B4 subordinate on ``m_wb_*``, classic or
  pipelined, with random ack delay and stall; ``err`` outside the page. cocotbext-wishbone's
  ``WishboneSlave`` cannot serve here: it needs a read-data port the write-only manager does
  not have, and waits for each answer before taking the next pipelined request.
* :class:`MsiPortMonitor`: per clock cycle, the events the device raises, ``msi_enabled``,
  ``irq``, and every request the manager presents with the cycle it first appeared.
* :class:`TargetHistory` and :func:`check_storm`: the scoreboard.
"""

import logging
from dataclasses import dataclass

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly
from cocotbext.axi import AxiLiteRamWrite, AxiLiteWriteBus

from .cocotb_bus import random_pauses, signal_value as _value


__all__ = ["MsiLayout", "MsiReceiver", "MsiWriteRefused", "AxiLiteMsiRam",
           "WishboneMsiSubordinate", "MsiRequest", "MsiPortMonitor", "MsiPort", "TargetHistory",
           "check_storm"]


class MsiLayout:
    """The MSI targets the tests program, derived from the endpoint's parameters.

    Vector ``v`` has a mailbox at ``base + STRIDE * v`` in the receiver's RAM page
    (:meth:`good`) and a slot at the same place in the page above it, which the subordinate
    answers with an error (:meth:`faulty`). With an MSI window the pages sit at its base, and
    :meth:`outside` gives addresses the window refuses; without one they sit above 4 GiB with
    the top address bit set, so every address bit of the manager port is exercised.
    """

    STRIDE = 64
    #: The page base when the endpoint has no MSI window.
    DEFAULT_BASE = 0x8000_00F0_FEE0_0000

    def __init__(self, params):
        self.vectors = params.queues + 1
        self.window = params.msi_window
        self.page = self.STRIDE * self.vectors
        self.base = self.DEFAULT_BASE if self.window is None else self.window[0]
        self.error_base = self.base + self.page
        if self.window is not None and 2 * self.page > self.window[1]:
            raise ValueError(f"msi_window {self.window} is too small for {self.vectors} "
                             f"vectors: the tests need {2 * self.page:#x} bytes")

    def good(self, vector, generation=0):
        """Vector ``vector``'s mailbox; ``generation`` varies the data word, so re-targeting
        shows in the messages."""
        return self.base + self.STRIDE * vector, \
            0x4000_0000 | (generation & 0xFFF) << 16 | vector

    def faulty(self, vector):
        """A target inside the window that the subordinate answers with an error."""
        return self.error_base + self.STRIDE * vector, 0x5000_0000 | vector

    def outside(self, vector, kind=0):
        """A target the MSI window refuses, or None without a window: below it, straddling its
        top (address + 3 beyond it), or far above it."""
        if self.window is None:
            return None
        base, size = self.window
        address = (base - 4 if base >= 4 else base + size,
                   base + size - 2,
                   (base + size + 0x1_0000_0000 + self.STRIDE * vector) % (1 << 64))[kind % 3]
        if base <= address and address + 4 <= base + size:
            address = base + size            # the window reaches the top of the address space
        return address, 0x6000_0000 | vector

    def accepts(self, address):
        """Whether an UPDATE to ``address`` makes the vector valid (docs/spec.md §7 window)."""
        if self.window is None:
            return True
        base, size = self.window
        return base <= address and address + 4 <= base + size

    def refuses(self, address):
        """Whether the subordinate answers a write to ``address`` with an error: everything
        outside the mailbox page."""
        return not self.base <= address < self.base + self.page

    def vector_of(self, address):
        """The vector whose mailbox or error slot ``address`` is, else None."""
        for page in (self.base, self.error_base):
            offset = address - page
            if 0 <= offset < self.page and offset % self.STRIDE == 0:
                return offset // self.STRIDE
        return None


class MsiReceiver:
    """The interrupt controller: every write the subordinate takes is a message, decoded to a
    vector through the targets :meth:`program` recorded, and handed to the vector's handlers.

    :attr:`messages` holds ``(address, data, vector)`` in arrival order (vector None: no
    programmed target matches the address, or the data is not one programmed for it).
    """

    def __init__(self):
        self._routes = {}               # address -> (vector, {data words programmed})
        self._handlers = {}
        self.messages = []
        self.counts = {}

    def program(self, vector, address, data):
        """The driver pointed ``vector`` at (address, data). Earlier data words stay valid:
        a message issued just before a re-targeting carries the old one."""
        route = self._routes.get(address)
        if route is None or route[0] != vector:
            route = self._routes[address] = (vector, set())
        route[1].add(data)

    def on(self, vector, handler):
        """Call ``handler(vector, data)`` for every message decoded to ``vector``."""
        self._handlers.setdefault(vector, []).append(handler)

    def deliver(self, address, data):
        route = self._routes.get(address)
        vector = route[0] if route is not None and data in route[1] else None
        self.messages.append((address, data, vector))
        self.counts[vector] = self.counts.get(vector, 0) + 1
        for handler in self._handlers.get(vector, ()):
            handler(vector, data)

    def count(self, vector):
        return self.counts.get(vector, 0)

    @property
    def strays(self):
        return [(a, d) for a, d, v in self.messages if v is None]


class MsiWriteRefused(Exception):
    """Raised inside the AXI subordinate model for a write it answers with SLVERR."""


class AxiLiteMsiRam(AxiLiteRamWrite):
    """cocotbext-axi's write-side AXI4-Lite RAM on the manager port, holding only the layout's
    mailbox page: bus address ``a`` is RAM byte ``a - layout.base``. A write elsewhere raises
    :class:`MsiWriteRefused` inside the model, which answers it SLVERR (the model's own error
    path), so error responses need no change to the model's handshakes. Every accepted write
    goes to ``receiver`` as a message.

    The RAM keeps the last word written to each mailbox (:meth:`mailbox`), as a real MSI target
    page would.
    """

    CHANNELS = ("aw", "w", "b")

    def __init__(self, dut, layout, receiver, *, prefix="m_axil"):
        self.layout = layout
        self.receiver = receiver
        self.refused = 0
        super().__init__(AxiLiteWriteBus.from_prefix(dut, prefix), dut.clk, dut.rst,
                         size=layout.page)
        # One line per write at INFO, and a warning per refused write: thousands per test.
        self.log.setLevel(logging.ERROR)

    async def _write(self, address, data):
        if len(data) != 4 or self.layout.refuses(address):
            self.refused += 1
            raise MsiWriteRefused(f"MSI write of {len(data)} bytes to {address:#x}")
        await super()._write(address - self.layout.base, data)
        self.receiver.deliver(address, int.from_bytes(data, "little"))

    def mailbox(self, vector):
        return self.read_dword(self.layout.STRIDE * vector)

    def set_backpressure(self, rng, busy=None):
        """Random pauses on AW, W and B, each channel its own rate drawn from ``busy`` (a
        sequence of probabilities); ``rng`` None: always ready, B at once."""
        for name in self.CHANNELS:
            channel = getattr(self, f"{name}_channel")
            if rng is None:
                channel.clear_pause_generator()
                channel.pause = False
            else:
                channel.set_pause_generator(random_pauses(rng.choice(busy or (0.2, 0.5, 0.8)),
                                                          rng))

    def hold(self, on=True):
        """Take no AW and no W at all while ``on`` (indefinite back-pressure); afterwards
        both are always ready."""
        for channel in (self.aw_channel, self.w_channel):
            channel.clear_pause_generator()
            channel.pause = on


class WishboneMsiSubordinate:
    """A Wishbone B4 subordinate (write-only, 32-bit, word address) on the manager port.

    Classic: a request is answered ``delay()`` cycles after ``stb`` rose (0: in the same cycle,
    the asynchronous termination B4 allows). Pipelined (``m_wb_stall`` exists): ``stall`` is
    raised with probability ``stall``; each taken request is answered, in order, at least one
    cycle later. Writes outside the layout's mailbox page are answered ``err``; the others go
    to ``receiver``. Protocol slips of the manager (a read, partial lanes, ``stb`` dropped
    before the answer, ``cyc`` dropped with answers owed) are collected in :attr:`errors`.

    It samples and drives on the falling clock edge: the manager's outputs are registers, so
    what it samples there is what the next rising edge sees, and what it drives is stable by
    then.
    """

    def __init__(self, dut, layout, receiver, *, prefix="m_wb"):
        self.dut = dut
        self.layout = layout
        self.receiver = receiver
        self.pipelined = hasattr(dut, f"{prefix}_stall")
        self.delay = lambda: 0
        self.stall = 0.0
        self.rng = None
        self.held = False
        self.refused = 0
        self.errors = []
        names = ("cyc", "stb", "we", "adr", "dat_w", "sel", "ack", "err") + \
            (("stall",) if self.pipelined else ())
        self._signals = {name: getattr(dut, f"{prefix}_{name}") for name in names}
        self._drive(ack=0, err=0, stall=0)
        self._task = cocotb.start_soon(self._run())

    def set_backpressure(self, rng, busy=None):
        """Random answer delays (0 to 3 cycles) and, pipelined, random stall with a rate drawn
        from ``busy``; ``rng`` None: answer at once, never stall."""
        self.rng = rng
        if rng is None:
            self.delay, self.stall = (lambda: 0), 0.0
        else:
            self.delay = lambda: rng.choice((0, 0, 1, 1, 2, 3))
            self.stall = rng.choice(busy or (0.2, 0.5, 0.8))

    def hold(self, on=True):
        """Answer nothing and (pipelined) stall while ``on``."""
        self.held = on

    def _drive(self, ack, err, stall):
        self._signals["ack"].value = ack
        self._signals["err"].value = err
        if self.pipelined:
            self._signals["stall"].value = stall

    def _take(self, address, data, we, sel):
        """A request's data phase: returns True when it is answered with an error."""
        if not we or sel != 0xF:
            self.errors.append(f"MSI request to {address:#x}: we={we} sel={sel:#x}")
        if self.layout.refuses(address):
            self.refused += 1
            return True
        self.receiver.deliver(address, data)
        return False

    async def _run(self):
        s = self._signals
        falling = FallingEdge(self.dut.clk)
        cycle = 0
        due = None              # classic: the cycle the current request is answered
        owed = []               # pipelined: (cycle due, err) of every taken request
        while True:
            await falling
            cycle += 1
            cyc, stb = _value(s["cyc"]), _value(s["stb"])
            request = cyc and stb
            ack = err = stall = 0
            if self.pipelined:
                stall = int(self.held or (self.rng is not None and
                                          self.rng.random() < self.stall))
                if owed and not cyc:
                    self.errors.append(f"cyc dropped with {len(owed)} answers owed")
                    owed.clear()
                if request and not stall:
                    refused = self._take(_value(s["adr"]) << 2, _value(s["dat_w"]),
                                         _value(s["we"]), _value(s["sel"]))
                    owed.append((cycle + 1 + self.delay(), refused))
                if owed and owed[0][0] <= cycle and not self.held:
                    _, refused = owed.pop(0)
                    ack, err = int(not refused), int(refused)
            else:
                if not request:
                    if due is not None:
                        self.errors.append("stb dropped before the request was answered")
                    due = None
                else:
                    if due is None:
                        due = cycle + self.delay()
                    if cycle >= due and not self.held:
                        refused = self._take(_value(s["adr"]) << 2, _value(s["dat_w"]),
                                             _value(s["we"]), _value(s["sel"]))
                        ack, err = int(not refused), int(refused)
                        due = None
            self._drive(ack, err, stall)


@dataclass
class MsiRequest:
    """One write the manager presented: ``start`` is the first cycle it was on the bus (so it
    was issued in ``start - 1``), ``taken`` the cycle of its last handshake (AXI: the later of
    AW and W; Wishbone: the request phase)."""
    start: int
    address: int
    data: int
    strobe: int
    taken: int


class MsiPortMonitor:
    """Watches the manager port and the device-side event inputs, cycle by cycle.

    It samples after the falling clock edge once everything driven there has settled
    (``ReadOnly``): the values the next rising edge will see. Per cycle it appends to
    :attr:`trace` ``(event_mask, enabled)`` (bit v of ``event_mask``: an event on vector v this
    cycle; ``enabled``: ``msi_enabled``), and completes :attr:`requests`
    (:class:`MsiRequest`). :attr:`events` counts the vector events (two in one cycle count
    as two), :attr:`responses` / :attr:`error_responses` the answers,
    :attr:`active_cycles` the cycles with the manager's request signals up.
    :attr:`violations`: ``irq`` high while MSI is enabled, a request without every byte lane,
    an AXI request changing before its handshake.
    """

    def __init__(self, dut, params):
        self.dut = dut
        self.queues = params.queues
        self.axi = params.bus == "axil"
        self.pipelined = not self.axi and params.wishbone_mode == "pipelined"
        self.cycle = 0
        self.trace = []
        self.requests = []
        self.responses = 0
        self.error_responses = 0
        self.active_cycles = 0
        self.events = 0
        self.violations = []
        # The request on the bus: the cycle it first appeared and (AXI) its AW and W halves
        # already taken, and what a channel showed while it waited for ready.
        self._start = None
        self._aw_seen = self._w_seen = None
        self._aw_waiting = self._w_waiting = None
        self._task = None

    def start(self):
        self._task = cocotb.start_soon(self._run())
        return self

    @property
    def idle(self):
        """No request on the bus (as of the last cycle sampled)."""
        return self._start is None

    def event_cycles(self, vector, since=0):
        return [c for c in range(since, len(self.trace)) if self.trace[c][0] >> vector & 1]

    def enabled_since(self, since=0):
        """The first cycle from ``since`` on with MSI enabled, or None."""
        return next((c for c in range(since, len(self.trace)) if self.trace[c][1]), None)

    def _violation(self, message):
        self.violations.append(f"cycle {self.cycle}: {message}")

    async def _run(self):
        dut = self.dut
        falling = FallingEdge(dut.clk)
        inputs = [getattr(dut, name) for name in (
            "used_valid", "used_queue", "config_changed", "needs_reset", "msi_enabled", "irq")]
        if self.axi:
            names = ("awvalid", "awready", "awaddr", "wvalid", "wready", "wdata", "wstrb",
                     "bvalid", "bready", "bresp")
            prefix = "m_axil"
        else:
            names = ("cyc", "stb", "adr", "dat_w", "sel", "ack", "err") + \
                (("stall",) if self.pipelined else ())
            prefix = "m_wb"
        bus = {name: getattr(dut, f"{prefix}_{name}") for name in names}
        per_cycle = self._axi_cycle if self.axi else self._wishbone_cycle
        while True:
            await falling
            await ReadOnly()
            used, queue, config, needs_reset, enabled, irq = (_value(h) for h in inputs)
            mask = (1 << (queue + 1) if used and queue < self.queues else 0) | \
                int(bool(config or needs_reset))
            if enabled and irq:
                self._violation("irq high while MSI is enabled")
            self.trace.append((mask, enabled))
            self.events += bin(mask).count("1")
            per_cycle({name: _value(handle) for name, handle in bus.items()})
            self.cycle += 1

    def _complete(self, request):
        if request.strobe != 0xF:
            self._violation(f"MSI write to {request.address:#x} with lanes "
                            f"{request.strobe:#x}, not all four")
        self.requests.append(request)
        self._start = None

    def _axi_cycle(self, b):
        cycle = self.cycle
        if b["awvalid"] or b["wvalid"]:
            self.active_cycles += 1
            if self._start is None:
                self._start = cycle
        if b["awvalid"]:
            if self._aw_waiting not in (None, b["awaddr"]):
                self._violation("awaddr changed before its handshake")
            self._aw_waiting = None if b["awready"] else b["awaddr"]
            if b["awready"]:
                if self._aw_seen is not None:
                    self._violation("a second AW before the first request's W")
                self._aw_seen = (b["awaddr"], cycle)
        if b["wvalid"]:
            word = (b["wdata"], b["wstrb"])
            if self._w_waiting not in (None, word):
                self._violation("wdata/wstrb changed before its handshake")
            self._w_waiting = None if b["wready"] else word
            if b["wready"]:
                if self._w_seen is not None:
                    self._violation("a second W before the first request's AW")
                self._w_seen = (word, cycle)
        if self._aw_seen is not None and self._w_seen is not None:
            (address, aw_cycle), ((data, strobe), w_cycle) = self._aw_seen, self._w_seen
            self._complete(MsiRequest(self._start, address, data, strobe,
                                      max(aw_cycle, w_cycle)))
            self._aw_seen = self._w_seen = None
        if b["bvalid"] and b["bready"]:
            self.responses += 1
            self.error_responses += b["bresp"] != 0

    def _wishbone_cycle(self, b):
        cycle = self.cycle
        request = b["cyc"] and b["stb"]
        self.active_cycles += bool(b["cyc"] or b["stb"])
        if request and self._start is None:
            self._start = cycle
        if self.pipelined:
            taken = request and not b["stall"]
        else:
            taken = request and (b["ack"] or b["err"])
        if taken:
            self._complete(MsiRequest(self._start, b["adr"] << 2, b["dat_w"], b["sel"], cycle))
        if b["cyc"] and (b["ack"] or b["err"]):
            self.responses += 1
            self.error_responses += b["err"]


class MsiPort:
    """The MSI side of one test: layout, receiver, the subordinate model of the endpoint's bus
    flavour and the monitor, attached to ``dut`` (after its reset)."""

    def __init__(self, dut, params):
        self.params = params
        self.layout = MsiLayout(params)
        self.receiver = MsiReceiver()
        if params.bus == "axil":
            self.model = AxiLiteMsiRam(dut, self.layout, self.receiver)
        else:
            self.model = WishboneMsiSubordinate(dut, self.layout, self.receiver)
        self.monitor = MsiPortMonitor(dut, params).start()

    def set_backpressure(self, rng, busy=None):
        self.model.set_backpressure(rng, busy)

    def hold(self, on=True):
        self.model.hold(on)

    @property
    def refused(self):
        """Writes the subordinate answered with an error."""
        return self.model.refused


class TargetHistory:
    """What each vector points at over time, for checking messages issued while the driver
    re-targets: :meth:`record` after an UPDATE completed on the bus (the RTL applied it at
    an earlier edge), with the target, or None when the window refused it (the vector is
    invalid from then on)."""

    def __init__(self, vectors):
        self._history = [[] for _ in range(vectors)]

    def record(self, vector, cycle, target):
        self._history[vector].append((cycle, target))

    def allowed(self, vector, issued):
        """The targets a message of ``vector`` issued in cycle ``issued`` may carry: the last
        one in force by then, and any whose UPDATE was still on its way (None stands for
        "not valid": no message at all)."""
        current = None
        later = set()
        for cycle, target in self._history[vector]:
            if cycle <= issued:
                current = target
            else:
                later.add(target)
        return {current} | later


def check_storm(monitor, layout, targets, checkpoints):
    """Replay docs/spec.md §7 cycle by cycle against what :class:`MsiPortMonitor` saw; return the
    list of failures (empty: all good).

    Each vector owes a message from an event while MSI is enabled (or from an enable that
    moves InterruptStatus into it) until a message for it is issued, which happens in the cycle
    before the request first appears on the bus. Every message must be owed, issued while
    enabled and carry a target the vector was allowed to have (``targets``:
    :class:`TargetHistory`). Disabling moves what is owed back into InterruptStatus (nobody
    acknowledges during a storm). ``checkpoints`` maps cycles at the end of quiet spells to the
    InterruptStatus read there: nothing may be owed then, and the read must be what the model
    holds (a dense storm would otherwise hide lost InterruptStatus bits behind later events).
    At the end nothing may be owed and InterruptStatus must be empty."""
    failures = []
    vectors = layout.vectors
    issued = {}
    for request in monitor.requests:
        vector = layout.vector_of(request.address)
        cycle = request.start - 1
        if vector is None:
            failures.append(f"message to {request.address:#x} (data {request.data:#x}) "
                            f"issued in {cycle} is no vector's")
            continue
        if (request.address, request.data) not in targets.allowed(vector, cycle):
            failures.append(f"message {request.address:#x}/{request.data:#x} for vector "
                            f"{vector} issued in {cycle}: allowed "
                            f"{targets.allowed(vector, cycle)}")
        if cycle in issued:
            failures.append(f"two messages issued in cycle {cycle}")
        issued[cycle] = vector
    owed = [False] * vectors
    interrupt_status = 0
    trace = monitor.trace
    for cycle, (mask, enabled) in enumerate(trace):
        vector = issued.get(cycle)
        if vector is not None:
            if not enabled:
                failures.append(f"message for vector {vector} issued in {cycle} while disabled")
            elif not owed[vector]:
                failures.append(f"spurious message for vector {vector} issued in {cycle}")
            owed[vector] = False
        for v in range(vectors):
            if mask >> v & 1:
                if enabled:
                    owed[v] = True
                else:
                    interrupt_status |= 0b10 if v == 0 else 0b01
        following = trace[cycle + 1][1] if cycle + 1 < len(trace) else enabled
        if following and not enabled:
            owed[0] |= bool(interrupt_status & 0b10)
            for v in range(1, vectors):
                owed[v] |= bool(interrupt_status & 0b01)
            interrupt_status = 0
        elif enabled and not following:
            interrupt_status |= (0b10 if owed[0] else 0) | (0b01 if any(owed[1:]) else 0)
            owed = [False] * vectors
        if cycle in checkpoints:
            if any(owed):
                failures.append(f"messages owed at the checkpoint {cycle} never sent: "
                                f"{[v for v in range(vectors) if owed[v]]}")
            if checkpoints[cycle] != interrupt_status:
                failures.append(f"InterruptStatus read {checkpoints[cycle]:#b} at the "
                                f"checkpoint {cycle}, the model holds {interrupt_status:#b}")
    if any(owed):
        failures.append(f"events never delivered: {[v for v in range(vectors) if owed[v]]}")
    if interrupt_status:
        failures.append(f"InterruptStatus {interrupt_status:#b} left at the end")
    return failures
