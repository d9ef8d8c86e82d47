"""The Version-3 transport driver ``linux/virtio_mmio_v3.c`` (:mod:`virtio_mmio_sim.linux.kmod`).

* It cross-builds for exactly the kernel the guest boots: vermagic, license, the device-tree
  alias and the module parameters are read from the built module's ``.modinfo``.
* With QEMU's own virtio-mmio transport in slot 31 (the project's QEMU without ``cosim-socket``)
  and QEMU's ``virtio-rng-device`` behind it, the guest loads the driver instead of the stock
  ``virtio_mmio``; it binds the slot, ``virtio-rng`` binds through it and ``/dev/hwrng`` gives
  bytes over the wired interrupt: Version 2 (``force-legacy=false``) and legacy Version 1. The
  module is then removed and loaded again (probe/remove with no leftovers), and a bad
  ``dialect=`` is refused.

The Version-3 and MSI paths need the co-simulation machine (GICv3 ITS, ``msi-parent``): they are
exercised by ``tests/test_linux.py`` through :mod:`virtio_mmio_sim.linux.run`.

Marker ``linux``; ``VIRTIO_MMIO_LINUX=skip`` leaves the tests that need apt, the network or QEMU
out (reported as skips).
"""

import gzip
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from virtio_mmio_sim.linux import kmod, setup
from virtio_mmio_sim.linux.setup import SetupError

#: Wall-clock limit of one QEMU boot (about 3 s once everything is built).
BOOT_TIMEOUT_S = 120
MARK = "VMV3: "
DRIVER = "virtio-mmio-v3"
SLOT = "a003e00.virtio_mmio"


def _skip_if_opted_out():
    if os.environ.get("VIRTIO_MMIO_LINUX", "").strip().lower() == "skip":
        pytest.skip("VIRTIO_MMIO_LINUX=skip: the Linux-in-the-loop tests were left out on purpose")


# --------------------------------------------------------------------------------------------
# source style (no kernel needed)

def test_driver_source_style():
    """SPDX line first, tabs for indentation, at most 100 columns (but for message strings),
    no trailing blanks."""
    source = kmod.SOURCE_DIR / f"{kmod.MODULE_NAME}.c"
    lines = source.read_text().splitlines()
    assert lines[0] == "// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause"
    assert 'MODULE_LICENSE("Dual BSD/GPL");' in lines
    for number, line in enumerate(lines, start=1):
        where = f"{source.name}:{number}"
        # as checkpatch: a message string is never split, so its line may be longer
        assert len(line.expandtabs(8)) <= 100 or line.strip().startswith('"'), \
            f"{where} is longer than 100 columns"
        assert line == line.rstrip(), f"{where} has trailing whitespace"
        assert not re.match(r"^ +[^ *]", line), f"{where} is indented with spaces"
    for name in ("Kbuild", "Makefile", "README.md"):
        assert (kmod.SOURCE_DIR / name).is_file(), f"linux/{name} is missing"


def test_modinfo_rejects_a_non_elf_file(tmp_path):
    bogus = tmp_path / "x.ko"
    bogus.write_bytes(b"not an ELF file")
    with pytest.raises(SetupError, match="not a little-endian ELF64"):
        kmod.modinfo(bogus)


# --------------------------------------------------------------------------------------------
# the cross-built module

@pytest.fixture(scope="module")
def driver():
    _skip_if_opted_out()
    try:
        release, _version = kmod.guest_kernel(progress=lambda message: None)
        t0 = time.monotonic()
        ko = kmod.build_driver(progress=lambda message: None)
        seconds = time.monotonic() - t0
    except SetupError as error:
        pytest.fail(f"The driver could not be built: {error}", pytrace=False)
    return ko, release, seconds


