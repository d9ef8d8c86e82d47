"""Linux in the loop with a device that moves data both ways: the Python virtio-console back-end
with MULTIPORT (:mod:`virtio_mmio_sim.linux.console`: two ports, the control queues, six queues
in all) under the stock ``virtio_console`` driver, through the generated Verilog
(``run_linux(device="console")``, the ``guest/console`` scenario).

At the same time the guest reads the device's seeded stream from port 1, writes its own pattern
to port 1 and writes records to hvc0 (port 0, the console port): both ports' queues, the
control queues, several MSI vectors and doorbells carry traffic together; every byte is checked
each way. Setup and skipping as in :mod:`test_linux` (``VIRTIO_MMIO_LINUX=skip``).
"""

import pytest

from test_linux import _report, _session

from virtio_mmio_sim.linux import console as vcons
from virtio_mmio_sim.linux.run import console_figures, judge_console


def _failed(checks):
    return {check.name for check in checks if not check.ok}


@pytest.mark.linux
def test_console_multiport_both_ways_with_msi():
    """Version 3 (seed, our virtio_mmio_v3 driver): one MSI vector per queue through the ITS."""
    run = _session(bus="axil", simulator="verilator", device="console", profile="seed")
    assert run.passed, f"{run.verdict()}\n{_report(run)}\n{run.report()}\nconsole: {run.console}"

    f, record = run.figures, run.result["console"]
    assert f["platform_driver"] == "virtio-mmio-v3"
    # Both ports came up through the control queues; the guest opened and closed port 1.
    assert "DEVICE_READY(BAD_ID,1)" in f["control_in"]
    assert {"DEVICE_ADD(0,0)", "DEVICE_ADD(1,0)", "CONSOLE_PORT(0,1)",
            "PORT_NAME(1,cosim.1)"} <= set(f["control_out"])
    assert record["guest_opens"][1] == [1, 0]
    # Bytes each way: exactly what the other side generated, several KiB.
    assert f["rx_bytes"] == vcons.RX_BYTES >= 4096 and f["rx_expected"] and f["rx_guest_ok"]
    assert f["tx_bytes"] == vcons.TX_BYTES >= 4096 and f["tx_expected"] and f["tx_guest_ok"]
    assert f["hvc_expected"]
    # At the same time: port 1's receive and transmit events alternate many times.
    assert f["interleaving"] >= 4
    # MSI vectors (queue + 1) in /proc/interrupts: port-1 receiveq (5) and transmitq (6) rose
    # during the transfer, the control receiveq (3) carried the handshake; the wired line and
    # the control transmitq (no callback: NO_INTERRUPT) stayed silent.
    counts, totals = f["irq_per_vector"], f["irq_totals"]
    assert counts["5"] > 0 and counts["6"] > 0 and totals["3"] > 0
    assert "4" not in totals
    assert f["wired_irqs"] == 0 and f["phase"]["wired_rises"] == 0
    assert record["queue_suppressed"][vcons.CONTROL_TX] > 0
    assert record["queue_used_events"][vcons.CONTROL_TX] == 0
    # Doorbells on every queue (Version 3 never writes QueueNotify).
    assert f["queue_notify_writes"] == 0
    assert all(n > 0 for n in f["doorbells"].values()), f["doorbells"]
    assert f["msi_refused"] == 0 and f["msi_errors"] == 0
    assert f["msi_addresses"] == [0x0809_0040]
    assert not run.result["backend_errors"] and not record["unexpected"]

    # The verdict sees a single wrong byte in either direction.
    lines = (run.console.parent / "accesses.log").read_text().splitlines()
    text = run.console.read_text(errors="replace")
    for key, check in (("rx", "rx"), ("tx", "tx")):
        data = bytearray(bytes.fromhex(record[key][1]))
        data[len(data) // 2] ^= 1
        broken = dict(run.result, console=dict(record, **{key: [record[key][0], data.hex()]}))
        figures = console_figures(text, broken, lines, _params("seed", "axil"))
        assert _failed(judge_console(figures, text, broken, 0, False)) == {check}


def _params(profile, bus):
    from virtio_mmio_sim.linux.run import console_params
    return console_params(bus, profile)


@pytest.mark.linux
@pytest.mark.parametrize("profile,bus", [("plain-v2", "axil"), ("seed", "wishbone")])
def test_console_multiport_variants(profile, bus):
    """The stock virtio_mmio driver with the wired interrupt, and Version 3 on Wishbone."""
    run = _session(bus=bus, simulator="verilator", device="console", profile=profile)
    assert run.passed, f"{run.verdict()}\n{_report(run)}\n{run.report()}\nconsole: {run.console}"
    f = run.figures
    assert f["rx_bytes"] == vcons.RX_BYTES and f["rx_guest_ok"]
    assert f["tx_bytes"] == vcons.TX_BYTES and f["tx_expected"]
    assert sum(1 for n in f["doorbells"].values() if n > 0) > 1
    if profile == "plain-v2":
        assert f["wired_irqs"] > 0 and f["irq_per_vector"] == {}
    else:
        assert f["irq_per_vector"]["5"] > 0 and f["irq_per_vector"]["6"] > 0
        assert f["wired_irqs"] == 0
