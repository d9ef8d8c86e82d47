"""Construction parameters of the endpoint, validated once (docs/spec.md §2–4, §6, §10, §12).

Every component and the command line take an :class:`EndpointParams`; invalid values raise
``TypeError``/``ValueError`` naming the parameter and what is allowed.
"""

import re
from dataclasses import dataclass

from .regmap import CONFIG_BASE, REGISTER_SPAN, Feature, RegisterMap
from .transport.profiles import PROFILES


__all__ = ["EndpointParams", "MAX_QUEUES", "MAX_QUEUE_SIZE", "SharedMemoryRegion",
           "VERILOG_KEYWORDS"]


MAX_QUEUES = 2047
MAX_QUEUE_SIZE = 32768
BUSES = ("axil", "wishbone")
WISHBONE_MODES = ("classic", "pipelined")
_U64 = (1 << 64) - 1
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
#: Reserved words of SystemVerilog (IEEE 1800-2017, Annex B), which include every Verilog-2005
#: keyword. Yosys would write such a module name as an escaped identifier (``\module``).
VERILOG_KEYWORDS = frozenset("""
    accept_on alias always always_comb always_ff always_latch and assert assign assume automatic
    before begin bind bins binsof bit break buf bufif0 bufif1 byte case casex casez cell chandle
    checker class clocking cmos config const constraint context continue cover covergroup
    coverpoint cross deassign default defparam design disable dist do edge else end endcase
    endchecker endclass endclocking endconfig endfunction endgenerate endgroup endinterface
    endmodule endpackage endprimitive endprogram endproperty endspecify endsequence endtable
    endtask enum event eventually expect export extends extern final first_match for force
    foreach forever fork forkjoin function generate genvar global highz0 highz1 if iff ifnone
    ignore_bins illegal_bins implements implies import incdir include initial inout input
    inside instance int integer interconnect interface intersect join join_any join_none large
    let liblist library local localparam logic longint macromodule matches medium modport
    module nand negedge nettype new nexttime nmos nor noshowcancelled not notif0 notif1 null or
    output package packed parameter pmos posedge primitive priority program property protected
    pull0 pull1 pulldown pullup pulsestyle_ondetect pulsestyle_onevent pure rand randc randcase
    randsequence rcmos real realtime ref reg reject_on release repeat restrict return rnmos
    rpmos rtran rtranif0 rtranif1 s_always s_eventually s_nexttime s_until s_until_with
    scalared sequence shortint shortreal showcancelled signed small soft solve specify
    specparam static string strong strong0 strong1 struct super supply0 supply1 sync_accept_on
    sync_reject_on table tagged task this throughout time timeprecision timeunit tran tranif0
    tranif1 tri tri0 tri1 triand trior trireg type typedef union unique unique0 unsigned until
    until_with untyped use uwire var vectored virtual void wait wait_order wand weak weak0 weak1
    while wildcard wire with within wor xnor xor
""".split())


def _int(name, value, lo, hi, what=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be {what or f'an integer in {lo:#x}..{hi:#x}'}, "
                         f"not {value!r}")
    return value


@dataclass(frozen=True)
class SharedMemoryRegion:
    id: int
    base: int
    length: int


