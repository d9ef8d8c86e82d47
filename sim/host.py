"""The host side of the board demo: the driver model over the UART bridge
(``virtio-mmio host``).

:func:`host_session` runs one session against the demo SoC (:mod:`virtio_mmio.board.demo`) through a
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

:func:`rng_host_session` does the same for the ``device="rng"`` SoC, where the RTL
virtio-rng device fills buffers in the SoC's guest RAM over DMA. The driver is
:class:`~virtio_mmio_sim.rng_driver.VirtioRngDriver`; its guest memory is the board's RAM seen
through the bridge (:class:`BridgeGuestStore`, a local copy written back before each kick and
refreshed from the board when an interrupt arrives):

1. find the rng demo (its ID register); restart the device (generator at its seed) and zero the
   guest RAM; clear the MSI mailbox;
2. probe, reset, negotiate VERSION_1, queue 0 in the guest RAM, DRIVER_OK;
3. each round (INTx, then MSI with one vector per source): post four 16-byte buffers and a
   two-descriptor chain at odd addresses, write them back, kick, wait for the interrupt (the
   bridge's STATUS ``irq`` bit; the message in the sink's mailbox), read back the used ring and
   the buffers; ids and lengths must match what was posted, the bytes the device's generator
   (:class:`~virtio_mmio_sim.rng_driver.Xorshift32`), and bytes beside the odd-sized pieces
   must stay zero;
4. disable MSI and reset the device.

Each step is a :class:`Step` (what was expected, what came back); the session passes when
every step does.
"""

from dataclasses import dataclass, field

from virtio_mmio.board.demo import (CONTROL_BASE, DEMO_ID, GUEST_RAM, MAILBOX_BASE, MAILBOX_ENTRIES,
                              MSI_WINDOW, RAM_BASE, RNG_DEMO_ID, RNG_FLAGS, RNG_SEED, DemoRegister,
                              RngRegister, demo_params, rng_demo_params)
from virtio_mmio.regmap import Feature, Status

from .driver import DriverError, VirtioMmioDriver
from .rng_driver import GuestMemory, RingLayout, VirtioRngDriver, Xorshift32


__all__ = ["Step", "HostReport", "host_session", "rng_host_session", "HOST_SESSIONS",
           "simulate_session", "BridgeGuestStore", "STATUS_BITS", "RNG_ROUNDS"]

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


async def _check_reset(client, step, shown):
    """The session's last step: after MSI off and Status = 0, the bridge's STATUS shows
    neither DRIVER_OK nor MSI enabled (``shown``: the flag bits printed)."""
    flags = await client.status()
    step("reset", not flags >> STATUS_BITS["driver_ok"] & 1 and
         not flags >> STATUS_BITS["msi_enabled"] & 1,
         f"after MSI off and Status = 0: flags {flags & shown:#x}")


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
    step = _stepper(report, say)

    demo_id = await client.read_at(CONTROL_BASE + DemoRegister.ID)
    if not step("demo", demo_id == DEMO_ID, f"ID register reads {demo_id:#010x}"
                + ("" if demo_id == DEMO_ID else f", expected {DEMO_ID:#010x}")
                + (" (this is the rng demo: --device rng)" if demo_id == RNG_DEMO_ID else "")):
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
    await _check_reset(client, step, 0xF)
    report.accesses = client.attempts
    return report


class BridgeGuestStore:
    """The SoC's guest RAM, seen through the bridge, as the store of a
    :class:`~virtio_mmio_sim.rng_driver.GuestMemory` (store offset = host offset in the RAM
    region at ``base``).

    The driver model reads and writes :attr:`local` at once, as a CPU its cache; the board is
    touched only by :meth:`write_back` (the bytes changed since the board was last seen, with
    their byte lanes only, so bytes the device wrote meanwhile are never overwritten) and
    :meth:`refresh` (words read from the board). :attr:`board` is what the board is known to
    hold: zero, as after the SoC's RESTART, until :meth:`write_back` or :meth:`refresh`.
    """

    def __init__(self, client, base=RAM_BASE, size=GUEST_RAM[1]):
        self.client = client
        self.base = base
        self.local = bytearray(size)
        self.board = bytearray(size)

    def read(self, offset, length):
        return bytes(self.local[offset:offset + length])

    def write(self, offset, data):
        self.local[offset:offset + len(data)] = data

    async def write_back(self, last=None):
        """Send every word that differs from the board's, in address order, the word holding
        offset ``last`` after all others (the available index after the entries it
        publishes)."""
        words = [word for word in range(0, len(self.local), 4)
                 if self.local[word:word + 4] != self.board[word:word + 4]]
        if last is not None and last & ~3 in words:
            words.remove(last & ~3)
            words.append(last & ~3)
        for word in words:
            lanes = sum(1 << lane for lane in range(4)
                        if self.local[word + lane] != self.board[word + lane])
            await self.client.write_at(self.base + word,
                                       int.from_bytes(self.local[word:word + 4], "little"), lanes)
            self.board[word:word + 4] = self.local[word:word + 4]

    async def refresh(self, offset, length):
        """Read the words covering ``length`` bytes at ``offset`` from the board."""
        for word in range(offset & ~3, offset + length, 4):
            data = (await self.client.read_at(self.base + word)).to_bytes(4, "little")
            self.local[word:word + 4] = data
            self.board[word:word + 4] = data


