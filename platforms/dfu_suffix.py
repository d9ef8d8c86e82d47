"""A stand-in for dfu-util's ``dfu-suffix -v VID -p PID -a FILE``: appends the 16-byte DFU 1.1
file suffix (bcdDevice, idProduct, idVendor, bcdDFU 0x0100, "UFD", length 16, CRC).

amaranth-boards' OrangeCrab build script ends with that command, and YoWASP has no dfu-util;
this keeps the build to Python tools. The CRC is CRC-32 over the file and the first 12 suffix
bytes, stored without the final inversion (as DFU 1.1 and dfu-util do).
"""

import argparse
import sys
import zlib


SIGNATURE = b"UFD"
SUFFIX_LENGTH = 16


def suffix(data, vendor, product, device=0xFFFF):
    head = (device.to_bytes(2, "little") + product.to_bytes(2, "little") +
            vendor.to_bytes(2, "little") + (0x0100).to_bytes(2, "little") + SIGNATURE +
            bytes([SUFFIX_LENGTH]))
    crc = zlib.crc32(data + head) ^ 0xFFFF_FFFF
    return head + crc.to_bytes(4, "little")


def has_suffix(data):
    return len(data) >= SUFFIX_LENGTH and data[-8:-5] == SIGNATURE


def main(argv=None):
    parser = argparse.ArgumentParser(prog="dfu-suffix")
    parser.add_argument("-v", "--vid", type=lambda text: int(text, 16), required=True)
    parser.add_argument("-p", "--pid", type=lambda text: int(text, 16), required=True)
    parser.add_argument("-d", "--did", type=lambda text: int(text, 16), default=0xFFFF)
    parser.add_argument("-a", "--add", metavar="FILE", required=True)
    args = parser.parse_args(argv)
    with open(args.add, "rb") as f:
        data = f.read()
    if has_suffix(data):
        print(f"dfu-suffix: {args.add} already has a DFU suffix", file=sys.stderr)
        return 1
    with open(args.add, "ab") as f:
        f.write(suffix(data, args.vid, args.pid, args.did))
    return 0


if __name__ == "__main__":
    sys.exit(main())