@dataclass(frozen=True, init=False)
class EndpointParams:
    """Validated parameters.

    ``profile``: ``"seed"`` (default) or ``"plain-v2"``. ``bus``: ``"axil"`` or ``"wishbone"``;
    ``wishbone_mode``: ``"classic"`` or ``"pipelined"``. ``queues``: N in 1..2047.
    ``queue_size``: QueueNumMax, one integer for every queue or a sequence of N (1..32768).
    ``device_id`` (non-zero) and ``vendor_id``: 32-bit. ``features``: the offered 64-bit set; must
    contain VIRTIO_F_VERSION_1 (bit 32). ``notify_base``/``notify_multiplier``: doorbell layout
    (profiles with doorbells only; default: right after config space, multiplier 4).
    ``notify_fifo_depth``: notifications held for the device logic before the bus waits.
    ``config_size``: bytes of device config space, a multiple of 4. ``shm``: shared-memory regions
    as ``(id, base, length)``. ``msi_window``: ``(base, size)`` or ``None``. ``name``: the Verilog
    module name, an identifier that is not a Verilog or SystemVerilog keyword. ``addr_width``:
    byte-address bits of the window; default the smallest that holds the registers, config space
    and doorbells. ``pipeline``: the bus subordinate puts a request stage in front of the
    register core (read latency 2, writes answered once applied; docs/spec.md §8 and
    :class:`~virtio_mmio.bus.AXI4LiteSubordinate`), a ``bool``, default ``False``.
    """

    profile: str
    bus: str
    wishbone_mode: str
    queues: int
    queue_sizes: tuple
    device_id: int
    vendor_id: int
    features: int
    notify_base: int
    notify_multiplier: int
    notify_fifo_depth: int
    config_size: int
    shm: tuple
    msi_window: object
    name: str
    addr_width: int
    pipeline: bool

    def __init__(self, *, profile="seed", bus="axil", wishbone_mode="classic", queues=1,
                 queue_size=256, device_id=4, vendor_id=0x1AF4,
                 features=1 << Feature.VERSION_1, notify_base=None, notify_multiplier=None,
                 notify_fifo_depth=1, config_size=256, shm=(), msi_window=None, name="virtio_mmio_endpoint",
                 addr_width=None, pipeline=False):
        s = lambda k, v: object.__setattr__(self, k, v)

        if not isinstance(profile, str):
            raise TypeError(f"profile must be a string, not {profile!r}")
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, not {profile!r}")
        s("profile", profile)
        if bus not in BUSES:
            raise ValueError(f"bus must be one of {', '.join(BUSES)}, not {bus!r}")
        s("bus", bus)
        if wishbone_mode not in WISHBONE_MODES:
            raise ValueError(f"wishbone_mode must be one of {', '.join(WISHBONE_MODES)}, "
                             f"not {wishbone_mode!r}")
        s("wishbone_mode", wishbone_mode)
        if not isinstance(pipeline, bool):
            raise TypeError(f"pipeline must be True or False, not {pipeline!r}")
        s("pipeline", pipeline)

        _int("queues", queues, 1, MAX_QUEUES, f"an integer in 1..{MAX_QUEUES}")
        s("queues", queues)

        if isinstance(queue_size, int) and not isinstance(queue_size, bool):
            sizes = (queue_size,) * queues
        elif isinstance(queue_size, (list, tuple)):
            if len(queue_size) != queues:
                raise ValueError(f"queue_size must be one integer or a sequence of {queues} "
                                 f"(one per queue), not {len(queue_size)} values")
            sizes = tuple(queue_size)
        else:
            raise TypeError(f"queue_size must be an integer or a sequence of integers, "
                            f"not {queue_size!r}")
        for size in sizes:
            _int("queue_size", size, 1, MAX_QUEUE_SIZE, f"an integer in 1..{MAX_QUEUE_SIZE}")
        s("queue_sizes", sizes)

        s("device_id", _int("device_id", device_id, 1, 0xFFFF_FFFF,
                            "a non-zero 32-bit integer (0 means 'no device' to drivers)"))
        s("vendor_id", _int("vendor_id", vendor_id, 0, 0xFFFF_FFFF, "a 32-bit integer"))
        _int("features", features, 0, _U64, "a 64-bit integer")
        if not features >> Feature.VERSION_1 & 1:
            raise ValueError(f"features must include VIRTIO_F_VERSION_1 (bit 32, "
                             f"{1 << Feature.VERSION_1:#x}): drivers reject a Version {PROFILES[profile].version} "
                             f"device without it, not {features:#x}")
        s("features", features)

        _int("config_size", config_size, 0, 0x8000, "a multiple of 4 in 0..0x8000")
        if config_size % 4:
            raise ValueError(f"config_size must be a multiple of 4 in 0..0x8000, "
                             f"not {config_size!r}")
        s("config_size", config_size)
        config_end = CONFIG_BASE + config_size

        doorbells = PROFILES[profile].doorbells
        if not doorbells and (notify_base is not None or notify_multiplier is not None):
            raise ValueError(f"notify_base and notify_multiplier need a profile with doorbells "
                             f"({', '.join(p for p in PROFILES if PROFILES[p].doorbells)}), "
                             f"not {profile!r}")
        fixed_multiplier = PROFILES[profile].block("notify").fixed_multiplier
        if fixed_multiplier is not None and notify_multiplier not in (None, fixed_multiplier):
            raise ValueError(f"notify_multiplier must be {fixed_multiplier} in profile "
                             f"{profile} (its doorbells are at notify_base + "
                             f"{fixed_multiplier}·q), not {notify_multiplier!r}")
        if notify_multiplier is None:
            notify_multiplier = (fixed_multiplier or 4) if doorbells else 0
        if notify_base is None:
            default_base = PROFILES[profile].block("notify").default_base
            notify_base = (default_base if default_base is not None else config_end) \
                if doorbells else 0
        _int("notify_multiplier", notify_multiplier, 0, 0xFFFC,
             "0 or a multiple of 4 in 4..0xfffc")
        if notify_multiplier % 4:
            raise ValueError(f"notify_multiplier must be 0 or a multiple of 4 in 4..0xfffc, "
                             f"not {notify_multiplier!r}")
        _int("notify_base", notify_base, 0, 0xFFFC, "a multiple of 4 in 0..0xfffc")
        if notify_base % 4:
            raise ValueError(f"notify_base must be a multiple of 4 in 0..0xfffc, "
                             f"not {notify_base!r}")
        if doorbells:
            if notify_base < config_end:
                raise ValueError(f"notify_base must not overlap the registers or the config "
                                 f"space (0x000..{config_end - 1:#x}): use {config_end:#x} or "
                                 f"above, not {notify_base:#x}")
        s("notify_base", notify_base)
        s("notify_multiplier", notify_multiplier)
        s("notify_fifo_depth", _int("notify_fifo_depth", notify_fifo_depth, 1, 4096,
                                    "an integer in 1..4096"))

        regions = []
        seen = set()
        for region in shm:
            if not (isinstance(region, (tuple, list, SharedMemoryRegion))):
                raise TypeError(f"shm must be a sequence of (id, base, length), not {region!r}")
            if not isinstance(region, SharedMemoryRegion):
                if len(region) != 3:
                    raise TypeError(f"shm must be a sequence of (id, base, length), "
                                    f"not {region!r}")
                region = SharedMemoryRegion(*region)
            _int("shm id", region.id, 0, 255, "an integer in 0..255")
            _int("shm base", region.base, 0, _U64, "a 64-bit integer")
            _int("shm length", region.length, 0, _U64 - 1,
                 "a 64-bit integer other than all ones (which means 'no region')")
            if region.id in seen:
                raise ValueError(f"shm id must be unique, not {region.id} twice")
            seen.add(region.id)
            regions.append(region)
        s("shm", tuple(regions))

        if msi_window is not None:
            if not isinstance(msi_window, (tuple, list)) or len(msi_window) != 2:
                raise TypeError(f"msi_window must be (base, size) or None, not {msi_window!r}")
            base, size = msi_window
            _int("msi_window base", base, 0, _U64, "a 64-bit integer")
            _int("msi_window size", size, 4, 1 << 64, "an integer of at least 4")
            if base + size > 1 << 64:
                raise ValueError(f"msi_window must lie inside the 64-bit address space, "
                                 f"not base {base:#x} size {size:#x}")
            msi_window = (base, size)
        s("msi_window", msi_window)

        if not isinstance(name, str):
            raise TypeError(f"name must be a string, not {name!r}")
        if not _IDENT.fullmatch(name) or name in VERILOG_KEYWORDS:
            raise ValueError(f"name must be a Verilog identifier ([A-Za-z_][A-Za-z0-9_$]*) "
                             f"that is not a Verilog or SystemVerilog keyword, not {name!r}")
        s("name", name)

        needed = self.window_end
        min_width = max(9, (needed - 1).bit_length())
        if addr_width is None:
            addr_width = min_width
        _int("addr_width", addr_width, min_width, 32,
             f"an integer in {min_width}..32 (the window must hold everything up to "
             f"{needed - 1:#x})")
        s("addr_width", addr_width)

    # Derived values ------------------------------------------------------------------------

    @property
    def regmap(self):
        return RegisterMap(self.profile)

    @property
    def version(self):
        return PROFILES[self.profile].version

    @property
    def has_doorbells(self):
        return PROFILES[self.profile].doorbells

    @property
    def config_end(self):
        return CONFIG_BASE + self.config_size

    @property
    def doorbell_end(self):
        """One past the last doorbell byte (``notify_base`` when there are none)."""
        if not self.has_doorbells:
            return 0
        if self.notify_multiplier == 0:
            return self.notify_base + 4
        return self.notify_base + (self.queues - 1) * self.notify_multiplier + 4

    @property
    def window_end(self):
        return max(REGISTER_SPAN, self.config_end, self.doorbell_end)

    @property
    def notify_layout(self):
        """The value QueueNotify reads in profiles that publish the doorbell layout."""
        if not PROFILES[self.profile].notify_layout_readable:
            return 0
        return (self.notify_multiplier << 16) | self.notify_base

    @property
    def advertised_vendor_id(self):
        """The value VendorID reads: ``vendor_id``, or in a profile that advertises its
        extensions there (dragonball) with those in bits 7:0."""
        return PROFILES[self.profile].block("identification").vendor_id(self)

    @property
    def uniform_queue_size(self):
        return len(set(self.queue_sizes)) == 1

    def replace(self, **changes):
        kwargs = dict(profile=self.profile, bus=self.bus, wishbone_mode=self.wishbone_mode,
                      queues=self.queues,
                      queue_size=(self.queue_sizes[0] if self.uniform_queue_size
                                  else self.queue_sizes),
                      device_id=self.device_id,
                      vendor_id=self.vendor_id, features=self.features,
                      notify_base=self.notify_base if self.has_doorbells else None,
                      notify_multiplier=self.notify_multiplier if self.has_doorbells else None,
                      notify_fifo_depth=self.notify_fifo_depth,
                      config_size=self.config_size, shm=self.shm, msi_window=self.msi_window,
                      name=self.name, pipeline=self.pipeline)
        kwargs.update(changes)
        return EndpointParams(**kwargs)

    @classmethod
    def from_dict(cls, d):
        """The inverse of :meth:`as_dict`."""
        doorbells = PROFILES[d["profile"]].doorbells
        window = d["msi_window"]
        return cls(
            profile=d["profile"], bus=d["bus"], wishbone_mode=d["wishbone_mode"],
            queues=d["queues"], queue_size=tuple(d["queue_sizes"]), device_id=d["device_id"],
            vendor_id=d["vendor_id"], features=d["features"],
            notify_base=d["notify_base"] if doorbells else None,
            notify_multiplier=d["notify_multiplier"] if doorbells else None,
            notify_fifo_depth=d["notify_fifo_depth"], config_size=d["config_size"],
            shm=tuple((r["id"], r["base"], r["length"]) for r in d["shm"]),
            msi_window=None if window is None else (window["base"], window["size"]),
            name=d["name"], addr_width=d["addr_width"], pipeline=d.get("pipeline", False))

    def as_dict(self):
        return {
            "profile": self.profile, "version": self.version, "bus": self.bus,
            "wishbone_mode": self.wishbone_mode, "queues": self.queues,
            "queue_sizes": list(self.queue_sizes), "device_id": self.device_id,
            "vendor_id": self.vendor_id, "features": self.features,
            "notify_base": self.notify_base, "notify_multiplier": self.notify_multiplier,
            "notify_fifo_depth": self.notify_fifo_depth,
            "config_size": self.config_size,
            "shm": [{"id": r.id, "base": r.base, "length": r.length} for r in self.shm],
            "msi_window": (None if self.msi_window is None else
                           {"base": self.msi_window[0], "size": self.msi_window[1]}),
            "name": self.name, "addr_width": self.addr_width, "pipeline": self.pipeline,
        }
