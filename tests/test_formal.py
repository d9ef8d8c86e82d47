"""Proofs (marker ``formal``) on the whole endpoint, with SymbiYosys (YoWASP) and z3: the bus
ports (subordinate and MSI manager, AXI4-Lite and Wishbone) and the endpoint's invariants (no
event lost, reset state, notify stream), by k-induction where it closes and by BMC where it
cannot. A proof that can only pass is worthless, so a deliberately broken subordinate must fail
the same checker, and bugs injected into the RTL (:class:`Override`) must fail the proofs."""

import pytest

from amaranth.hdl import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from virtio_mmio.bus import AXI4LiteSignature
from virtio_mmio.bus.checkers import AXI4LiteSubordinateChecker
from virtio_mmio.params import EndpointParams
from virtio_mmio_sim.formal import (COVER_SCENARIOS, AXI4LiteEndpointProof, EndpointCover,
                                   EndpointInvariantsProof, MsiEndpointProof,
                                   Override, WishboneEndpointProof, WishboneMsiEndpointProof,
                                   run_proof)


pytestmark = pytest.mark.formal


def explain(result):
    where = f"counterexample: {result.trace}" if result.trace else f"log: {result.log}"
    failed = f"; failed: {', '.join(result.failed)}" if result.failed else ""
    return (f"{result.name} ({result.mode}, depth {result.depth}): {result.status}; "
            f"{where}{failed}")


@pytest.mark.parametrize("profile,pipeline", [("seed", False), ("plain-v2", False),
                                              ("seed", True)])
@pytest.mark.parametrize("flowing_notify", [True, False], ids=["bounded", "backpressure"])
def test_axi4lite_port_of_the_endpoint(profile, pipeline, flowing_notify):
    """Handshake rules, no response without a request, outstanding limits, reset; with the
    notify stream flowing also a response within 3 clocks (4 with the request stage). Proven
    for all behaviours of the manager and of the device-side inputs (k-induction)."""
    params = EndpointParams(profile=profile, queues=1, config_size=4, pipeline=pipeline)
    proof = AXI4LiteEndpointProof(params, flowing_notify=flowing_notify)
    name = (f"axil-{profile}{'-pipeline' if pipeline else ''}-"
            f"{'bounded' if flowing_notify else 'backpressure'}")
    result = run_proof(name, proof, proof.ports, mode="prove", depth=8, timeout=600)
    assert result.passed, explain(result)


@pytest.mark.parametrize("pipeline", [False, True], ids=["", "pipeline"])
@pytest.mark.parametrize("mode", ["classic", "pipelined"])
@pytest.mark.parametrize("flowing_notify", [True, False], ids=["bounded", "backpressure"])
def test_wishbone_port_of_the_endpoint(mode, flowing_notify, pipeline):
    """Answers only to requests, never ack and err together, nothing after reset, pipelined
    outstanding limit; with the notify stream flowing, an answer within 2 clocks (3 with the
    request stage)."""
    params = EndpointParams(bus="wishbone", wishbone_mode=mode, queues=1, config_size=4,
                            pipeline=pipeline)
    proof = WishboneEndpointProof(params, flowing_notify=flowing_notify)
    name = (f"wishbone-{mode}{'-pipeline' if pipeline else ''}-"
            f"{'bounded' if flowing_notify else 'backpressure'}")
    result = run_proof(name, proof, proof.ports, mode="prove", depth=8, timeout=600)
    assert result.passed, explain(result)


@pytest.mark.parametrize("profile,pipeline", [("seed", False), ("linux-k1", False),
                                              ("dragonball", False), ("linux-k1", True)])
def test_msi_port_and_irq_quiet_while_enabled(profile, pipeline):
    """The MSI manager port keeps AWVALID/WVALID and their payload until the handshakes, full
    strobes, nothing after reset; irq is low whenever MSI is enabled. k-induction."""
    params = EndpointParams(profile=profile, queues=2, config_size=4, pipeline=pipeline)
    proof = MsiEndpointProof(params)
    result = run_proof(f"msi-{profile}{'-pipeline' if pipeline else ''}", proof, proof.ports,
                       mode="prove", depth=8, timeout=600)
    assert result.passed, explain(result)


