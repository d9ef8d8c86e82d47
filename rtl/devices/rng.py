"""An example device on the endpoint's device-side ports (docs/spec.md §5–7, §9): virtio-rng
(device ID 4, one queue) with its own split-virtqueue DMA engine (virtio 1.x §2.7, §5.4).

* :class:`VirtioRngDevice`: the device logic. It takes notifications, walks the split ring in
  guest memory through a bus manager port of its own (``dma``), fills every device-writable
  buffer with words of an on-chip xorshift32 generator, publishes each used element and the used
  index, and raises a used-buffer event once those writes are answered.
* the ``dma`` port: the bus layer's :class:`~virtio_mmio.bus.AXI4LiteDmaManager` or
  :class:`~virtio_mmio.bus.WishboneDmaManager`, one access at a time, behind the small
  request/response interface :class:`~virtio_mmio.bus.DmaAccessSignature`.
* :class:`VirtioRngEndpoint`: :class:`~virtio_mmio.endpoint.VirtioMmioEndpoint` and the device
  wired together, with interfaces ``bus``, ``msi`` and ``dma`` that generation flattens to
  ``s_*``, ``m_*`` and ``m_dma_axil_*``/``m_dma_wb_*``, as ``virtio-mmio generate --device rng``
  emits it.
* :func:`rng_params`, :func:`check_rng_params`: endpoint parameters that suit the device.
"""

from contextlib import contextmanager

from amaranth.hdl import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..bus import (AXI4LiteDmaManager, AXI4LiteSignature, WishboneDmaManager, WishboneSignature,
                  WISHBONE_MODES)
from ..endpoint import VirtioMmioEndpoint
from ..flatten import FlatPorts, inspected
from ..params import EndpointParams
from ..regmap import Feature


__all__ = ["RNG_DEVICE_ID", "RNG_FEATURES_ALLOWED", "RNG_DEFAULT_FEATURES", "DEFAULT_SEED",
           "VirtioRngDevice", "VirtioRngEndpoint",
           "rng_params", "check_rng_params", "rng_port_members"]


#: virtio device ID of an entropy source (virtio 1.x §5).
RNG_DEVICE_ID = 4
#: Feature bits the device may offer: VERSION_1 (required), the two ring features it implements
#: (INDIRECT_DESC, EVENT_IDX), and bits that ask nothing of it (ACCESS_PLATFORM; IN_ORDER, since
#: buffers are used in the order they were made available; NOTIFICATION_DATA, whose data it
#: ignores because it re-reads avail.idx).
RNG_FEATURES_ALLOWED = (Feature.RING_INDIRECT_DESC, Feature.RING_EVENT_IDX, Feature.VERSION_1,
                        Feature.ACCESS_PLATFORM, Feature.IN_ORDER, Feature.NOTIFICATION_DATA)
#: What the device offers by default: what QEMU's virtio-rng offers on virtio-mmio (modern).
RNG_DEFAULT_FEATURES = ((1 << Feature.VERSION_1) | (1 << Feature.RING_INDIRECT_DESC) |
                        (1 << Feature.RING_EVENT_IDX))
#: Default xorshift32 seed (the seed of Marsaglia's "Xorshift RNGs", 2003).
DEFAULT_SEED = 2463534242
#: The queue size QEMU's virtio-rng offers.
DEFAULT_QUEUE_SIZE = 8

# Split-ring layout (virtio 1.x §2.7), little-endian.
_DESC_F_NEXT = 1
_DESC_F_WRITE = 2
_DESC_F_INDIRECT = 4
_AVAIL_F_NO_INTERRUPT = 1


#: The endpoint parameters the rng device brings (its entry in
#: :data:`virtio_mmio.devices.EXAMPLE_DEVICES`): device ID 4, one queue of 8, no config space,
#: features VERSION_1, INDIRECT_DESC and EVENT_IDX (:data:`RNG_DEFAULT_FEATURES`).
RNG_DEFAULTS = dict(device_id=RNG_DEVICE_ID, queues=1, queue_size=DEFAULT_QUEUE_SIZE,
                    config_size=0, features=RNG_DEFAULT_FEATURES)


