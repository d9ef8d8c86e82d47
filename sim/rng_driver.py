"""A virtio-rng driver model (virtio 1.x §2.7 split ring, §5.4 entropy device) on top of
:class:`~virtio_mmio_sim.driver.VirtioMmioDriver`, with guest memory it lays the rings out in.

* :class:`GuestMemory`: 64-bit guest-physical windows mapped onto a backing store (a
  ``bytearray``, or cocotbext-axi's memory); accesses outside every window raise
  :class:`UnmappedAccess` (the bus models answer those with an error response).
* :class:`Xorshift32`: the Python model of the device's generator, to predict the bytes
  (:meth:`Xorshift32.fill` follows the device's word-by-word writes).
* :class:`VirtioRngDriver`: the Linux bring-up, descriptor allocation, posting single and
  chained buffers, kicking, interrupt handling (INTx: InterruptStatus/ACK; MSI: the caller's
  wait) and harvesting the used ring, checking ids and lengths.

The driver touches guest memory the way a CPU does (instantly, in program order), and the
device only through the register backend, so the same model runs under Amaranth's simulator
and under cocotb.
"""

import struct
from dataclasses import dataclass

from virtio_mmio.regmap import Status

from .driver import DriverError, VirtioMmioDriver


__all__ = ["UnmappedAccess", "GuestMemory", "Xorshift32", "RingLayout", "Buffer",
           "VirtioRngDriver", "DESC_F_NEXT", "DESC_F_WRITE", "DESC_F_INDIRECT",
           "AVAIL_F_NO_INTERRUPT", "RNG_DEVICE_ID"]


DESC_SIZE = 16
DESC_F_NEXT = 1
DESC_F_WRITE = 2
DESC_F_INDIRECT = 4
AVAIL_F_NO_INTERRUPT = 1
RNG_DEVICE_ID = 4
_MASK64 = (1 << 64) - 1


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

    def spans(self):
        """``(address, bytes)`` of the descriptor table, the available and the used ring."""
        return ((self.desc, DESC_SIZE * self.size), (self.avail, 6 + 2 * self.size),
                (self.used, 6 + 8 * self.size))


@dataclass
class Buffer:
    """One posted request: its descriptor chain as ``(address, length)`` segments."""
    segments: tuple
    head: int = None
    descriptors: tuple = ()
    token: object = None
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
    """

    def __init__(self, transport, memory, layout, *, wait_interrupt=None, msi=False):
        if not isinstance(transport, VirtioMmioDriver):
            raise TypeError(f"transport must be a VirtioMmioDriver, not {transport!r}")
        self.transport = transport
        self.memory = memory
        self.layout = layout
        self.wait_interrupt = wait_interrupt
        self.msi = msi
        self._reset_state()
        self.interrupts = 0
        self.empty_interrupts = 0
        self.interrupt_status = []

    def _reset_state(self):
        self.free = list(range(self.layout.size))
        self.avail_idx = 0
        self.last_used = 0
        self.in_flight = {}             # head -> Buffer

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

    def can_post(self, segments=1):
        return len(self.free) >= segments

    def post(self, segments, token=None):
        """Make one buffer of device-writable ``segments`` (``(address, length)``, chained in
        that order) available. Returns the :class:`Buffer`."""
        segments = tuple(segments)
        if not segments:
            raise ValueError("a buffer needs at least one segment")
        if len(self.free) < len(segments):
            raise DriverError(f"{len(segments)} descriptors needed, {len(self.free)} free")
        indices = [self.free.pop(0) for _ in segments]
        for position, (index, (address, length)) in enumerate(zip(indices, segments)):
            last = position == len(segments) - 1
            self.write_descriptor(index, address, length,
                                  DESC_F_WRITE | (0 if last else DESC_F_NEXT),
                                  0 if last else indices[position + 1])
        buffer = Buffer(segments, indices[0], tuple(indices), token)
        self.in_flight[buffer.head] = buffer
        self.publish(buffer.head)
        return buffer

    async def kick(self):
        await self.transport.notify(0)

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

    async def handle_interrupt(self):
        """Wait for an interrupt and service it like ``vm_interrupt`` + ``vring_interrupt``:
        INTx reads InterruptStatus and acknowledges it; then the used ring is harvested.
        Returns the buffers that came back."""
        await self.wait_interrupt()
        self.interrupts += 1
        if not self.msi:
            status = await self.transport.interrupt()
            self.interrupt_status.append(status)
        done = self.harvest()
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