@pytest.mark.parametrize("profile,mode", [("seed", "classic"), ("linux-k1", "classic"),
                                          ("seed", "pipelined"), ("linux-k1", "pipelined")])
def test_wishbone_msi_port_and_irq_quiet_while_enabled(profile, mode):
    """The Wishbone MSI manager port: stb inside cyc, a write with all lanes, the request held
    until answered (classic) or while stalled (pipelined), cyc held while answers are
    outstanding, nothing after reset; irq low while MSI is enabled. k-induction, depth 4
    (it closes at 3)."""
    params = EndpointParams(profile=profile, bus="wishbone", wishbone_mode=mode, queues=2,
                            config_size=4)
    proof = WishboneMsiEndpointProof(params)
    result = run_proof(f"msi-wishbone-{mode}-{profile}", proof, proof.ports, mode="prove",
                       depth=4, timeout=600)
    assert result.passed, explain(result)


#: Endpoint configurations of the invariant proofs: both buses, every profile, a doorbell
#: multiplier that is not a power of two (the decoder's multiply-by-inverse path).
INVARIANT_CONFIGS = {
    "axil-seed": dict(profile="seed", queues=2),
    "wishbone-pipelined-linux-k1-mul12": dict(profile="linux-k1", bus="wishbone",
                                              wishbone_mode="pipelined", queues=2,
                                              notify_multiplier=12),
    "wishbone-classic-plain-v2": dict(profile="plain-v2", bus="wishbone", queues=2),
    "axil-dragonball": dict(profile="dragonball", queues=2),
    # The request stage in front of the register core.
    "axil-linux-k1-pipeline": dict(profile="linux-k1", queues=2, pipeline=True),
    "wishbone-classic-seed-pipeline": dict(profile="seed", bus="wishbone", queues=2,
                                           pipeline=True),
}


@pytest.mark.parametrize("config", list(INVARIANT_CONFIGS))
def test_endpoint_invariants(config):
    """InterruptStatus/irq, no event lost, the reset state of docs/spec.md §5, and the notify
    stream neither dropping, altering nor reordering a notification (see
    :class:`EndpointInvariantsProof`), for every behaviour of the bus manager, the MSI
    subordinate, the device-side inputs and notify back-pressure. k-induction, depth 4
    (it closes at 3)."""
    params = EndpointParams(config_size=4, **INVARIANT_CONFIGS[config])
    proof = EndpointInvariantsProof(params)
    result = run_proof(f"invariants-{config}", proof, proof.ports, mode="prove", depth=4,
                       timeout=600)
    assert result.passed, explain(result)


def test_notify_order_through_a_fifo():
    """The notify stream through a two-entry FIFO (``notify_fifo_depth=2``, a memory): BMC,
    depth 6 from reset. k-induction cannot constrain the FIFO memory's contents (it fails on
    a chosen notification whose slot holds anything), so order and payload through the FIFO
    are checked from reset only. A pipelined Wishbone port writes every clock, so 6 cycles
    fill the FIFO, take from it and refill it; the MSI-less profile keeps the run short (the
    doorbell decode is proven by induction above)."""
    params = EndpointParams(profile="plain-v2", bus="wishbone", wishbone_mode="pipelined",
                            queues=2, config_size=4, notify_fifo_depth=2)
    proof = EndpointInvariantsProof(params, properties=("notify",))
    result = run_proof("invariants-notify-fifo", proof, proof.ports, mode="bmc", depth=6,
                       timeout=600)
    assert result.passed, explain(result)


def test_no_msi_write_outside_the_window():
    """Bounded (BMC, depth 10 from reset): the table is a memory whose contents k-induction
    cannot constrain, so the window property is checked from reset only. AXI takes a write
    per clock, so 10 cycles cover staging (3 writes), an UPDATE, an enable, an event and the
    message on the port; deeper runs cost minutes (depth 16: 7.6 min)."""
    params = EndpointParams(queues=1, config_size=4, msi_window=(0x1000, 0x100))
    proof = MsiEndpointProof(params)
    result = run_proof("msi-window", proof, proof.ports, mode="bmc", depth=10, timeout=900)
    assert result.passed, explain(result)


