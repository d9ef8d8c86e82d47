"""A virtio-rng driver model (virtio 1.x §2.7 split ring, §5.4 entropy device) on top of
:class:`~virtio_mmio_sim.driver.VirtioMmioDriver`, with guest memory it lays the rings out in.

* :class:`GuestMemory`: 64-bit guest-physical windows mapped onto a backing store (a
  ``bytearray``, or cocotbext-axi's memory); accesses outside every window raise
  :class:`UnmappedAccess` (the bus models answer those with an error response).
* :class:`Xorshift32`: the Python model of the device's generator, to predict the bytes
  (:meth:`Xorshift32.fill` follows the device's word-by-word writes).
* :class:`VirtioRngDriver`: the Linux bring-up, descriptor allocation, posting single and
  chained buffers, direct or through an indirect table (VIRTIO_RING_F_INDIRECT_DESC), kicking
  (with VIRTIO_RING_F_EVENT_IDX only when avail_event asks for it), interrupt handling (INTx:
  InterruptStatus/ACK; MSI: the caller's wait; with EVENT_IDX re-arming used_event) and
  harvesting the used ring, checking ids and lengths.
* :func:`need_event`: the EVENT_IDX rule (virtio 1.x §2.7.7, §2.7.10), and
  :class:`EventScoreboard`, which replays the device's used-buffer event decisions against it.

The driver touches guest memory the way a CPU does (instantly, in program order), and the
device only through the register backend, so the same model runs under Amaranth's simulator
and under cocotb.
"""

import struct
from dataclasses import dataclass

from virtio_mmio.regmap import Feature, Status

from .driver import DriverError, VirtioMmioDriver


__all__ = ["UnmappedAccess", "GuestMemory", "Xorshift32", "RingLayout", "Buffer",
           "VirtioRngDriver", "need_event", "EventScoreboard", "DESC_F_NEXT", "DESC_F_WRITE",
           "DESC_F_INDIRECT", "AVAIL_F_NO_INTERRUPT", "RNG_DEVICE_ID", "MALFORMED_RING",
           "MALFORMED_INDIRECT", "publish_malformed", "publish_malformed_indirect"]


DESC_SIZE = 16
DESC_F_NEXT = 1
DESC_F_WRITE = 2
DESC_F_INDIRECT = 4
AVAIL_F_NO_INTERRUPT = 1
RNG_DEVICE_ID = 4
_MASK64 = (1 << 64) - 1


def need_event(event, new, old):
    """The EVENT_IDX rule: whether moving an index from ``old`` to ``new`` passes ``event``
    (``(u16)(new - event - 1) < (u16)(new - old)``)."""
    return (new - event - 1) & 0xFFFF < (new - old) & 0xFFFF


class EventScoreboard:
    """Checks every used-buffer event decision of a device under EVENT_IDX.

    Feed it :meth:`decision` each time the device reads used_event (with the used index then in
    memory and the value read), :meth:`event` for each used-buffer event it raises, and
    :meth:`reset` on a device reset. A decision must be followed by exactly one event if
    :func:`need_event` says so, none otherwise, before the next decision (or :meth:`finish`).
    Mismatches land in :attr:`errors`; :attr:`raised` and :attr:`suppressed` count decisions."""

    def __init__(self):
        self.errors = []
        self.raised = 0
        self.suppressed = 0
        self.reset()

    def reset(self):
        # A decision the reset interrupted may never produce its event.
        self._pending = None
        self._old = 0

    def _settle(self):
        if self._pending is not None:
            used_idx, used_event, required, events = self._pending
            if events != int(required):
                self.errors.append(
                    f"used.idx {used_idx}, used_event {used_event}: "
                    f"{'an event was required' if required else 'the event must be suppressed'}"
                    f", the device raised {events}")
        self._pending = None

    def decision(self, used_idx, used_event):
        self._settle()
        required = need_event(used_event, used_idx, self._old)
        self._old = used_idx
        if required:
            self.raised += 1
        else:
            self.suppressed += 1
        self._pending = [used_idx, used_event, required, 0]

    def event(self):
        if self._pending is None:
            self.errors.append("a used-buffer event without a decision before it")
        else:
            self._pending[3] += 1

    def finish(self):
        self._settle()
        return self.errors


