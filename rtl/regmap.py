"""The virtio-mmio register map as data (SPEC §3, §4): the one source of truth.

Every offset, width, access type, reset value and per-profile difference lives here. The RTL
decode (:mod:`virtio_mmio.core`), the driver model (:mod:`virtio_mmio_sim.driver`), the generated
JSON/SystemRDL/C header/docs (:mod:`virtio_mmio.artefacts`) and the tests all read it; nothing else
spells an offset as a literal.

A profile is a row of :data:`PROFILES`; :func:`register_map` turns a profile into the list of
registers that profile decodes.
"""

from dataclasses import dataclass, field as dc_field


__all__ = [
    "MAGIC_VALUE", "CONFIG_BASE", "Profile", "PROFILES", "Field", "Register", "RegisterMap",
    "register_map", "Status", "Feature", "MsiOp",
]


#: "virt" in little-endian ASCII.
MAGIC_VALUE = 0x74726976
#: Device-specific configuration space starts here.
CONFIG_BASE = 0x100
#: Offsets below this are transport registers; config space and doorbells lie above.
REGISTER_SPAN = 0x100


class Status:
    """Device status bits (virtio 1.x §2.1)."""
    ACKNOWLEDGE        = 0x01
    DRIVER             = 0x02
    DRIVER_OK          = 0x04
    FEATURES_OK        = 0x08
    DEVICE_NEEDS_RESET = 0x40
    FAILED             = 0x80


class Feature:
    """Transport feature bits (virtio 1.x §6) the endpoint itself cares about."""
    RING_INDIRECT_DESC = 28
    RING_EVENT_IDX     = 29
    VERSION_1          = 32
    ACCESS_PLATFORM    = 33
    RING_PACKED        = 34
    IN_ORDER           = 35
    ORDER_PLATFORM     = 36
    SR_IOV             = 37
    NOTIFICATION_DATA  = 38
    #: The transport bits stock Linux keeps (Appendix A.3).
    LINUX_TRANSPORT = (28, 29, 32, 33, 34, 35, 36, 38)


class MsiOp:
    """MsiCmd operations (SPEC §4, 0x0C2 bits [15:12])."""
    UPDATE = 1
    ENABLE = 2
    #: What each operation does, by name: the field encoding in the register descriptions.
    DOCS = {
        "UPDATE": "Vector arg (0..N) takes the staged address and data and becomes valid; "
                  "arg > N is ignored",
        "ENABLE": "arg[0] = 1 enables MSI, 0 disables it",
    }


@dataclass(frozen=True)
class Profile:
    """One row of the profile table (SPEC §3)."""
    name: str
    version: int
    #: MSI registers 0x0C0–0x0CC decode (otherwise they read 0 and ignore writes).
    msi_registers: bool
    #: QueueNotify reads ``{notify_multiplier, notify_base}`` (otherwise 0).
    notify_layout_readable: bool
    #: Doorbells at ``notify_base + q * notify_multiplier`` exist.
    doorbells: bool
    doc: str
    #: MsiStatus bit 15 reads 1 whenever MSI is implemented (the 2019 Linux patch's reading),
    #: instead of "MSI currently enabled".
    msi_status_capable: bool = False
    #: A write to MsiStatus (both lanes) enables (bit 15 = 1) or disables MSI; otherwise
    #: MsiStatus is read-only and only MsiCmd ENABLE switches MSI.
    msi_status_writable: bool = False


PROFILES = {
    "seed": Profile(
        name="seed", version=3, msi_registers=True, notify_layout_readable=True, doorbells=True,
        doc="The December 2019 Version 3 proposal as written: MSI, notify addresses."),
    "linux-k1": Profile(
        name="linux-k1", version=3, msi_registers=True, notify_layout_readable=True,
        doorbells=True, msi_status_capable=True, msi_status_writable=True,
        doc="As seed, but MsiStatus bit 15 reads 1 (MSI capable), as the Linux driver patch "
            "that accompanied the proposal expects; it enables MSI by writing bit 15."),
    "plain-v2": Profile(
        name="plain-v2", version=2, msi_registers=False, notify_layout_readable=False,
        doorbells=False,
        doc="Plain virtio 1.x Version 2: works with stock Linux and every virtio-mmio driver."),
}


@dataclass(frozen=True)
class Field:
    """Bits ``[lsb + width - 1 : lsb]`` of a register.

    ``access`` is the driver's access to these bits when it is narrower than the register's
    (``None``: the register's). ``values`` names the field's encodings: ``(name, value, doc)``
    triples.
    """
    name: str
    lsb: int
    width: int
    doc: str = ""
    access: str = None
    values: tuple = ()

    @property
    def msb(self):
        return self.lsb + self.width - 1


