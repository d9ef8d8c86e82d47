"""Identification (SPEC §4 0x000–0x00C): MagicValue, Version, DeviceID, VendorID."""

from dataclasses import dataclass

from ..regmap import MAGIC_VALUE, Register
from .block import Block, BlockLogic


__all__ = ["Identification"]


class IdentificationLogic(BlockLogic):
    def read(self, t):
        p = self.params
        return {"MagicValue": MAGIC_VALUE, "Version": p.version, "DeviceID": p.device_id,
                "VendorID": p.vendor_id}


@dataclass(frozen=True)
class Identification(Block):
    """Constants: the magic value, the profile's version, the configured IDs."""

    name = "identification"
    Logic = IdentificationLogic

    def rows(self, profile):
        return (
            Register("MagicValue", 0x000, "R", "0x74726976 (\"virt\")", reset=MAGIC_VALUE),
            Register("Version", 0x004, "R", "Device version", reset=profile.version),
            Register("DeviceID", 0x008, "R", "Virtio subsystem device ID", reset="device_id"),
            Register("VendorID", 0x00C, "R", "Virtio subsystem vendor ID", reset="vendor_id"),
        )
