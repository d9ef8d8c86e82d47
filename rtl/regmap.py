"""The virtio-mmio register map as data (docs/spec.md §3, §4): the one source of truth.

Every offset, width, access type, reset value and per-profile difference lives here. The RTL
decode (:mod:`virtio_mmio.transport.core`), the driver model (:mod:`virtio_mmio_sim.driver`), the generated
JSON/SystemRDL/C header/docs (:mod:`virtio_mmio.tools.artefacts`) and the tests all read it; nothing else
spells an offset as a literal.

A profile (:mod:`virtio_mmio.transport.profiles`) is a list of transport blocks, each owning its
rows (:class:`Register`); :class:`RegisterMap` joins the rows of a profile's blocks.
"""

from dataclasses import dataclass, field as dc_field


__all__ = [
    "MAGIC_VALUE", "CONFIG_BASE", "Field", "Register", "RegisterMap",
    "register_map", "Status", "Feature", "MsiOp", "DragonballMsiOp",
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
    """MsiCmd operations (docs/spec.md §4, 0x0C2 bits [15:12])."""
    UPDATE = 1
    ENABLE = 2
    #: What each operation does, by name: the field encoding in the register descriptions.
    DOCS = {
        "UPDATE": "Vector arg (0..N) takes the staged address and data and becomes valid; "
                  "arg > N is ignored",
        "ENABLE": "arg[0] = 1 enables MSI, 0 disables it",
    }


class DragonballMsiOp:
    """MsiCmd operations of the ``dragonball`` profile (docs/spec.md §3): per-vector masks instead
    of ENABLE (MSI is switched by writing MsiStatus bit 15)."""
    UPDATE = 1
    MASK = 2
    UNMASK = 3
    DOCS = {
        "UPDATE": MsiOp.DOCS["UPDATE"],
        "MASK": "Vector arg (0..N) is masked: its events stay pending, nothing is sent",
        "UNMASK": "Vector arg (0..N) is unmasked: what is pending is sent",
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
    register to take effect (docs/spec.md §4: partial writes to control registers are ignored).
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


class RegisterMap:
    """The registers of one profile, looked up by name: ``regmap["Status"].offset``."""

    def __init__(self, profile):
        if isinstance(profile, str):
            from .transport.profiles import PROFILES
            if profile not in PROFILES:
                raise ValueError(f"Profile must be one of {', '.join(PROFILES)}, not {profile!r}")
            profile = PROFILES[profile]
        self.profile = profile
        # Every block's rows, in offset order.
        self.registers = tuple(sorted((row for block in profile.blocks
                                       for row in block.rows(profile)),
                                      key=lambda row: row.offset))
        if len({row.offset for row in self.registers}) != len(self.registers):
            raise ValueError(f"Profile {profile.name}: two registers at one offset")
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


def __getattr__(name):
    # The profiles are lists of transport blocks (gateware): defined in
    # :mod:`virtio_mmio.transport.profiles`, importable from here as before.
    if name in ("Profile", "PROFILES"):
        from .transport import profiles
        return getattr(profiles, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