def rng_params(**kwargs):
    """:class:`EndpointParams` for the rng endpoint: :data:`RNG_DEFAULTS` unless ``kwargs``
    say otherwise (then checked by :func:`check_rng_params`)."""
    params = EndpointParams(**{**RNG_DEFAULTS, **kwargs})
    check_rng_params(params)
    return params


def check_rng_params(params):
    """Raise ``ValueError`` naming the parameter if ``params`` do not suit the rng device."""
    if not isinstance(params, EndpointParams):
        raise TypeError(f"params must be an EndpointParams, not {params!r}")
    if params.queues != 1:
        raise ValueError(f"queues must be 1 for the rng device (one request queue), "
                         f"not {params.queues}")
    if params.device_id != RNG_DEVICE_ID:
        raise ValueError(f"device_id must be {RNG_DEVICE_ID} (entropy source) for the rng "
                         f"device, not {params.device_id}")
    size = params.queue_sizes[0]
    if size & (size - 1):
        raise ValueError(f"queue_size must be a power of two in 1..32768 for the rng device "
                         f"(split rings), not {size}")
    if params.config_size != 0:
        raise ValueError(f"config_size must be 0 for the rng device (virtio-rng has no "
                         f"configuration space), not {params.config_size}")
    allowed = sum(1 << bit for bit in RNG_FEATURES_ALLOWED)
    if params.features & ~allowed:
        raise ValueError(f"features must be a subset of {allowed:#x} (bits "
                         f"{', '.join(map(str, RNG_FEATURES_ALLOWED))}) for the rng device, "
                         f"not {params.features:#x}")


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, not {seed!r}")
    if not 1 <= seed <= 0xFFFF_FFFF:
        raise ValueError(f"seed must be a non-zero 32-bit integer (xorshift32 stays at 0), "
                         f"not {seed!r}")


def _check_bus(bus, wishbone_mode):
    if bus not in ("axil", "wishbone"):
        raise ValueError(f"bus must be one of axil, wishbone, not {bus!r}")
    if wishbone_mode not in WISHBONE_MODES:
        raise ValueError(f"wishbone_mode must be one of {', '.join(WISHBONE_MODES)}, "
                         f"not {wishbone_mode!r}")


def _xorshift32(x):
    """One xorshift32 step (Marsaglia 2003, shifts 13, 17, 5) as an expression of ``x``."""
    x = x ^ (x << 13)[:32]
    x = x ^ (x >> 17)
    return x ^ (x << 5)[:32]