#: The interrupt paths :func:`rng_host_session` goes through, one round each, in this order.
RNG_ROUNDS = ("intx", "msi")
#: Each round posts four buffers of this many bytes, then one chain of these (offset, length)
#: pieces, at odd addresses so that partial words are written with byte strobes.
_SINGLE_LENGTH = 16
_CHAIN = ((0x41, 7), (0x62, 21))
_CLEARING = RNG_FLAGS.index("clearing")
_ROUND_NAMES = {"intx": "INTx", "msi": "MSI"}


def _stepper(report, say):
    def step(name, ok, detail):
        report.steps.append(Step(name, bool(ok), detail))
        if say is not None:
            say(f"  {'ok  ' if ok else 'FAIL'} {name}: {detail}")
        return ok
    return step


def _beside(segments):
    """The bytes that share a bus word with ``segments`` but lie outside them."""
    inside = {address + i for address, length in segments for i in range(length)}
    return sorted({word + lane for address, length in segments
                   for word in range(address & ~3, address + length, 4) for lane in range(4)}
                  - inside)


async def rng_host_session(client, *, params=None, rounds=RNG_ROUNDS, say=None,
                           max_polls=32):
    """Run the rng demo session (``device="rng"`` SoC) through ``client``; returns a
    :class:`HostReport`. ``rounds`` picks the interrupt paths (of :data:`RNG_ROUNDS`); each
    waits for its interrupt through at most ``max_polls`` bridge reads. Bridge errors
    propagate, as in :func:`host_session`."""
    if any(kind not in RNG_ROUNDS for kind in rounds):
        raise ValueError(f"rounds must be among {', '.join(RNG_ROUNDS)}, not {rounds!r}")
    params = params or rng_demo_params()
    report = HostReport()
    step = _stepper(report, say)

    demo_id = await client.read_at(CONTROL_BASE + RngRegister.ID)
    if not step("rng-demo", demo_id == RNG_DEMO_ID, f"ID register reads {demo_id:#010x}"
                + ("" if demo_id == RNG_DEMO_ID else f", expected {RNG_DEMO_ID:#010x}")
                + (" (this is the plain demo: build it with --device rng)"
                   if demo_id == DEMO_ID else "")):
        return report
    await client.write_at(CONTROL_BASE + RngRegister.RESTART, 1)
    for _ in range(max_polls):
        flags = await client.read_at(CONTROL_BASE + RngRegister.FLAGS)
        if not flags >> _CLEARING & 1:
            break
    used_count = await client.read_at(CONTROL_BASE + RngRegister.BUFFERS)
    step("restart", not flags >> _CLEARING & 1 and used_count == 0,
         f"device restarted (generator at seed {RNG_SEED:#x}), guest RAM zeroed, BUFFERS "
         f"{used_count}, flags {flags:#x}")
    await client.write_at(MAILBOX_BASE + DemoRegister.MAILBOX_COUNT, 0)

    base, size = GUEST_RAM
    store = BridgeGuestStore(client, RAM_BASE, size)
    memory = GuestMemory(store)
    memory.add_window(base, size)
    layout = RingLayout.packed(params.queue_sizes[0], base)
    messages_seen = 0

    async def refresh_used():
        """After an interrupt: the used index, the new used elements, their buffers."""
        await store.refresh(memory.translate(layout.used, 4), 4)
        new = min((rng.used_idx() - rng.last_used) & 0xFFFF, layout.size)
        for k in range(new):
            slot = layout.used + 4 + 8 * ((rng.last_used + k) % layout.size)
            await store.refresh(memory.translate(slot, 8), 8)
            buffer = rng.in_flight.get(memory.read_u32(slot))
            for address, length in buffer.segments if buffer is not None else ():
                await store.refresh(memory.translate(address, length), length)

    async def wait_intx():
        for _ in range(max_polls):
            if await _irq(client):
                return await refresh_used()
        raise DriverError(f"irq did not rise in {max_polls} STATUS reads")

    async def wait_msi():
        nonlocal messages_seen
        for _ in range(max_polls):
            count = await client.read_at(MAILBOX_BASE + DemoRegister.MAILBOX_COUNT)
            if count > messages_seen:
                messages_seen = count
                return await refresh_used()
        raise DriverError(f"no MSI message in the sink after {max_polls} reads")

    transport = VirtioMmioDriver(client, params.profile)
    rng = VirtioRngDriver(transport, memory, layout, wait_interrupt=wait_intx)
    try:
        await rng.initialize(driver_features=1 << Feature.VERSION_1)
    except DriverError as error:
        step("probe", False, str(error))
        return report
    await store.write_back()
    info = transport.info
    status = await rng.status()
    step("probe", status & Status.DRIVER_OK,
         f"version {info.version}, device {info.device_id} (entropy source), status "
         f"{status:#04x}, queue 0 of {layout.size} at {layout.desc:#x} (avail "
         f"{layout.avail:#x}, used {layout.used:#x})")

    generator = Xorshift32(RNG_SEED)
    msi_vectors = {0: (MSI_WINDOW[0], 0), 1: (MSI_WINDOW[0] + 4, 1)}
    returned = 0
    for number, kind in enumerate(rounds):
        if kind == "msi":
            enabled = await transport.setup_msi(msi_vectors, style="seed")
            if not step("msi-enable", enabled, "vector 0 = config, vector 1 = queue 0"):
                continue
            rng.msi, rng.wait_interrupt = True, wait_msi
        else:
            rng.msi, rng.wait_interrupt = False, wait_intx
        area = base + 0x400 + 0x100 * number
        pieces = [((area + _SINGLE_LENGTH * i, _SINGLE_LENGTH),) for i in range(4)]
        pieces.append(tuple((area + offset, length) for offset, length in _CHAIN))
        posted = [rng.post(segments) for segments in pieces]
        first_word = generator.words + 1
        expected = [b"".join(generator.fill(address, length) for address, length in segments)
                    for segments in pieces]
        await store.write_back(last=memory.translate(layout.avail + 2, 2))
        await rng.kick()
        try:
            done = await rng.wait_used(len(posted), max_interrupts=3)
        except DriverError as error:
            step(f"{kind}-used", False, str(error))
            break
        returned += len(done)
        step(f"{kind}-used", [buffer.head for buffer in done] == [b.head for b in posted],
             f"{len(done)} buffers back after {_ROUND_NAMES[kind]}: ids "
             + ", ".join(str(buffer.head) for buffer in done) + ", lengths "
             + ", ".join(str(buffer.used_length) for buffer in done))
        wrong = [buffer.head for buffer, data in zip(posted, expected) if buffer.data != data]
        stray = [address for address in _beside(pieces[-1]) if memory.read(address, 1) != bytes(1)]
        step(f"{kind}-data", not wrong and not stray,
             f"{sum(map(len, expected))} bytes equal the xorshift32 sequence (words "
             f"{first_word}..{generator.words}), nothing written beside the chain"
             if not wrong and not stray else
             f"buffers {wrong} differ from the xorshift32 sequence; bytes written beside the "
             f"chain at {[hex(a) for a in stray]}")
        irq_after = await _irq(client)
        if kind == "intx":
            step("intx-irq", rng.interrupt_status[-1:] == [1] and not irq_after,
                 f"InterruptStatus {rng.interrupt_status[-1]:#x}, irq {int(irq_after)} after "
                 f"ACK")
        else:
            count, messages = await _mailbox(client)
            report.messages = messages
            step("msi-message", messages == [msi_vectors[1]] and not irq_after,
                 f"{count} message(s) in the sink: "
                 + ", ".join(f"{address:#x}<-{data}" for address, data in messages)
                 + f", irq {int(irq_after)}")

    used_count = await client.read_at(CONTROL_BASE + RngRegister.BUFFERS)
    step("buffers", used_count == returned == 5 * len(rounds),
         f"the device counts {used_count} buffers, the driver got {returned} back")
    if rng.msi:
        await transport.teardown_msi(style="seed")
    await rng.reset()
    await _check_reset(client, step, 0x3F)
    report.accesses = client.attempts
    return report


