"""Cross-build the out-of-tree ``virtio_mmio_v3`` transport driver (``linux/`` at the top of the
repository) for exactly the kernel the guest boots (:mod:`.setup`).

``build_driver()`` returns the path of ``virtio_mmio_v3.ko``, built once per (driver sources,
kernel release and package version, cross compiler) and cached under ``cache_root()/kmod/``::

    kmod/.lock                         fcntl lock held while fetching and building
    kmod/apt/                          private apt configuration (arm64 + the host architecture)
    kmod/debs/<release>/               linux-headers-<ABI>-{arm64,common}, linux-kbuild-<M.m>
                                       (the .debs and apt's lists are deleted once unpacked)
    kmod/headers/<release>/root/       the three packages unpacked into one root, fixed up
    kmod/<release>/<key>/virtio_mmio_v3.ko     the module (named as the module is called)
    kmod/<release>/built.json          index: source key -> <key>, compiler

From a fresh Debian host: ``gcc-aarch64-linux-gnu`` and ``make`` are installed with
:func:`.setup.ensure_host_packages` (root or ``sudo -n``); the headers and the host-architecture
``linux-kbuild`` package of the same source version are downloaded with a private apt
configuration (the system's apt state is untouched) and unpacked with ``dpkg-deb -x``. Two fix-ups
make the unpacked tree usable where it is: the flavour directory's ``Makefile`` includes the
``-common`` directory by absolute path, and the ``scripts``/``tools`` links point (relatively) at
``/usr/lib/linux-kbuild-<M.m>``, which is unpacked beside them. The module is built in a scratch
copy of ``linux/`` with ``KCFLAGS=-Werror``; its ``vermagic`` (read from the ``.modinfo`` ELF
section) must name the guest's kernel release, or :class:`.setup.SetupError` says both.

Call it from inside :func:`.setup.prepare` (which holds ``cache_root()/.lock``) with
``release=`` set, so it does not try to resolve the kernel under that lock itself.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from .setup import (SUITE, Progress, SetupError, _private_apt, _read_json, _resolve_kernel,
                    _run, _sha, _signed, _tail, _write_json, cache_root, ensure_host_packages)

__all__ = ["MODULE_NAME", "SOURCE_DIR", "build_driver", "guest_kernel", "modinfo"]

#: The module's name (``virtio_mmio_v3.ko``, ``MODULE_NAME`` in /sys/module).
MODULE_NAME = "virtio_mmio_v3"
#: The driver's source folder; its *.c, *.h, Kbuild and Makefile are built and make the cache key.
SOURCE_DIR = Path(__file__).resolve().parents[2] / "linux"

# Bump when the build recipe below changes (part of the cache key).
RECIPE_VERSION = "1"

CROSS_COMPILE = "aarch64-linux-gnu-"
# Cached builds kept per kernel release.
KEEP_BUILDS = 8
HOST_PACKAGES = ("gcc-aarch64-linux-gnu", "make")
# Files of linux/ that are copied into the scratch build directory.
_SOURCE_PATTERN = re.compile(r".*\.(c|h)|Kbuild|Makefile")


# --------------------------------------------------------------------------------------------
# the guest's kernel

def guest_kernel(progress: Progress = print) -> tuple[str, str]:
    """(kernel release, Debian package version) of the kernel the guest boots, e.g.
    ("6.1.0-41-arm64", "6.1.158-1"), from ``guest/release.json``; resolves the kernel with
    :mod:`.setup` (under its lock) when that is not there yet."""
    root = cache_root()
    info = _read_json(root / "guest" / "release.json")
    if not info or not (root / "guest" / "debs" / info.get("kernel_deb", "")).is_file():
        root.mkdir(parents=True, exist_ok=True)
        with open(root / ".lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                progress(f"kmod: waiting for another prepare() holding {root / '.lock'}")
                fcntl.flock(lock, fcntl.LOCK_EX)
            info, _, _ = _resolve_kernel(root, progress)
    return info["release"], _deb_version(info["kernel_deb"])


def _deb_version(deb_name: str) -> str:
    parts = deb_name.split("_")
    if len(parts) != 3 or not parts[2].endswith(".deb"):
        raise SetupError(f"cannot read the package version from {deb_name!r}")
    return parts[1].replace("%3a", ":")


# --------------------------------------------------------------------------------------------
# .modinfo

def modinfo(ko: Path) -> dict[str, list[str]]:
    """The ``key=value`` strings of a module's ``.modinfo`` section (ELF64 little-endian),
    as {key: [values in order]}; e.g. ``modinfo(p)["vermagic"][0]``."""
    data = Path(ko).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise SetupError(f"{ko} is not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from(
            "<IIQQQQ", data, shoff + i * shentsize)
        return name, offset, size

    _, str_off, _ = section(shstrndx)
    for i in range(shnum):
        name_off, offset, size = section(i)
        end = data.index(b"\0", str_off + name_off)
        if data[str_off + name_off:end] == b".modinfo":
            info: dict[str, list[str]] = {}
            for entry in data[offset:offset + size].split(b"\0"):
                if b"=" in entry:
                    key, _, value = entry.decode(errors="replace").partition("=")
                    info.setdefault(key, []).append(value)
            return info
    raise SetupError(f"{ko} has no .modinfo section")


# --------------------------------------------------------------------------------------------
# headers

def _ensure_host_packages(progress: Progress) -> None:
    """ensure_host_packages, retried while another apt/dpkg (the QEMU setup, say) holds its lock."""
    for attempt in range(20):
        try:
            ensure_host_packages(HOST_PACKAGES, why="cross-building the virtio_mmio_v3 module",
                                 progress=progress)
            return
        except SetupError as e:
            if "lock" not in str(e).lower() or attempt == 19:
                raise
            progress("kmod: apt/dpkg is busy (lock held); retrying in 15 s")
            time.sleep(15)


def _kbuild_package(release: str) -> str:
    m = re.match(r"(\d+\.\d+)\.", release)
    if not m:
        raise SetupError(f"cannot read the kernel version from the release {release!r}")
    return f"linux-kbuild-{m.group(1)}"


def _download(env: dict, dest: Path, package: str, version: str, progress: Progress) -> Path:
    """apt-get download package=version, or any version of it if that one is gone."""
    for spec in (f"{package}={version}", package):
        try:
            _run(["apt-get", "download", spec], what=f"apt-get download {spec}", env=env, cwd=dest)
        except SetupError:
            continue
        base = package.split(":")[0]
        found = sorted(dest.glob(f"{base}_*.deb"))
        if found:
            if spec == package:
                progress(f"kmod: {package} {version} is no longer in the archive; using "
                         f"{found[-1].name}")
            return found[-1]
    raise SetupError(f"cannot download {package} (wanted version {version}) from Debian {SUITE}")


def _headers(kroot: Path, release: str, version: str, progress: Progress) -> Path:
    """The kernel build directory (``.../usr/src/linux-headers-<release>``) for release."""
    abi = release.removesuffix("-arm64")
    kbuild = _kbuild_package(release)
    top = kroot / "headers" / release
    hroot = top / "root"
    build_dir = hroot / "usr" / "src" / f"linux-headers-{release}"
    stamp = top / "unpacked.json"
    if (_read_json(stamp) or {}).get("version") == version and (build_dir / "Makefile").is_file():
        return build_dir

    host_arch = _run(["dpkg", "--print-architecture"], what="dpkg --print-architecture").strip()
    archs = ["arm64"] + ([host_arch] if host_arch != "arm64" else [])
    sources = "".join(
        f"deb {_signed('arch=' + ','.join(archs))}{url} {suite} main\n"
        for url, suite in (("http://deb.debian.org/debian", SUITE),
                           ("http://deb.debian.org/debian-security", f"{SUITE}-security")))
    env = _private_apt(kroot / "apt", sources,
                       'APT::Architecture "arm64";\nAPT::Architectures { '
                       + " ".join(f'"{a}";' for a in archs) + " };\n")
    progress(f"kmod: fetching Debian {SUITE} package index ({', '.join(archs)})")
    _run(["apt-get", "update"], what="apt-get update (private, kernel headers)", env=env)
    debs = kroot / "debs" / release
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir(parents=True)
    progress(f"kmod: downloading linux-headers-{abi}-arm64/-common and {kbuild} ({version})")
    wanted = [f"linux-headers-{abi}-arm64", f"linux-headers-{abi}-common",
              f"{kbuild}:{host_arch}"]
    files = [_download(env, debs, pkg, version, progress) for pkg in wanted]

    progress("kmod: unpacking the headers")
    shutil.rmtree(top, ignore_errors=True)
    hroot.mkdir(parents=True)
    for deb in files:
        _run(["dpkg-deb", "-x", str(deb), str(hroot)], what=f"dpkg-deb -x {deb.name}")
    if not (build_dir / "Makefile").is_file():
        raise SetupError(f"{files[0].name} has no usr/src/linux-headers-{release}/Makefile")

    # Fix-up 1: the flavour Makefile includes the -common tree by absolute path.
    makefile = build_dir / "Makefile"
    text = makefile.read_text()
    fixed = re.sub(r"(?m)^(include\s+)/usr/src/", rf"\g<1>{hroot}/usr/src/", text)
    if fixed == text:
        raise SetupError(f"unexpected {makefile} (no 'include /usr/src/...' line): {text[:200]!r}")
    makefile.write_text(fixed)
    # Fix-up 2: scripts/ and tools/ are relative links into /usr/lib/linux-kbuild-M.m, unpacked
    # beside them; every link must now resolve inside the root.
    for link in [p for d in hroot.glob("usr/src/linux-headers-*") for p in d.iterdir()
                 if p.is_symlink()]:
        target = os.readlink(link)
        if target.startswith("/"):
            os.unlink(link)
            os.symlink(os.path.relpath(hroot / target.lstrip("/"), link.parent), link)
        if not link.exists():
            raise SetupError(f"after unpacking, {link} -> {os.readlink(link)} does not resolve "
                             f"(is {kbuild} for {host_arch} unpacked?)")
    if not (build_dir / "scripts" / "mod" / "modpost").exists():
        raise SetupError(f"{kbuild} did not provide scripts/mod/modpost for {build_dir}")
    _write_json(stamp, {"version": version, "debs": [f.name for f in files]})
    # Only the unpacked tree is needed from now on (the index is fetched again, in seconds, for
    # another kernel).
    shutil.rmtree(debs, ignore_errors=True)
    shutil.rmtree(kroot / "apt" / "lists", ignore_errors=True)
    return build_dir


def _compiler(build_dir: Path) -> tuple[str, str]:
    """The cross compiler the kernel's build names (``.kernelvariables``: ``gcc-12``) and its
    version line."""
    cc = f"{CROSS_COMPILE}gcc"
    for kv in (build_dir / ".kernelvariables", *build_dir.parent.glob(
            "linux-headers-*-common/.kernelvariables")):
        if kv.is_file():
            m = re.search(r"(?m)^\s*CC\s*[:?]?=.*\$\(CROSS_COMPILE\)(\S+)\s*$", kv.read_text())
            if m:
                cc = CROSS_COMPILE + m.group(1)
                break
    if shutil.which(cc) is None:
        raise SetupError(f"the kernel headers name the compiler {cc}, which is not installed "
                         f"(package gcc-aarch64-linux-gnu)")
    return cc, _run([cc, "--version"], what=f"{cc} --version").splitlines()[0]


# --------------------------------------------------------------------------------------------
# build

def _sources() -> list[Path]:
    if not SOURCE_DIR.is_dir():
        raise SetupError(f"the driver source folder {SOURCE_DIR} is missing (it is not part of "
                         f"an installed package: run from a clone, installed with pip -e)")
    files = sorted(p for p in SOURCE_DIR.iterdir()
                   if p.is_file() and _SOURCE_PATTERN.fullmatch(p.name))
    if not any(p.name == f"{MODULE_NAME}.c" for p in files):
        raise SetupError(f"{SOURCE_DIR / (MODULE_NAME + '.c')} is missing")
    return files


def build_driver(progress: Progress = print, release: Optional[str] = None,
                 version: Optional[str] = None) -> Path:
    """Path of ``virtio_mmio_v3.ko`` built for the guest's kernel (cached).

    ``release``/``version``: the kernel release and its Debian package version (as in
    ``guest/release.json``); by default read from there, resolving the kernel with
    :mod:`.setup` first if needed. Pass them when calling from inside :func:`.setup.prepare`.
    Raises :class:`.setup.SetupError` with a one-line reason."""
    if release is None:
        release, version = guest_kernel(progress)
    elif version is None:
        info = _read_json(cache_root() / "guest" / "release.json") or {}
        if info.get("release") != release:
            raise SetupError(f"no package version known for kernel {release} "
                             f"(guest/release.json names {info.get('release')!r})")
        version = _deb_version(info["kernel_deb"])
    sources = _sources()
    kroot = cache_root() / "kmod"
    kroot.mkdir(parents=True, exist_ok=True)
    with open(kroot / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"kmod: waiting for another build holding {kroot / '.lock'}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(kroot, sources, release, version, progress)


def _build_locked(kroot: Path, sources: list[Path], release: str, version: str,
                  progress: Progress) -> Path:
    # A cached module needs neither the headers nor apt: look for it first (the compiler's
    # version line is part of the key, and asking it is cheap).
    src_key = _sha(RECIPE_VERSION, release, version,
                   *[x for p in sources for x in (p.name, p.read_bytes())])
    out_dir = kroot / release
    index = _read_json(out_dir / "built.json") or {}
    cached = index.get(src_key) or {}
    if cached and (out_dir / cached["ko"]).is_file() and shutil.which(cached["cc"]):
        line = _run([cached["cc"], "--version"], what=f"{cached['cc']} --version").splitlines()
        if line and line[0] == cached["compiler"]:
            return out_dir / cached["ko"]

    _ensure_host_packages(progress)
    build_dir = _headers(kroot, release, version, progress)
    cc, compiler = _compiler(build_dir)
    key = _sha(src_key, compiler)[:16]
    ko = out_dir / key / f"{MODULE_NAME}.ko"
    if ko.is_file():
        _record(out_dir, index, src_key, ko, cc, compiler)
        return ko

    ko.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-", dir=kroot) as scratch:
        work = Path(scratch) / MODULE_NAME
        work.mkdir()
        for p in sources:
            shutil.copy2(p, work / p.name)
        progress(f"kmod: building {MODULE_NAME}.ko for {release} ({compiler})")
        t0 = time.monotonic()
        cmd = ["make", "-C", str(build_dir), f"M={work}", "ARCH=arm64",
               f"CROSS_COMPILE={CROSS_COMPILE}", "KCFLAGS=-Werror", "modules"]
        out = _run(cmd, what=f"building {MODULE_NAME}.ko")
        warnings = [line for line in out.splitlines() if re.search(r"\bwarning\b", line, re.I)]
        if warnings:
            raise SetupError(f"building {MODULE_NAME}.ko gave warnings: {warnings[0]}")
        built = work / f"{MODULE_NAME}.ko"
        if not built.is_file():
            raise SetupError(f"make finished but {built.name} is missing:\n{_tail(out)}")
        vermagic = (modinfo(built).get("vermagic") or [""])[0]
        if vermagic.split(" ")[0] != release:
            raise SetupError(f"{MODULE_NAME}.ko has vermagic {vermagic!r}, but the guest boots "
                             f"kernel {release}")
        tmp = ko.with_suffix(".tmp")
        shutil.copy2(built, tmp)
        os.replace(tmp, ko)
        (ko.parent / "build.log").write_text(" ".join(cmd) + "\n" + out)
        progress(f"kmod: built {ko} in {time.monotonic() - t0:.1f} s")
    _record(out_dir, index, src_key, ko, cc, compiler)
    return ko


def _record(out_dir: Path, index: dict, src_key: str, ko: Path, cc: str, compiler: str) -> None:
    index = {k: v for k, v in index.items()
             if isinstance(v, dict) and (out_dir / v.get("ko", "")).is_file()}
    index[src_key] = {"ko": str(ko.relative_to(out_dir)), "cc": cc, "compiler": compiler}
    # Keep the newest few builds (switching between source versions stays cheap).
    keep = sorted(index, key=lambda k: (out_dir / index[k]["ko"]).stat().st_mtime)[-KEEP_BUILDS:]
    for k in [k for k in index if k not in keep]:
        shutil.rmtree((out_dir / index.pop(k)["ko"]).parent, ignore_errors=True)
    _write_json(out_dir / "built.json", index)


if __name__ == "__main__":
    try:
        path = build_driver(progress=lambda m: print(m, file=sys.stderr))
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(path)