class VirtioRngDevice(wiring.Component):
    """virtio-rng device logic with a split-virtqueue DMA engine (one queue, queue 0), with
    indirect descriptors (virtio 1.x §2.7.5.3) and used/available event indices (§2.7.7,
    §2.7.10).

    Parameters
    ----------
    bus : ``"axil"`` or ``"wishbone"``
        Flavour of the DMA manager port ``dma``.
    wishbone_mode : ``"classic"`` or ``"pipelined"``
        With ``bus="wishbone"``.
    seed : int
        Initial xorshift32 state, non-zero.

    Members
    -------
    notify_valid, notify_queue in; notify_ready out
        The endpoint's notification stream. ``notify_ready`` is always high: a notification is
        taken at once and only remembered (a "kick"), so notify writes never wait on the bus.
        The queue number is not looked at (with one queue only queue 0 gets through).
    q_sel out (always 0); q_ready, q_num, q_desc, q_driver, q_device in
        The endpoint's queue-state port (values of queue 0, one cycle of latency).
    used_valid, used_queue out
        One-cycle used-buffer event for queue 0 (``used_queue`` is always 0).
    needs_reset out
        One-cycle pulse when the device gives up on a malformed ring or a DMA error.
    device_reset, driver_ok, features[63:0] in
        From the endpoint (docs/spec.md §5): the negotiated features; the device looks at
        VIRTIO_RING_F_INDIRECT_DESC (bit 28) and VIRTIO_RING_F_EVENT_IDX (bit 29).
    dma : AXI4-Lite manager (64-bit address, read and write channels) or Wishbone manager
        (62-bit word address, ``dat_r``, ``sel``; ``stall`` when pipelined).
    busy, broken, buffers[31:0] out
        Observation: not idle; stopped until a device reset; buffers used since ``rst``.
        (``used_valid`` doubles as the observation of every used-buffer event raised.)

    Behaviour
    ---------
    A kick arrives with a notification, or when DRIVER_OK is set (so buffers made available
    before DRIVER_OK are served then, as QEMU does). When idle, kicked, ``driver_ok`` high and
    not broken, the device checks queue 0: not ready → the kick is dropped; a size that is not
    a power of two or a ring address off its alignment (descriptors 16, available ring 2,
    used ring 4 bytes) → malformed. Then it reads avail.idx and serves, in ring order, every
    buffer up to it (a *batch*); after each batch it decides about the used-buffer event and
    reads avail.idx again, so buffers added meanwhile are served without a new kick; it goes
    idle when nothing is left.

    * Without EVENT_IDX: after the batch it reads avail.flags and raises ``used_valid`` unless
      VRING_AVAIL_F_NO_INTERRUPT is set.
    * With EVENT_IDX: after the batch it writes avail_event (the le16 at ``used + 4 + 8 *
      num``, lanes 1:0 only) = its next available index, *then* reads used_event (the le16 at
      ``avail + 4 + 2 * num``) and raises ``used_valid`` iff ``(u16)(used_idx - used_event -
      1) < (u16)(used_idx - old)``, ``old`` being the used index at its previous decision (0
      after a reset); avail.flags is not read. Writing avail_event before re-reading avail.idx
      means a buffer the driver adds meanwhile is either seen by that read or kicked.

    One buffer: read its head from the available ring; for each descriptor of the chain read
    its four words, check it, and write its bytes; then write the used element (id, len = the
    bytes written for the whole chain) and the used index. 16-bit ring fields are read from
    their aligned word; the used index is written with the two lanes of its half only, so
    used.flags is never touched. A buffer may start and end at any byte: partial words are
    written with their byte strobes.

    Indirect descriptors (INDIRECT_DESC negotiated): a descriptor with VIRTQ_DESC_F_INDIRECT
    ends the chain (zero or more direct descriptors may lead to it) and points at a table of
    ``len / 16`` descriptors, walked from entry 0 as the rest of the chain: NEXT inside the
    table links entries of the table. Its own WRITE flag is ignored (§2.7.5.3.2). The table
    must lie on a 4-byte boundary (the DMA port moves whole words; Linux's tables are
    kmalloc'ed, so at least 8-aligned).

    Every access completes (response received) before the next starts, so the used element
    is in memory before the used index, and the used index before the event.

    Random data: xorshift32 ``x ^= x << 13; x ^= x >> 17; x ^= x << 5`` on 32 bits, state
    ``x0 = seed``. The k-th data write since ``rst`` (k = 1, 2, ...) carries ``wdata = x_k``,
    whatever its strobe; the bytes a buffer receives are the strobed lanes of its writes (lane
    i = bits 8i+7..8i). The state advances only on data writes and is kept over device
    resets.

    Malformed rings — avail.idx more than the queue size ahead, a head or next index >= the
    queue size, a chain longer than the queue size (a loop), a descriptor that is not
    device-writable or of length 0, bad alignment or queue size; an indirect descriptor when
    INDIRECT_DESC was not negotiated, or with NEXT set, or of a length that is 0 or not a
    multiple of 16, or off a 4-byte boundary; inside a table an entry with INDIRECT set (no
    nesting), a next index >= the table size or a chain longer than the table (a loop) — and
    an error response on ``dma`` make the device pulse ``needs_reset`` (the endpoint sets
    DEVICE_NEEDS_RESET and raises a configuration-change event) and stop: it keeps taking
    notifications but ignores them until ``device_reset``. A descriptor is checked when its
    four words have been read, before its bytes are written; bytes of earlier descriptors of
    the chain are written.

    Reset: ``device_reset`` drops kicks, ring indices (last available and used index, and the
    used index of the last event decision, back to 0) and the broken state; no new access
    starts, and the one in flight (a bus access cannot be taken back) finishes before the
    device is idle again. ``rst`` also restarts the
    generator at ``seed``.

    Latency and throughput
    ----------------------
    One DMA access at a time; the next one is presented in the cycle after the previous one's
    response, so with a zero-wait subordinate (answers one clock after the request) every
    access takes two clocks. A buffer of L bytes in one descriptor starting on a word boundary
    costs 1 (ring) + 4 (descriptor) + ceil(L / 4) (data) + 3 (used element, used index)
    accesses, plus 2 per batch (avail.flags, avail.idx; 3 with EVENT_IDX: avail_event,
    used_event, avail.idx) and one clock of checks: a 64-byte buffer alone takes 1 + 2 × (1 +
    1 + 4 + 16 + 3 + 1) = 53 clocks from leaving idle to ``used_valid`` (55 with EVENT_IDX;
    measured to ``irq`` of the rng endpoint, plus 2 from the notify handshake to leaving
    idle), each further 64-byte buffer of the batch 48 clocks; about 1.3 bytes per clock for
    64-byte buffers, approaching 2 bytes per clock for large ones. An indirect buffer costs 4
    accesses (8 clocks) more than the same chain made of direct descriptors.
    """

    def __init__(self, *, bus="axil", wishbone_mode="classic", seed=DEFAULT_SEED):
        _check_bus(bus, wishbone_mode)
        _check_seed(seed)
        self._bus = bus
        self._wishbone_mode = wishbone_mode
        self._seed = seed
        if bus == "axil":
            dma = Out(AXI4LiteSignature(64))
        else:
            dma = Out(WishboneSignature(62, mode=wishbone_mode))
        super().__init__({
            "notify_valid": In(1), "notify_ready": Out(1), "notify_queue": In(16),
            "q_sel": Out(16), "q_ready": In(1), "q_num": In(16),
            "q_desc": In(64), "q_driver": In(64), "q_device": In(64),
            "used_valid": Out(1), "used_queue": Out(16), "needs_reset": Out(1),
            "device_reset": In(1), "driver_ok": In(1), "features": In(64),
            "dma": dma,
            "busy": Out(1), "broken": Out(1), "buffers": Out(32),
        })

    @property
    def bus(self):
        return self._bus

    @property
    def wishbone_mode(self):
        return self._wishbone_mode

    @property
    def seed(self):
        return self._seed

    def elaborate(self, platform):
        m = Module()
        if self._bus == "axil":
            m.submodules.dma = manager = AXI4LiteDmaManager()
            wiring.connect(m, wiring.flipped(self.dma), manager.axi)
        else:
            m.submodules.dma = manager = WishboneDmaManager(self._wishbone_mode)
            wiring.connect(m, wiring.flipped(self.dma), manager.wb)
        access = manager.access

        num, desc_base = self.q_num, self.q_desc
        avail_base, used_base = self.q_driver, self.q_device
        mask = (num - 1)[:16]
        m.d.comb += [self.q_sel.eq(0), self.notify_ready.eq(1), self.used_queue.eq(0)]

        # ---- state
        kicked = Signal()
        broken = Signal()
        aborting = Signal()             # a device reset came while an access was in flight
        driver_ok_seen = Signal()
        last_avail = Signal(16)         # next available-ring index to serve
        used_idx = Signal(16)
        batch_end = Signal(16)          # avail.idx as last read
        head = Signal(16)
        desc_index = Signal(16)
        desc_word = Signal(2)
        chain = Signal(16)              # descriptors of the current chain already served
        chain_limit = Signal(17)        # most descriptors the chain may have: queue/table size
        in_table = Signal()             # walking an indirect table
        table_base = Signal(64)
        signalled_idx = Signal(16)      # used_idx at the last event decision (EVENT_IDX)
        has_next = Signal()
        total = Signal(32)              # bytes written into the current chain
        buffer_address = Signal(64)     # next byte to write
        remaining = Signal(32)          # bytes left in the current descriptor
        data_last = Signal()            # the write in flight is the descriptor's last
        state = Signal(32, init=self._seed)
        fail = Signal()
        abort = Signal()
        m.d.comb += [abort.eq(self.device_reset | aborting), self.broken.eq(broken)]
        indirect_desc = self.features[Feature.RING_INDIRECT_DESC]
        event_idx = self.features[Feature.RING_EVENT_IDX]

        # ---- the request registers, and how states issue accesses
        request = access
        m.d.sync += [self.used_valid.eq(0), self.needs_reset.eq(fail)]

        def read(address):
            m.d.sync += [request.valid.eq(1), request.write.eq(0), request.address.eq(address),
                         request.strobe.eq(0xF)]

        def write(address, data, strobe=0xF):
            m.d.sync += [request.valid.eq(1), request.write.eq(1), request.address.eq(address),
                         request.data.eq(data), request.strobe.eq(strobe)]

        def stop(next_state="IDLE"):
            m.d.sync += request.valid.eq(0)
            m.next = next_state

        def half(address):
            """The 16-bit field at byte ``address`` (even) of the word just read."""
            return Mux(address[1], access.rdata[16:], access.rdata[:16])

        avail_idx_address = Signal(64)
        ring_entry_address = Signal(64)
        next_ring_entry_address = Signal(64)
        used_entry_address = Signal(64)
        used_event_address = Signal(64)     # le16 after avail.ring[num]
        avail_event_address = Signal(64)    # le16 after used.ring[num]
        m.d.comb += [
            used_event_address.eq(avail_base + 4 + Cat(C(0, 1), num)),
            avail_event_address.eq(used_base + 4 + Cat(C(0, 3), num)),
            avail_idx_address.eq(avail_base + 2),
            ring_entry_address.eq(avail_base + 4 + Cat(C(0, 1), last_avail & mask)),
            next_ring_entry_address.eq(
                avail_base + 4 + Cat(C(0, 1), (last_avail + 1)[:16] & mask)),
            used_entry_address.eq(used_base + 4 + Cat(C(0, 3), used_idx & mask)),
        ]

        def read_descriptor(index, table=None):
            """Read the first word of descriptor ``index`` of the ring's descriptor table, or
            of the indirect table we are in, or of ``table`` (an address)."""
            if table is None:
                table = Mux(in_table, table_base, desc_base)
            read(table + Cat(C(0, 4), index))
            m.d.sync += [desc_word.eq(0), desc_index.eq(index)]
            m.next = "DESC"

        # The next data write of the current descriptor: the strobed lanes from the current
        # byte to the descriptor's end or the word's end.
        offset = buffer_address[:2]
        span = 4 - offset                                   # bytes left in this word
        last = remaining <= span
        end_mask = Mux(last, C(0xF, 4) >> (4 - offset - remaining[:3])[:2], 0xF)
        strobe = (C(0xF, 4) << offset)[:4] & end_mask
        next_state = _xorshift32(state)

        def write_data():
            write(buffer_address, next_state, strobe)
            m.d.sync += [
                state.eq(next_state),
                buffer_address.eq(Cat(C(0, 2), buffer_address[2:] + 1)),
                remaining.eq(remaining - span),
                data_last.eq(last),
            ]
            m.next = "DATA"

        def do_fail():
            m.d.comb += fail.eq(1)
            stop()

        @contextmanager
        def on_done():
            """The body runs when the access in flight completed without error and no reset
            is pending."""
            with m.If(access.done):
                with m.If(abort):
                    stop()
                with m.Elif(access.error):
                    do_fail()
                with m.Else():
                    yield

        power_of_two = (num != 0) & ((num & mask) == 0)
        aligned = (desc_base[:4] == 0) & (avail_base[0] == 0) & (used_base[:2] == 0)

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.sync += aborting.eq(0)
                with m.If(kicked & self.driver_ok & ~broken & ~self.device_reset):
                    m.d.sync += kicked.eq(0)
                    m.next = "CHECK"

            with m.State("CHECK"):
                with m.If(abort | ~self.q_ready):
                    stop()
                with m.Elif(~power_of_two | ~aligned):
                    do_fail()
                with m.Else():
                    read(avail_idx_address)
                    m.next = "AVAIL_IDX"

            with m.State("AVAIL_IDX"):
                with on_done():
                    idx = half(avail_idx_address)
                    ahead = (idx - last_avail)[:16]
                    m.d.sync += batch_end.eq(idx)
                    with m.If(ahead == 0):
                        stop()
                    with m.Elif(ahead > num):
                        do_fail()
                    with m.Else():
                        read(ring_entry_address)
                        m.next = "RING_ENTRY"

            with m.State("RING_ENTRY"):
                with on_done():
                    entry = half(ring_entry_address)
                    m.d.sync += [head.eq(entry), chain.eq(0), total.eq(0), in_table.eq(0),
                                 chain_limit.eq(num)]
                    with m.If(entry >= num):
                        do_fail()
                    with m.Else():
                        read_descriptor(entry, table=desc_base)

            with m.State("DESC"):
                with on_done():
                    word = access.rdata
                    with m.Switch(desc_word):
                        with m.Case(0):
                            m.d.sync += buffer_address[:32].eq(word)
                        with m.Case(1):
                            m.d.sync += buffer_address[32:].eq(word)
                        with m.Case(2):
                            m.d.sync += remaining.eq(word)
                    with m.If(desc_word != 3):
                        # An indirect table need only be word-aligned: step the whole address.
                        m.d.sync += [desc_word.eq(desc_word + 1),
                                     request.address[2:].eq(request.address[2:] + 1)]
                    with m.Else():
                        flags, following = word[:16], word[16:]
                        chained = flags[0]
                        writable = flags[1]
                        indirect = flags[2]
                        table_entries = remaining[4:]
                        with m.If(indirect):
                            # Its WRITE flag is ignored (virtio 1.x §2.7.5.3.2); one table per
                            # chain, as its last descriptor.
                            with m.If(~indirect_desc | in_table | chained | (remaining == 0) |
                                      (remaining[:4] != 0) | (buffer_address[:2] != 0)):
                                do_fail()
                            with m.Else():
                                # Next indices are 16 bits: a longer table loops sooner.
                                m.d.sync += [
                                    in_table.eq(1), table_base.eq(buffer_address), chain.eq(0),
                                    chain_limit.eq(Mux(table_entries > (1 << 16), 1 << 16,
                                                       table_entries)),
                                ]
                                read_descriptor(0, table=buffer_address)
                        with m.Elif(~writable | (remaining == 0) |
                                    (chained & ((following >= chain_limit) |
                                                (chain + 1 >= chain_limit)))):
                            do_fail()
                        with m.Else():
                            m.d.sync += [chain.eq(chain + 1), has_next.eq(chained),
                                         desc_index.eq(following), total.eq(total + remaining)]
                            write_data()

            with m.State("DATA"):
                with on_done():
                    with m.If(~data_last):
                        write_data()
                    with m.Elif(has_next):
                        read_descriptor(desc_index)
                    with m.Else():
                        write(used_entry_address, head)
                        m.next = "USED_ID"

            with m.State("USED_ID"):
                with on_done():
                    write(used_entry_address + 4, total)
                    m.next = "USED_LEN"

            with m.State("USED_LEN"):
                with on_done():
                    write(used_base, Cat(C(0, 16), used_idx + 1), 0b1100)
                    m.next = "USED_IDX"

            with m.State("USED_IDX"):
                with on_done():
                    m.d.sync += [used_idx.eq(used_idx + 1), last_avail.eq(last_avail + 1),
                                 self.buffers.eq(self.buffers + 1)]
                    with m.If((last_avail + 1)[:16] == batch_end):
                        with m.If(event_idx):
                            write(avail_event_address, (last_avail + 1)[:16], 0b0011)
                            m.next = "AVAIL_EVENT"
                        with m.Else():
                            read(avail_base)
                            m.next = "FLAGS"
                    with m.Else():
                        read(next_ring_entry_address)
                        m.next = "RING_ENTRY"

            with m.State("FLAGS"):
                with on_done():
                    flags = half(avail_base)
                    m.d.sync += self.used_valid.eq(~(flags & _AVAIL_F_NO_INTERRUPT).any())
                    read(avail_idx_address)
                    m.next = "AVAIL_IDX"

            # EVENT_IDX: avail_event is in memory before used_event and avail.idx are read.
            with m.State("AVAIL_EVENT"):
                with on_done():
                    read(used_event_address)
                    m.next = "USED_EVENT"

            with m.State("USED_EVENT"):
                with on_done():
                    used_event = half(used_event_address)
                    m.d.sync += [
                        self.used_valid.eq((used_idx - used_event - 1)[:16] <
                                           (used_idx - signalled_idx)[:16]),
                        signalled_idx.eq(used_idx),
                    ]
                    read(avail_idx_address)
                    m.next = "AVAIL_IDX"

        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        with m.If(fail):
            m.d.sync += broken.eq(1)

        # A kick: every notification, and DRIVER_OK being set.
        m.d.sync += driver_ok_seen.eq(self.driver_ok)
        with m.If(self.notify_valid | (self.driver_ok & ~driver_ok_seen)):
            m.d.sync += kicked.eq(1)

        with m.If(self.device_reset):
            m.d.sync += [kicked.eq(0), broken.eq(0), last_avail.eq(0), used_idx.eq(0),
                         signalled_idx.eq(0), aborting.eq(self.busy)]
        return m



