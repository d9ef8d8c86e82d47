"""The host side of the board demo: the driver model over the UART bridge
(``virtio-mmio host``).

:func:`host_session` runs one session against the demo SoC (:mod:`virtio_mmio.demo`) through a
:class:`~virtio_mmio_sim.bridge_host.BridgeClient`, whatever carries the bytes: a serial port
to a real board, or the bit-level UART of the simulated board top (:func:`simulate_session`).
The steps follow the Linux driver's sequences (:class:`~virtio_mmio_sim.driver.VirtioMmioDriver`):

1. find the demo (its ID register) and clear the MSI mailbox;
2. probe, reset, negotiate VERSION_1, set up every queue, DRIVER_OK;
3. INTx: notify queue 0; the demo device answers with a used-buffer event; ``irq`` rises;
   the interrupt handler reads InterruptStatus and acknowledges it; ``irq`` falls;
4. MSI: program one vector per event source (data = vector number, addresses in the sink's
   window) and enable; notify every queue and raise a config change; every message must land in
   the sink's mailbox with the programmed address and data, and ``irq`` must stay low;
5. disable MSI and reset the device.

Each step is a :class:`Step` (what was expected, what came back); the session passes when
every step does.
"""

from dataclasses import dataclass, field

from virtio_mmio.demo import (CONTROL_BASE, DEMO_ID, MAILBOX_BASE, MAILBOX_ENTRIES, MSI_WINDOW,
                              DemoRegister, demo_params)
from virtio_mmio.regmap import Feature, Status

from .driver import VirtioMmioDriver


__all__ = ["Step", "HostReport", "host_session", "simulate_session", "STATUS_BITS"]

#: The bridge's STATUS word (see DemoSoC): bit positions.
STATUS_BITS = {"irq": 0, "driver_ok": 1, "msi_enabled": 2, "msi_error": 3}


@dataclass
class Step:
    name: str
    ok: bool
    detail: str


@dataclass
class HostReport:
    steps: list = field(default_factory=list)
    messages: list = field(default_factory=list)     # (address, data) from the mailbox
    accesses: int = 0

    @property
    def passed(self):
        return bool(self.steps) and all(step.ok for step in self.steps)

    def lines(self):
        out = [f"  {'ok  ' if step.ok else 'FAIL'} {step.name}: {step.detail}"
               for step in self.steps]
        verdict = "PASS" if self.passed else "FAIL"
        out.append(f"virtio-mmio host: {verdict} ({len(self.steps)} steps, "
                   f"{len(self.messages)} MSI messages received, {self.accesses} bridge "
                   f"requests)")
        return out


async def _irq(client):
    return bool(await client.status() >> STATUS_BITS["irq"] & 1)


async def _mailbox(client):
    count = await client.read_at(MAILBOX_BASE + DemoRegister.MAILBOX_COUNT)
    messages = []
    for index in range(max(0, count - MAILBOX_ENTRIES), count):
        slot = index % MAILBOX_ENTRIES
        entry = MAILBOX_BASE + DemoRegister.MAILBOX_ENTRY + 8 * slot
        messages.append((await client.read_at(entry), await client.read_at(entry + 4)))
    return count, messages