@pytest.mark.linux
def test_driver_builds_for_the_guest_kernel(driver):
    ko, release, _ = driver
    info = kmod.modinfo(ko)
    assert info["vermagic"][0].split()[0] == release, info["vermagic"]
    assert "modversions" in info["vermagic"][0].split()
    assert info["name"] == [kmod.MODULE_NAME]
    assert info["license"] == ["Dual BSD/GPL"]
    assert "of:N*T*Cvirtio,mmio" in info["alias"]
    params = {p.split(":")[0] for p in info["parm"]}
    assert {"dialect", "msi"} <= params, info["parm"]
    assert "dialect:charp" in info["parmtype"] and "msi:bool" in info["parmtype"]
    # no dependency on the stock transport
    assert info["depends"] in ([""], [])


@pytest.mark.linux
def test_driver_build_is_cached(driver):
    ko, _, _ = driver
    t0 = time.monotonic()
    again = kmod.build_driver(progress=lambda message: None)
    assert again == ko
    assert time.monotonic() - t0 < 5


# --------------------------------------------------------------------------------------------
# boot with QEMU's own virtio-mmio transport and virtio-rng

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
M="VMV3: "
echo "${M}start"

insmod /lib/modules/virtio_mmio_v3.ko dialect=bogus 2>/dev/null \
    && echo "${M}bogus-dialect accepted" || echo "${M}bogus-dialect refused"

