"""Identification (docs/spec.md §4 0x000–0x00C): MagicValue, Version, DeviceID, VendorID."""

from dataclasses import dataclass

from ..regmap import MAGIC_VALUE, Register
from .block import Block, BlockLogic


__all__ = ["Identification"]


class IdentificationLogic(BlockLogic):
    def read(self, t):
        p = self.params
        return {"MagicValue": MAGIC_VALUE, "Version": p.version, "DeviceID": p.device_id,
                "VendorID": self.block.vendor_id(p)}


@dataclass(frozen=True)
class Identification(Block):
    """Constants: the magic value, the profile's version, the configured IDs.

    ``vendor_extensions``: ``(bit, what)`` pairs; when given, VendorID's low byte advertises
    these extensions (those bits set) and its upper bytes are the configured vendor ID's
    (the Dragonball convention)."""

    vendor_extensions: tuple = ()

    name = "identification"
    Logic = IdentificationLogic

    def vendor_id(self, params):
        """The value VendorID reads."""
        if not self.vendor_extensions:
            return params.vendor_id
        low = sum(1 << bit for bit, _ in self.vendor_extensions)
        return params.vendor_id & ~0xFF | low

    def rows(self, profile):
        vendor_doc = "Virtio subsystem vendor ID"
        vendor_reset = "vendor_id"
        if self.vendor_extensions:
            vendor_doc += "; bits 7:0 advertise the extensions (" + ", ".join(
                f"bit {bit} {what}" for bit, what in self.vendor_extensions) + ")"
            vendor_reset = self.vendor_id
        return (
            Register("MagicValue", 0x000, "R", "0x74726976 (\"virt\")", reset=MAGIC_VALUE),
            Register("Version", 0x004, "R", "Device version", reset=profile.version),
            Register("DeviceID", 0x008, "R", "Virtio subsystem device ID", reset="device_id"),
            Register("VendorID", 0x00C, "R", vendor_doc, reset=vendor_reset),
        )
