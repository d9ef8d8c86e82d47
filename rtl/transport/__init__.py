"""The virtio-mmio transport, organised by function: each block (:mod:`.block`) owns its
registers, its write tags, its gateware and its reset; a profile (:mod:`.profiles`) is a list
of configured blocks.

* :mod:`.identification` — MagicValue, Version, DeviceID, VendorID;
* :mod:`.features` — DeviceFeatures/DriverFeatures and their selectors;
* :mod:`.status` — Status and the device reset;
* :mod:`.queues` — QueueSel, the queue registers and table, the device's queue-state port;
* :mod:`.notify` — QueueNotify, the doorbells, the notification queue;
* :mod:`.interrupts` — InterruptStatus/ACK and the MSI registers (with :mod:`virtio_mmio.transport.msi`);
* :mod:`.shm` — shared-memory regions;
* :mod:`.config` — ConfigGeneration and the config-space port;
* :mod:`.classifier` — the write tags of a profile's blocks, for the bus layer.
"""