@pytest.mark.parametrize("scenario", list(COVER_SCENARIOS))
def test_cover(scenario):
    """Key scenarios are reachable; the trace reaching each is kept as VCD."""
    params = EndpointParams(queues=1, config_size=4)
    top = EndpointCover(params, scenario)
    result = run_proof(f"cover-{scenario}", top, top.ports, mode="cover", depth=14,
                       timeout=600)
    assert result.passed, explain(result)
    assert result.trace is not None and result.trace.exists(), explain(result)


class _DroppingSubordinate(wiring.Component):
    """A broken subordinate: it answers every read, but drops RVALID after one cycle even if
    RREADY was low."""

    def __init__(self):
        super().__init__({"axi": In(AXI4LiteSignature(4))})

    def elaborate(self, platform):
        m = Module()
        axi = self.axi
        m.d.comb += [axi.arready.eq(~axi.rvalid), axi.awready.eq(0), axi.wready.eq(0)]
        m.d.sync += axi.rvalid.eq(axi.arvalid & axi.arready)
        return m


class _BrokenProof(Elaboratable):
    def __init__(self):
        self.dut = _DroppingSubordinate()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        m.submodules.checker = checker = AXI4LiteSubordinateChecker(
            4, max_reads=1, max_writes=1, response_bound=None)
        for name in checker.signature.members:
            if hasattr(dut.axi, name):
                m.d.comb += getattr(checker, name).eq(getattr(dut.axi, name))
        return m


def test_checker_catches_a_dropped_rvalid():
    top = _BrokenProof()
    ports = [getattr(top.dut.axi, name) for name, member in
             top.dut.axi.signature.members.items() if member.flow == In]
    result = run_proof("broken-rvalid", top, ports, mode="bmc", depth=6, timeout=300)
    assert not result.passed
    assert result.trace is not None and result.trace.exists(), explain(result)


def _axi_backpressure():
    return AXI4LiteEndpointProof(EndpointParams(queues=1, config_size=4), flowing_notify=False)


def _axi_backpressure_pipeline():
    return AXI4LiteEndpointProof(EndpointParams(queues=1, config_size=4, pipeline=True),
                                 flowing_notify=False)


def _wishbone_msi_classic():
    return WishboneMsiEndpointProof(EndpointParams(bus="wishbone", queues=2, config_size=4))


def _invariants():
    return EndpointInvariantsProof(EndpointParams(queues=2, config_size=4))


def _invariants_dragonball():
    return EndpointInvariantsProof(EndpointParams(profile="dragonball", queues=2,
                                                  config_size=4))


def _withdrawn_after_a_cycle(original):
    """A Wishbone ``stb`` rule that drops the request after a cycle without an answer."""
    def stb(self, m, message, answered):
        waited = Signal()
        m.d.sync += waited.eq(self.wb.stb & ~answered)
        return original(self, m, message, answered) & ~waited
    return stb


