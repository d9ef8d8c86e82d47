"""Proofs (marker ``formal``): the AXI4-Lite subordinate port of the whole endpoint, by
k-induction, with SymbiYosys (YoWASP) and z3. A checker that can only pass is worthless, so a
deliberately broken subordinate must fail the same checker."""

import pytest

from amaranth.hdl import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from virtio_mmio.bus import AXI4LiteSignature
from virtio_mmio.checkers import AXI4LiteSubordinateChecker
from virtio_mmio.params import EndpointParams
from virtio_mmio_sim.formal import (COVER_SCENARIOS, AXI4LiteEndpointProof, EndpointCover,
                                   MsiEndpointProof, WishboneEndpointProof, run_proof)


pytestmark = pytest.mark.formal


def explain(result):
    where = f"counterexample: {result.trace}" if result.trace else f"log: {result.log}"
    return f"{result.name} ({result.mode}, depth {result.depth}): {result.status}; {where}"


@pytest.mark.parametrize("profile", ["seed", "plain-v2"])
@pytest.mark.parametrize("flowing_notify", [True, False], ids=["bounded", "backpressure"])
def test_axi4lite_port_of_the_endpoint(profile, flowing_notify):
    """Handshake rules, no response without a request, outstanding limits, reset; with the
    notify stream flowing also a response within 3 clocks. Proven for all behaviours of the
    manager and of the device-side inputs (k-induction)."""
    params = EndpointParams(profile=profile, queues=1, config_size=4)
    proof = AXI4LiteEndpointProof(params, flowing_notify=flowing_notify)
    name = f"axil-{profile}-{'bounded' if flowing_notify else 'backpressure'}"
    result = run_proof(name, proof, proof.ports, mode="prove", depth=8, timeout=600)
    assert result.passed, explain(result)


@pytest.mark.parametrize("mode", ["classic", "pipelined"])
@pytest.mark.parametrize("flowing_notify", [True, False], ids=["bounded", "backpressure"])
def test_wishbone_port_of_the_endpoint(mode, flowing_notify):
    """Answers only to requests, never ack and err together, nothing after reset, pipelined
    outstanding limit; with the notify stream flowing, an answer within 2 clocks."""
    params = EndpointParams(bus="wishbone", wishbone_mode=mode, queues=1, config_size=4)
    proof = WishboneEndpointProof(params, flowing_notify=flowing_notify)
    name = f"wishbone-{mode}-{'bounded' if flowing_notify else 'backpressure'}"
    result = run_proof(name, proof, proof.ports, mode="prove", depth=8, timeout=600)
    assert result.passed, explain(result)


@pytest.mark.parametrize("profile", ["seed", "linux-k1"])
def test_msi_port_and_irq_quiet_while_enabled(profile):
    """The MSI manager port keeps AWVALID/WVALID and their payload until the handshakes, full
    strobes, nothing after reset; irq is low whenever MSI is enabled. k-induction."""
    params = EndpointParams(profile=profile, queues=2, config_size=4)
    proof = MsiEndpointProof(params)
    result = run_proof(f"msi-{profile}", proof, proof.ports, mode="prove", depth=8,
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
