"""The virtio-mmio register core (SPEC §4, §5, §6 QueueNotify, §7 INTx, §9 device ports).

One core serves every bus subordinate of the bus layer (:mod:`virtio_mmio.bus`) through
:class:`~virtio_mmio.bus.RegisterBus`, a minimal word-addressed request interface with fixed
read latency, tagged by the core's :attr:`RegisterCore.classifier`.
"""

from amaranth.hdl import *
from amaranth.lib import wiring, data, memory, stream
from amaranth.lib.wiring import In, Out

from .bus import RegisterBus
from .msi import MsiMessage
from .msi_block import interrupt_controller
from .compare import at_most, below
from .notify import DoorbellDecoder, NotifyLayout, NotifyQueue, WriteClassifier
from .queue_flags import BLOCK_FLAGS_QUEUES, queue_flags
from .params import EndpointParams
from .regmap import CONFIG_BASE, MAGIC_VALUE, Feature, RegisterMap, Status


__all__ = ["NotifyLayout", "QueueStatePort", "ConfigPort",
           "RegisterCore", "config_addr_width"]


class QueueStatePort(wiring.Signature):
    """Device-side queue-state read port (SPEC §9), seen from the device logic.

    ``q_sel`` is sampled every cycle; one cycle later ``q_ready``, ``q_num``, ``q_desc``,
    ``q_driver`` and ``q_device`` show that queue's state as it was when ``q_sel`` was sampled
    (all zero for ``q_sel >= N``)."""

    def __init__(self):
        super().__init__({
            "sel": Out(16), "ready": In(1), "num": In(16),
            "desc": In(64), "driver": In(64), "device": In(64),
        })


class ConfigPort(wiring.Signature):
    """Config-space pass-through (SPEC §4 0x100…, §9), seen from the core (it drives the
    requests, the device logic answers).

    ``addr`` is the byte offset of the 32-bit word inside config space (bits 1:0 zero).
    ``re`` requests a read; the device answers on ``rdata`` in the next cycle. ``we`` writes
    ``wdata`` into the lanes ``be``. ``re`` and ``we`` are never high in the same cycle."""

    def __init__(self, addr_width):
        super().__init__({
            "addr": Out(addr_width), "re": Out(1), "rdata": In(32),
            "we": Out(1), "wdata": Out(32), "be": Out(4),
        })


def config_addr_width(params):
    """Width of ``cfg_addr``: byte offsets into config space (at least 2 bits)."""
    return max(2, (max(params.config_size, 4) - 1).bit_length())


