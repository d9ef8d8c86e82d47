"""The abstract register-access interface the driver model is written against.

A backend implements two word operations (:meth:`RegisterAccess.read_word`,
:meth:`RegisterAccess.write_word`); 1-, 2- and 4-byte accesses are built on them with byte lanes,
as a CPU's narrow load/store appears on a 32-bit bus.
"""

import abc


__all__ = ["RegisterAccess", "AccessLog"]


class AccessLog(list):
    """Every access made through a :class:`RegisterAccess`: ``(op, offset, size, value)`` with
    ``op`` ``"R"`` or ``"W"``."""

    def sequence(self):
        return [(op, offset, size) for op, offset, size, _ in self]


class RegisterAccess(abc.ABC):
    def __init__(self):
        self.log = AccessLog()

    @abc.abstractmethod
    async def read_word(self, offset):
        """Read the 32-bit word at byte ``offset`` (a multiple of 4)."""

    @abc.abstractmethod
    async def write_word(self, offset, value, strobe=0xF):
        """Write the byte lanes ``strobe`` of ``value`` into the word at byte ``offset``."""

    @staticmethod
    def _check(offset, size):
        if size not in (1, 2, 4):
            raise ValueError(f"Access size must be 1, 2 or 4 bytes, not {size!r}")
        if offset % size:
            raise ValueError(f"Offset {offset:#x} is not aligned to the access size {size}")

    async def read(self, offset, size=4):
        self._check(offset, size)
        shift = 8 * (offset % 4)
        value = (await self.read_word(offset & ~3) >> shift) & ((1 << 8 * size) - 1)
        self.log.append(("R", offset, size, value))
        return value

    async def write(self, offset, value, size=4):
        self._check(offset, size)
        if not 0 <= value < 1 << 8 * size:
            raise ValueError(f"Value {value:#x} does not fit in {size} bytes")
        shift = 8 * (offset % 4)
        strobe = ((1 << size) - 1) << (offset % 4)
        self.log.append(("W", offset, size, value))
        await self.write_word(offset & ~3, value << shift, strobe)