def rng_port_members(params):
    """The flat ports of :class:`VirtioRngEndpoint` for ``params``, as signature members."""
    return inspected(FlatPorts(inspected(VirtioRngEndpoint(params)))).signature.members


#: The endpoint's device-side outputs the rng endpoint also brings out.
_STATE_PORTS = ("notify_dropped", "status", "driver_ok", "device_reset", "features")


class VirtioRngEndpoint(wiring.Component):
    """The endpoint with the virtio-rng device behind it, as one module
    (``virtio-mmio generate --device rng``).

    Parameters
    ----------
    params : :class:`EndpointParams`, or keyword arguments for :func:`rng_params`
        Checked by :func:`check_rng_params` (device ID 4, one queue of a power-of-two size,
        no config space, only the features of :data:`RNG_FEATURES_ALLOWED`).
    seed : int
        xorshift32 seed of the device (non-zero).

    Members (flat Verilog names in brackets)
    -------
    The members of :class:`~virtio_mmio.endpoint.VirtioMmioEndpoint` but ``device``, whose
    ports are wired inside (notification stream, events, queue-state and config ports):
    ``bus`` [``s_axil_*`` or ``s_wb_*``]; the MSI manager ``msi`` [``m_axil_*`` or ``m_wb_*``];
    ``irq``, ``msi_error``, ``msi_errors``, ``msi_rejected``, ``msi_enabled``. Of the device
    side, ``notify_dropped``, ``status``, ``driver_ok``, ``device_reset``, ``features`` (also
    wired to the device, which acts on the negotiated INDIRECT_DESC and EVENT_IDX bits) and
    the ``config_changed`` input (virtio-rng has no configuration space, but a one-cycle pulse
    still raises a configuration-change event: InterruptStatus bit 1, or MSI vector 0; tie it
    to 0 otherwise). And:

    dma [m_dma_axil_* (``bus="axil"``) or m_dma_wb_*]
        The device's DMA manager, AXI4-Lite read and write channels: ``awaddr[63:0], awprot,
        awvalid, awready, wdata[31:0], wstrb[3:0], wvalid, wready, bresp, bvalid, bready,
        araddr[63:0], arprot, arvalid, arready, rdata[31:0], rresp, rvalid, rready``; or a
        Wishbone manager of the endpoint's mode: ``adr[61:0]`` (word address), ``dat_w, dat_r,
        sel, cyc, stb, we, ack, err`` (+ ``stall`` when pipelined).
    rng_busy, rng_broken, rng_buffers[31:0], rng_used_event
        The device is working; it stopped on a malformed ring until a device reset; buffers
        used since ``rst``; a one-cycle pulse for every used-buffer event the device raises
        (what the endpoint turns into InterruptStatus bit 0 or an MSI of vector 1), so a
        testbench can check the interrupt-suppression rules event by event.

    See :class:`VirtioRngDevice` for the behaviour, the random sequence and latency.
    """

    def __init__(self, params=None, *, seed=DEFAULT_SEED, **kwargs):
        if params is None:
            params = rng_params(**kwargs)
        elif kwargs:
            raise TypeError("Pass either params or keyword arguments, not both")
        check_rng_params(params)
        _check_seed(seed)
        self._params = params
        self._seed = seed
        # The two parts are made once: their signatures give this component's members, and
        # elaborate() puts these same objects in the design.
        self._endpoint = inspected(VirtioMmioEndpoint(params))
        self._device = inspected(VirtioRngDevice(bus=params.bus,
                                                 wishbone_mode=params.wishbone_mode, seed=seed))
        endpoint = self._endpoint.signature.members
        members = {name: member for name, member in endpoint.items() if name != "device"}
        members["config_changed"] = In(1)
        members.update({name: Out(endpoint["device"].signature.members[name].shape)
                        for name in _STATE_PORTS})
        members["dma"] = self._device.signature.members["dma"]
        members.update({"rng_busy": Out(1), "rng_broken": Out(1), "rng_buffers": Out(32),
                        "rng_used_event": Out(1)})
        super().__init__(members)

    @property
    def params(self):
        return self._params

    @property
    def port_prefixes(self):
        """How the interfaces flatten to Verilog names (see :mod:`virtio_mmio.flatten`)."""
        prefixes = {path: name for path, name in self._endpoint.port_prefixes.items()
                    if path[0] in ("bus", "msi")}
        prefixes[("dma",)] = "m_dma_axil" if self._params.bus == "axil" else "m_dma_wb"
        return prefixes

    @property
    def seed(self):
        return self._seed

    def elaborate(self, platform):
        m = Module()
        m.submodules.endpoint = endpoint = self._endpoint
        m.submodules.device = device = self._device
        wiring.connect(m, wiring.flipped(self.bus), endpoint.bus)
        wiring.connect(m, wiring.flipped(self.msi), endpoint.msi)
        wiring.connect(m, wiring.flipped(self.dma), device.dma)
        for name in ("irq", "msi_error", "msi_errors", "msi_rejected", "msi_enabled"):
            m.d.comb += getattr(self, name).eq(getattr(endpoint, name))
        ports = endpoint.device
        m.d.comb += ports.config_changed.eq(self.config_changed)
        for name in _STATE_PORTS:
            m.d.comb += getattr(self, name).eq(getattr(ports, name))

        m.d.comb += [
            device.notify_valid.eq(ports.notify.valid),
            ports.notify.ready.eq(device.notify_ready),
            device.notify_queue.eq(ports.notify.payload.queue),
            ports.queue.sel.eq(device.q_sel),
            device.q_ready.eq(ports.queue.ready), device.q_num.eq(ports.queue.num),
            device.q_desc.eq(ports.queue.desc), device.q_driver.eq(ports.queue.driver),
            device.q_device.eq(ports.queue.device),
            ports.used_valid.eq(device.used_valid),
            ports.used_queue.eq(device.used_queue),
            ports.needs_reset.eq(device.needs_reset),
            ports.config.rdata.eq(0),
            device.device_reset.eq(ports.device_reset),
            device.driver_ok.eq(ports.driver_ok),
            device.features.eq(ports.features),
            self.rng_busy.eq(device.busy), self.rng_broken.eq(device.broken),
            self.rng_buffers.eq(device.buffers),
            self.rng_used_event.eq(device.used_valid),
        ]
        return m