#: The host session for each device the board demo carries (:data:`virtio_mmio.devices.BOARD_DEVICES`).
HOST_SESSIONS = {"demo": host_session, "rng": rng_host_session}


def simulate_session(*, divisor=4, say=None, params=None, device="demo", rounds=RNG_ROUNDS):
    """Run :func:`host_session` (``device="demo"``) or :func:`rng_host_session`
    (``device="rng"``, with ``rounds``) against the simulated demo SoC in Amaranth's
    simulator, the host's bytes crossing the SoC's ``rx``/``tx`` pins at bit level. Returns the
    report."""
    from amaranth.sim import Simulator

    from virtio_mmio.board.demo import DemoSoC

    from .bridge_host import AmaranthUartTransport, BridgeClient

    soc = DemoSoC(divisor, n_leds=6, params=params, pulse_cycles=16, device=device)
    simulator = Simulator(soc)
    simulator.add_clock(1e-6)
    result = {}

    async def testbench(ctx):
        transport = AmaranthUartTransport(ctx, soc.rx, soc.tx, divisor)
        client = BridgeClient(transport)
        if device == "rng":
            result["report"] = await rng_host_session(client, params=soc.params, say=say,
                                                      rounds=rounds)
        else:
            result["report"] = await host_session(client, params=soc.params, say=say)
        result["leds"] = ctx.get(soc.leds)

    simulator.add_testbench(testbench)
    simulator.run()
    report = result["report"]
    report.leds = result["leds"]
    return report
