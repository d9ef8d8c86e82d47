"""A Python model of the virtio-mmio driver, following the Linux driver's register sequences
(docs/spec.md Appendix A; drivers/virtio/virtio_mmio.c and the December 2019 Version 3 patch).

Written against :class:`~virtio_mmio_sim.access.RegisterAccess`, so the same model drives the
RTL in Amaranth's simulator and the generated Verilog under cocotb. Every offset comes from the
register map (:mod:`virtio_mmio.regmap`).
"""

from dataclasses import dataclass

from virtio_mmio.regmap import (CONFIG_BASE, MAGIC_VALUE, DragonballMsiOp, Feature, MsiOp,
                                RegisterMap, Status)


__all__ = ["DriverError", "ProbeInfo", "QueueSetup", "VirtioMmioDriver"]


class DriverError(Exception):
    """The device did something a Linux driver would refuse (the probe fails)."""


@dataclass
class ProbeInfo:
    magic: int
    version: int
    device_id: int
    vendor_id: int
    #: ``(notify_base, notify_multiplier)`` read from QueueNotify (Version 3, or Version 2 with
    #: the Dragonball doorbell bit in VendorID), else None.
    notify_layout: object = None

    #: VendorID bits 7:0 of a Dragonball device: the extensions it has.
    DRAGONBALL_MSI = 0x02
    DRAGONBALL_DOORBELLS = 0x04


@dataclass
class QueueSetup:
    index: int
    size: int
    desc: int
    driver: int
    device: int


