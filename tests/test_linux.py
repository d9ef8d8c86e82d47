"""Linux in the loop: Debian's arm64 kernel in QEMU binds its stock ``virtio_mmio`` and
``virtio-rng`` drivers to the generated Verilog and reads ``/dev/hwrng`` through it
(:mod:`virtio_mmio_sim.linux.run`), once per subordinate bus.

The first run on a machine builds QEMU and fetches the guest (a few minutes; cached under
``~/.cache/virtio-mmio/linux``, or ``$VIRTIO_MMIO_LINUX_CACHE``). Where that cannot be done (no
apt, no network) the test fails and says what is missing; ``VIRTIO_MMIO_LINUX=skip`` leaves it
out on purpose, reported as a skip with that reason.

The verdict logic, the socket protocol and the setup's error path have fast tests of their own
here that need neither QEMU nor a simulator.
"""

import io
import os
import random
import re
import shutil
import socket
from pathlib import Path

import pytest

from virtio_mmio_sim.linux import setup
from virtio_mmio_sim.linux.protocol import HEADER, Link, LinkClosed, Message, MmioRequest
from virtio_mmio_sim.linux.run import HWRNG_BYTES, _bytes_check, judge, run_linux
from virtio_mmio_sim.linux.setup import SetupError


ROOT = Path(__file__).resolve().parent.parent
#: Wall-clock limit of one session (it takes 5-15 s once everything is built).
TIMEOUT_S = 240


def _session(**options):
    """One Linux session (run_linux), or a skip / a clear failure when it cannot be set up."""
    if os.environ.get("VIRTIO_MMIO_LINUX", "").strip().lower() == "skip":
        pytest.skip("VIRTIO_MMIO_LINUX=skip: the Linux-in-the-loop test was left out on "
                    "purpose")
    console = io.StringIO()
    try:
        return run_linux(timeout=TIMEOUT_S, work_dir=ROOT / "build" / "linux", out=console,
                         progress=lambda message: None, **options)
    except SetupError as error:
        pytest.fail(f"The Linux co-simulation could not be set up: {error}", pytrace=False)


