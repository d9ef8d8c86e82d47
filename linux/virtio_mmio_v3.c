// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * virtio-mmio transport with the "Version 3" additions: MSI messages and
 * per-queue notification addresses.
 *
 * A platform driver for "virtio,mmio" device-tree nodes, loaded instead of the
 * stock virtio_mmio module.  It speaks register layout Version 1 (legacy) and
 * 2 as the virtio 1.x specification describes them, and Version 3 as the
 * December 2019 virtio-dev proposal "virtio-mmio: Add MSI and different
 * notification address support" adds them:
 *
 *  - QueueNotify (0x050) read once at probe gives the doorbell layout
 *    {multiplier[31:16], base[15:0]}; queue q is notified at
 *    base + q * multiplier (multiplier 0: one doorbell at base, the queue
 *    taken from the data word).
 *  - N + 1 MSI vectors (0: configuration change, q + 1: queue q), each
 *    programmed by staging MsiAddrLow/High and MsiData and a 16-bit
 *    UPDATE command (0x1000 | vector) at MsiCmd (0x0c2).  The vectors are
 *    platform-MSI vectors of the platform device, so the MSI controller
 *    named by the node's msi-parent (the GICv3 ITS on arm64) translates them.
 *
 * Two MSI dialects exist, and the device does not say which it implements:
 *
 *  - seed: MsiStatus (0x0c0, 16 bit, read-only) bit 15 = MSI enabled, bits
 *    10:0 = N; enable/disable with MsiCmd ENABLE (0x2001 / 0x2000).
 *  - k1 (the Linux patch that accompanied the proposal): MsiStatus bit 15
 *    reads 1 whenever MSI is implemented; enable/disable by writing MsiStatus
 *    with bit 15 set/clear.
 *
 * They are told apart after a device reset, when MSI is off in both: bit 15
 * set means k1.  Module parameters force a dialect or the wired interrupt.
 *
 * A third dialect extends Version 2 devices (the Dragonball VMM's):
 *
 *  - dragonball: VendorID bits 7:0 advertise the extensions (bit 1 MSI,
 *    bit 2 doorbells at 0x1000 + 4 * q); MsiStatus bit 15 reads 1 when MSI
 *    is supported, and writing it enables/disables MSI, which the device only
 *    takes before DRIVER_OK; the staging registers only take writes while
 *    MSI is on, so MSI is switched on before the vectors are programmed;
 *    MsiCmd has UPDATE (0x1000), MASK (0x2000) and UNMASK (0x3000) per
 *    vector, and each vector is unmasked after its UPDATE.  A Version 2
 *    device is taken for one when VendorID bit 1 is set and MsiStatus bit 15
 *    reads 1 after a reset.
 *
 * Without an MSI domain (no msi-parent), or when allocating the vectors
 * fails, the wired interrupt with InterruptStatus/InterruptACK is used, as
 * Version 1/2 devices always do.  While MSI is enabled InterruptStatus is
 * never read and InterruptACK never written.
 *
 * Locking: msi_lock (a spinlock, taken with interrupts disabled) serialises
 * every access to the MSI registers 0x0c0-0x0cc and the Status write of a
 * device reset.  The MSI write-message callback can run in atomic context at
 * any time the vectors are allocated (activation in request_irq(), shutdown
 * in free_irq(), re-targeting by the irqchip), so it only takes that lock
 * around its four writes and never sleeps.  Everything else runs in the
 * sleepable virtio config callbacks, which the virtio core serialises.
 */

#include <linux/bitops.h>
#include <linux/delay.h>
#include <linux/dma-mapping.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/irq.h>
#include <linux/irqdomain.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/msi.h>
#include <linux/of.h>
#include <linux/platform_device.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/version.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <uapi/linux/virtio_mmio.h>

#define VMV3_NAME		"virtio-mmio-v3"

/* Version 3 registers (16-bit MsiStatus/MsiCmd share the word at 0x0c0). */
#define VMV3_MSI_STATUS		0x0c0
#define VMV3_MSI_CMD		0x0c2
#define VMV3_MSI_ADDR_LOW	0x0c4
#define VMV3_MSI_ADDR_HIGH	0x0c8
#define VMV3_MSI_DATA		0x0cc

#define VMV3_MSI_STATUS_ENABLED	BIT(15)
#define VMV3_MSI_STATUS_QUEUES	GENMASK(10, 0)
#define VMV3_MSI_CMD_UPDATE	0x1000
#define VMV3_MSI_CMD_ENABLE	0x2000
#define VMV3_DB_MSI_CMD_UNMASK	0x3000		/* dragonball */
#define VMV3_DB_VENDOR_MSI	BIT(1)		/* dragonball VendorID bits */
#define VMV3_DB_VENDOR_DOORBELLS	BIT(2)
#define VMV3_DB_DOORBELL_BASE	0x1000
#define VMV3_DB_DOORBELL_STRIDE	4
#define VMV3_MSI_VECTOR_MAX	0x0fff

#define VMV3_MAGIC		0x74726976	/* "virt" */
#define VMV3_VRING_ALIGN	PAGE_SIZE

#ifndef VIRTIO_F_NOTIFICATION_DATA
#define VIRTIO_F_NOTIFICATION_DATA	38
#endif

/*
 * Kernel interfaces that changed after 6.1 (only 6.1 is build-tested).  An
 * out-of-tree module has to test the kernel version; it is done in this one
 * place.
 */
#define VMV3_KERNEL_AT_LEAST(major, minor, sub) \
	(LINUX_VERSION_CODE >= KERNEL_VERSION(major, minor, sub))
#define VMV3_HAVE_NOTIFICATION_DATA	VMV3_KERNEL_AT_LEAST(6, 4, 0)
#define VMV3_HAVE_DEVICE_MSI		VMV3_KERNEL_AT_LEAST(6, 10, 0)
#define VMV3_HAVE_VQS_INFO		VMV3_KERNEL_AT_LEAST(6, 11, 0)
#define VMV3_REMOVE_RETURNS_VOID	VMV3_KERNEL_AT_LEAST(6, 11, 0)

static char *dialect = "auto";
module_param(dialect, charp, 0444);
MODULE_PARM_DESC(dialect,
		 "MSI dialect: auto (probe), seed or k1 (Version 3), dragonball (Version 2) (default auto)");

static bool msi = true;
module_param(msi, bool, 0444);
MODULE_PARM_DESC(msi,
		 "Use MSI on Version 3 devices with an MSI domain (default 1; 0: wired)");

enum vmv3_dialect {
	VMV3_DIALECT_NONE,	/* Version 1/2: no MSI registers */
	VMV3_DIALECT_SEED,
	VMV3_DIALECT_K1,
	VMV3_DIALECT_DRAGONBALL,	/* Version 2 with the Dragonball extensions */
};

static const char * const vmv3_dialect_names[] = {
	[VMV3_DIALECT_NONE] = "none",
	[VMV3_DIALECT_SEED] = "seed",
	[VMV3_DIALECT_K1] = "k1",
	[VMV3_DIALECT_DRAGONBALL] = "dragonball",
};

enum vmv3_irq_mode {
	VMV3_IRQ_NONE,		/* no virtqueues set up */
	VMV3_IRQ_WIRED,
	VMV3_IRQ_MSI,
};

static const char * const vmv3_irq_mode_names[] = {
	[VMV3_IRQ_NONE] = "none",
	[VMV3_IRQ_WIRED] = "wired",
	[VMV3_IRQ_MSI] = "msi",
};

/* What find_vqs() was asked for, for one hardware queue. */
struct vmv3_vq_info {
	const char *name;
	vq_callback_t *callback;
	bool ctx;
};

struct vmv3_device {
	struct virtio_device vdev;
	struct platform_device *pdev;
	void __iomem *base;
	resource_size_t size;
	u32 version;

	/* Doorbells: queue q at base + notify_base + q * notify_multiplier. */
	bool doorbells;
	u32 notify_base;
	u32 notify_multiplier;
	bool notify_data;	/* VIRTIO_F_NOTIFICATION_DATA negotiated */

	/* MSI (Version 3): dialect and N from MsiStatus after reset. */
	enum vmv3_dialect dialect;
	bool msi_capable;	/* seed, or k1 with MsiStatus bit 15 set */
	unsigned int msi_queues;
	spinlock_t msi_lock;	/* MSI registers and the reset write */

	/* Set up by find_vqs(), torn down by del_vqs(). */
	enum vmv3_irq_mode irq_mode;
	unsigned int nqueues;
	struct virtqueue **vqs;		/* by hardware queue index */
	int wired_irq;
	unsigned int msi_nvec;		/* allocated vectors, 0 if none */
	bool *msi_requested;		/* per vector */
	char **msi_names;		/* per vector, for /proc/interrupts */
};

#define to_vmv3(_vdev) container_of(_vdev, struct vmv3_device, vdev)

/* ---------------------------------------------------------------------------
 * Configuration space, status, features
 */

static void vmv3_get(struct virtio_device *vdev, unsigned int offset,
		     void *buf, unsigned int len)
{
	struct vmv3_device *vm = to_vmv3(vdev);
	void __iomem *addr = vm->base + VIRTIO_MMIO_CONFIG + offset;
	u8 *bytes = buf;
	__le16 w;
	__le32 l;
	unsigned int i;

	if (vm->version == 1) {
		/* Legacy devices are guest-endian; bytes keep that order. */
		for (i = 0; i < len; i++)
			bytes[i] = readb(addr + i);
		return;
	}

	switch (len) {
	case 1:
		bytes[0] = readb(addr);
		break;
	case 2:
		w = cpu_to_le16(readw(addr));
		memcpy(buf, &w, sizeof(w));
		break;
	case 4:
		l = cpu_to_le32(readl(addr));
		memcpy(buf, &l, sizeof(l));
		break;
	case 8:
		l = cpu_to_le32(readl(addr));
		memcpy(buf, &l, sizeof(l));
		l = cpu_to_le32(readl(addr + 4));
		memcpy(bytes + 4, &l, sizeof(l));
		break;
	default:
		for (i = 0; i < len; i++)
			bytes[i] = readb(addr + i);
	}
}

static void vmv3_set(struct virtio_device *vdev, unsigned int offset,
		     const void *buf, unsigned int len)
{
	struct vmv3_device *vm = to_vmv3(vdev);
	void __iomem *addr = vm->base + VIRTIO_MMIO_CONFIG + offset;
	const u8 *bytes = buf;
	__le16 w;
	__le32 l;
	unsigned int i;

	if (vm->version == 1) {
		for (i = 0; i < len; i++)
			writeb(bytes[i], addr + i);
		return;
	}

	switch (len) {
	case 1:
		writeb(bytes[0], addr);
		break;
	case 2:
		memcpy(&w, buf, sizeof(w));
		writew(le16_to_cpu(w), addr);
		break;
	case 4:
		memcpy(&l, buf, sizeof(l));
		writel(le32_to_cpu(l), addr);
		break;
	case 8:
		memcpy(&l, buf, sizeof(l));
		writel(le32_to_cpu(l), addr);
		memcpy(&l, bytes + 4, sizeof(l));
		writel(le32_to_cpu(l), addr + 4);
		break;
	default:
		for (i = 0; i < len; i++)
			writeb(bytes[i], addr + i);
	}
}

static u32 vmv3_generation(struct virtio_device *vdev)
{
	struct vmv3_device *vm = to_vmv3(vdev);

	if (vm->version == 1)
		return 0;
	return readl(vm->base + VIRTIO_MMIO_CONFIG_GENERATION);
}

static u8 vmv3_get_status(struct virtio_device *vdev)
{
	return readl(to_vmv3(vdev)->base + VIRTIO_MMIO_STATUS) & 0xff;
}

static void vmv3_set_status(struct virtio_device *vdev, u8 status)
{
	/* 0 is a reset, which goes through vmv3_reset() */
	if (WARN_ON(!status))
		return;
	writel(status, to_vmv3(vdev)->base + VIRTIO_MMIO_STATUS);
}

/* Switch MSI on or off in the device's dialect; caller holds msi_lock. */
static void vmv3_msi_switch_locked(struct vmv3_device *vm, bool on)
{
	u16 status;

	if (vm->dialect == VMV3_DIALECT_DRAGONBALL) {
		/* ignored by the device once DRIVER_OK is set */
		writew(on ? VMV3_MSI_STATUS_ENABLED : 0,
		       vm->base + VMV3_MSI_STATUS);
	} else if (vm->dialect == VMV3_DIALECT_K1) {
		status = readw(vm->base + VMV3_MSI_STATUS);
		if (on)
			status |= VMV3_MSI_STATUS_ENABLED;
		else
			status &= ~VMV3_MSI_STATUS_ENABLED;
		writew(status, vm->base + VMV3_MSI_STATUS);
	} else {
		writew(VMV3_MSI_CMD_ENABLE | (on ? 1 : 0),
		       vm->base + VMV3_MSI_CMD);
	}
}

static void vmv3_msi_switch(struct vmv3_device *vm, bool on)
{
	unsigned long flags;

	spin_lock_irqsave(&vm->msi_lock, flags);
	vmv3_msi_switch_locked(vm, on);
	spin_unlock_irqrestore(&vm->msi_lock, flags);
}

/* Status = 0, with MSI switched off first; the reset clears the vectors. */
static void vmv3_device_reset(struct vmv3_device *vm)
{
	unsigned long flags;
	int tries;

	spin_lock_irqsave(&vm->msi_lock, flags);
	if (vm->irq_mode == VMV3_IRQ_MSI)
		vmv3_msi_switch_locked(vm, false);
	writel(0, vm->base + VIRTIO_MMIO_STATUS);
	spin_unlock_irqrestore(&vm->msi_lock, flags);

	/* The specification asks the driver to wait until Status reads 0. */
	for (tries = 0; tries < 100; tries++) {
		if (!readl(vm->base + VIRTIO_MMIO_STATUS))
			return;
		usleep_range(1000, 2000);
	}
	dev_warn(&vm->pdev->dev, "Status did not read 0 after a reset\n");
}

static void vmv3_reset(struct virtio_device *vdev)
{
	vmv3_device_reset(to_vmv3(vdev));
}

static u64 vmv3_get_features(struct virtio_device *vdev)
{
	struct vmv3_device *vm = to_vmv3(vdev);
	u64 features;

	writel(1, vm->base + VIRTIO_MMIO_DEVICE_FEATURES_SEL);
	features = readl(vm->base + VIRTIO_MMIO_DEVICE_FEATURES);
	features <<= 32;
	writel(0, vm->base + VIRTIO_MMIO_DEVICE_FEATURES_SEL);
	features |= readl(vm->base + VIRTIO_MMIO_DEVICE_FEATURES);
	return features;
}

static int vmv3_finalize_features(struct virtio_device *vdev)
{
	struct vmv3_device *vm = to_vmv3(vdev);
	bool notify_data = __virtio_test_bit(vdev, VIRTIO_F_NOTIFICATION_DATA);

	vring_transport_features(vdev);

	/*
	 * Keep NOTIFICATION_DATA, which older rings do not know about: the
	 * notification word is built here.  Before 6.4 only for split rings,
	 * whose next index is readable through virtqueue_get_vring().
	 */
	if (notify_data && vm->version >= 2 &&
	    (VMV3_HAVE_NOTIFICATION_DATA ||
	     !__virtio_test_bit(vdev, VIRTIO_F_RING_PACKED)))
		__virtio_set_bit(vdev, VIRTIO_F_NOTIFICATION_DATA);
	else
		__virtio_clear_bit(vdev, VIRTIO_F_NOTIFICATION_DATA);
	vm->notify_data = __virtio_test_bit(vdev, VIRTIO_F_NOTIFICATION_DATA);

	if (vm->version >= 2 && !__virtio_test_bit(vdev, VIRTIO_F_VERSION_1)) {
		dev_err(&vm->pdev->dev,
			"Version %u device without VIRTIO_F_VERSION_1 refused\n",
			vm->version);
		return -EINVAL;
	}

	writel(1, vm->base + VIRTIO_MMIO_DRIVER_FEATURES_SEL);
	writel((u32)(vdev->features >> 32),
	       vm->base + VIRTIO_MMIO_DRIVER_FEATURES);
	writel(0, vm->base + VIRTIO_MMIO_DRIVER_FEATURES_SEL);
	writel((u32)vdev->features, vm->base + VIRTIO_MMIO_DRIVER_FEATURES);
	return 0;
}

static const char *vmv3_bus_name(struct virtio_device *vdev)
{
	return dev_name(&to_vmv3(vdev)->pdev->dev);
}

static bool vmv3_get_shm_region(struct virtio_device *vdev,
				struct virtio_shm_region *region, u8 id)
{
	struct vmv3_device *vm = to_vmv3(vdev);
	u64 len, addr;

	if (vm->version == 1)
		return false;

	writel(id, vm->base + VIRTIO_MMIO_SHM_SEL);
	len = (u64)readl(vm->base + VIRTIO_MMIO_SHM_LEN_HIGH) << 32;
	len |= readl(vm->base + VIRTIO_MMIO_SHM_LEN_LOW);
	if (len == ~(u64)0)
		return false;
	addr = (u64)readl(vm->base + VIRTIO_MMIO_SHM_BASE_HIGH) << 32;
	addr |= readl(vm->base + VIRTIO_MMIO_SHM_BASE_LOW);

	region->len = len;
	region->addr = addr;
	return true;
}

/* ---------------------------------------------------------------------------
 * Notifications
 */

static u32 vmv3_notification_word(struct vmv3_device *vm, struct virtqueue *vq)
{
#if VMV3_HAVE_NOTIFICATION_DATA
	return vring_notification_data(vq);
#else
	/* Split ring: {next avail index[31:16], queue[15:0]}. */
	const struct vring *vring = virtqueue_get_vring(vq);
	u16 next = virtio16_to_cpu(&vm->vdev, READ_ONCE(vring->avail->idx));

	return ((u32)next << 16) | vq->index;
#endif
}

static bool vmv3_notify(struct virtqueue *vq)
{
	struct vmv3_device *vm = to_vmv3(vq->vdev);
	u32 word = vm->notify_data ? vmv3_notification_word(vm, vq) : vq->index;
	u32 offset = VIRTIO_MMIO_QUEUE_NOTIFY;

	if (vm->doorbells)
		offset = vm->notify_base + vq->index * vm->notify_multiplier;
	writel(word, vm->base + offset);
	return true;
}

/* ---------------------------------------------------------------------------
 * Interrupts
 */

static irqreturn_t vmv3_wired_interrupt(int irq, void *opaque)
{
	struct vmv3_device *vm = opaque;
	irqreturn_t ret = IRQ_NONE;
	unsigned int i;
	u32 status;

	status = readl(vm->base + VIRTIO_MMIO_INTERRUPT_STATUS);
	if (!status)
		return IRQ_NONE;
	writel(status, vm->base + VIRTIO_MMIO_INTERRUPT_ACK);

	if (status & VIRTIO_MMIO_INT_CONFIG) {
		virtio_config_changed(&vm->vdev);
		ret = IRQ_HANDLED;
	}
	if (status & VIRTIO_MMIO_INT_VRING) {
		for (i = 0; i < vm->nqueues; i++)
			if (vm->vqs[i] && vring_interrupt(irq, vm->vqs[i]) ==
			    IRQ_HANDLED)
				ret = IRQ_HANDLED;
	}
	return ret;
}

static irqreturn_t vmv3_config_interrupt(int irq, void *opaque)
{
	struct vmv3_device *vm = opaque;

	virtio_config_changed(&vm->vdev);
	return IRQ_HANDLED;
}

/*
 * The platform-MSI write-message callback: program vector desc->msi_index.
 * Called with the vectors allocated, possibly in atomic context and while
 * MSI is enabled (re-targeting); four writes under msi_lock, no sleeping.
 *
 * free_irq() deactivates a vector with an all-zero message.  That one is not
 * passed on: MSI is already off then, and a vector aimed at address 0 would
 * turn a later enable into a memory write there.  The vector keeps its old
 * target, which the MSI controller no longer translates.
 */
static void vmv3_write_msi_msg(struct msi_desc *desc, struct msi_msg *msg)
{
	struct vmv3_device *vm = dev_get_drvdata(desc->dev);
	unsigned long flags;

	if (WARN_ON_ONCE(!vm || desc->msi_index > VMV3_MSI_VECTOR_MAX))
		return;
	if (!msg->address_lo && !msg->address_hi && !msg->data)
		return;

	spin_lock_irqsave(&vm->msi_lock, flags);
	writel(msg->address_lo, vm->base + VMV3_MSI_ADDR_LOW);
	writel(msg->address_hi, vm->base + VMV3_MSI_ADDR_HIGH);
	writel(msg->data, vm->base + VMV3_MSI_DATA);
	writew(VMV3_MSI_CMD_UPDATE | desc->msi_index, vm->base + VMV3_MSI_CMD);
	if (vm->dialect == VMV3_DIALECT_DRAGONBALL)
		writew(VMV3_DB_MSI_CMD_UNMASK | desc->msi_index,
		       vm->base + VMV3_MSI_CMD);
	spin_unlock_irqrestore(&vm->msi_lock, flags);
}

static int vmv3_msi_alloc(struct vmv3_device *vm, unsigned int nvec)
{
#if VMV3_HAVE_DEVICE_MSI
	return platform_device_msi_init_and_alloc_irqs(&vm->pdev->dev, nvec,
						       vmv3_write_msi_msg);
#else
	return platform_msi_domain_alloc_irqs(&vm->pdev->dev, nvec,
					      vmv3_write_msi_msg);
#endif
}

static void vmv3_msi_free(struct vmv3_device *vm)
{
#if VMV3_HAVE_DEVICE_MSI
	platform_device_msi_free_irqs_all(&vm->pdev->dev);
#else
	platform_msi_domain_free_irqs(&vm->pdev->dev);
#endif
}

/* Undo vmv3_msi_setup(): MSI off first, so no message uses a freed vector. */
static void vmv3_msi_teardown(struct vmv3_device *vm)
{
	unsigned int v;

	if (!vm->msi_nvec)
		return;
	vmv3_msi_switch(vm, false);
	for (v = 0; v < vm->msi_nvec; v++) {
		if (vm->msi_requested && vm->msi_requested[v])
			free_irq(msi_get_virq(&vm->pdev->dev, v),
				 v ? (void *)vm->vqs[v - 1] : (void *)vm);
		if (vm->msi_names)
			kfree(vm->msi_names[v]);
	}
	vmv3_msi_free(vm);
	kfree(vm->msi_requested);
	kfree(vm->msi_names);
	vm->msi_requested = NULL;
	vm->msi_names = NULL;
	vm->msi_nvec = 0;
	vm->irq_mode = VMV3_IRQ_NONE;
}

/*
 * Vector 0 for configuration changes, vector q + 1 for queue q; then MSI on.
 * Returns 0, or an error after undoing everything (the caller falls back to
 * the wired interrupt).
 */
static int vmv3_msi_setup(struct vmv3_device *vm)
{
	struct device *dev = &vm->pdev->dev;
	unsigned int nvec = vm->nqueues + 1;
	unsigned int v;
	int virq, err;

	err = vmv3_msi_alloc(vm, nvec);
	if (err) {
		dev_info(dev, "allocating %u MSI vectors failed (%d)\n",
			 nvec, err);
		return err;
	}
	vm->msi_nvec = nvec;
	vm->irq_mode = VMV3_IRQ_MSI;
	/* dragonball: the device only takes staged targets while MSI is on */
	if (vm->dialect == VMV3_DIALECT_DRAGONBALL)
		vmv3_msi_switch(vm, true);

	vm->msi_requested = kcalloc(nvec, sizeof(*vm->msi_requested),
				    GFP_KERNEL);
	vm->msi_names = kcalloc(nvec, sizeof(*vm->msi_names), GFP_KERNEL);
	if (!vm->msi_requested || !vm->msi_names) {
		err = -ENOMEM;
		goto fail;
	}

	for (v = 0; v < nvec; v++) {
		struct virtqueue *vq = v ? vm->vqs[v - 1] : NULL;

		/* Queues without a callback need no interrupt. */
		if (v && (!vq || !vq->callback))
			continue;
		virq = msi_get_virq(dev, v);
		if (!virq) {
			dev_err(dev, "MSI vector %u has no Linux interrupt\n",
				v);
			err = -ENXIO;
			goto fail;
		}
		vm->msi_names[v] = v ?
			kasprintf(GFP_KERNEL, "%s-%s", dev_name(dev), vq->name) :
			kasprintf(GFP_KERNEL, "%s-config", dev_name(dev));
		if (!vm->msi_names[v]) {
			err = -ENOMEM;
			goto fail;
		}
		/* request_irq() activates the vector: the callback programs it */
		if (v)
			err = request_irq(virq, vring_interrupt, 0,
					  vm->msi_names[v], vq);
		else
			err = request_irq(virq, vmv3_config_interrupt, 0,
					  vm->msi_names[v], vm);
		if (err) {
			dev_err(dev, "request_irq(%d) for MSI vector %u: %d\n",
				virq, v, err);
			goto fail;
		}
		vm->msi_requested[v] = true;
	}

	vmv3_msi_switch(vm, true);
	if (vm->dialect == VMV3_DIALECT_SEED &&
	    !(readw(vm->base + VMV3_MSI_STATUS) & VMV3_MSI_STATUS_ENABLED)) {
		dev_err(dev, "MsiStatus does not show MSI enabled after ENABLE\n");
		err = -EIO;
		goto fail;
	}
	return 0;

fail:
	vmv3_msi_teardown(vm);
	return err;
}

static int vmv3_wired_setup(struct vmv3_device *vm)
{
	struct device *dev = &vm->pdev->dev;
	int irq, err;

	irq = platform_get_irq(vm->pdev, 0);
	if (irq < 0)
		return irq;
	err = request_irq(irq, vmv3_wired_interrupt, IRQF_SHARED,
			  dev_name(dev), vm);
	if (err) {
		dev_err(dev, "request_irq(%d): %d\n", irq, err);
		return err;
	}
	vm->wired_irq = irq;
	vm->irq_mode = VMV3_IRQ_WIRED;
	return 0;
}

static void vmv3_interrupts_teardown(struct vmv3_device *vm)
{
	if (vm->irq_mode == VMV3_IRQ_MSI) {
		vmv3_msi_teardown(vm);
	} else if (vm->irq_mode == VMV3_IRQ_WIRED) {
		free_irq(vm->wired_irq, vm);
		vm->wired_irq = 0;
		vm->irq_mode = VMV3_IRQ_NONE;
	}
}

/* Why MSI is not used, or NULL if it should be tried. */
static const char *vmv3_msi_unusable(struct vmv3_device *vm)
{
	if (vm->dialect == VMV3_DIALECT_NONE)
		return NULL;	/* not reached: Version 1/2 */
	if (!msi)
		return "msi=0";
	if (!vm->msi_capable)
		return "MsiStatus bit 15 reads 0 after reset";
	if (!dev_get_msi_domain(&vm->pdev->dev))
		return "no MSI domain (no msi-parent)";
	if (vm->nqueues > vm->msi_queues)
		return "more queues than MsiStatus reports";
	return NULL;
}

static int vmv3_interrupts_setup(struct vmv3_device *vm)
{
	struct device *dev = &vm->pdev->dev;
	struct irq_chip *chip;
	const char *why = "Version 1/2";
	int err;

	if (vm->dialect != VMV3_DIALECT_NONE) {
		why = vmv3_msi_unusable(vm);
		if (!why) {
			err = vmv3_msi_setup(vm);
			if (!err) {
				chip = irq_get_chip(msi_get_virq(dev, 0));
				dev_info(dev,
					 "Version %u, %s dialect, MSI: %u vectors (%s)\n",
					 vm->version,
					 vmv3_dialect_names[vm->dialect],
					 vm->msi_nvec,
					 chip && chip->name ? chip->name : "?");
				return 0;
			}
			why = "MSI setup failed";
		}
	}

	err = vmv3_wired_setup(vm);
	if (err)
		return err;
	if (vm->dialect != VMV3_DIALECT_NONE)
		dev_info(dev,
			 "Version %u, %s dialect, wired interrupt %d (%s)\n",
			 vm->version, vmv3_dialect_names[vm->dialect],
			 vm->wired_irq, why);
	else
		dev_info(dev, "Version %u, wired interrupt %d\n",
			 vm->version, vm->wired_irq);
	return 0;
}

/* ---------------------------------------------------------------------------
 * Virtqueues
 */

static struct virtqueue *vmv3_setup_vq(struct vmv3_device *vm,
				       unsigned int index,
				       const struct vmv3_vq_info *info)
{
	struct device *dev = &vm->pdev->dev;
	struct virtqueue *vq;
	unsigned int num_max, num;
	u64 desc, avail, used;

	writel(index, vm->base + VIRTIO_MMIO_QUEUE_SEL);
	if (readl(vm->base + (vm->version == 1 ? VIRTIO_MMIO_QUEUE_PFN :
			      VIRTIO_MMIO_QUEUE_READY))) {
		dev_err(dev, "queue %u is already in use\n", index);
		return ERR_PTR(-ENOENT);
	}
	num_max = readl(vm->base + VIRTIO_MMIO_QUEUE_NUM_MAX);
	if (!num_max) {
		dev_err(dev, "queue %u does not exist (QueueNumMax 0)\n",
			index);
		return ERR_PTR(-ENOENT);
	}

	vq = vring_create_virtqueue(index, num_max, VMV3_VRING_ALIGN, &vm->vdev,
				    true, true, info->ctx, vmv3_notify,
				    info->callback, info->name);
	if (!vq) {
		dev_err(dev, "cannot allocate queue %u (%u entries)\n",
			index, num_max);
		return ERR_PTR(-ENOMEM);
	}

	num = virtqueue_get_vring_size(vq);
	desc = virtqueue_get_desc_addr(vq);
	avail = virtqueue_get_avail_addr(vq);
	used = virtqueue_get_used_addr(vq);
	writel(num, vm->base + VIRTIO_MMIO_QUEUE_NUM);

	if (vm->version == 1) {
		u64 pfn = desc >> PAGE_SHIFT;

		if (pfn >> 32) {
			dev_err(dev, "queue %u at %#llx is beyond a legacy QueuePFN\n",
				index, desc);
			vring_del_virtqueue(vq);
			return ERR_PTR(-E2BIG);
		}
		writel(PAGE_SIZE, vm->base + VIRTIO_MMIO_QUEUE_ALIGN);
		writel((u32)pfn, vm->base + VIRTIO_MMIO_QUEUE_PFN);
	} else {
		writel((u32)desc, vm->base + VIRTIO_MMIO_QUEUE_DESC_LOW);
		writel((u32)(desc >> 32), vm->base + VIRTIO_MMIO_QUEUE_DESC_HIGH);
		writel((u32)avail, vm->base + VIRTIO_MMIO_QUEUE_AVAIL_LOW);
		writel((u32)(avail >> 32),
		       vm->base + VIRTIO_MMIO_QUEUE_AVAIL_HIGH);
		writel((u32)used, vm->base + VIRTIO_MMIO_QUEUE_USED_LOW);
		writel((u32)(used >> 32), vm->base + VIRTIO_MMIO_QUEUE_USED_HIGH);
		writel(1, vm->base + VIRTIO_MMIO_QUEUE_READY);
	}
	return vq;
}

static void vmv3_del_vq(struct vmv3_device *vm, struct virtqueue *vq)
{
	writel(vq->index, vm->base + VIRTIO_MMIO_QUEUE_SEL);
	if (vm->version == 1) {
		writel(0, vm->base + VIRTIO_MMIO_QUEUE_PFN);
	} else {
		writel(0, vm->base + VIRTIO_MMIO_QUEUE_READY);
		WARN_ON(readl(vm->base + VIRTIO_MMIO_QUEUE_READY));
	}
	vring_del_virtqueue(vq);
}

static void vmv3_del_vqs(struct virtio_device *vdev)
{
	struct vmv3_device *vm = to_vmv3(vdev);
	unsigned int i;

	/* Interrupts first: no handler may run on a queue being deleted. */
	vmv3_interrupts_teardown(vm);
	for (i = 0; i < vm->nqueues; i++)
		if (vm->vqs && vm->vqs[i])
			vmv3_del_vq(vm, vm->vqs[i]);
	kfree(vm->vqs);
	vm->vqs = NULL;
	vm->nqueues = 0;
}

/*
 * info[i] describes vqs[i]; entries without a name get no queue and no
 * hardware index, as in every virtio transport.
 */
static int vmv3_find_vqs_info(struct virtio_device *vdev, unsigned int nvqs,
			      struct virtqueue *vqs[],
			      const struct vmv3_vq_info *info)
{
	struct vmv3_device *vm = to_vmv3(vdev);
	unsigned int i, index = 0;
	struct virtqueue *vq;
	int err;

	if (vm->vqs)
		return -EBUSY;	/* find_vqs twice without del_vqs */

	for (i = 0; i < nvqs; i++)
		if (info[i].name)
			index++;
	vm->vqs = kcalloc(max(index, 1U), sizeof(*vm->vqs), GFP_KERNEL);
	if (!vm->vqs)
		return -ENOMEM;
	vm->nqueues = index;

	index = 0;
	for (i = 0; i < nvqs; i++) {
		if (!info[i].name) {
			vqs[i] = NULL;
			continue;
		}
		vq = vmv3_setup_vq(vm, index, &info[i]);
		if (IS_ERR(vq)) {
			err = PTR_ERR(vq);
			goto fail;
		}
		vm->vqs[index++] = vq;
		vqs[i] = vq;
	}

	err = vmv3_interrupts_setup(vm);
	if (err)
		goto fail;
	return 0;

fail:
	vmv3_del_vqs(vdev);
	return err;
}

#if VMV3_HAVE_VQS_INFO
static int vmv3_find_vqs(struct virtio_device *vdev, unsigned int nvqs,
			 struct virtqueue *vqs[],
			 struct virtqueue_info vqs_info[],
			 struct irq_affinity *desc)
{
	struct vmv3_vq_info *info;
	unsigned int i;
	int err;

	info = kcalloc(nvqs, sizeof(*info), GFP_KERNEL);
	if (!info)
		return -ENOMEM;
	for (i = 0; i < nvqs; i++) {
		info[i].name = vqs_info[i].name;
		info[i].callback = vqs_info[i].callback;
		info[i].ctx = vqs_info[i].ctx;
	}
	err = vmv3_find_vqs_info(vdev, nvqs, vqs, info);
	kfree(info);
	return err;
}
#else
static int vmv3_find_vqs(struct virtio_device *vdev, unsigned int nvqs,
			 struct virtqueue *vqs[], vq_callback_t *callbacks[],
			 const char * const names[], const bool *ctx,
			 struct irq_affinity *desc)
{
	struct vmv3_vq_info *info;
	unsigned int i;
	int err;

	info = kcalloc(nvqs, sizeof(*info), GFP_KERNEL);
	if (!info)
		return -ENOMEM;
	for (i = 0; i < nvqs; i++) {
		info[i].name = names[i];
		info[i].callback = callbacks[i];
		info[i].ctx = ctx ? ctx[i] : false;
	}
	err = vmv3_find_vqs_info(vdev, nvqs, vqs, info);
	kfree(info);
	return err;
}
#endif

static void vmv3_synchronize_cbs(struct virtio_device *vdev)
{
	struct vmv3_device *vm = to_vmv3(vdev);
	unsigned int v;

	if (vm->irq_mode == VMV3_IRQ_WIRED) {
		synchronize_irq(vm->wired_irq);
	} else if (vm->irq_mode == VMV3_IRQ_MSI) {
		for (v = 0; v < vm->msi_nvec; v++)
			if (vm->msi_requested[v])
				synchronize_irq(msi_get_virq(&vm->pdev->dev,
							     v));
	}
}

/* The Linux interrupt of a queue's MSI vector, or 0. */
static unsigned int vmv3_vq_virq(struct vmv3_device *vm, unsigned int index)
{
	if (vm->irq_mode != VMV3_IRQ_MSI || index + 1 >= vm->msi_nvec ||
	    !vm->msi_requested[index + 1])
		return 0;
	return msi_get_virq(&vm->pdev->dev, index + 1);
}

static int vmv3_set_vq_affinity(struct virtqueue *vq,
				const struct cpumask *cpu_mask)
{
	unsigned int virq = vmv3_vq_virq(to_vmv3(vq->vdev), vq->index);

	/* A wired interrupt is shared by every queue: nothing to steer. */
	if (!virq)
		return 0;
	return irq_update_affinity_hint(virq, cpu_mask);
}

static const struct cpumask *vmv3_get_vq_affinity(struct virtio_device *vdev,
						  int index)
{
	unsigned int virq = vmv3_vq_virq(to_vmv3(vdev), index);

	return virq ? irq_get_affinity_mask(virq) : NULL;
}

static const struct virtio_config_ops vmv3_config_ops = {
	.get			= vmv3_get,
	.set			= vmv3_set,
	.generation		= vmv3_generation,
	.get_status		= vmv3_get_status,
	.set_status		= vmv3_set_status,
	.reset			= vmv3_reset,
	.find_vqs		= vmv3_find_vqs,
	.del_vqs		= vmv3_del_vqs,
	.synchronize_cbs	= vmv3_synchronize_cbs,
	.get_features		= vmv3_get_features,
	.finalize_features	= vmv3_finalize_features,
	.bus_name		= vmv3_bus_name,
	.set_vq_affinity	= vmv3_set_vq_affinity,
	.get_vq_affinity	= vmv3_get_vq_affinity,
	.get_shm_region		= vmv3_get_shm_region,
};

/* ---------------------------------------------------------------------------
 * sysfs: what the transport found and chose, under the platform device
 */

static struct vmv3_device *vmv3_from_dev(struct device *dev)
{
	return dev_get_drvdata(dev);
}

static ssize_t version_show(struct device *dev, struct device_attribute *attr,
			    char *buf)
{
	return sysfs_emit(buf, "%u\n", vmv3_from_dev(dev)->version);
}
static DEVICE_ATTR_RO(version);

static ssize_t dialect_show(struct device *dev, struct device_attribute *attr,
			    char *buf)
{
	return sysfs_emit(buf, "%s\n",
			  vmv3_dialect_names[vmv3_from_dev(dev)->dialect]);
}
static DEVICE_ATTR_RO(dialect);

static ssize_t irq_mode_show(struct device *dev, struct device_attribute *attr,
			     char *buf)
{
	return sysfs_emit(buf, "%s\n",
			  vmv3_irq_mode_names[vmv3_from_dev(dev)->irq_mode]);
}
static DEVICE_ATTR_RO(irq_mode);

static ssize_t msi_vectors_show(struct device *dev,
				struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", vmv3_from_dev(dev)->msi_nvec);
}
static DEVICE_ATTR_RO(msi_vectors);

static ssize_t notify_layout_show(struct device *dev,
				  struct device_attribute *attr, char *buf)
{
	struct vmv3_device *vm = vmv3_from_dev(dev);

	if (!vm->doorbells)
		return sysfs_emit(buf, "queue_notify\n");
	return sysfs_emit(buf, "base=0x%x multiplier=%u\n", vm->notify_base,
			  vm->notify_multiplier);
}
static DEVICE_ATTR_RO(notify_layout);

static struct attribute *vmv3_attrs[] = {
	&dev_attr_version.attr,
	&dev_attr_dialect.attr,
	&dev_attr_irq_mode.attr,
	&dev_attr_msi_vectors.attr,
	&dev_attr_notify_layout.attr,
	NULL,
};
ATTRIBUTE_GROUPS(vmv3);

/* ---------------------------------------------------------------------------
 * Platform device
 */

static void vmv3_release_dev(struct device *dev)
{
	struct virtio_device *vdev = dev_to_virtio(dev);

	kfree(to_vmv3(vdev));
}

/* Doorbell layout from QueueNotify; fall back to QueueNotify itself. */
static void vmv3_notify_layout(struct vmv3_device *vm, u32 layout)
{
	struct device *dev = &vm->pdev->dev;
	u32 base = layout & 0xffff, multiplier = layout >> 16;
	u64 last;

	if (!layout)
		return;		/* no doorbells: QueueNotify only */
	last = base + (u64)(max(vm->msi_queues, 1U) - 1) * multiplier + 4;
	if (base % 4 || multiplier % 4 || base < VIRTIO_MMIO_CONFIG ||
	    last > vm->size) {
		dev_warn(dev,
			 "doorbells at 0x%x + q * %u do not fit the 0x%llx-byte window; notifying at QueueNotify\n",
			 base, multiplier, (unsigned long long)vm->size);
		return;
	}
	vm->doorbells = true;
	vm->notify_base = base;
	vm->notify_multiplier = multiplier;
}

static enum vmv3_dialect vmv3_probe_dialect(struct vmv3_device *vm)
{
	struct device *dev = &vm->pdev->dev;
	u16 status;

	/* After a reset MSI is off: bit 15 set then means "capable" (k1). */
	writel(0, vm->base + VIRTIO_MMIO_STATUS);
	status = readw(vm->base + VMV3_MSI_STATUS);
	vm->msi_queues = status & VMV3_MSI_STATUS_QUEUES;

	if (!strcmp(dialect, "seed")) {
		vm->msi_capable = true;
		return VMV3_DIALECT_SEED;
	}
	if (!strcmp(dialect, "k1")) {
		/* as the 2019 driver: MSI only if bit 15 already reads 1 */
		vm->msi_capable = status & VMV3_MSI_STATUS_ENABLED;
		if (!vm->msi_capable)
			dev_info(dev, "dialect=k1, but MsiStatus (0x%04x) bit 15 reads 0: no MSI\n",
				 status);
		return VMV3_DIALECT_K1;
	}
	vm->msi_capable = true;
	return status & VMV3_MSI_STATUS_ENABLED ? VMV3_DIALECT_K1 :
						  VMV3_DIALECT_SEED;
}

/*
 * Version 2: the Dragonball extensions when VendorID bit 1 advertises MSI
 * and MsiStatus bit 15 confirms it after a reset (a plain Version 2 device
 * reads 0 there); NONE otherwise, or with dialect=seed/k1.
 */
static enum vmv3_dialect vmv3_probe_dragonball(struct vmv3_device *vm)
{
	u32 vendor = vm->vdev.id.vendor;
	u16 status;

	if (strcmp(dialect, "auto") && strcmp(dialect, "dragonball"))
		return VMV3_DIALECT_NONE;
	if (!(vendor & VMV3_DB_VENDOR_MSI))
		return VMV3_DIALECT_NONE;
	writel(0, vm->base + VIRTIO_MMIO_STATUS);
	status = readw(vm->base + VMV3_MSI_STATUS);
	if (!(status & VMV3_MSI_STATUS_ENABLED))
		return VMV3_DIALECT_NONE;
	vm->msi_queues = status & VMV3_MSI_STATUS_QUEUES;
	vm->msi_capable = true;
	if (vendor & VMV3_DB_VENDOR_DOORBELLS)
		vmv3_notify_layout(vm, VMV3_DB_DOORBELL_STRIDE << 16 |
				   VMV3_DB_DOORBELL_BASE);
	return VMV3_DIALECT_DRAGONBALL;
}

static int vmv3_probe(struct platform_device *pdev)
{
	struct device *dev = &pdev->dev;
	struct vmv3_device *vm;
	struct resource *res;
	void __iomem *base;
	u32 magic, version, device_id, layout = 0;
	int err;

	base = devm_platform_get_and_ioremap_resource(pdev, 0, &res);
	if (IS_ERR(base))
		return PTR_ERR(base);

	magic = readl(base + VIRTIO_MMIO_MAGIC_VALUE);
	if (magic != VMV3_MAGIC) {
		dev_err(dev, "wrong magic value 0x%08x\n", magic);
		return -ENODEV;
	}
	version = readl(base + VIRTIO_MMIO_VERSION);
	if (version < 1 || version > 3) {
		dev_err(dev, "register layout Version %u not supported (1-3)\n",
			version);
		return -ENXIO;
	}
	/* DeviceID 0 is a placeholder slot: touch nothing else. */
	device_id = readl(base + VIRTIO_MMIO_DEVICE_ID);
	if (!device_id)
		return -ENODEV;

	vm = kzalloc(sizeof(*vm), GFP_KERNEL);
	if (!vm)
		return -ENOMEM;
	vm->pdev = pdev;
	vm->base = base;
	vm->size = resource_size(res);
	vm->version = version;
	spin_lock_init(&vm->msi_lock);
	vm->vdev.dev.parent = dev;
	vm->vdev.dev.release = vmv3_release_dev;
	vm->vdev.config = &vmv3_config_ops;
	vm->vdev.id.device = device_id;
	vm->vdev.id.vendor = readl(base + VIRTIO_MMIO_VENDOR_ID);

	if (version == 3) {
		/* The layout is read once, before any reset. */
		layout = readl(base + VIRTIO_MMIO_QUEUE_NOTIFY);
		vm->dialect = vmv3_probe_dialect(vm);
		vmv3_notify_layout(vm, layout);
	} else if (version == 2) {
		vm->dialect = vmv3_probe_dragonball(vm);
	}

	if (version == 1) {
		writel(PAGE_SIZE, base + VIRTIO_MMIO_GUEST_PAGE_SIZE);
		err = dma_set_mask(dev, DMA_BIT_MASK(32 + PAGE_SHIFT));
		if (!err)
			err = dma_set_coherent_mask(dev,
						    DMA_BIT_MASK(32 + PAGE_SHIFT));
	} else {
		err = dma_set_mask_and_coherent(dev, DMA_BIT_MASK(64));
	}
	if (err)
		err = dma_set_mask_and_coherent(dev, DMA_BIT_MASK(32));
	if (err)
		dev_warn(dev, "no usable DMA mask, DMA may not work\n");

	platform_set_drvdata(pdev, vm);
	if (vm->dialect == VMV3_DIALECT_NONE)
		dev_info(dev, "Version %u, device %u, vendor 0x%x\n", version,
			 vm->vdev.id.device, vm->vdev.id.vendor);
	else if (vm->doorbells)
		dev_info(dev,
			 "Version %u, device %u, vendor 0x%x, %s dialect, %u queues, doorbells at 0x%x + %u * q\n",
			 version, vm->vdev.id.device, vm->vdev.id.vendor,
			 vmv3_dialect_names[vm->dialect], vm->msi_queues,
			 vm->notify_base, vm->notify_multiplier);
	else
		dev_info(dev,
			 "Version %u, device %u, vendor 0x%x, %s dialect, %u queues, notify at QueueNotify\n",
			 version, vm->vdev.id.device, vm->vdev.id.vendor,
			 vmv3_dialect_names[vm->dialect], vm->msi_queues);

	err = register_virtio_device(&vm->vdev);
	if (err) {
		dev_err(dev, "registering the virtio device: %d\n", err);
		platform_set_drvdata(pdev, NULL);
		put_device(&vm->vdev.dev);	/* frees vm */
	}
	return err;
}

static void vmv3_remove_common(struct platform_device *pdev)
{
	struct vmv3_device *vm = platform_get_drvdata(pdev);

	/* Keep vm until the interrupts are surely gone. */
	get_device(&vm->vdev.dev);
	unregister_virtio_device(&vm->vdev);
	/* A device driver that left its queues behind: drop them here. */
	if (vm->vqs)
		vmv3_del_vqs(&vm->vdev);
	/* Leave the device reset: MSI off, every vector invalid. */
	if (vm->dialect != VMV3_DIALECT_NONE)
		vmv3_msi_switch(vm, false);
	writel(0, vm->base + VIRTIO_MMIO_STATUS);
	platform_set_drvdata(pdev, NULL);
	put_device(&vm->vdev.dev);
}

#if VMV3_REMOVE_RETURNS_VOID
static void vmv3_remove(struct platform_device *pdev)
{
	vmv3_remove_common(pdev);
}
#else
static int vmv3_remove(struct platform_device *pdev)
{
	vmv3_remove_common(pdev);
	return 0;
}
#endif

static const struct of_device_id vmv3_of_match[] = {
	{ .compatible = "virtio,mmio", },
	{ }
};
MODULE_DEVICE_TABLE(of, vmv3_of_match);

static struct platform_driver vmv3_driver = {
	.probe		= vmv3_probe,
	.remove		= vmv3_remove,
	.driver		= {
		.name		= VMV3_NAME,
		.of_match_table	= vmv3_of_match,
		.dev_groups	= vmv3_groups,
	},
};

static int __init vmv3_init(void)
{
	if (strcmp(dialect, "auto") && strcmp(dialect, "seed") &&
	    strcmp(dialect, "k1") && strcmp(dialect, "dragonball")) {
		pr_err(VMV3_NAME ": dialect=%s: use auto, seed, k1 or dragonball\n",
		       dialect);
		return -EINVAL;
	}
	return platform_driver_register(&vmv3_driver);
}

static void __exit vmv3_exit(void)
{
	platform_driver_unregister(&vmv3_driver);
}

module_init(vmv3_init);
module_exit(vmv3_exit);

MODULE_DESCRIPTION("virtio-mmio transport with Version 3 (MSI, notification addresses)");
MODULE_LICENSE("Dual BSD/GPL");