class VirtioMmioDriver:
    """The driver side of one virtio-mmio device.

    Parameters
    ----------
    bus : RegisterAccess
    profile : str or RegisterMap
        The register map to drive (it must match the device's profile).
    accepted_versions : tuple of int
        Versions the driver probes: stock Linux takes (1, 2); the 2019 patch (1, 2, 3).
    use_doorbells : bool
        Notify through the doorbells of the layout read at probe (Version 3), as the 2019
        patch does; otherwise, or before a probe, through QueueNotify.
    """

    def __init__(self, bus, profile="seed", *, accepted_versions=(1, 2, 3), use_doorbells=True):
        self.bus = bus
        self.use_doorbells = use_doorbells
        self.regmap = profile if isinstance(profile, RegisterMap) else RegisterMap(profile)
        self.accepted_versions = tuple(accepted_versions)
        self.info = None
        self.features = 0
        self.queues = {}

    def _off(self, name):
        return self.regmap.offset(name)

    async def read(self, name, size=4):
        return await self.bus.read(self._off(name), size)

    async def write(self, name, value, size=4):
        await self.bus.write(self._off(name), value, size)

    # ---------------------------------------------------------------- probe and status

    async def probe(self):
        """Read Magic, Version, DeviceID, VendorID; a Version 3 driver then reads the notify
        layout from QueueNotify, before any reset. Raises :class:`DriverError` like
        ``virtio_mmio_probe`` does; DeviceID 0 means no device (nothing else is touched)."""
        magic = await self.read("MagicValue")
        if magic != MAGIC_VALUE:
            raise DriverError(f"Wrong magic value {magic:#010x}")
        version = await self.read("Version")
        if version not in self.accepted_versions:
            raise DriverError(f"Version {version} not supported")
        device_id = await self.read("DeviceID")
        if device_id == 0:
            raise DriverError("No device (DeviceID 0)")
        vendor_id = await self.read("VendorID")
        layout = None
        dragonball_doorbells = (self.regmap.profile.name == "dragonball" and
                                vendor_id & ProbeInfo.DRAGONBALL_DOORBELLS)
        if version >= 3 or dragonball_doorbells:
            word = await self.read("QueueNotify")
            layout = (word & 0xFFFF, word >> 16)
        self.info = ProbeInfo(magic, version, device_id, vendor_id, layout)
        return self.info

    async def reset(self):
        """``vm_reset``: write 0 to Status (no read-back)."""
        await self.write("Status", 0)
        self.features = 0
        self.queues = {}

    async def get_status(self):
        return await self.read("Status")

    async def add_status(self, bits):
        """``virtio_add_status``: read Status, write it back with more bits."""
        status = await self.get_status()
        await self.write("Status", status | bits)

    # ---------------------------------------------------------------- features

    async def device_features(self):
        """Word 1 first, then word 0, as ``vm_get_features`` does."""
        await self.write("DeviceFeaturesSel", 1)
        high = await self.read("DeviceFeatures")
        await self.write("DeviceFeaturesSel", 0)
        low = await self.read("DeviceFeatures")
        return (high << 32) | low

    async def write_driver_features(self, features):
        """``vm_finalize_features``: high word, then low word."""
        await self.write("DriverFeaturesSel", 1)
        await self.write("DriverFeatures", features >> 32)
        await self.write("DriverFeaturesSel", 0)
        await self.write("DriverFeatures", features & 0xFFFF_FFFF)

    async def negotiate(self, driver_features=None):
        """Read the offered set, keep what the driver knows (by default the transport bits
        Linux keeps), write it, set FEATURES_OK and check it stuck. Returns the accepted set."""
        offered = await self.device_features()
        if driver_features is None:
            driver_features = sum(1 << bit for bit in Feature.LINUX_TRANSPORT)
        accepted = offered & driver_features
        if self.info is not None and self.info.version >= 2 and \
                not accepted >> Feature.VERSION_1 & 1:
            raise DriverError("Device does not offer VIRTIO_F_VERSION_1")
        await self.write_driver_features(accepted)
        await self.add_status(Status.FEATURES_OK)
        if not await self.get_status() & Status.FEATURES_OK:
            raise DriverError("Device refused FEATURES_OK")
        self.features = accepted
        return accepted

    # ---------------------------------------------------------------- queues

    async def setup_queue(self, index, size=None, *, desc, driver, device):
        """``vm_setup_vq``. Returns the :class:`QueueSetup`, or None if the queue does not
        exist (QueueNumMax 0)."""
        await self.write("QueueSel", index)
        if await self.read("QueueReady"):
            raise DriverError(f"Queue {index} is already set up")
        num_max = await self.read("QueueNumMax")
        if num_max == 0:
            return None
        size = num_max if size is None else min(size, num_max)
        await self.write("QueueNum", size)
        for name, address in (("Desc", desc), ("Driver", driver), ("Device", device)):
            await self.write(f"Queue{name}Low", address & 0xFFFF_FFFF)
            await self.write(f"Queue{name}High", address >> 32)
        await self.write("QueueReady", 1)
        setup = QueueSetup(index, size, desc, driver, device)
        self.queues[index] = setup
        return setup

    async def teardown_queue(self, index):
        """``vm_del_vq``: deselect the queue's readiness and check it went."""
        await self.write("QueueSel", index)
        await self.write("QueueReady", 0)
        if await self.read("QueueReady"):
            raise DriverError(f"Queue {index} did not leave the ready state")
        self.queues.pop(index, None)

    def doorbell(self, index):
        """The byte offset the driver notifies queue ``index`` at."""
        layout = self.info.notify_layout if self.info is not None else None
        if not self.use_doorbells or layout is None:
            return self._off("QueueNotify")
        base, multiplier = layout
        return base + multiplier * index

    async def notify(self, index, data=None):
        """``vm_notify``/``vm_notify_with_data``: the word is the queue index or the
        notification-data word, written to the queue's doorbell (see :meth:`doorbell`)."""
        await self.bus.write(self.doorbell(index), index if data is None else data)

    # ---------------------------------------------------------------- whole sequences

    async def initialize(self, queues=(), driver_features=None, msi=None):
        """The Linux bring-up: probe, reset, ACKNOWLEDGE, DRIVER, features, queues,
        DRIVER_OK. ``queues`` is a sequence of dicts for :meth:`setup_queue`; ``msi``, if
        given, is ``(vectors, style)`` for :meth:`setup_msi` after the queues, before
        DRIVER_OK, where ``find_vqs`` sets up the vectors. On an error the driver adds FAILED,
        as ``virtio_dev_probe`` does, and re-raises."""
        await self.probe()
        await self.reset()
        await self.add_status(Status.ACKNOWLEDGE)
        await self.add_status(Status.DRIVER)
        try:
            await self.negotiate(driver_features)
            for queue in queues:
                await self.setup_queue(**queue)
            if msi is not None:
                vectors, style = msi
                await self.setup_msi(vectors, style=style)
            await self.add_status(Status.DRIVER_OK)
        except DriverError:
            await self.add_status(Status.FAILED)
            raise

    # ---------------------------------------------------------------- config space

    async def read_config(self, offset, size):
        """A 1-, 2- or 4-byte config field: one access of that width (``vm_get``)."""
        return await self.bus.read(CONFIG_BASE + offset, size)

    async def write_config(self, offset, value, size):
        await self.bus.write(CONFIG_BASE + offset, value, size)

    async def read_config_bytes(self, offset, length, *, max_tries=100):
        """An 8-byte field or byte array: read it between two ConfigGeneration reads and retry
        until they agree (``virtio_cread_bytes``). Returns (bytes, tries)."""
        for tries in range(1, max_tries + 1):
            before = await self.read("ConfigGeneration")
            out = bytearray()
            position = offset
            while position < offset + length:
                size = 4 if position % 4 == 0 and offset + length - position >= 4 else 1
                value = await self.bus.read(CONFIG_BASE + position, size)
                out += value.to_bytes(size, "little")
                position += size
            after = await self.read("ConfigGeneration")
            if before == after:
                return bytes(out), tries
        raise DriverError(f"ConfigGeneration kept changing over {max_tries} tries")

    # ---------------------------------------------------------------- shared memory

    async def shm_region(self, region_id):
        """``vm_get_shm_region``: (base, length), or None if the region does not exist."""
        await self.write("SHMSel", region_id)
        length = await self.read("SHMLenLow") | await self.read("SHMLenHigh") << 32
        if length == (1 << 64) - 1:
            return None
        base = await self.read("SHMBaseLow") | await self.read("SHMBaseHigh") << 32
        return base, length

    # ---------------------------------------------------------------- MSI (Version 3)

    MSI_ENABLE_BIT = 0x8000

    async def msi_status(self):
        """16-bit read of MsiStatus: ``[10:0]`` the number of queues, bit 15 per profile."""
        return await self.read("MsiStatus", 2)

    async def msi_update(self, vector, address, data):
        """Stage address and data, then UPDATE the vector (both drivers' sequence)."""
        await self.write("MsiAddrLow", address & 0xFFFF_FFFF)
        await self.write("MsiAddrHigh", address >> 32)
        await self.write("MsiData", data)
        await self.write("MsiCmd", MsiOp.UPDATE << 12 | vector, 2)

    async def msi_enable_seed(self, on=True):
        """The seed text's ENABLE command: W16 MsiCmd = 0x2001 (0x2000 disables)."""
        await self.write("MsiCmd", MsiOp.ENABLE << 12 | int(on), 2)

    async def msi_enable_k1(self, on=True):
        """The 2019 Linux patch: read MsiStatus, write it back with bit 15 set or cleared."""
        value = await self.msi_status()
        value = value | self.MSI_ENABLE_BIT if on else value & ~self.MSI_ENABLE_BIT
        await self.write("MsiStatus", value, 2)

    async def msi_enable_dragonball(self, on=True):
        """The Dragonball guest: W16 MsiStatus = 0x8000 enables, 0 disables (the device
        ignores it once DRIVER_OK is set)."""
        await self.write("MsiStatus", self.MSI_ENABLE_BIT if on else 0, 2)

    async def msi_mask(self, vector, masked=True):
        """Dragonball's per-vector mask: W16 MsiCmd = MASK/UNMASK << 12 | vector (what the
        guest's irq_chip mask/unmask callbacks write)."""
        op = DragonballMsiOp.MASK if masked else DragonballMsiOp.UNMASK
        await self.write("MsiCmd", op << 12 | vector, 2)

    #: The MSI sequences the model knows, by the profile they are written for.
    MSI_STYLES = ("seed", "linux-k1", "dragonball")

    async def setup_msi(self, vectors, *, style="seed"):
        """Program ``vectors`` ({vector: (address, data)}) and enable MSI.

        ``style="linux-k1"`` follows the 2019 patch: MSI only if MsiStatus bit 15 already
        reads 1, enable by writing bit 15; it returns False (use INTx) otherwise. ``"seed"``
        follows the proposal's text: UPDATE each vector, then ENABLE. ``"dragonball"``: MSI
        only if VendorID bit 1 and MsiStatus bit 15 say so; enable first (the device takes
        staged addresses only while enabled, and the enable only before DRIVER_OK), then
        UPDATE and UNMASK each vector. Returns True when MSI was enabled."""
        if style not in self.MSI_STYLES:
            raise ValueError(f"MSI style must be one of {', '.join(self.MSI_STYLES)}, "
                             f"not {style!r}")
        if "MsiStatus" not in self.regmap:
            return False
        if style in ("linux-k1", "dragonball") and \
                not await self.msi_status() & self.MSI_ENABLE_BIT:
            return False
        if style == "dragonball":
            if not await self.read("VendorID") & ProbeInfo.DRAGONBALL_MSI:
                return False
            await self.msi_enable_dragonball(True)
            for vector, (address, data) in sorted(vectors.items()):
                await self.msi_update(vector, address, data)
                await self.msi_mask(vector, False)
            return True
        for vector, (address, data) in sorted(vectors.items()):
            await self.msi_update(vector, address, data)
        await self.msi_enable(True, style=style)
        return True

    @property
    def msi_style(self):
        """The MSI sequence written for this driver's profile (``"seed"`` for a profile
        without one of its own)."""
        name = self.regmap.profile.name
        return name if name in self.MSI_STYLES else "seed"

    async def msi_enable(self, on=True, *, style=None):
        """Switch MSI on or off the way ``style`` (default :attr:`msi_style`) does."""
        style = style or self.msi_style
        if style == "linux-k1":
            await self.msi_enable_k1(on)
        elif style == "dragonball":
            await self.msi_enable_dragonball(on)
        else:
            await self.msi_enable_seed(on)

    async def teardown_msi(self, *, style="seed"):
        await self.msi_enable(False, style=style)

    # ---------------------------------------------------------------- interrupts

    async def interrupt(self):
        """``vm_interrupt``: read InterruptStatus, acknowledge exactly those bits. Returns the
        bits (bit 0: check every queue, bit 1: configuration changed)."""
        status = await self.read("InterruptStatus")
        await self.write("InterruptACK", status)
        return status