class UnmappedAccess(Exception):
    """A guest-physical access outside every window."""


class GuestMemory:
    """Guest-physical memory: windows ``(base, size)`` laid one after the other onto
    ``store`` (anything with ``read(offset, n)`` and ``write(offset, data)``, or a
    ``bytearray``). :meth:`add_window` returns the window's offset in the store."""

    def __init__(self, store=None, size=1 << 20):
        self.store = bytearray(size) if store is None else store
        self.windows = []               # (base, size, offset)
        self._next = 0

    def add_window(self, base, size):
        if not 0 <= base <= _MASK64 - size + 1:
            raise ValueError(f"window {base:#x}+{size:#x} is outside the 64-bit space")
        for other, other_size, _ in self.windows:
            if base < other + other_size and other < base + size:
                raise ValueError(f"window {base:#x}+{size:#x} overlaps {other:#x}")
        self.windows.append((base, size, self._next))
        self._next += size
        return self._next - size

    def translate(self, address, length):
        for base, size, offset in self.windows:
            if base <= address and address + length <= base + size:
                return offset + address - base
        raise UnmappedAccess(f"{length} bytes at {address:#x} are outside guest memory")

    def mapped(self, address, length=1):
        try:
            self.translate(address, length)
        except UnmappedAccess:
            return False
        return True

    def read(self, address, length):
        offset = self.translate(address, length)
        if isinstance(self.store, bytearray):
            return bytes(self.store[offset:offset + length])
        return bytes(self.store.read(offset, length))

    def write(self, address, data):
        offset = self.translate(address, len(data))
        if isinstance(self.store, bytearray):
            self.store[offset:offset + len(data)] = data
        else:
            self.store.write(offset, bytes(data))

    def read_u16(self, address):
        return struct.unpack("<H", self.read(address, 2))[0]

    def read_u32(self, address):
        return struct.unpack("<I", self.read(address, 4))[0]

    def write_u16(self, address, value):
        self.write(address, struct.pack("<H", value))


class Xorshift32:
    """The device's generator: ``x ^= x << 13; x ^= x >> 17; x ^= x << 5`` (32 bits), starting
    from the seed; the k-th data word the device writes carries the k-th output."""

    def __init__(self, seed):
        if not 1 <= seed <= 0xFFFF_FFFF:
            raise ValueError(f"seed must be a non-zero 32-bit integer, not {seed!r}")
        self.state = seed
        self.words = 0

    def next_word(self):
        x = self.state
        x ^= (x << 13) & 0xFFFF_FFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFF_FFFF
        self.state = x
        self.words += 1
        return x

    def fill(self, address, length):
        """The bytes the device writes into ``length`` bytes at ``address``: one word per bus
        word touched, its lanes as strobed."""
        out = bytearray()
        while length:
            offset = address & 3
            count = min(4 - offset, length)
            out += self.next_word().to_bytes(4, "little")[offset:offset + count]
            address += count
            length -= count
        return bytes(out)

    @staticmethod
    def words_for(address, length):
        """How many data writes a buffer of ``length`` bytes at ``address`` takes."""
        return ((address + length + 3) >> 2) - (address >> 2)


@dataclass(frozen=True)
class RingLayout:
    """Where the split ring of one queue lies in guest memory."""
    size: int
    desc: int
    avail: int
    used: int

    @classmethod
    def packed(cls, size, desc, avail=None, used=None):
        """The rings one after the other from ``desc`` (Linux's vring_init layout, used ring
        on a 4-byte boundary) unless given."""
        if avail is None:
            avail = desc + DESC_SIZE * size
        if used is None:
            used = (avail + 6 + 2 * size + 3) & ~3
        return cls(size, desc, avail, used)

    @property
    def used_event(self):
        """Address of used_event (EVENT_IDX): the le16 after the available ring."""
        return self.avail + 4 + 2 * self.size

    @property
    def avail_event(self):
        """Address of avail_event (EVENT_IDX): the le16 after the used ring."""
        return self.used + 4 + 8 * self.size

    def spans(self):
        """``(address, bytes)`` of the descriptor table, the available and the used ring (each
        with its event index)."""
        return ((self.desc, DESC_SIZE * self.size), (self.avail, 6 + 2 * self.size),
                (self.used, 6 + 8 * self.size))


