"""Co-simulation of stock Linux against the RTL: a QEMU ``virt`` machine whose top virtio-mmio slot
forwards every access over a UNIX socket to a simulator process (see :mod:`.setup`)."""
