"""The virtio-mmio endpoint (Amaranth HDL): see the README and docs/spec.md."""

#: The name this project is installed under (pip, importlib.metadata).
DISTRIBUTION = "virtio-mmio-endpoint"


def package_version():
    """The installed version of :data:`DISTRIBUTION`, or None when it is not installed
    (sources used from a plain checkout)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return None