class RegisterCore(wiring.Component):
    """The transport's register file and state.

    Parameters
    ----------
    params : :class:`EndpointParams`

    Members
    -------
    bus : ``In(RegisterBus)``
        Requests from a bus front-end.
    used_valid, used_queue, config_changed, needs_reset : ``In``
        Device events, accepted every cycle (SPEC §7). Used events for queues >= N are ignored.
    notify : ``Out(stream.Signature(NotifyLayout))``
        Notifications (QueueNotify and doorbells, see :class:`DoorbellDecoder`) in write order,
        through a :class:`NotifyQueue` of ``params.notify_fifo_depth`` entries; while it is
        full, a further notification waits on the bus. A device reset discards what the device
        has not taken.
    notify_dropped : ``Out(32)``
        Count of notify writes dropped (partial writes, queues >= N); cleared by ``rst`` only.
    status, driver_ok, device_reset, features, irq : ``Out``
        Device state (SPEC §5, §9); ``features`` is the accepted set once FEATURES_OK is set,
        otherwise 0.
    queue : ``In(QueueStatePort)``
    config : ``Out(ConfigPort)``
    msi_message : ``Out(stream.Signature(MsiMessage))``
        MSI messages for the manager port (see :class:`InterruptController`).
    msi_rejected : ``Out(32)``
        UPDATEs refused by the MSI address window.
    msi_enabled : ``Out(1)``
        MSI is enabled (InterruptStatus is 0 and ``irq`` low meanwhile).

    Latency
    -------
    Reads: data one cycle after the request. Writes: take effect at the next clock edge, so a
    read in the following cycle sees them; a device reset (Status = 0) is complete at that
    edge too. The queue table (QueueNum, QueueDesc/Driver/Device, read only by the device on
    ``queue``) is written one edge later, from a register. Throughput: one read and one write
    per cycle, concurrently.

    Reset
    -----
    ``rst`` clears everything including ConfigGeneration; a device reset keeps ConfigGeneration.
    """

    def __init__(self, params):
        if not isinstance(params, EndpointParams):
            raise TypeError(f"params must be an EndpointParams, not {params!r}")
        self._params = params
        self._regmap = RegisterMap(params.profile)
        self._classifier = WriteClassifier(params, self._regmap, CONFIG_BASE)
        self._interrupts = None
        self._notify_queue = None
        super().__init__({
            "bus": In(RegisterBus(params.addr_width, self.classifier.address_layout,
                                  self.classifier.data_layout)),
            "used_valid": In(1), "used_queue": In(16),
            "config_changed": In(1), "needs_reset": In(1),
            "notify": Out(stream.Signature(NotifyLayout)), "notify_dropped": Out(32),
            "status": Out(8), "driver_ok": Out(1), "device_reset": Out(1),
            "features": Out(64), "irq": Out(1),
            "queue": In(QueueStatePort()),
            "config": Out(ConfigPort(config_addr_width(params))),
            "msi_message": Out(stream.Signature(MsiMessage)), "msi_rejected": Out(32),
            "msi_enabled": Out(1),
        })

    @property
    def params(self):
        return self._params

    @property
    def regmap(self):
        return self._regmap

    @property
    def interrupts(self):
        """The :class:`InterruptController`, made on first use so proofs can reach its
        observation members before elaboration."""
        if self._interrupts is None:
            self._interrupts = interrupt_controller(
                self._params, msi=self._regmap.profile.msi_registers)
        return self._interrupts

    @property
    def classifier(self):
        """The :class:`WriteClassifier` whose tags the front-end sends with each write."""
        return self._classifier

    @property
    def notify_queue(self):
        """The :class:`NotifyQueue`, made on first use (proofs observe its ``held``)."""
        if self._notify_queue is None:
            self._notify_queue = NotifyQueue(self._params.notify_fifo_depth)
        return self._notify_queue

    def elaborate(self, platform):
        m = Module()
        p = self._params
        regs = self._regmap
        n = p.queues
        qbits = max(1, (n - 1).bit_length())

        def word(name):
            return regs[name].word

        # ---------------------------------------------------------------- state
        status = Signal(8)
        config_generation = Signal(32)
        dev_feat_sel_ok = Signal(init=1)      # DeviceFeaturesSel < 2
        dev_feat_sel_hi = Signal()
        drv_feat_sel_ok = Signal(init=1)
        drv_feat_sel_hi = Signal()
        accepted = Signal(64)
        queue_sel_num_max = Signal(16, init=p.queue_sizes[0])
        # QueueSel, and per queue QueueReady and "table row written since the last reset"
        # (flip-flops for small N, block RAM beyond).
        m.submodules.queue_flags = flags = queue_flags(n)
        queue_sel, queue_sel_ok, queue_sel_ready = flags.sel, flags.sel_ok, flags.sel_ready
        # SHMSel resets to 0: start with the lookup of region 0 done.
        shm_zero = [i for i, region in enumerate(p.shm) if region.id == 0]
        # (at least one bit: a zero-width register would be `wire [-1:0]` in the Verilog)
        shm_index = Signal(range(max(2, len(p.shm))), init=shm_zero[0] if shm_zero else 0)
        shm_ok = Signal(init=bool(shm_zero))
        msi_addr = Signal(64)
        msi_data = Signal(32)
        device_reset_pulse = Signal()

        # ---------------------------------------------------------------- interrupts, MSI
        profile = regs.profile
        m.submodules.interrupts = interrupts = self.interrupts
        msi_cmd = interrupts.command

        sizes = Array(C(s, 16) for s in p.queue_sizes) if not p.uniform_queue_size else None

        def size_of(index):
            return C(p.queue_sizes[0], 16) if sizes is None else sizes[index]

        # ---------------------------------------------------------------- queue table
        # One row per queue: num(16) desc(64) driver(64) device(64), written in 16-bit lanes.
        # A row is only meaningful once `written`; reads of unwritten rows give reset values,
        # so a device reset clears every queue in one cycle whatever N is.
        row = data.StructLayout({"num": 16, "desc": 64, "driver": 64, "device": 64})
        # Beyond a small N in block RAM whatever the device: Yosys would otherwise build it
        # from LUT RAM on ECP5 (~400 LUT4 at N = 64). Below, left to Yosys (flip-flops at
        # N = 1: 13 iCE40 block RAMs would save 3 logic cells).
        m.submodules.queue_table = table = memory.Memory(
            shape=unsigned(row.size), depth=n, init=[],
            attrs={"ram_style": "block"} if n > BLOCK_FLAGS_QUEUES else {})
        table_w = table.write_port(granularity=16)
        table_r = table.read_port(transparent_for=())

        # ---------------------------------------------------------------- bus requests
        bus = self.bus
        r_word = bus.r_addr
        w_word = bus.w_addr
        wd = bus.w_data
        full = bus.w_data_tags.full

        cfg_lo = CONFIG_BASE // 4
        r_cfg = bus.r_valid & self.classifier.in_config(r_word)
        w_cfg = bus.w_address_tags.config
        m.submodules.doorbells = doorbells = DoorbellDecoder(self.classifier, p.addr_width)
        m.submodules.notify_queue = notify_queue = self.notify_queue
        m.d.comb += [
            doorbells.word.eq(w_word), doorbells.data.eq(wd),
            doorbells.address_tags.eq(bus.w_address_tags),
            doorbells.data_tags.eq(bus.w_data_tags),
            doorbells.data_negotiated.eq(status[3] & accepted[Feature.NOTIFICATION_DATA]),
        ]
        # A notification waits on the bus while the queue is full; everything else goes on.
        notify_blocked = doorbells.valid & ~notify_queue.i.ready
        m.d.comb += [
            bus.w_ready.eq(~notify_blocked & ~(w_cfg & r_cfg)),
            bus.w_conflict.eq(bus.w_valid & w_cfg & r_cfg),
        ]
        we = Signal()
        m.d.comb += we.eq(bus.w_valid & bus.w_ready)
        # Writes to registers (not config space, not a doorbell) are never held back, so
        # they are decoded from ``w_valid`` alone: ``w_ready`` (which depends on the doorbell
        # decode and the notify queue) then does not fan out to every register's enable.
        reg_we = bus.w_valid

        # ---------------------------------------------------------------- config port
        cfg = self.config
        m.d.comb += [
            cfg.re.eq(r_cfg),
            cfg.we.eq(we & w_cfg),
            cfg.wdata.eq(wd),
            cfg.be.eq(Mux(r_cfg, 0xF, bus.w_strb)),
            cfg.addr.eq(Mux(r_cfg, r_word - cfg_lo, w_word - cfg_lo) << 2),
        ]

        # ---------------------------------------------------------------- read path
        read_value = Signal(32)
        with m.If(bus.r_valid):
            with m.Switch(r_word):
                def case(name, value):
                    with m.Case(word(name)):
                        m.d.comb += read_value.eq(value)
                case("MagicValue", MAGIC_VALUE)
                case("Version", p.version)
                case("DeviceID", p.device_id)
                case("VendorID", p.vendor_id)
                case("DeviceFeatures", Mux(dev_feat_sel_ok,
                                           Mux(dev_feat_sel_hi, p.features >> 32,
                                               p.features & 0xFFFF_FFFF), 0))
                case("QueueNumMax", Mux(queue_sel_ok, queue_sel_num_max, 0))
                case("QueueReady", queue_sel_ready)
                case("QueueNotify", p.notify_layout)
                case("InterruptStatus", interrupts.interrupt_status)
                case("Status", status)
                if p.shm:
                    lens = Array(C(r.length, 64) for r in p.shm)
                    bases = Array(C(r.base, 64) for r in p.shm)
                    ones = C(0xFFFF_FFFF, 32)
                    case("SHMLenLow", Mux(shm_ok, lens[shm_index][:32], ones))
                    case("SHMLenHigh", Mux(shm_ok, lens[shm_index][32:], ones))
                    case("SHMBaseLow", Mux(shm_ok, bases[shm_index][:32], ones))
                    case("SHMBaseHigh", Mux(shm_ok, bases[shm_index][32:], ones))
                else:
                    for name in ("SHMLenLow", "SHMLenHigh", "SHMBaseLow", "SHMBaseHigh"):
                        case(name, 0xFFFF_FFFF)
                if "MsiStatus" in regs:
                    # Lanes 3:2 (MsiCmd) are write-only and read 0.
                    enabled = C(1) if profile.msi_status_capable else interrupts.enabled
                    case("MsiStatus", Cat(C(n, 11), C(0, 4), enabled))
                case("ConfigGeneration", config_generation)
        read_data = Signal(32)
        read_from_cfg = Signal()
        m.d.sync += [read_data.eq(read_value), read_from_cfg.eq(r_cfg)]
        m.d.comb += bus.r_data.eq(Mux(read_from_cfg, cfg.rdata, read_data))

        # ---------------------------------------------------------------- write path
        device_reset = Signal()
        status_next = Signal(8)
        m.d.comb += status_next.eq(status)
        ack_bits = Signal(2)
        m.d.comb += [msi_cmd.address.eq(msi_addr), msi_cmd.data.eq(msi_data)]

        at = bus.w_address_tags     # which register: one-hot, decoded by the front-end
        dt = bus.w_data_tags        # what the data says, decoded there too
        # (A plain expression, so that event-driven simulators such as Icarus see its value
        # from time 0 even before the first write.)
        m.d.comb += device_reset.eq(reg_we & at.Status & full & dt.zero)

        with m.If(reg_we):
            # The tags are one-hot: each register its own condition, no priority chain.
            with m.If(at.DeviceFeaturesSel):
                with m.If(full):
                    m.d.sync += [dev_feat_sel_ok.eq(dt.below_2), dev_feat_sel_hi.eq(wd[0])]
            with m.If(at.DriverFeaturesSel):
                with m.If(full):
                    m.d.sync += [drv_feat_sel_ok.eq(dt.below_2), drv_feat_sel_hi.eq(wd[0])]
            with m.If(at.DriverFeatures):
                with m.If(full & drv_feat_sel_ok & ~status[3]):
                    with m.If(drv_feat_sel_hi):
                        m.d.sync += accepted[32:].eq(wd)
                    with m.Else():
                        m.d.sync += accepted[:32].eq(wd)
            with m.If(at.QueueSel):
                with m.If(full):
                    index = wd[:qbits]
                    ok = dt.word_queue_ok
                    m.d.comb += [flags.select.eq(1), flags.select_index.eq(index),
                                 flags.select_ok.eq(ok)]
                    m.d.sync += queue_sel_num_max.eq(size_of(index))
            with m.If(at.QueueReady):
                with m.If(full & queue_sel_ok):
                    m.d.comb += [flags.set_ready.eq(1), flags.ready_value.eq(wd[0])]
            with m.If(at.InterruptACK):
                with m.If(full):
                    m.d.comb += ack_bits.eq(wd[:2])
            with m.If(at.Status):
                with m.If(full & ~dt.zero):
                    driver_bits = ~C(Status.DEVICE_NEEDS_RESET, 8)
                    new = wd[:8] & driver_bits
                    # Drivers only ever add bits; a write that clears one is ignored.
                    with m.If((status & driver_bits & ~new) == 0):
                        offered = C(p.features, 64)
                        features_valid = (((accepted & ~offered) == 0) &
                                          accepted[Feature.VERSION_1])
                        refuse = (new[3] & ~status[3] & ~features_valid)
                        keep = Mux(refuse, C(0xFF & ~Status.FEATURES_OK, 8),
                                   C(0xFF, 8))
                        m.d.comb += status_next.eq(
                            (new & keep) | (status & Status.DEVICE_NEEDS_RESET))
            with m.If(at.SHMSel):
                with m.If(full):
                    m.d.sync += shm_ok.eq(0)
                    for i, region in enumerate(p.shm):
                        with m.If(wd == region.id):
                            m.d.sync += [shm_index.eq(i), shm_ok.eq(1)]
            if "MsiStatus" in regs:
                with m.If(at.MsiStatus):
                    # 16-bit pair: MsiStatus in lanes 1:0, MsiCmd in lanes 3:2. A full write
                    # applies MsiStatus first, then the command (which then wins).
                    # (The lanes and the command are decoded in the data tags.)
                    arg = wd[16:28]
                    if profile.msi_status_writable:
                        # linux-k1 only: in seed MsiStatus is read-only, as the proposal writes
                        # it, so a word write that carries a command in bits 31:16 and zeros
                        # below cannot switch MSI off.
                        with m.If(dt.msi_status):
                            m.d.comb += [msi_cmd.enable.eq(1), msi_cmd.enable_value.eq(wd[15])]
                    with m.If(dt.msi_update):
                        m.d.comb += [msi_cmd.update.eq(1), msi_cmd.vector.eq(arg)]
                    with m.If(dt.msi_enable):
                        m.d.comb += [msi_cmd.enable.eq(1), msi_cmd.enable_value.eq(arg[0])]
                # Staging registers honour byte lanes: plain data, always latched.
                for name, target in (("MsiAddrLow", msi_addr[:32]),
                                     ("MsiAddrHigh", msi_addr[32:]),
                                     ("MsiData", msi_data)):
                    with m.If(at[name]):
                        for lane in range(4):
                            with m.If(bus.w_strb[lane]):
                                m.d.sync += target[8 * lane:8 * lane + 8].eq(
                                    wd[8 * lane:8 * lane + 8])

        # Queue table writes, flat: "a field write is taken" and "which lanes" are each a
        # short function of flip-flops (the tags are one-hot).
        # The 32-bit halves of the 64-bit fields, each two 16-bit lanes of the row after num.
        halves = {"desc": ("QueueDescLow", "QueueDescHigh"),
                  "driver": ("QueueDriverLow", "QueueDriverHigh"),
                  "device": ("QueueDeviceLow", "QueueDeviceHigh")}
        half_tags = [at[name] for names in halves.values() for name in names]
        num_ok = (wd != 0) & at_most(wd, queue_sel_num_max, 16)
        field_hit = (at.QueueNum & num_ok) | Cat(*half_tags).any()
        field_taken = Signal()
        m.d.comb += field_taken.eq(reg_we & full & queue_sel_ok & ~queue_sel_ready & field_hit)
        # The table write (and its "written" flag) lands one clock later, from flip-flops, so
        # the decision to write ends in a few registers rather than in the row's write
        # enables. A field write in the next cycle is to the same queue (QueueSel changes at
        # the edge after a QueueSel write), so it counts the pending write as having written
        # the row. A device reset in that cycle wins over the flag (the row then reads as
        # unwritten). Only the device-side queue port sees the change a clock later; no
        # register reads the table. For the same reason the pending write's queue is still
        # the selected one (``queue_sel``), as is its QueueNumMax.
        pending_mark = Signal()         # a field write is pending
        pending_whole = Signal()        # ... the first since reset: the whole row
        pending_lanes = Signal(13)      # ... of these lanes (one field)
        pending_data = Signal(32)
        m.d.sync += [
            pending_mark.eq(field_taken),
            pending_whole.eq(~(flags.sel_written | pending_mark)),
            pending_lanes.eq(Cat(at.QueueNum, *(tag for tag in half_tags for _ in range(2)))),
            pending_data.eq(wd),
        ]
        # The row as written: the field from the data, the rest at reset value (they are
        # written only by the first write since reset, which writes the whole row).
        field_value = Signal(row)
        m.d.comb += field_value.num.eq(Mux(pending_lanes[0], pending_data, queue_sel_num_max))
        for i, member in enumerate(halves):
            for half in range(2):
                lane = 1 + 4 * i + 2 * half
                m.d.comb += getattr(field_value, member)[32 * half:32 * half + 32].eq(
                    Mux(pending_lanes[lane], pending_data, 0))
        m.d.comb += [
            table_w.addr.eq(queue_sel),
            table_w.data.eq(field_value),
            table_w.en.eq(Mux(pending_mark, pending_lanes | Mux(pending_whole, 0x1FFF, 0), 0)),
            flags.mark_written.eq(pending_mark),
        ]

        # ---------------------------------------------------------------- notifications
        m.d.comb += [
            # (Not gated by w_ready: a waiting notification is offered, and valid must not
            # depend on ready, or notify_ready would reach notify_valid combinationally.)
            notify_queue.i.valid.eq(bus.w_valid & doorbells.valid),
            notify_queue.i.payload.queue.eq(doorbells.queue),
            notify_queue.i.payload.data.eq(wd),
            notify_queue.i.payload.has_data.eq(doorbells.data_negotiated),
            notify_queue.reset.eq(device_reset),
        ]
        wiring.connect(m, notify_queue.o, wiring.flipped(self.notify))
        # Partial writes and queues >= N: dropped, and counted for the integrator.
        with m.If(we & doorbells.hit & ~doorbells.valid):
            m.d.sync += self.notify_dropped.eq(self.notify_dropped + 1)

        # ---------------------------------------------------------------- events and interrupts
        m.d.comb += [
            interrupts.used_valid.eq(self.used_valid),
            interrupts.used_queue.eq(self.used_queue),
            interrupts.config_event.eq(self.config_changed | self.needs_reset),
            interrupts.ack.eq(ack_bits),
            interrupts.reset.eq(device_reset),
            self.msi_rejected.eq(interrupts.rejected),
            self.msi_enabled.eq(interrupts.enabled),
        ]
        wiring.connect(m, interrupts.message, wiring.flipped(self.msi_message))
        with m.If(self.config_changed):
            m.d.sync += config_generation.eq(config_generation + 1)
        m.d.sync += status.eq(status_next |
                              Mux(self.needs_reset, Status.DEVICE_NEEDS_RESET, 0))
        m.d.comb += [
            self.irq.eq(interrupts.irq),
            self.status.eq(status),
            self.driver_ok.eq(status[2]),
            self.features.eq(Mux(status[3], accepted, 0)),
            self.device_reset.eq(device_reset_pulse),
        ]
        m.d.sync += device_reset_pulse.eq(device_reset)
        m.d.comb += flags.reset.eq(device_reset)

        # ---------------------------------------------------------------- device queue port
        qp = self.queue
        q_sel_ok = Signal()
        q_ready, q_written = flags.q_ready, flags.q_written
        q_size = Signal(16)
        q_index = qp.sel[:qbits]
        m.d.comb += [table_r.addr.eq(q_index), flags.q_index.eq(q_index)]
        m.d.sync += [
            q_sel_ok.eq(below(qp.sel, n)),
            q_size.eq(size_of(q_index)),
        ]
        table_row = Signal(row)
        m.d.comb += table_row.eq(table_r.data)
        with m.If(q_sel_ok):
            m.d.comb += qp.ready.eq(q_ready)
            with m.If(q_written):
                m.d.comb += [
                    qp.num.eq(table_row.num), qp.desc.eq(table_row.desc),
                    qp.driver.eq(table_row.driver), qp.device.eq(table_row.device),
                ]
            with m.Else():
                m.d.comb += qp.num.eq(q_size)

        # ---------------------------------------------------------------- device reset
        # Last, so these assignments win over everything above in the reset cycle.
        with m.If(device_reset):
            m.d.sync += [
                status.eq(0), accepted.eq(0),
                dev_feat_sel_ok.eq(1), dev_feat_sel_hi.eq(0),
                drv_feat_sel_ok.eq(1), drv_feat_sel_hi.eq(0),
                queue_sel_num_max.eq(p.queue_sizes[0]),
                shm_index.eq(shm_index.init), shm_ok.eq(shm_ok.init),
                msi_addr.eq(0), msi_data.eq(0),
            ]
        return m