#: Bugs of the kinds the maintainers inject by hand, and the proof that must catch each. Each
#: is injected by meaning: the RTL writes the rule as a small method named for it, and the bug
#: replaces that method (:class:`Override`), so rewording the RTL's source leaves it working.
MUTATIONS = {
    "axi-bvalid-dropped": (Override(
        "virtio_mmio.bus.axi4lite", "AXI4LiteSubordinate", "_bvalid",
        lambda original: lambda self, pending: original(self, pending) & (pending < 2),
        "BVALID drops while a second response is owed"), _axi_backpressure),
    "axi-rvalid-dropped": (Override(
        "virtio_mmio.bus.axi4lite", "AXI4LiteSubordinate", "_rvalid",
        lambda original: lambda self, results: original(self, results) & (results.level != 2),
        "RVALID drops while the R buffer is full"), _axi_backpressure),
    "axi-pipeline-rvalid-dropped": (Override(
        "virtio_mmio.bus.axi4lite", "AXI4LiteSubordinate", "_rvalid",
        lambda original: lambda self, results: original(self, results) & (results.level != 2),
        "RVALID drops while the last R buffer is full (request stage)"),
        _axi_backpressure_pipeline),
    "wishbone-msi-stb-dropped": (Override(
        "virtio_mmio.bus.wishbone", "WishboneWriteManager", "_stb",
        _withdrawn_after_a_cycle,
        "the MSI request is withdrawn after a cycle without ack"), _wishbone_msi_classic),
    "msi-event-lost-when-issued": (Override(
        "virtio_mmio.transport.vector_state", "RegisterVectorState", "_next_pending",
        lambda original: lambda self, pending, issued, events: (pending | events) & ~issued,
        "an event in the cycle its vector is issued is lost"), _invariants),
    "msi-event-lost-on-disable": (Override(
        "virtio_mmio.transport.vector_state", "RegisterVectorState", "_carried_back",
        lambda original: lambda self, pending, events: original(
            self, pending, C(0, len(events))),
        "an event in the cycle MSI is disabled is lost"), _invariants),
    "status-kept-by-reset": (Override(
        "virtio_mmio.transport.status", "StatusLogic", "device_reset",
        lambda original: lambda self: [],
        "Status not cleared by a device reset"), _invariants),
    "queue-ready-kept-by-reset": (Override(
        "virtio_mmio.transport.queue_flags", "RegisterQueueFlags", "_device_reset",
        lambda original: lambda self, sel_ready, ready, written: [
            statement for statement in original(self, sel_ready, ready, written)
            if statement.lhs is not ready],
        "QueueReady bits not cleared by a device reset"), _invariants),
    "msi-enable-kept-by-reset": (Override(
        "virtio_mmio.transport.msi", "InterruptController", "_device_reset",
        lambda original: lambda self, status, enabled: [
            statement for statement in original(self, status, enabled)
            if statement.lhs is not enabled],
        "MSI stays enabled across a device reset"), _invariants),
    "msi-masked-vector-sent": (Override(
        "virtio_mmio.transport.vector_state", "RegisterVectorState", "_sendable",
        lambda original: lambda self, pending, valid, masked: original(
            self, pending, valid, C(0, len(masked))),
        "a masked vector is sent (dragonball)"), _invariants_dragonball),
    "msi-mask-drops-pending": (Override(
        "virtio_mmio.transport.vector_state", "RegisterVectorState", "_mask",
        lambda original: lambda self, pending, masked, vector, value: [
            *original(self, pending, masked, vector, value),
            pending.bit_select(vector, 1).eq(0)],
        "MASK forgets the vector's pending event (dragonball)"), _invariants_dragonball),
    "doorbell-address-off-by-one": (Override(
        "virtio_mmio.transport.notify", "DoorbellAddresses", "queue_doorbell",
        lambda original: lambda self, word: original(
            self, word + self._params.notify_multiplier // 4),
        "the doorbell of queue q decodes as queue q + 1"), _invariants),
    "notify-queue-index-off-by-one": (Override(
        "virtio_mmio.transport.notify", "DoorbellDecoder", "_doorbell_queue",
        lambda original: lambda self: original(self) + 1,
        "the notification carries queue index q + 1"), _invariants),
    "notify-overwritten": (Override(
        "virtio_mmio.transport.notify", "NotifyQueue", "_ready",
        lambda original: lambda self, held: original(self, held) | held,
        "a notification not yet taken is overwritten by the next"), _invariants),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_injected_bug_is_caught(name, monkeypatch):
    """Each injected bug fails its proof with a counterexample trace. The run is the proof's
    base case (BMC from reset, depth 8: every one of these bugs shows within 4 cycles), so a
    failure is a real trace, never an induction artefact."""
    mutation, make_proof = MUTATIONS[name]
    mutation.apply(monkeypatch.setattr)
    proof = make_proof()
    result = run_proof(f"mutant-{name}", proof, proof.ports, mode="bmc", depth=8,
                       timeout=300)
    print(f"{mutation.doc}: {explain(result)}")
    assert not result.passed, f"{mutation.doc}: not caught; {explain(result)}"
    assert "FAIL" in result.status, explain(result)
    assert result.trace is not None and result.trace.exists(), explain(result)