def _report(run):
    return "\n".join(f"{'ok' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in run.checks)


@pytest.mark.linux
@pytest.mark.parametrize("bus,simulator,device", [
    ("axil", "verilator", "model"), ("wishbone", "verilator", "model"),
    ("axil", "icarus", "model"),
    ("axil", "verilator", "rtl"), ("wishbone", "verilator", "rtl"),
])
def test_linux_reads_hwrng_through_the_rtl(bus, simulator, device):
    run = _session(bus=bus, simulator=simulator, device=device)
    assert run.passed, f"{run.verdict()}\n{_report(run)}\nconsole: {run.console}"

    # Beyond the verdict: what crossed the bus is what Linux does (LINUX_LOOP.md).
    assert run.check("hwrng").detail.startswith(f"{HWRNG_BYTES} bytes")
    assert run.result["buffers"] >= HWRNG_BYTES // 64
    if device == "model":
        assert run.result["notifications"] >= HWRNG_BYTES // 64
        assert run.result["used_events"] == run.result["notifications"]
    assert run.result["link"]["irq_rise"] >= run.result["buffers"] - 1
    accesses = (run.console.parent / "accesses.log").read_text().splitlines()
    assert accesses[0].startswith("read 0x000 (4 B) -> 0x74726976"), accesses[0]
    assert any(line.startswith("write 0x070 <- 0xf ") for line in accesses), \
        "the driver never set DRIVER_OK"
    assert accesses[-1].startswith("write 0x070 <- 0x0 "), \
        f"the last access is not the reset at power-off: {accesses[-1]}"


@pytest.mark.linux
@pytest.mark.parametrize("profile,bus,device", [
    ("seed", "axil", "rtl"), ("seed", "wishbone", "rtl"),
    ("linux-k1", "axil", "rtl"), ("linux-k1", "wishbone", "rtl"),
    ("seed", "axil", "model"),
])
def test_v3_driver_takes_msi_through_the_its(profile, bus, device):
    """Version 3: the guest loads linux/virtio_mmio_v3.ko on a GICv3 machine with an ITS; one
    boot runs MSI traffic, a config change on vector 0, an affinity move in the middle of a
    read, remove + insert with the wired interrupt and again with MSI (run.py's docstring)."""
    run = _session(bus=bus, simulator="verilator", device=device, profile=profile)
    assert run.passed, f"{run.verdict()}\n{_report(run)}\n{run.report()}\nconsole: {run.console}"

    f = run.figures
    assert f["platform_driver"]["msi"] == "virtio-mmio-v3"
    msi, wired, again = f["phases"]["msi"], f["phases"]["wired"], f["phases"]["again"]
    # MSI: no InterruptStatus read and no ACK per interrupt; the wired interrupt needs both.
    assert msi["isr_reads"] == 0 and again["isr_reads"] == 0
    # One interrupt per used buffer, but the guest reads InterruptStatus in its handler, after
    # the device counted the buffer: virtio-rng keeps one request in flight, so the last
    # buffer of the phase can complete before the closing mark and be read after it.
    assert wired["isr_reads"] >= wired["buffers"] - 1 and wired["buffers"] > 0
    assert msi["per_request"] < wired["per_request"]
    assert msi["msi_writes"] >= msi["buffers"] and wired["msi_writes"] == 0
    # Version 3 notifies at the queue's doorbell, never at QueueNotify.
    assert f["queue_notify_writes"] == 0 and f["doorbell_writes"]["0"] > 0
    # Vector 0 (config) and vector 1 (queue 0) in /proc/interrupts; the queue's count rose.
    assert sorted(f["irqs"]["msi"]["vectors"], key=int) == ["0", "1"]
    assert sum(f["irqs"]["msi"]["vectors"]["1"]) > sum(f["irqs"]["msi-before"]["vectors"]["1"])
    assert f["irqs"]["msi"]["wired"] == 0
    # The slot's wired line is level-triggered, as the .dtsi we generate declares it (an edge
    # would miss an event that arrives in the cycle of an InterruptACK).
    assert re.search(r"GICv3 +79 Level ", run.console.read_text(errors="replace"))
    # Every message went to the ITS's doorbell; only the error probe's was refused.
    assert f["msi_addresses"] == [0x0809_0040]
    assert f["msi_errors"] == 1 and f["msi_error_probe"]["msi_error_latched"] == 1


@pytest.mark.linux
@pytest.mark.parametrize("bus", ["axil", "wishbone"])
def test_dragonball_dialect_takes_msi_through_the_its(bus):
    """The dragonball profile (Version 2 with the Dragonball extensions) under the same driver,
    its dialect found by probing (``dialect=auto``: VendorID bit 1 and MsiStatus bit 15): MSI
    switched on through MsiStatus before DRIVER_OK, every vector staged, UPDATEd and
    UNMASKed, the same five scenarios. Its doorbells (0x1000 + 4q) lie beyond the 0x200-byte
    QEMU slot, so the driver notifies at QueueNotify, which the profile keeps."""
    run = _session(bus=bus, simulator="verilator", device="rtl", profile="dragonball",
                   dialect="auto")
    assert run.passed, f"{run.verdict()}\n{_report(run)}\n{run.report()}\nconsole: {run.console}"
    console = run.console.read_text(errors="replace")
    assert "dragonball dialect, MSI: 2 vectors (ITS-pMSI)" in console
    f = run.figures
    msi, wired = f["phases"]["msi"], f["phases"]["wired"]
    assert msi["isr_reads"] == 0 and msi["per_request"] < wired["per_request"]
    assert not f["doorbells_reachable"] and f["queue_notify_writes"] > 0
    assert f["msi_addresses"] == [0x0809_0040]
    # The set-up in the access log: MSI on (W16 MsiStatus = 0x8000) before the first UPDATE,
    # each UPDATE followed by an UNMASK of the same vector, all before DRIVER_OK.
    writes = [line for line in (run.console.parent / "accesses.log").read_text().splitlines()
              if line.startswith("write 0x0c")]
    enable = next(i for i, line in enumerate(writes)
                  if line.startswith("write 0x0c0 <- 0x8000 (2 B)"))
    update = next(i for i, line in enumerate(writes)
                  if line.startswith("write 0x0c2 <- 0x1000 (2 B)"))      # UPDATE vector 0
    assert enable < update, writes[:12]
    assert writes[update + 1].startswith("write 0x0c2 <- 0x3000 (2 B)"), \
        writes[update:update + 2]                                           # UNMASK vector 0


# ---------------------------------------------------------------------------------- verdict

STREAM = bytes(range(256)) * 6


def _console(hwrng=STREAM[100:100 + HWRNG_BYTES], driver="virtio_rng", device="0x0004",
             features="0" * 32 + "1" + "0" * 31, power_down=True):
    lines = ["[    0.5] Booting Linux", "VMMIO-LOOP: start",
             f"VMMIO-LOOP: device virtio0 id={device} vendor=0x1af4 driver={driver} "
             f"features={features}\r"]
    if hwrng is not None:
        lines.append(f"VMMIO-LOOP: hwrng {hwrng.hex()}")
    lines.append("VMMIO-LOOP: done")
    if power_down:
        lines.append("[    0.9] reboot: Power down")
    return "\n".join(lines) + "\n"


def _failed(checks):
    return {check.name for check in checks if not check.ok}


RESULT = {"outcome": "closed", "backend_errors": [], "stream": STREAM.hex()}


def test_verdict_passes_a_good_session():
    assert _failed(judge(_console(), RESULT, 0, False)) == set()


@pytest.mark.parametrize("console,failed", [
    (_console(driver="none"), {"bound", "version_1"}),
    (_console(device="0x0001"), {"bound"}),
    (_console(features="0" * 64), {"version_1"}),
    (_console(hwrng=bytes(HWRNG_BYTES)), {"hwrng"}),                    # not what was written
    (_console(hwrng=STREAM[:HWRNG_BYTES - 1]), {"hwrng"}),              # short
    (_console(hwrng=None), {"hwrng"}),
    (_console(power_down=False), {"poweroff"}),
])
def test_verdict_catches(console, failed):
    assert _failed(judge(console, RESULT, 0, False)) == failed


def test_verdict_catches_timeouts_exit_status_and_backend_errors():
    assert _failed(judge(_console(), RESULT, 0, True)) == {"poweroff"}
    assert _failed(judge(_console(), RESULT, 1, False)) == {"poweroff"}
    broken = dict(RESULT, backend_errors=["queue 0: descriptor 9 >= size 8"])
    assert _failed(judge(_console(), broken, 0, False)) == {"simulation"}
    assert _failed(judge(_console(), {}, 0, False)) == {"hwrng", "simulation"}


RANDOM_STREAM = random.Random(7).randbytes(8192)
LEFT = "VMMIO-LOOP: rng-quality 1000 -> 0, fill threads 1 -> 1"


@pytest.mark.parametrize("data,fill_thread,strict,ok", [
    (RANDOM_STREAM[640:640 + 1024], False, True, True),
    # One buffer of the hwrng fill thread (at most 64 bytes) missing inside the read: only
    # when the guest reported that thread left running.
    (RANDOM_STREAM[640:1152] + RANDOM_STREAM[1216:1728], True, True, True),
    (RANDOM_STREAM[640:1152] + RANDOM_STREAM[1216:1728], False, True, False),
    (RANDOM_STREAM[640:1152] + RANDOM_STREAM[1217:1729], True, True, False),   # 65 missing
    (RANDOM_STREAM[1152:1664] + RANDOM_STREAM[640:1152], True, True, False),   # out of order
    (RANDOM_STREAM[640:1152] + bytes([RANDOM_STREAM[1152] ^ 1]) + RANDOM_STREAM[1153:1664],
     True, True, False),                                                       # one bit
    # The rest of a buffer the hwrng core kept from before a reload, then a run: not strict.
    (RANDOM_STREAM[100:148] + RANDOM_STREAM[640:640 + 976], False, False, True),
    (RANDOM_STREAM[100:148] + RANDOM_STREAM[640:640 + 976], False, True, False),
    (RANDOM_STREAM[100:180] + RANDOM_STREAM[640:640 + 944], False, False, False),  # > 64 kept
])
def test_hwrng_bytes_check(data, fill_thread, strict, ok):
    assert _bytes_check(data.hex(), RANDOM_STREAM, strict, fill_thread)[0] is ok
    if strict:
        console = _console(hwrng=data).replace("VMMIO-LOOP: start",
                                               "VMMIO-LOOP: start\n" + LEFT * fill_thread)
        result = dict(RESULT, stream=RANDOM_STREAM.hex())
        assert ("hwrng" in _failed(judge(console, result, 0, False))) is not ok


# --------------------------------------------------------------------------------- protocol

def _qemu_message(kind, size=0, addr=0, data=0, payload=b""):
    return HEADER.pack(kind, size, addr, data) + payload


def test_link_keeps_an_mmio_request_that_arrives_during_a_memory_read():
    qemu, simulator = socket.socketpair()
    link = Link(simulator, reply_timeout=5)
    # The vCPU's access crosses the simulator's MEM_READ: QEMU sends its request first, then
    # serves the read.
    qemu.sendall(_qemu_message(Message.MMIO_WRITE, 4, 0x50, 0) +
                 _qemu_message(Message.MEM_DATA, 4, 0x4000_0000, 0, b"\x01\x02\x03\x04"))
    assert link.mem_read(0x4000_0000, 4) == b"\x01\x02\x03\x04"
    sent = qemu.recv(HEADER.size)
    assert HEADER.unpack(sent) == (Message.MEM_READ, 4, 0x4000_0000, 0)
    assert link.next_request(0) == MmioRequest(True, 0x50, 4, 0)
    assert link.next_request(0) is None
    link.reply_write()
    assert HEADER.unpack(qemu.recv(HEADER.size))[0] == Message.WRITE_ACK

    link.set_irq(1)
    link.set_irq(1)             # no change: nothing sent
    link.set_irq(0)
    kinds = [HEADER.unpack(qemu.recv(HEADER.size)) for _ in range(2)]
    assert kinds == [(Message.IRQ, 0, 0, 1), (Message.IRQ, 0, 0, 0)]
    assert link.counts["irq_rise"] == 1 and link.counts["irq_fall"] == 1

    qemu.sendall(_qemu_message(Message.MEM_ACK))
    link.mem_write(0x4000_1000, b"abc")
    assert qemu.recv(HEADER.size + 3) == _qemu_message(Message.MEM_WRITE, 3, 0x4000_1000, 0,
                                                       b"abc")
    qemu.close()
    with pytest.raises(LinkClosed):
        link.next_request(1)


def test_link_rejects_an_unexpected_message():
    qemu, simulator = socket.socketpair()
    link = Link(simulator, reply_timeout=5)
    qemu.sendall(_qemu_message(Message.MEM_ACK))
    with pytest.raises(ValueError, match="MEM_ACK"):
        link.next_request(1)


# ------------------------------------------------------------------------------------ setup

def test_setup_names_what_is_missing_and_how_to_opt_out(monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(setup.shutil, "which",
                        lambda name, *a, **k: None if name in ("dpkg-query", "apt-get")
                        else real_which(name, *a, **k))
    with pytest.raises(SetupError) as caught:
        setup.ensure_host_packages(["meson"], "building QEMU", progress=lambda message: None)
    message = str(caught.value)
    assert "meson" in message and "VIRTIO_MMIO_LINUX=skip" in message