@dataclass(frozen=True)
class Register:
    """One register.

    ``access`` is what the driver may do: ``"R"`` (writes ignored), ``"W"`` (reads return 0),
    ``"RW"``. ``width`` is 32 or 16 bits; a 16-bit register occupies the byte lanes
    ``offset % 4 .. offset % 4 + 1`` of its word. ``reset`` is an integer, or the name of the
    construction parameter the value comes from, or a function of the endpoint's parameters
    (:class:`~virtio_mmio.params.EndpointParams`) that computes it as it reads after a reset,
    every selector 0 (a feature word, a shared-memory word, MsiStatus): the one place the
    artefacts and the proofs take it from. ``full_write`` says that a write must enable every lane of the
    register to take effect (SPEC §4: partial writes to control registers are ignored).
    """
    name: str
    offset: int
    access: str
    doc: str
    reset: object = 0
    width: int = 32
    full_write: bool = True
    fields: tuple = dc_field(default=())

    def __post_init__(self):
        for fld in self.fields:
            if fld.access is not None and not set(fld.access) <= set(self.access):
                raise ValueError(f"Field {self.name}.{fld.name} must not allow more than its "
                                 f"register's access {self.access!r}, not {fld.access!r}")

    def field_access(self, fld):
        """The driver's access to field ``fld`` of this register."""
        return fld.access or self.access

    @property
    def word(self):
        return self.offset // 4

    @property
    def lanes(self):
        """The byte-lane mask (``wstrb``/``sel``) this register occupies in its word."""
        first = self.offset % 4
        return ((1 << (self.width // 8)) - 1) << first

    @property
    def readable(self):
        return "R" in self.access

    @property
    def writable(self):
        return "W" in self.access


_M32 = 0xFFFF_FFFF


def _device_features_reset(params):
    # DeviceFeaturesSel resets to 0: word 0 of the offered features.
    return params.features & _M32


def _shm_word_reset(attr, high):
    def reset(params):
        # SHMSel resets to 0: region 0, or all ones (SPEC §4) in both halves when there is none.
        region = next((r for r in params.shm if r.id == 0), None)
        word = _M32 if region is None else getattr(region, attr) >> (32 if high else 0)
        return word & _M32
    return reset


_SHM_RESETS = {(attr, high): _shm_word_reset(attr, high)
               for attr in ("length", "base") for high in (False, True)}


def _msi_status_reset(params):
    # The queue count, and bit 15: "capable" reads 1 (linux-k1); "enabled" is 0, as MSI is off
    # after reset.
    reg = params.regmap["MsiStatus"]
    fields = {f.name: f for f in reg.fields}
    capable = params.regmap.profile.msi_status_capable
    return params.queues << fields["queues"].lsb | int(capable) << fields["enabled"].lsb


def _transport_registers(profile):
    layout = "{notify_multiplier[31:16], notify_base[15:0]}"
    regs = [
        Register("MagicValue", 0x000, "R", "0x74726976 (\"virt\")", reset=MAGIC_VALUE),
        Register("Version", 0x004, "R", "Device version", reset=profile.version),
        Register("DeviceID", 0x008, "R", "Virtio subsystem device ID", reset="device_id"),
        Register("VendorID", 0x00C, "R", "Virtio subsystem vendor ID", reset="vendor_id"),
        Register("DeviceFeatures", 0x010, "R",
                 "Word DeviceFeaturesSel of the offered 64-bit feature set; selector >= 2 reads 0",
                 reset=_device_features_reset),
        Register("DeviceFeaturesSel", 0x014, "W", "Selects the word of DeviceFeatures"),
        Register("DriverFeatures", 0x020, "W",
                 "Word DriverFeaturesSel of the accepted feature set; selector >= 2 ignored; "
                 "ignored once FEATURES_OK is set"),
        Register("DriverFeaturesSel", 0x024, "W", "Selects the word of DriverFeatures"),
        Register("QueueSel", 0x030, "W", "Selects the queue for the Queue* registers"),
        Register("QueueNumMax", 0x034, "R",
                 "Maximum size of the selected queue; 0 when QueueSel >= N", reset="queue_size"),
        Register("QueueNum", 0x038, "W",
                 "Size of the selected queue; ignored if 0, > QueueNumMax, QueueSel >= N or "
                 "the queue is ready", reset="queue_size"),
        Register("QueueReady", 0x044, "RW",
                 "Bit 0: the selected queue is ready; 0 when QueueSel >= N",
                 fields=(Field("ready", 0, 1),)),
        Register("QueueNotify", 0x050, "RW" if profile.notify_layout_readable else "W",
                 "Write: notification (queue index or notification-data word). Read: " +
                 (layout if profile.notify_layout_readable else "0"),
                 reset="notify_layout" if profile.notify_layout_readable else 0,
                 fields=((Field("notify_base", 0, 16), Field("notify_multiplier", 16, 16))
                         if profile.notify_layout_readable else ())),
        Register("InterruptStatus", 0x060, "R",
                 "Bit 0 used buffer, bit 1 configuration change; 0 while MSI is enabled",
                 fields=(Field("used_buffer", 0, 1), Field("config_change", 1, 1))),
        Register("InterruptACK", 0x064, "W", "Clears the written InterruptStatus bits",
                 fields=(Field("used_buffer", 0, 1), Field("config_change", 1, 1))),
        Register("Status", 0x070, "RW",
                 "Device status; writing 0 resets the device; writes that clear a bit are "
                 "ignored",
                 fields=(Field("ACKNOWLEDGE", 0, 1), Field("DRIVER", 1, 1),
                         Field("DRIVER_OK", 2, 1), Field("FEATURES_OK", 3, 1),
                         Field("DEVICE_NEEDS_RESET", 6, 1), Field("FAILED", 7, 1))),
    ]
    for base, name in ((0x080, "Desc"), (0x090, "Driver"), (0x0A0, "Device")):
        for half, suffix in ((0, "Low"), (4, "High")):
            regs.append(Register(
                f"Queue{name}{suffix}", base + half, "W",
                f"Bits [{32 * half // 4 + 31}:{32 * half // 4}] of the selected queue's "
                f"{name.lower()} area address; ignored while ready or QueueSel >= N"))
    regs += [
        Register("SHMSel", 0x0AC, "W", "Selects the shared-memory region"),
        Register("SHMLenLow", 0x0B0, "R", "Length of region SHMSel [31:0]; all ones if none",
                 reset=_SHM_RESETS["length", False]),
        Register("SHMLenHigh", 0x0B4, "R", "Length of region SHMSel [63:32]; all ones if none",
                 reset=_SHM_RESETS["length", True]),
        Register("SHMBaseLow", 0x0B8, "R", "Base of region SHMSel [31:0]; all ones if none",
                 reset=_SHM_RESETS["base", False]),
        Register("SHMBaseHigh", 0x0BC, "R", "Base of region SHMSel [63:32]; all ones if none",
                 reset=_SHM_RESETS["base", True]),
    ]
    if profile.msi_registers:
        if profile.msi_status_capable:
            enabled_doc = "Reads 1: MSI is implemented"
        else:
            enabled_doc = "1: MSI is enabled"
        if profile.msi_status_writable:
            enabled_doc += "; a write with both lanes enables (1) or disables (0) MSI"
            enabled_access = "RW"
        else:
            enabled_doc += "; read-only (MsiCmd ENABLE switches MSI)"
            enabled_access = "R"
        ops = tuple((name, getattr(MsiOp, name), doc) for name, doc in MsiOp.DOCS.items())
        regs += [
            # RW in every profile: the write decode names the 0x0C0 word (MsiStatus and
            # MsiCmd) after its first writable register. The fields say what a write to
            # MsiStatus itself does in this profile.
            Register("MsiStatus", 0x0C0, "RW",
                     "[10:0] number of queues N (vectors 0..N); [15] " + enabled_doc,
                     reset=_msi_status_reset, width=16,
                     fields=(Field("queues", 0, 11, "Number of queues N (vectors 0..N)",
                                   access="R"),
                             Field("enabled", 15, 1, enabled_doc, access=enabled_access))),
            Register("MsiCmd", 0x0C2, "W",
                     "[15:12] op (" + ", ".join(f"{value} {name}" for name, value, _ in ops) +
                     "), [11:0] arg", width=16,
                     fields=(Field("arg", 0, 12), Field("op", 12, 4, values=ops))),
            Register("MsiAddrLow", 0x0C4, "W", "Staged MSI address [31:0]", full_write=False),
            Register("MsiAddrHigh", 0x0C8, "W", "Staged MSI address [63:32]", full_write=False),
            Register("MsiData", 0x0CC, "W", "Staged MSI data", full_write=False),
        ]
    regs.append(Register(
        "ConfigGeneration", 0x0FC, "R",
        "Increments on every device-side configuration change; kept across device reset"))
    return regs


class RegisterMap:
    """The registers of one profile, looked up by name: ``regmap["Status"].offset``."""

    def __init__(self, profile):
        if isinstance(profile, str):
            if profile not in PROFILES:
                raise ValueError(f"Profile must be one of {', '.join(PROFILES)}, not {profile!r}")
            profile = PROFILES[profile]
        self.profile = profile
        self.registers = tuple(_transport_registers(profile))
        self._by_name = {reg.name: reg for reg in self.registers}
        self._by_word = {}
        for reg in self.registers:
            self._by_word.setdefault(reg.word, []).append(reg)

    def __getitem__(self, name):
        return self._by_name[name]

    def __contains__(self, name):
        return name in self._by_name

    def __iter__(self):
        return iter(self.registers)

    def at_word(self, word):
        """The registers in 32-bit word ``word`` (two for the 16-bit MSI pair)."""
        return tuple(self._by_word.get(word, ()))

    def offset(self, name):
        return self._by_name[name].offset

    def reserved_words(self):
        """Word indices below :data:`CONFIG_BASE` that decode to no register."""
        return [w for w in range(REGISTER_SPAN // 4) if w not in self._by_word]


def register_map(profile="seed"):
    return RegisterMap(profile)