@dataclass
class Buffer:
    """One posted request: its descriptor chain as ``(address, length)`` segments; with an
    indirect table, ``table`` is its ``(address, entries)`` and the last ``entries`` segments
    are in it."""
    segments: tuple
    head: int = None
    descriptors: tuple = ()
    token: object = None
    table: tuple = None
    #: Filled when the device returns it: the used element's length, and the bytes read back.
    used_length: int = None
    data: bytes = None

    @property
    def length(self):
        return sum(length for _, length in self.segments)


class VirtioRngDriver:
    """The guest side of virtio-rng on one split queue.

    Parameters
    ----------
    transport : VirtioMmioDriver
    memory : GuestMemory
    layout : RingLayout
    wait_interrupt : async callable or None
        Waits for the next interrupt: the ``irq`` pin (INTx) or an MSI message; see
        :meth:`wait_used`. None: poll the used ring instead.
    msi : bool
        Interrupts arrive as MSI (no InterruptStatus read).
    tables : ``(address, bytes)`` or None
        Guest memory for indirect tables: one slot of ``bytes // size`` (rounded down to 16)
        per head descriptor, so a table lives as long as its buffer.
    interrupt_delay : callable or None
        With EVENT_IDX: ``interrupt_delay(in_flight)`` → how many more used buffers to let
        pass before the next interrupt when re-arming used_event (Linux's
        ``virtqueue_enable_cb_delayed`` lets about 3/4 of them pass); must be less than
        ``in_flight`` (or 0). None: 0, an interrupt for the next used buffer.

    With VIRTIO_RING_F_EVENT_IDX negotiated the driver ignores avail.flags (it leaves it 0),
    writes used_event after every harvest in :meth:`handle_interrupt`, and kicks only when
    avail_event says so (:meth:`kick`); :attr:`kicks` and :attr:`kicks_suppressed` count.
    """

    def __init__(self, transport, memory, layout, *, wait_interrupt=None, msi=False,
                 tables=None, interrupt_delay=None):
        if not isinstance(transport, VirtioMmioDriver):
            raise TypeError(f"transport must be a VirtioMmioDriver, not {transport!r}")
        self.transport = transport
        self.memory = memory
        self.layout = layout
        self.wait_interrupt = wait_interrupt
        self.msi = msi
        self.tables = tables
        self.interrupt_delay = interrupt_delay
        self._reset_state()
        self.interrupts = 0
        self.empty_interrupts = 0
        self.interrupt_status = []
        self.kicks = 0
        self.kicks_suppressed = 0

    def _reset_state(self):
        self.free = list(range(self.layout.size))
        self.avail_idx = 0
        self.last_used = 0
        self.kicked_idx = 0             # avail.idx at the last kick decision
        self.in_flight = {}             # head -> Buffer

    @property
    def features(self):
        """The negotiated feature set."""
        return self.transport.features

    @property
    def event_idx(self):
        return bool(self.features >> Feature.RING_EVENT_IDX & 1)

    @property
    def indirect(self):
        return bool(self.features >> Feature.RING_INDIRECT_DESC & 1)

    @property
    def table_slot(self):
        """Bytes of indirect table per head descriptor."""
        if self.tables is None:
            return 0
        return (self.tables[1] // self.layout.size) & ~(DESC_SIZE - 1)

    # ---------------------------------------------------------------- bring-up

    def clear_rings(self):
        for address, length in self.layout.spans():
            self.memory.write(address, bytes(length))

    async def initialize(self, driver_features=None):
        """Zero the rings, then the Linux sequence: probe, reset, ACKNOWLEDGE, DRIVER,
        features, queue 0, DRIVER_OK. Checks DeviceID 4."""
        self.clear_rings()
        self._reset_state()
        layout = self.layout
        await self.transport.initialize(
            queues=[dict(index=0, size=layout.size, desc=layout.desc, driver=layout.avail,
                         device=layout.used)],
            driver_features=driver_features)
        if self.transport.info.device_id != RNG_DEVICE_ID:
            raise DriverError(f"DeviceID {self.transport.info.device_id}, not virtio-rng")
        setup = self.transport.queues.get(0)
        if setup is None or setup.size != layout.size:
            raise DriverError(f"queue 0 could not be set up with {layout.size} entries")

    async def reset(self):
        """Device reset (Status = 0); the rings are forgotten."""
        await self.transport.reset()
        self._reset_state()

    async def status(self):
        return await self.transport.get_status()

    async def needs_reset(self):
        return bool(await self.status() & Status.DEVICE_NEEDS_RESET)

    # ---------------------------------------------------------------- descriptors

    def write_descriptor(self, index, address, length, flags, following=0):
        self.memory.write(self.layout.desc + DESC_SIZE * index,
                          struct.pack("<QIHH", address, length, flags, following))

    def publish(self, head):
        """Put ``head`` in the next available-ring slot, then advance avail.idx (in that order,
        as the driver's write barrier orders them)."""
        layout = self.layout
        self.memory.write_u16(layout.avail + 4 + 2 * (self.avail_idx % layout.size), head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.memory.write_u16(layout.avail + 2, self.avail_idx)

    def set_avail_flags(self, flags):
        self.memory.write_u16(self.layout.avail, flags)

    def set_used_event(self, value):
        """EVENT_IDX: ask for an interrupt once used.idx passes ``value``."""
        self.memory.write_u16(self.layout.used_event, value & 0xFFFF)

    def avail_event(self):
        return self.memory.read_u16(self.layout.avail_event)

    @staticmethod
    def _direct_count(segments, indirect):
        if indirect is True:
            return 0
        if indirect is False or indirect is None:
            return len(segments)
        if not 0 <= indirect < len(segments):
            raise ValueError(f"indirect must be a bool or a count of direct segments in "
                             f"0..{len(segments) - 1}, not {indirect!r}")
        return indirect

    def can_post(self, segments=1, indirect=False):
        direct = segments if indirect in (False, None) else \
            (0 if indirect is True else indirect)
        return len(self.free) >= direct + (0 if indirect in (False, None) else 1)

    def post(self, segments, token=None, *, indirect=False):
        """Make one buffer of device-writable ``segments`` (``(address, length)``, chained in
        that order) available. ``indirect``: False, every segment a descriptor of the ring;
        True, all of them in an indirect table (one ring descriptor); an int k, the first k
        direct, then an indirect descriptor for the rest (virtio 1.x §2.7.5.3.2 lets a chain
        end in one). Returns the :class:`Buffer`."""
        segments = tuple(segments)
        if not segments:
            raise ValueError("a buffer needs at least one segment")
        direct = self._direct_count(segments, indirect)
        in_table = segments[direct:]
        needed = direct + (1 if in_table else 0)
        if in_table and self.table_slot < DESC_SIZE * len(in_table):
            raise DriverError(f"no room for an indirect table of {len(in_table)} entries")
        if len(self.free) < needed:
            raise DriverError(f"{needed} descriptors needed, {len(self.free)} free")
        indices = [self.free.pop(0) for _ in range(needed)]
        for position, (address, length) in enumerate(segments[:direct]):
            last = position == needed - 1
            self.write_descriptor(indices[position], address, length,
                                  DESC_F_WRITE | (0 if last else DESC_F_NEXT),
                                  0 if last else indices[position + 1])
        table = None
        if in_table:
            table_address = self.tables[0] + self.table_slot * indices[0]
            table = (table_address, len(in_table))
            self.write_table(table_address, in_table)
            self.write_descriptor(indices[-1], table_address, DESC_SIZE * len(in_table),
                                  DESC_F_INDIRECT)
        buffer = Buffer(segments, indices[0], tuple(indices), token, table)
        self.in_flight[buffer.head] = buffer
        self.publish(buffer.head)
        return buffer

    def write_table(self, address, segments):
        """An indirect table at ``address``: device-writable entries chained 0, 1, ..."""
        raw = b""
        for position, (segment_address, length) in enumerate(segments):
            last = position == len(segments) - 1
            raw += struct.pack("<QIHH", segment_address, length,
                               DESC_F_WRITE | (0 if last else DESC_F_NEXT),
                               0 if last else position + 1)
        self.memory.write(address, raw)

    def kick_needed(self):
        """``virtqueue_kick_prepare``: with EVENT_IDX, whether avail.idx moving from its value
        at the previous decision to now passes avail_event; otherwise always (the device never
        sets VRING_USED_F_NO_NOTIFY). Moves the decision point."""
        new, old = self.avail_idx, self.kicked_idx
        self.kicked_idx = new
        if not self.event_idx:
            return True
        return need_event(self.avail_event(), new, old)

    async def kick(self, *, force=False):
        """Notify the device if :meth:`kick_needed` (or ``force``). Returns whether it did."""
        if not self.kick_needed() and not force:
            self.kicks_suppressed += 1
            return False
        self.kicks += 1
        await self.transport.notify(0)
        return True

    # ---------------------------------------------------------------- completion

    def used_idx(self):
        return self.memory.read_u16(self.layout.used + 2)

    def harvest(self):
        """Every used element since the last harvest, in order: checks the id is a buffer in
        flight and the length its size, reads its bytes back, frees its descriptors. Returns
        the :class:`Buffer` s."""
        layout = self.layout
        done = []
        used_idx = self.used_idx()
        if (used_idx - self.last_used) & 0xFFFF > layout.size:
            raise DriverError(f"used.idx {used_idx} is more than the queue size ahead of "
                              f"{self.last_used}")
        while self.last_used != used_idx:
            slot = layout.used + 4 + 8 * (self.last_used % layout.size)
            head, length = struct.unpack("<II", self.memory.read(slot, 8))
            buffer = self.in_flight.pop(head, None)
            if buffer is None:
                raise DriverError(f"used element {self.last_used}: id {head} is not in flight")
            if length != buffer.length:
                raise DriverError(f"used element {self.last_used} (id {head}): length "
                                  f"{length}, posted {buffer.length}")
            buffer.used_length = length
            buffer.data = b"".join(self.memory.read(a, n) for a, n in buffer.segments)
            self.free.extend(buffer.descriptors)
            self.last_used = (self.last_used + 1) & 0xFFFF
            done.append(buffer)
        return done

    def rearm(self):
        """EVENT_IDX: ``virtqueue_enable_cb``/``_delayed``: write used_event = last_used +
        delay, then look at used.idx again; if it already passed used_event the interrupt may
        have been decided against, so harvest and re-arm (delay 0) until it has not. Returns
        the buffers harvested."""
        done = []
        delay = 0
        if self.interrupt_delay is not None and self.in_flight:
            delay = self.interrupt_delay(len(self.in_flight))
            if not 0 <= delay < len(self.in_flight):
                raise ValueError(f"interrupt delay {delay} with {len(self.in_flight)} "
                                 f"buffers in flight")
        while True:
            self.set_used_event(self.last_used + delay)
            if (self.used_idx() - self.last_used) & 0xFFFF <= delay:
                return done
            done += self.harvest()
            delay = 0

    async def handle_interrupt(self):
        """Wait for an interrupt and service it like ``vm_interrupt`` + ``vring_interrupt``:
        INTx reads InterruptStatus and acknowledges it; then the used ring is harvested, and
        with EVENT_IDX used_event re-armed (:meth:`rearm`). Returns the buffers that came
        back."""
        await self.wait_interrupt()
        self.interrupts += 1
        if not self.msi:
            status = await self.transport.interrupt()
            self.interrupt_status.append(status)
        done = self.harvest()
        if self.event_idx:
            done += self.rearm()
        if not done:
            self.empty_interrupts += 1
        return done

    async def wait_used(self, count, *, max_interrupts=None):
        """Handle interrupts until ``count`` buffers came back; returns them."""
        done = []
        interrupts = 0
        while len(done) < count:
            if max_interrupts is not None and interrupts >= max_interrupts:
                raise DriverError(f"{len(done)} of {count} buffers after {interrupts} "
                                  f"interrupts")
            done += await self.handle_interrupt()
            interrupts += 1
        return done


#: Malformed rings the device must refuse (NEEDS_RESET), for :func:`publish_malformed`.
MALFORMED_RING = ("head-out-of-range", "next-out-of-range", "loop", "zero-length", "read-only",
                  "read-only-in-chain", "dma-error", "avail-too-far")


def publish_malformed(driver, case, *, table, data, unmapped):
    """Make the next available buffer malformed in the way ``case`` names (one of
    :data:`MALFORMED_RING` or :data:`MALFORMED_INDIRECT`): descriptor indices one past the
    queue, a two-descriptor loop, an empty or read-only buffer, a buffer at ``unmapped`` (the
    DMA access is answered with an error), avail.idx more than a queue ahead, or a malformed
    indirect table at ``table``. Buffers that are not the point of the case lie at ``data``."""
    layout = driver.layout
    if case in MALFORMED_INDIRECT:
        publish_malformed_indirect(driver, case, table, data)
        return
    if case == "avail-too-far":
        driver.avail_idx = (driver.avail_idx + layout.size + 1) & 0xFFFF
        driver.memory.write_u16(layout.avail + 2, driver.avail_idx)
        return
    head = 0
    if case == "head-out-of-range":
        head = layout.size
    elif case == "next-out-of-range":
        driver.write_descriptor(0, data, 8, DESC_F_WRITE | DESC_F_NEXT, layout.size)
    elif case == "loop":
        driver.write_descriptor(0, data, 8, DESC_F_WRITE | DESC_F_NEXT, 1)
        driver.write_descriptor(1, data + 8, 8, DESC_F_WRITE | DESC_F_NEXT, 0)
    elif case == "zero-length":
        driver.write_descriptor(0, data, 0, DESC_F_WRITE)
    elif case == "read-only":
        driver.write_descriptor(0, data, 8, 0)
    elif case == "read-only-in-chain":
        driver.write_descriptor(0, data, 8, DESC_F_WRITE | DESC_F_NEXT, 1)
        driver.write_descriptor(1, data + 8, 8, 0)
    elif case == "dma-error":
        driver.write_descriptor(0, unmapped, 8, DESC_F_WRITE)
    else:
        raise ValueError(f"case must be one of {', '.join(MALFORMED_RING + MALFORMED_INDIRECT)}, "
                         f"not {case!r}")
    driver.publish(head)


#: Malformed indirect tables the device must refuse (NEEDS_RESET), for
#: :func:`publish_malformed_indirect`.
MALFORMED_INDIRECT = ("indirect-not-negotiated", "indirect-len-0", "indirect-len-not-16",
                      "indirect-with-next", "indirect-nested", "indirect-next-out-of-range",
                      "indirect-loop", "indirect-read-only", "indirect-misaligned")


def _descriptor(address, length, flags, following=0):
    return struct.pack("<QIHH", address, length, flags, following)


def publish_malformed_indirect(driver, case, table, data):
    """Publish, as descriptor 0, a buffer whose indirect table at ``table`` (or the descriptor
    pointing at it) is malformed in the way ``case`` (of :data:`MALFORMED_INDIRECT`) names.
    The table's entry 0 is good (a buffer at ``data``): its bytes are written before the device
    gives up. "indirect-not-negotiated" is a well-formed table, malformed only when
    INDIRECT_DESC was not negotiated."""
    good = _descriptor(data, 8, DESC_F_WRITE | DESC_F_NEXT, 1)
    single = [_descriptor(data, 8, DESC_F_WRITE)]
    entries, length, flags, address = None, None, DESC_F_INDIRECT, table
    if case == "indirect-not-negotiated":
        entries = single
    elif case == "indirect-len-0":
        entries, length = single, 0
    elif case == "indirect-len-not-16":
        entries, length = [good, _descriptor(data + 8, 8, DESC_F_WRITE)], 24
    elif case == "indirect-with-next":
        entries, flags = single, DESC_F_INDIRECT | DESC_F_NEXT
    elif case == "indirect-nested":
        entries = [good, _descriptor(table, 16, DESC_F_WRITE | DESC_F_INDIRECT)]
    elif case == "indirect-next-out-of-range":
        # Index 2 is inside the ring's descriptor table, but not inside this 2-entry table.
        entries = [good, _descriptor(data + 8, 8, DESC_F_WRITE | DESC_F_NEXT, 2)]
    elif case == "indirect-loop":
        entries = [good, _descriptor(data + 8, 8, DESC_F_WRITE | DESC_F_NEXT, 0)]
    elif case == "indirect-read-only":
        entries = [good, _descriptor(data + 8, 8, 0)]
    elif case == "indirect-misaligned":
        entries, address = single, table + 2
    else:
        raise ValueError(f"case must be one of {', '.join(MALFORMED_INDIRECT)}, not {case!r}")
    raw = b"".join(entries)
    driver.memory.write(address, raw)
    driver.write_descriptor(0, address, len(raw) if length is None else length, flags, 1)
    driver.publish(0)