async def host_session(client, *, params=None, say=None):
    """Run the demo session through ``client`` (a BridgeClient with ``base=0``); returns a
    :class:`HostReport`. Bridge errors (no answer, checksum, NAK) propagate: they mean the link,
    not the endpoint, failed."""
    params = params or demo_params()
    report = HostReport()

    def step(name, ok, detail):
        report.steps.append(Step(name, bool(ok), detail))
        if say is not None:
            say(f"  {'ok  ' if ok else 'FAIL'} {name}: {detail}")
        return ok

    demo_id = await client.read_at(CONTROL_BASE + DemoRegister.ID)
    if not step("demo", demo_id == DEMO_ID, f"ID register reads {demo_id:#010x}"
                + ("" if demo_id == DEMO_ID else f", expected {DEMO_ID:#010x}")):
        return report
    await client.write_at(MAILBOX_BASE + DemoRegister.MAILBOX_COUNT, 0)

    driver = VirtioMmioDriver(client, params.profile)
    queues = [dict(index=q, size=params.queue_sizes[q], desc=0x1000_0000 + 0x3000 * q,
                   driver=0x1000_1000 + 0x3000 * q, device=0x1000_2000 + 0x3000 * q)
              for q in range(params.queues)]
    await driver.initialize(queues=queues, driver_features=1 << Feature.VERSION_1)
    info = driver.info
    status = await driver.get_status()
    step("probe", status & Status.DRIVER_OK and info.device_id == params.device_id,
         f"version {info.version}, device {info.device_id}, vendor {info.vendor_id:#06x}, "
         f"status {status:#04x}, {params.queues} queue(s) ready")

    # INTx.
    before = await _irq(client)
    await driver.notify(0)
    raised = await _irq(client)
    bits = await driver.interrupt()
    after = await _irq(client)
    step("intx", not before and raised and bits == 1 and not after,
         f"notify queue 0 -> irq {int(raised)}, InterruptStatus {bits:#x}, after ACK irq "
         f"{int(after)}")

    # MSI: vector 0 = config, vector q + 1 = queue q; data = vector number.
    base = MSI_WINDOW[0]
    vectors = {vector: (base + 4 * vector, vector) for vector in range(params.queues + 1)}
    enabled = await driver.setup_msi(vectors, style="seed")
    flags = await client.status()
    step("msi-enable", enabled and flags >> STATUS_BITS["msi_enabled"] & 1,
         f"{len(vectors)} vectors programmed, MSI {'on' if enabled else 'not available'}")
    expected = []
    for queue in range(params.queues):
        await driver.notify(queue)
        expected.append(vectors[queue + 1])
    await client.write_at(CONTROL_BASE + DemoRegister.CONFIG_EVENT, 1)
    expected.append(vectors[0])
    irq_during = await _irq(client)
    count, messages = await _mailbox(client)
    report.messages = messages
    step("msi-messages", count == len(expected) and messages == expected,
         f"{count} message(s) in the sink: "
         + ", ".join(f"{address:#x}<-{data}" for address, data in messages)
         + ("" if messages == expected else
            f"; expected {', '.join(f'{a:#x}<-{d}' for a, d in expected)}"))
    step("msi-irq-quiet", not irq_during, f"irq {int(irq_during)} while MSI is enabled")

    await driver.teardown_msi(style="seed")
    await driver.reset()
    flags = await client.status()
    step("reset", not flags >> STATUS_BITS["driver_ok"] & 1 and
         not flags >> STATUS_BITS["msi_enabled"] & 1,
         f"after MSI off and Status = 0: flags {flags & 0xF:#x}")
    report.accesses = client.attempts
    return report


def simulate_session(*, divisor=4, say=None, params=None):
    """Run :func:`host_session` against the simulated demo SoC in Amaranth's simulator, the
    host's bytes crossing the SoC's ``rx``/``tx`` pins at bit level. Returns the report."""
    from amaranth.sim import Simulator

    from virtio_mmio.demo import DemoSoC

    from .bridge_host import AmaranthUartTransport, BridgeClient

    soc = DemoSoC(divisor, n_leds=6, params=params, pulse_cycles=16)
    simulator = Simulator(soc)
    simulator.add_clock(1e-6)
    result = {}

    async def testbench(ctx):
        transport = AmaranthUartTransport(ctx, soc.rx, soc.tx, divisor)
        client = BridgeClient(transport)
        result["report"] = await host_session(client, params=soc.params, say=say)
        result["leds"] = ctx.get(soc.leds)

    simulator.add_testbench(testbench)
    simulator.run()
    report = result["report"]
    report.leds = result["leds"]
    return report
