"""Profiles (docs/spec.md §3): a profile is a version and a list of configured transport blocks.

The register map of a profile is the union of its blocks' rows
(:class:`~virtio_mmio.regmap.RegisterMap`); its gateware is the union of their logic
(:class:`~virtio_mmio.transport.core.RegisterCore`). Adding a profile is adding a row to
:data:`PROFILES`; a profile with new behaviour configures (or adds) a block.
"""

from dataclasses import dataclass

from ..regmap import DragonballMsiOp
from .config import ConfigSpace
from .features import Features
from .identification import Identification
from .interrupts import Interrupts, Msi
from .notify import Notify
from .queues import Queues
from .shm import SharedMemory
from .status import DeviceStatus


__all__ = ["Profile", "PROFILES", "transport_blocks"]


def transport_blocks(*, notify, interrupts, identification=Identification()):
    """The blocks of a profile, in the order they are elaborated and their tags packed:
    the fixed ones around the configurable identification, notify and interrupts blocks."""
    return (identification, Features(), DeviceStatus(), Queues(), notify, interrupts,
            SharedMemory(), ConfigSpace())


@dataclass(frozen=True)
class Profile:
    """One row of the profile table (docs/spec.md §3): a name, the Version register's value, and
    the configured blocks."""

    name: str
    version: int
    blocks: tuple
    doc: str

    def __post_init__(self):
        names = [block.name for block in self.blocks]
        if len(set(names)) != len(names):
            raise ValueError(f"Profile {self.name}: every block once, not {names}")

    def block(self, name):
        """The configured block called ``name``, or ``None``."""
        return next((block for block in self.blocks if block.name == name), None)

    def summary(self):
        """The profile as the JSON artefact describes it: name, version, doc and what its
        blocks are configured to do."""
        return {"name": self.name, "version": self.version,
                "msi_registers": self.msi_registers,
                "notify_layout_readable": self.notify_layout_readable,
                "doorbells": self.doorbells, "doc": self.doc,
                "msi_status_capable": self.msi_status_capable,
                "msi_status_writable": self.msi_status_writable}

    # What the rest of the package asks of a profile, read from its blocks.

    @property
    def msi(self):
        """The :class:`Msi` dialect, or ``None`` without MSI."""
        interrupts = self.block("interrupts")
        return interrupts.msi if interrupts is not None else None

    @property
    def msi_registers(self):
        """MSI registers 0x0C0–0x0CC decode (otherwise they read 0 and ignore writes)."""
        return self.msi is not None

    @property
    def msi_status_capable(self):
        return self.msi is not None and self.msi.status_capable

    @property
    def msi_status_writable(self):
        return self.msi is not None and self.msi.status_writable

    @property
    def notify_layout_readable(self):
        """QueueNotify reads ``{notify_multiplier, notify_base}`` (otherwise 0)."""
        return self.block("notify").layout_readable

    @property
    def doorbells(self):
        """Doorbells at ``notify_base + q * notify_multiplier`` exist."""
        return self.block("notify").doorbells


PROFILES = {
    "seed": Profile(
        name="seed", version=3,
        blocks=transport_blocks(notify=Notify(doorbells=True, layout_readable=True),
                                interrupts=Interrupts(msi=Msi())),
        doc="The December 2019 Version 3 proposal as written: MSI, notify addresses."),
    "linux-k1": Profile(
        name="linux-k1", version=3,
        blocks=transport_blocks(
            notify=Notify(doorbells=True, layout_readable=True),
            interrupts=Interrupts(msi=Msi(status_capable=True, status_writable=True))),
        doc="As seed, but MsiStatus bit 15 reads 1 (MSI capable), as the Linux driver patch "
            "that accompanied the proposal expects; it enables MSI by writing bit 15."),
    "plain-v2": Profile(
        name="plain-v2", version=2,
        blocks=transport_blocks(notify=Notify(doorbells=False, layout_readable=False),
                                interrupts=Interrupts(msi=None)),
        doc="Plain virtio 1.x Version 2: works with stock Linux and every virtio-mmio driver."),
    "dragonball": Profile(
        name="dragonball", version=2,
        blocks=transport_blocks(
            identification=Identification(vendor_extensions=((1, "MSI"), (2, "doorbells"))),
            notify=Notify(doorbells=True, layout_readable=True, default_base=0x1000,
                          fixed_multiplier=4),
            interrupts=Interrupts(msi=Msi(
                status_capable=True, status_writable=True, status_until_driver_ok=True,
                ops=DragonballMsiOp, refuses_other_ops=True, keeps_interrupt_status=True,
                stages_while_enabled=True))),
        doc="The Dragonball VMM's extension of Version 2: VendorID bits 7:0 advertise MSI and "
            "doorbells, MSI switched by MsiStatus bit 15 until DRIVER_OK, per-vector masks, "
            "InterruptStatus kept while MSI is on, doorbells at 0x1000 + 4q."),
}
