"""Assets for running stock Linux against the RTL: a QEMU with the co-simulation device, a Debian
arm64 kernel and a tiny busybox initramfs.

``prepare()`` fetches and builds everything once into :func:`cache_root` and returns the paths;
``qemu_command()`` builds the command line that boots the guest with the virtio-mmio slot 31
(0x0a003e00, GIC SPI 47) forwarded to a simulator listening on a UNIX socket.

* QEMU: Debian bookworm's ``qemu`` source package (upstream 7.2 orig tarball), patched by exact text
  substitution so that the ``virt`` machine takes ``cosim-socket=PATH`` and then places the
  ``virtio-mmio-cosim`` device (``qemu/virtio_mmio_cosim.c``) in the top slot instead of a
  virtio-mmio transport, with its marker page at :data:`MARK_BASE`; with ``gic-version=3``
  (the GICv3 ITS) the slot's device-tree node gets ``msi-parent = <&its DEVID>``, DEVID the
  machine option ``cosim-devid`` (default :data:`DEFAULT_DEVID`), which the device's MSI
  writes carry as their requester ID. Only ``qemu-system-aarch64`` is built.
* Guest: Debian bookworm's ``linux-image-6.1.0-NN-arm64`` and ``busybox-static`` (arm64), fetched
  with a private apt configuration (the system's apt state is left alone); the initramfs holds
  busybox, ``virtio_mmio.ko``, ``virtio-rng.ko`` and ``guest/init``, whose result lines start with
  ``VMMIO-LOOP: ``; ``prepare(driver=True)`` adds the Version-3 transport driver
  ``virtio_mmio_v3.ko`` (cross-built by :mod:`.kmod`) in an initramfs of its own.
  ``prepare(console=True)``: an initramfs for the virtio-console scenario instead, whose /init is
  ``guest/console``, with ``virtio_console.ko`` (``CONFIG_VIRTIO_CONSOLE=m``, no dependencies)
  and the pattern the guest writes (``/lib/console-tx.bin``, :func:`.console.tx_pattern`); its
  files are named ``initrd-vcons-{stock,v3}-<key>.gz``, so the rng initramfs files and their
  keys stay as they are.

Cache layout (under :func:`cache_root`)::

    .lock                        fcntl lock held by prepare()
    apt/qemu-src/, apt/arm64/    private apt configurations (sources.list, lists, cache, status)
    qemu/source.json             resolved source version and tarball name
    qemu/downloads/              the Debian source package files
    qemu/<tree key>/src/         unpacked, patched QEMU tree; build/ inside it
    qemu/<tree key>/build.log    configure + ninja output of the last build
    qemu/<tree key>/built.json   the full cache key of the binary in src/build
    guest/release.json           resolved kernel package and release
    guest/debs/                  the downloaded .deb files
    guest/<release>/             vmlinuz, virtio_mmio.ko, virtio-rng.ko, busybox,
                                 initrd-stock-<key>.gz, initrd-v3-<key>.gz (with the driver),
                                 virtio_console.ko (extracted when first asked for),
                                 initrd-vcons-stock-<key>.gz, initrd-vcons-v3-<key>.gz
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

__all__ = ["SetupError", "LinuxAssets", "cache_root", "prepare", "qemu_command"]

OPT_OUT = "set VIRTIO_MMIO_LINUX=skip to leave the Linux test out"

_HERE = Path(__file__).resolve().parent
DEVICE_SOURCE = _HERE / "qemu" / "virtio_mmio_cosim.c"
INIT_SCRIPT = _HERE / "guest" / "init"
#: /init of the virtio-console initramfs.
CONSOLE_INIT_SCRIPT = _HERE / "guest" / "console"
#: Where the console initramfs holds the bytes the guest writes to port 1.
CONSOLE_TX_FILE = "lib/console-tx.bin"

# Bump when the source edits below change (part of the QEMU cache key).
PATCH_VERSION = "3"

#: Guest-physical base of the co-simulation device's marker page (a MARK per write; outside
#: every region of the virt machine's map and not in the device tree, so /dev/mem reaches it).
MARK_BASE = 0x0A01_0000
#: The requester ID the co-simulation device's MSI writes carry, which is the DeviceID in the
#: slot's ``msi-parent = <&its DEVID>`` (machine option ``cosim-devid``).
DEFAULT_DEVID = 0x31
#: The Version-3 driver's file name in the initramfs (/lib/modules).
DRIVER_MODULE = "virtio_mmio_v3.ko"
# Bump when the initramfs layout changes (part of the initramfs cache key).
INITRD_VERSION = "1-usr"

HOST_PACKAGES = ("meson", "ninja-build", "gcc", "pkg-config", "python3",
                 "libglib2.0-dev", "libpixman-1-dev", "libfdt-dev")

CONFIGURE_OPTIONS = (
    "--target-list=aarch64-softmmu", "--disable-docs", "--disable-tools",
    "--disable-guest-agent", "--disable-werror", "--without-default-features",
    "--enable-fdt=system", "--enable-tcg", "--disable-debug-info", "--disable-install-blobs",
    "--meson=/usr/bin/meson",
)

DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SUITE = "bookworm"

Progress = Callable[[str], None]


class SetupError(Exception):
    """Something the Linux co-simulation needs is missing or could not be built."""

    def __init__(self, message: str):
        super().__init__(f"{message}\n({OPT_OUT})")


@dataclass(frozen=True)
class LinuxAssets:
    qemu: Path
    kernel: Path
    initrd: Path
    kernel_release: str     # e.g. "6.1.0-56-arm64"
    driver: Optional[Path] = None   # virtio_mmio_v3.ko in the initramfs, if asked for


def cache_root() -> Path:
    """$VIRTIO_MMIO_LINUX_CACHE, or ~/.cache/virtio-mmio/linux."""
    env = os.environ.get("VIRTIO_MMIO_LINUX_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    return Path.home() / ".cache" / "virtio-mmio" / "linux"


# --------------------------------------------------------------------------------------------
# small helpers

def _sha(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, str):
            part = part.encode()
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run(cmd, *, what: str, cwd=None, env=None) -> str:
    try:
        res = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except FileNotFoundError as e:
        raise SetupError(f"{what}: cannot run {cmd[0]!r} ({e})") from None
    if res.returncode != 0:
        raise SetupError(f"{what} failed (exit {res.returncode}): {' '.join(map(str, cmd))}\n"
                         f"{_tail(res.stdout)}")
    return res.stdout


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# host packages

def _missing_host_packages(packages=HOST_PACKAGES, why="building QEMU") -> list[str]:
    if shutil.which("dpkg-query") is None:
        raise SetupError(f"dpkg-query not found: {why} needs a Debian/Ubuntu host with "
                         f"the packages {' '.join(packages)}")
    missing = []
    for pkg in packages:
        res = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if res.returncode != 0 or not res.stdout.strip().endswith(" installed"):
            missing.append(pkg)
    return missing


def ensure_host_packages(packages=HOST_PACKAGES, why="building QEMU",
                         progress: Progress = print) -> None:
    """Install the Debian ``packages`` that are missing (as root, or with ``sudo -n``);
    SetupError naming them and the command otherwise."""
    missing = _missing_host_packages(packages, why)
    if not missing:
        return
    # Root as apt's download sandbox user: on some images `_apt` cannot write /dev/null.
    apt = ["apt-get", "-o", "APT::Sandbox::User=root"]
    install = [*apt, "install", "-y", "--no-install-recommends", *missing]
    if shutil.which("apt-get") is None:
        raise SetupError(f"{why} needs the host packages {' '.join(missing)}, and there is no "
                         "apt-get to install them")
    if os.geteuid() == 0:
        prefix = []
    else:
        ok = subprocess.run(["sudo", "-n", "true"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0 \
            if shutil.which("sudo") else False
        if not ok:
            raise SetupError(f"{why} needs the host packages {' '.join(missing)}; install "
                             f"them with: sudo {' '.join(install)}")
        prefix = ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    progress(f"host: installing {' '.join(missing)}")
    try:
        _run(prefix + install, what="apt-get install", env=env)
    except SetupError:
        progress("host: apt-get install failed; running apt-get update once and retrying")
        _run(prefix + [*apt, "update"], what="apt-get update", env=env)
        _run(prefix + install, what="apt-get install", env=env)
    still = _missing_host_packages(packages, why)
    if still:
        raise SetupError(f"host packages still missing after apt-get install: {' '.join(still)}")


# --------------------------------------------------------------------------------------------
# private apt configurations

def _private_apt(root: Path, sources: str, extra_conf: str = "") -> dict:
    """Create an apt configuration under root that touches nothing of the system's apt state;
    returns the environment to run apt-get/apt-cache with."""
    if shutil.which("apt-get") is None:
        raise SetupError("apt-get not found: fetching the Debian QEMU source and arm64 kernel "
                         "needs apt (Debian/Ubuntu host)")
    for sub in ("lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "status").touch()
    (root / "sources.list").write_text(sources)
    (root / "apt.conf").write_text(
        f'Dir::Etc::SourceList "{root}/sources.list";\n'
        f'Dir::Etc::SourceParts "{root}/sources.list.d";\n'
        f'Dir::Etc::Preferences "{root}/preferences";\n'
        f'Dir::Etc::PreferencesParts "{root}/preferences.d";\n'
        f'Dir::State "{root}";\n'
        f'Dir::State::Lists "{root}/lists";\n'
        f'Dir::State::status "{root}/status";\n'
        f'Dir::Cache "{root}/cache";\n'
        'APT::Sandbox::User "root";\n'
        + extra_conf)
    return dict(os.environ, APT_CONFIG=str(root / "apt.conf"), LC_ALL="C")


def _signed(line_opts: str = "") -> str:
    opts = [o for o in (line_opts, f"signed-by={DEBIAN_KEYRING}" if os.path.exists(DEBIAN_KEYRING)
                        else "") if o]
    return f"[{' '.join(opts)}] " if opts else ""


# --------------------------------------------------------------------------------------------
# QEMU

def _source_edits(src: Path) -> None:
    """Exact text substitutions on the unpacked QEMU 7.2 tree; every anchor must be found."""

    def edit(rel: str, anchor: str, replacement: str) -> None:
        path = src / rel
        text = path.read_text()
        count = text.count(anchor)
        if count != 1:
            raise SetupError(f"patching QEMU: anchor text not found exactly once "
                             f"({count} times) in {rel}:\n{anchor}")
        path.write_text(text.replace(anchor, replacement))

    # 1. The dfsg tarball has no edk2 blobs: only unpack them when blobs are installed.
    edit("meson.build",
         "    unpack_edk2_blobs = bzip2.found()\n",
         "    unpack_edk2_blobs = bzip2.found() and get_option('install_blobs')\n")

    # 2. Build our device unconditionally.
    edit("hw/misc/meson.build",
         "softmmu_ss.add(when: 'CONFIG_UNIMP', if_true: files('unimp.c'))\n",
         "softmmu_ss.add(when: 'CONFIG_UNIMP', if_true: files('unimp.c'))\n"
         "softmmu_ss.add(files('virtio_mmio_cosim.c'))\n")

    # 3. virt machine state: the socket path.
    edit("include/hw/arm/virt.h",
         "    char *oem_id;\n    char *oem_table_id;\n};\n",
         "    char *oem_id;\n    char *oem_table_id;\n"
         "    char *cosim_socket;  /* virtio-mmio-cosim in the top virtio-mmio slot */\n"
         "    uint32_t cosim_devid; /* its requester ID = DeviceID in its msi-parent */\n};\n")

    # 4. The top slot gets our device instead of a virtio-mmio transport when cosim-socket is set.
    edit("hw/arm/virt.c",
         "        sysbus_create_simple(\"virtio-mmio\", base,\n"
         "                             qdev_get_gpio_in(vms->gic, irq));\n",
         "        if (vms->cosim_socket && i == NUM_VIRTIO_TRANSPORTS - 1) {\n"
         "            DeviceState *cosim = qdev_new(\"virtio-mmio-cosim\");\n"
         "\n"
         "            qdev_prop_set_string(cosim, \"socket\", vms->cosim_socket);\n"
         "            qdev_prop_set_uint32(cosim, \"requester-id\", vms->cosim_devid);\n"
         "            sysbus_realize_and_unref(SYS_BUS_DEVICE(cosim), &error_fatal);\n"
         "            sysbus_mmio_map(SYS_BUS_DEVICE(cosim), 0, base);\n"
         f"            sysbus_mmio_map(SYS_BUS_DEVICE(cosim), 1, {MARK_BASE:#x});\n"
         "            sysbus_connect_irq(SYS_BUS_DEVICE(cosim), 0,\n"
         "                               qdev_get_gpio_in(vms->gic, irq));\n"
         "            continue;\n"
         "        }\n"
         "        sysbus_create_simple(\"virtio-mmio\", base,\n"
         "                             qdev_get_gpio_in(vms->gic, irq));\n")

    # 5. The machine property's getter and setter.
    edit("hw/arm/virt.c",
         "static char *virt_get_gic_version(Object *obj, Error **errp)\n{\n",
         "static char *virt_get_cosim_socket(Object *obj, Error **errp)\n"
         "{\n"
         "    VirtMachineState *vms = VIRT_MACHINE(obj);\n"
         "\n"
         "    return g_strdup(vms->cosim_socket ? vms->cosim_socket : \"\");\n"
         "}\n"
         "\n"
         "static void virt_set_cosim_socket(Object *obj, const char *value, Error **errp)\n"
         "{\n"
         "    VirtMachineState *vms = VIRT_MACHINE(obj);\n"
         "\n"
         "    g_free(vms->cosim_socket);\n"
         "    vms->cosim_socket = (value && *value) ? g_strdup(value) : NULL;\n"
         "}\n"
         "\n"
         "static char *virt_get_gic_version(Object *obj, Error **errp)\n{\n")

    # 6. ... registered as a class property.
    edit("hw/arm/virt.c",
         "    object_class_property_add_str(oc, \"gic-version\", virt_get_gic_version,\n",
         "    object_class_property_add_str(oc, \"cosim-socket\", virt_get_cosim_socket,\n"
         "                                  virt_set_cosim_socket);\n"
         "    object_class_property_set_description(oc, \"cosim-socket\",\n"
         "                                          \"UNIX socket of a simulator that serves \"\n"
         "                                          \"the top virtio-mmio slot \"\n"
         "                                          \"(virtio-mmio-cosim device)\");\n"
         "\n"
         "    object_class_property_add_str(oc, \"gic-version\", virt_get_gic_version,\n")

    # 7. The top slot's interrupt is level-high, as the endpoint's irq is a level (high while
    #    InterruptStatus is not 0) and as the generated .dtsi declares it; virt's edge-rising
    #    would lose an event that arrives in the cycle of an InterruptACK (the line stays
    #    high, no new edge). On a machine with an ITS, the node also names it as its MSI
    #    controller, with the device's requester ID as the DeviceID (#msi-cells = 1).
    edit("hw/arm/virt.c",
         "                               GIC_FDT_IRQ_FLAGS_EDGE_LO_HI);\n"
         "        qemu_fdt_setprop(ms->fdt, nodename, \"dma-coherent\", NULL, 0);\n"
         "        g_free(nodename);\n",
         "                               GIC_FDT_IRQ_FLAGS_EDGE_LO_HI);\n"
         "        qemu_fdt_setprop(ms->fdt, nodename, \"dma-coherent\", NULL, 0);\n"
         "        if (vms->cosim_socket && i == NUM_VIRTIO_TRANSPORTS - 1) {\n"
         "            qemu_fdt_setprop_cells(ms->fdt, nodename, \"interrupts\",\n"
         "                                   GIC_FDT_IRQ_TYPE_SPI, irq,\n"
         "                                   GIC_FDT_IRQ_FLAGS_LEVEL_HI);\n"
         "            if (vms->msi_controller == VIRT_MSI_CTRL_ITS) {\n"
         "                qemu_fdt_setprop_cells(ms->fdt, nodename, \"msi-parent\",\n"
         "                                       vms->msi_phandle, vms->cosim_devid);\n"
         "            }\n"
         "        }\n"
         "        g_free(nodename);\n")

    # 8. The DeviceID as a machine option: cosim-devid=N (default DEFAULT_DEVID).
    edit("hw/arm/virt.c",
         "    vms->oem_table_id = g_strndup(ACPI_BUILD_APPNAME8, 8);\n}\n",
         "    vms->oem_table_id = g_strndup(ACPI_BUILD_APPNAME8, 8);\n"
         "\n"
         f"    vms->cosim_devid = {DEFAULT_DEVID:#x};\n"
         "    object_property_add_uint32_ptr(obj, \"cosim-devid\", &vms->cosim_devid,\n"
         "                                   OBJ_PROP_FLAG_READWRITE);\n"
         "}\n")


def _resolve_qemu_source(root: Path, progress: Progress) -> dict:
    info_path = root / "qemu" / "source.json"
    info = _read_json(info_path)
    if info and (root / "qemu" / "downloads" / info["orig"]).is_file():
        return info
    env = _private_apt(root / "apt" / "qemu-src",
                       f"deb-src {_signed()}http://deb.debian.org/debian {SUITE} main\n"
                       f"deb-src {_signed()}http://deb.debian.org/debian-security "
                       f"{SUITE}-security main\n")
    progress(f"qemu: fetching Debian {SUITE} source package index")
    _run(["apt-get", "update"], what="apt-get update (private, QEMU source)", env=env)
    out = _run(["apt-cache", "showsrc", "--only-source", "qemu"],
               what="apt-cache showsrc qemu", env=env)
    best = None
    for stanza in out.split("\n\n"):
        ver = re.search(r"^Version: (\S+)", stanza, re.M)
        orig = re.search(r"^ [0-9a-f]{64} \d+ (qemu_[^\s]+\.orig\.tar\.xz)$", stanza, re.M)
        if ver and orig:
            cmp = None if best is None else subprocess.run(
                ["dpkg", "--compare-versions", ver.group(1), "gt", best[0]]).returncode
            if best is None or cmp == 0:
                best = (ver.group(1), orig.group(1))
    if best is None:
        raise SetupError(f"no qemu source package with an .orig.tar.xz found for {SUITE}")
    version, orig = best
    downloads = root / "qemu" / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    progress(f"qemu: downloading source package qemu {version}")
    _run(["apt-get", "source", "--download-only", f"qemu={version}"],
         what="apt-get source --download-only qemu", env=env, cwd=downloads)
    if not (downloads / orig).is_file():
        raise SetupError(f"apt-get source did not produce {orig} in {downloads}")
    info = {"version": version, "orig": orig}
    _write_json(info_path, info)
    return info


def _unpack(tarball: Path, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".unpack")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if shutil.which("tar") and shutil.which("xz"):
        _run(["tar", "-xf", str(tarball), "-C", str(tmp)], what=f"unpacking {tarball.name}")
    else:
        with tarfile.open(tarball) as tf:
            tf.extractall(tmp)
    tops = list(tmp.iterdir())
    if len(tops) != 1 or not (tops[0] / "configure").is_file():
        raise SetupError(f"unexpected layout of {tarball.name}: {[t.name for t in tops]}")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tops[0], dest)
    shutil.rmtree(tmp, ignore_errors=True)


def _ninja_build(build: Path, log, progress: Progress) -> None:
    cmd = ["ninja", "-j", str(os.cpu_count() or 1), "qemu-system-aarch64"]
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    step_re = re.compile(r"^\[(\d+)/(\d+)\]")
    start = last_print = time.monotonic()
    next_pct = 10
    proc = subprocess.Popen(cmd, cwd=build, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        m = step_re.match(line)
        if not m:
            continue
        done, total = int(m.group(1)), int(m.group(2))
        pct = 100 * done // max(total, 1)
        now = time.monotonic()
        if pct >= next_pct or now - last_print >= 15:
            progress(f"qemu build: {pct:3d}% ({done}/{total} steps, {now - start:.0f} s)")
            last_print = now
            while next_pct <= pct:
                next_pct += 10
    rc = proc.wait()
    log.flush()
    if rc != 0:
        raise _BuildFailed(rc)


class _BuildFailed(Exception):
    pass


def _prepare_qemu(root: Path, progress: Progress) -> Path:
    info = _resolve_qemu_source(root, progress)
    tree_key = _sha("tree", PATCH_VERSION, hex(MARK_BASE), hex(DEFAULT_DEVID),
                    *CONFIGURE_OPTIONS, info["version"])[:16]
    device = DEVICE_SOURCE.read_bytes()
    full_key = _sha("binary", tree_key, device)
    top = root / "qemu" / f"{info['version'].replace(':', '_')}-{tree_key}"
    src, build = top / "src", top / "src" / "build"
    binary = build / "qemu-system-aarch64"
    built = _read_json(top / "built.json")
    if built and built.get("key") == full_key and binary.is_file():
        return binary

    ensure_host_packages(progress=progress)
    top.mkdir(parents=True, exist_ok=True)
    (top / "built.json").unlink(missing_ok=True)    # a failed build must not look valid
    if not (top / "patched.stamp").is_file():
        progress(f"qemu: unpacking and patching {info['orig']}")
        _unpack(root / "qemu" / "downloads" / info["orig"], src)
        _source_edits(src)
        (top / "patched.stamp").write_text(PATCH_VERSION)
        (top / "configured.stamp").unlink(missing_ok=True)

    dst = src / "hw" / "misc" / "virtio_mmio_cosim.c"
    if not dst.is_file() or dst.read_bytes() != device:
        dst.write_bytes(device)       # keeps the tree; ninja recompiles just this file

    log_path = top / "build.log"
    with open(log_path, "w") as log:
        try:
            if not (top / "configured.stamp").is_file():
                shutil.rmtree(build, ignore_errors=True)
                build.mkdir(parents=True)
                progress("qemu: configure (aarch64-softmmu only)")
                cmd = ["../configure", *CONFIGURE_OPTIONS]
                log.write(f"$ {' '.join(cmd)}\n")
                log.flush()
                rc = subprocess.run(cmd, cwd=build, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT).returncode
                if rc != 0:
                    raise _BuildFailed(rc)
                (top / "configured.stamp").write_text(" ".join(CONFIGURE_OPTIONS))
            progress(f"qemu: building qemu-system-aarch64 with ninja -j{os.cpu_count()} "
                     f"(full log: {log_path})")
            t0 = time.monotonic()
            _ninja_build(build, log, progress)
        except _BuildFailed as e:
            log.close()
            raise SetupError(f"building QEMU failed (exit {e.args[0]}); last lines of "
                             f"{log_path}:\n{_tail(log_path.read_text(errors='replace'))}") \
                from None
    if not binary.is_file():
        raise SetupError(f"ninja finished but {binary} is missing (log: {log_path})")
    progress(f"qemu: built {binary} in {time.monotonic() - t0:.0f} s")
    _write_json(top / "built.json", {"key": full_key, "version": info["version"]})
    return binary


# --------------------------------------------------------------------------------------------
# guest

def _cpio_newc(entries) -> bytes:
    """entries: (name, mode, data: bytes, rdev: (major, minor)) with mode including file type."""
    out = bytearray()

    def add(ino, name, mode, data=b"", rdev=(0, 0), nlink=1):
        bname = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(bname), 0)
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields))
        out.extend(bname)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data, rdev) in enumerate(entries, start=1):
        add(ino, name, mode, data, rdev, nlink=2 if mode & 0o040000 else 1)
    add(0, "TRAILER!!!", 0)
    return bytes(out)


def _deb_extract(deb: Path, wanted: Callable[[str], Optional[str]], dest: Path) -> list[Path]:
    """Stream the data tarball of deb (dpkg-deb --fsys-tarfile) and write every regular member
    for which wanted(member path) returns a file name into dest."""
    if shutil.which("dpkg-deb") is None:
        raise SetupError("dpkg-deb not found (needed to unpack the arm64 kernel and busybox)")
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = []
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
        for member in tf:
            if not member.isfile():
                continue
            name = wanted(member.name.lstrip("./") if member.name.startswith("./")
                          else member.name)
            if name:
                f = tf.extractfile(member)
                assert f is not None
                (dest / name).write_bytes(f.read())
                got.append(dest / name)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.wait() != 0:
        raise SetupError(f"dpkg-deb --fsys-tarfile {deb.name} failed: {_tail(err)}")
    return got


def _resolve_kernel(root: Path, progress: Progress) -> tuple[dict, Path, Path]:
    info_path = root / "guest" / "release.json"
    debs = root / "guest" / "debs"
    info = _read_json(info_path)
    if info and (debs / info["kernel_deb"]).is_file() and (debs / info["busybox_deb"]).is_file():
        return info, debs / info["kernel_deb"], debs / info["busybox_deb"]
    sources = "".join(
        f"deb {_signed('arch=arm64')}{url} {suite} main\n"
        for url, suite in (("http://deb.debian.org/debian", SUITE),
                           ("http://deb.debian.org/debian-security", f"{SUITE}-security")))
    env = _private_apt(root / "apt" / "arm64", sources,
                       'APT::Architecture "arm64";\nAPT::Architectures { "arm64"; };\n')
    progress(f"guest: fetching Debian {SUITE} arm64 package index")
    _run(["apt-get", "update"], what="apt-get update (private, arm64)", env=env)
    out = _run(["apt-cache", "depends", "linux-image-arm64"],
               what="apt-cache depends linux-image-arm64", env=env)
    m = re.search(r"Depends: (linux-image-(\d+\.\d+\.\d+-\d+-arm64))\b", out)
    if not m:
        raise SetupError(f"cannot find the kernel package linux-image-arm64 depends on:\n"
                         f"{_tail(out)}")
    kernel_pkg, release = m.group(1), m.group(2)
    debs.mkdir(parents=True, exist_ok=True)
    progress(f"guest: downloading {kernel_pkg} and busybox-static (arm64)")
    for old in debs.glob("*.deb"):
        old.unlink()
    _run(["apt-get", "download", kernel_pkg, "busybox-static"],
         what="apt-get download (arm64)", env=env, cwd=debs)
    kdeb = sorted(debs.glob(f"{kernel_pkg}_*_arm64.deb"))
    bdeb = sorted(debs.glob("busybox-static_*_arm64.deb"))
    if not kdeb or not bdeb:
        raise SetupError(f"apt-get download left no kernel/busybox .deb in {debs}")
    info = {"kernel_pkg": kernel_pkg, "release": release,
            "kernel_deb": kdeb[-1].name, "busybox_deb": bdeb[-1].name}
    _write_json(info_path, info)
    return info, kdeb[-1], bdeb[-1]


_MODULES = {"virtio_mmio": "kernel/drivers/virtio/", "virtio-rng": "kernel/drivers/char/hw_random/"}
#: Modules only the virtio-console initramfs holds; extracted on first use, beside the others.
_CONSOLE_MODULES = {"virtio_console": "kernel/drivers/char/"}


def _decompress_module(path: Path) -> Path:
    name = path.name
    if name.endswith(".ko"):
        return path
    plain = path.with_name(re.sub(r"\.ko\.\w+$", ".ko", name))
    if name.endswith(".ko.xz"):
        plain.write_bytes(lzma.decompress(path.read_bytes()))
    elif name.endswith(".ko.gz"):
        plain.write_bytes(gzip.decompress(path.read_bytes()))
    elif name.endswith(".ko.zst"):
        try:
            import zstandard    # optional
        except ImportError:
            if shutil.which("zstd") is None:
                raise SetupError(f"{name} is zstd-compressed; install the zstd tool or the "
                                 "zstandard Python package") from None
            _run(["zstd", "-d", "-f", "-o", str(plain), str(path)], what=f"zstd -d {name}")
        else:
            plain.write_bytes(zstandard.ZstdDecompressor().decompressobj()
                              .decompress(path.read_bytes()))
    else:
        raise SetupError(f"unknown module compression: {name}")
    path.unlink()
    return plain


def _module_member(name: str, release: str, modules: dict) -> Optional[str]:
    """The file name of ``name`` (a path in the kernel package) when it is one of ``modules``
    (name -> directory under kernel/), compressed or not; else None."""
    for mod, sub in modules.items():
        if re.fullmatch(rf"(usr/)?lib/modules/{re.escape(release)}/{sub}"
                        rf"{re.escape(mod)}\.ko(\.xz|\.zst|\.gz)?", name):
            return os.path.basename(name)
    return None


def _extract_modules(kdeb: Path, release: str, gdir: Path, modules: dict,
                     progress: Progress) -> None:
    """Extract the ``modules`` (name -> directory under kernel/) that are not in ``gdir`` yet,
    leaving everything else there alone."""
    missing = {m: sub for m, sub in modules.items() if not (gdir / f"{m}.ko").is_file()}
    if not missing:
        return
    progress(f"guest: extracting {', '.join(missing)} from {kdeb.name}")

    def want(name: str) -> Optional[str]:
        member = _module_member(name, release, missing)
        return None if member is None else member + ".part"

    for part in _deb_extract(kdeb, want, gdir):
        got = part.with_name(part.name[:-len(".part")])
        os.replace(part, got)
        _decompress_module(got)
    still = [m for m in missing if not (gdir / f"{m}.ko").is_file()]
    if still:
        raise SetupError(f"{kdeb.name} lacks {', '.join(m + '.ko' for m in still)}")


def _prepare_guest(root: Path, progress: Progress,
                   driver: Optional[Callable[[str], Path]] = None,
                   console: bool = False) -> tuple[Path, Path, str]:
    """Kernel, initramfs and release. ``driver(release)``: the path of the Version-3 driver
    module, put beside the stock ones as ``/lib/modules/virtio_mmio_v3.ko``; its bytes are part
    of the initramfs cache key, and initramfs files with and without it live side by side.
    ``console``: the virtio-console initramfs (``guest/console`` as /init, virtio_console.ko,
    the port-1 pattern), in files of its own kind."""
    info, kdeb, bdeb = _resolve_kernel(root, progress)
    release = info["release"]
    gdir = root / "guest" / release
    gdir.mkdir(parents=True, exist_ok=True)
    kernel = gdir / "vmlinuz"
    mods = {m: gdir / f"{m}.ko" for m in _MODULES}
    busybox = gdir / "busybox"
    stamp = gdir / "extracted.json"
    if (_read_json(stamp) or {}).get("debs") != [kdeb.name, bdeb.name] or not kernel.is_file():
        progress(f"guest: extracting kernel {release}, modules and busybox")
        for f in gdir.iterdir():
            if f.is_file():
                f.unlink()

        def want_kernel(name: str) -> Optional[str]:
            if re.fullmatch(rf"boot/vmlinuz-{re.escape(release)}", name):
                return "vmlinuz"
            return _module_member(name, release, _MODULES)

        got = _deb_extract(kdeb, want_kernel, gdir)
        for f in got:
            if ".ko" in f.name:
                _decompress_module(f)
        _deb_extract(bdeb, lambda n: "busybox" if n == "bin/busybox" else None, gdir)
        missing = [p.name for p in (kernel, busybox, *mods.values()) if not p.is_file()]
        if missing:
            raise SetupError(f"{kdeb.name}/{bdeb.name} lack {', '.join(missing)}")
        _write_json(stamp, {"debs": [kdeb.name, bdeb.name],
                            "compressed_modules": [f.name for f in got if not
                                                   f.name.endswith(".ko") and ".ko" in f.name]})

    init = INIT_SCRIPT.read_bytes()
    extra = {}
    files = {}
    if driver is not None:
        extra[DRIVER_MODULE] = driver(release).read_bytes()
    kind = "v3" if extra else "stock"
    if console:
        from .console import TX_BYTES, tx_pattern
        _extract_modules(kdeb, release, gdir, _CONSOLE_MODULES, progress)
        init = CONSOLE_INIT_SCRIPT.read_bytes()
        for m in _CONSOLE_MODULES:
            extra[f"{m}.ko"] = (gdir / f"{m}.ko").read_bytes()
        files[CONSOLE_TX_FILE] = tx_pattern(TX_BYTES)
        kind = f"vcons-{kind}"
    key = _sha("initrd", INITRD_VERSION, init, bdeb.name, kdeb.name,
               *[x for name, data in sorted(extra.items()) for x in (name, data)],
               *[x for name, data in sorted(files.items()) for x in (name, data)])[:16]
    initrd = gdir / f"initrd-{kind}-{key}.gz"
    if not initrd.is_file():
        progress("guest: packing the initramfs")
        d, f, c = 0o040755, 0o100000, 0o020000
        entries = [(n, d, b"", (0, 0)) for n in
                   ("bin", "dev", "lib", "lib/modules", "proc", "sbin", "sys", "tmp",
                    "usr", "usr/bin", "usr/sbin")]
        entries += [
            ("dev/console", c | 0o600, b"", (5, 1)),
            ("init", f | 0o755, init, (0, 0)),
            ("bin/busybox", f | 0o755, busybox.read_bytes(), (0, 0)),
        ]
        entries += [(f"lib/modules/{m}.ko", f | 0o644, p.read_bytes(), (0, 0))
                    for m, p in mods.items()]
        entries += [(f"lib/modules/{name}", f | 0o644, data, (0, 0))
                    for name, data in sorted(extra.items())]
        entries += [(name, f | 0o644, data, (0, 0)) for name, data in sorted(files.items())]
        # Older initramfs files of this kind only: a concurrent run of the other kind may be
        # about to boot its own.
        for old in gdir.glob(f"initrd-{kind}-*.gz"):
            old.unlink()
        for old in gdir.glob("initrd-[0-9a-f]*.gz"):      # the naming before kinds
            old.unlink()
        tmp = initrd.with_suffix(".tmp")
        tmp.write_bytes(gzip.compress(_cpio_newc(entries), compresslevel=6, mtime=0))
        os.replace(tmp, initrd)
    return kernel, initrd, release


# --------------------------------------------------------------------------------------------
# public API

def prepare(progress: Progress = print, *, driver: bool = False,
            console: bool = False) -> LinuxAssets:
    """Fetch/build QEMU with the co-simulation device, the arm64 kernel and the initramfs.
    Idempotent and cached under cache_root(); concurrent callers serialise on a lock file.
    ``driver``: also cross-build the Version-3 transport driver (:func:`.kmod.build_driver`)
    and put ``virtio_mmio_v3.ko`` into the initramfs (``/lib/modules``). ``console``: the
    virtio-console scenario's initramfs (``guest/console``) instead of the rng one."""
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SetupError(f"cannot create the cache directory {root}: {e}") from None
    with open(root / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another prepare() holding {root / '.lock'}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        qemu = _prepare_qemu(root, progress)
        built = []

        def build_driver(release: str) -> Path:
            from .kmod import build_driver as build
            built.append(build(progress, release=release))
            return built[-1]

        kernel, initrd, release = _prepare_guest(root, progress,
                                                 build_driver if driver else None, console)
    return LinuxAssets(qemu=qemu, kernel=kernel, initrd=initrd, kernel_release=release,
                       driver=built[0] if built else None)


def qemu_command(assets: LinuxAssets, socket_path: str, extra_append: str = "", *,
                 its: bool = False, devid: int = DEFAULT_DEVID, cpus: int = 1) -> list[str]:
    """The QEMU command line; run it with stdin=/dev/null, the guest console is on stdout.
    QEMU connects to socket_path (retrying for 30 s), so the simulator may start listening
    before or shortly after QEMU starts.

    ``its``: a GICv3 with its ITS (``gic-version=3``) instead of the default GICv2, and the
    slot's device-tree node gets ``msi-parent = <&its devid>``; the co-simulation device's MSI
    writes carry ``devid`` as their requester ID. ``cpus``: the number of vCPUs."""
    append = "console=ttyAMA0 panic=-1 rdinit=/init rng_core.default_quality=0"
    if extra_append:
        append += " " + extra_append
    machine = "virt,cosim-socket=" + str(socket_path).replace(",", ",,")
    if its:
        machine += f",gic-version=3,cosim-devid={devid:#x}"
    return [
        str(assets.qemu),
        "-M", machine,
        "-smp", str(cpus),
        "-cpu", "cortex-a57",
        "-m", "256M",
        "-display", "none",
        "-serial", "stdio",
        "-monitor", "none",
        "-no-reboot",
        "-nic", "none",
        "-kernel", str(assets.kernel),
        "-initrd", str(assets.initrd),
        "-append", append,
    ]


if __name__ == "__main__":
    try:
        a = prepare()
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(a)