bound() {
    for d in /sys/bus/virtio/devices/*; do
        [ -e "$d/driver" ] && return 0
    done
    return 1
}

round() {
    insmod /lib/modules/virtio_mmio_v3.ko || echo "${M}insmod-failed virtio_mmio_v3"
    insmod /lib/modules/virtio-rng.ko || echo "${M}insmod-failed virtio-rng"
    i=0
    while [ "$i" -lt 100 ] && ! bound; do sleep 0.1; i=$((i + 1)); done
    for d in /sys/bus/platform/devices/*; do
        [ -e "$d/driver" ] || continue
        drv=$(basename "$(readlink "$d/driver")")
        [ "$drv" = virtio-mmio-v3 ] || continue
        echo "${M}platform $1 $(basename "$d") driver=$drv version=$(cat "$d/version")" \
             "dialect=$(cat "$d/dialect") irq_mode=$(cat "$d/irq_mode")" \
             "msi_vectors=$(cat "$d/msi_vectors") notify=$(cat "$d/notify_layout")"
    done
    for d in /sys/bus/virtio/devices/*; do
        [ -e "$d/driver" ] || continue
        echo "${M}virtio $1 $(basename "$d") id=$(cat "$d/device")" \
             "driver=$(basename "$(readlink "$d/driver")") features=$(cat "$d/features")"
    done
    if dd if=/dev/hwrng of=/tmp/hwrng bs=$2 count=1 2>/dev/null; then
        echo "${M}hwrng $1 $(wc -c < /tmp/hwrng) $(hexdump -v -n 16 -e '/1 "%02x"' /tmp/hwrng)"
    else
        echo "${M}hwrng-failed $1"
    fi
    grep virtio_mmio /proc/interrupts | while read -r line; do
        echo "${M}interrupts $1 $line"
    done
    rmmod virtio_rng && rmmod virtio_mmio_v3 && echo "${M}removed $1" \
        || echo "${M}rmmod-failed $1"
}

round 1 1024
round 2 256
dmesg | grep -E "virtio-mmio-v3|virtio_mmio_v3" | while read -r line; do
    echo "${M}dmesg $line"
done
echo "${M}done"
poweroff -f
"""


def _initrd(dest: Path, guest_dir: Path, ko: Path) -> Path:
    d, f, c = 0o040755, 0o100000, 0o020000
    entries = [(n, d, b"", (0, 0)) for n in
               ("bin", "dev", "lib", "lib/modules", "proc", "sbin", "sys", "tmp",
                "usr", "usr/bin", "usr/sbin")]
    entries += [
        ("dev/console", c | 0o600, b"", (5, 1)),
        ("init", f | 0o755, INIT.encode(), (0, 0)),
        ("bin/busybox", f | 0o755, (guest_dir / "busybox").read_bytes(), (0, 0)),
        ("lib/modules/virtio_mmio_v3.ko", f | 0o644, ko.read_bytes(), (0, 0)),
        ("lib/modules/virtio-rng.ko", f | 0o644, (guest_dir / "virtio-rng.ko").read_bytes(),
         (0, 0)),
    ]
    initrd = dest / "initrd.gz"
    initrd.write_bytes(gzip.compress(setup._cpio_newc(entries), compresslevel=1, mtime=0))
    return initrd


@pytest.fixture(scope="module")
def assets(driver):
    try:
        return setup.prepare(progress=lambda message: None)
    except SetupError as error:
        pytest.fail(f"The Linux co-simulation could not be set up: {error}", pytrace=False)


def _boot(assets, ko: Path, legacy: bool) -> tuple[list[str], str, float]:
    guest_dir = Path(assets.kernel).parent
    with tempfile.TemporaryDirectory(prefix="vmv3-boot-") as scratch:
        initrd = _initrd(Path(scratch), guest_dir, ko)
        cmd = [str(assets.qemu), "-M", "virt", "-cpu", "cortex-a57", "-m", "256M",
               "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
               "-nic", "none", "-kernel", str(assets.kernel), "-initrd", str(initrd),
               "-append", "console=ttyAMA0 panic=-1 rdinit=/init rng_core.default_quality=0",
               "-global", f"virtio-mmio.force-legacy={'true' if legacy else 'false'}",
               "-device", "virtio-rng-device"]
        t0 = time.monotonic()
        try:
            res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, timeout=BOOT_TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace")
            pytest.fail(f"QEMU did not power off within {BOOT_TIMEOUT_S} s; console:\n{out}")
        seconds = time.monotonic() - t0
    console = res.stdout.decode(errors="replace")
    assert res.returncode == 0, f"QEMU exited {res.returncode}; console:\n{console}"
    lines = [line.split(MARK, 1)[1].strip() for line in console.splitlines() if MARK in line]
    return lines, console, seconds


@pytest.mark.linux
@pytest.mark.parametrize("legacy", [False, True], ids=["version2", "version1-legacy"])
def test_driver_drives_qemus_virtio_rng(assets, driver, legacy):
    ko, _, _ = driver
    version = 1 if legacy else 2
    lines, console, _ = _boot(assets, ko, legacy)
    context = f"\nconsole:\n{console}"

    for bad in ("Oops", "BUG:", "WARNING:", "Unable to handle", "Call trace"):
        assert bad not in console, f"the kernel reported {bad!r}{context}"
    assert "bogus-dialect refused" in lines, context
    assert not [x for x in lines if x.split()[0].endswith("-failed")], context
    for round_, size in ((1, 1024), (2, 256)):
        platform = [x for x in lines if x.startswith(f"platform {round_} ")]
        assert platform == [f"platform {round_} {SLOT} driver={DRIVER} version={version} "
                            f"dialect=none irq_mode=wired msi_vectors=0 "
                            f"notify=queue_notify"], context
        virtio = [x for x in lines if x.startswith(f"virtio {round_} ")]
        assert len(virtio) == 1 and "id=0x0004" in virtio[0] and "driver=virtio_rng" in \
            virtio[0], context
        features = virtio[0].split("features=")[1]
        assert features[32] == ("0" if legacy else "1"), f"VERSION_1: {features}{context}"
        hwrng = [x for x in lines if x.startswith(f"hwrng {round_} ")]
        assert len(hwrng) == 1, context
        _, _, count, head = hwrng[0].split()
        assert int(count) == size and head != "00" * 16, context
        # the slot's wired interrupt took the notifications (SPI 47), no MSI
        irq = [x for x in lines if x.startswith(f"interrupts {round_} ")]
        assert len(irq) == 1 and SLOT in irq[0] and "MSI" not in irq[0], context
        assert int(irq[0].split()[3]) > 0, f"no interrupt counted: {irq[0]}{context}"
        assert f"removed {round_}" in lines, context
    dmesg = [x for x in lines if x.startswith("dmesg ")]
    assert sum(f"Version {version}, wired interrupt" in x for x in dmesg) == 2, context
    assert any("dialect=bogus" in x for x in dmesg), context
