/*
 * virtio-mmio-cosim: a sysbus device that forwards every access to its 0x200-byte MMIO window
 * over a UNIX stream socket to an external simulator and waits for the answer.
 *
 * Written for the virtio-mmio-endpoint project (BSD-2-Clause). Built inside QEMU 7.2 by
 * virtio_mmio_sim.linux.setup, which also places it in slot 31 of the arm `virt` machine
 * (machine option cosim-socket=PATH), maps its marker page (second MMIO region) at
 * 0x0a010000 and, on a machine with a GICv3 ITS, gives the slot's device-tree node
 * `msi-parent = <&its DEVID>` with DEVID = the machine option cosim-devid (default 0x31),
 * which is also this device's property "requester-id".
 *
 * Wire format: every message starts with a 24-byte little-endian header
 *   u32 type, u32 size, u64 addr, u64 data
 * and only MEM_WRITE (6) and MEM_DATA (7) carry `size` payload bytes after it.
 *
 *   QEMU -> sim   1 MMIO_READ  (addr = offset, size = 1/2/4)        -> expects 3 READ_DATA
 *                 2 MMIO_WRITE (addr = offset, size, data = value)  -> expects 4 WRITE_ACK
 *                12 MARK       (addr = offset in the marker page, size, data = value)
 *                              -> expects 13 MARK_ACK
 *   sim -> QEMU   5 MEM_READ   (addr, size)          QEMU answers 7 MEM_DATA + payload
 *                 6 MEM_WRITE  (addr, size) + payload QEMU answers 8 MEM_ACK
 *                 9 IRQ        (data = level)        no answer
 *                10 MSI_WRITE  (addr, size = 4, data = the 32-bit word)
 *                              QEMU writes the word, little-endian, to guest-physical addr on the
 *                              system address space with MemTxAttrs.requester_id = the device's
 *                              requester ID (the ITS takes its DeviceID from it), and answers
 *                              11 MSI_DONE (addr, size, data = the MemTxResult, 0 = MEMTX_OK)
 *
 * The marker page is a guest-visible 4 KiB region outside the virtio-mmio slot (the guest
 * writes it through /dev/mem once the driver owns the slot): every write becomes a MARK, so
 * the simulator can tell phases of a guest workload apart in its access log and act on them.
 * Reads return 0x4b52414d ("MARK").
 *
 * Concurrency: the MMIO callbacks run on the vCPU thread with the BQL held; they send the request
 * and block on the socket until the reply, serving 5/6/9 messages that arrive first. Outside MMIO
 * accesses the socket is watched by the main loop (qemu_set_fd_handler); its handler also runs
 * under the BQL, so the two never read at the same time. The handler peeks with MSG_DONTWAIT
 * first, because a vCPU access may already have consumed what made the fd readable.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/module.h"
#include "hw/sysbus.h"
#include "hw/irq.h"
#include "hw/qdev-properties.h"
#include "exec/address-spaces.h"
#include "exec/memory.h"
#include "qom/object.h"

#include <sys/socket.h>
#include <sys/un.h>

#define TYPE_VIRTIO_MMIO_COSIM "virtio-mmio-cosim"
OBJECT_DECLARE_SIMPLE_TYPE(VirtioMmioCosimState, VIRTIO_MMIO_COSIM)

#define COSIM_WINDOW_SIZE      0x200
#define COSIM_CONNECT_TIMEOUT_S 30
#define COSIM_MAX_MEM_BYTES    (1u << 20)

enum {
    COSIM_MMIO_READ  = 1,
    COSIM_MMIO_WRITE = 2,
    COSIM_READ_DATA  = 3,
    COSIM_WRITE_ACK  = 4,
    COSIM_MEM_READ   = 5,
    COSIM_MEM_WRITE  = 6,
    COSIM_MEM_DATA   = 7,
    COSIM_MEM_ACK    = 8,
    COSIM_IRQ        = 9,
    COSIM_MSI_WRITE  = 10,
    COSIM_MSI_DONE   = 11,
    COSIM_MARK       = 12,
    COSIM_MARK_ACK   = 13,
};

#define COSIM_MARK_SIZE        0x1000
#define COSIM_MARK_MAGIC       0x4b52414du
#define COSIM_DEFAULT_REQUESTER_ID 0x31

#define COSIM_HEADER_BYTES 24

typedef struct CosimMsg {
    uint32_t type;
    uint32_t size;
    uint64_t addr;
    uint64_t data;
} CosimMsg;

struct VirtioMmioCosimState {
    SysBusDevice parent_obj;

    MemoryRegion iomem;
    MemoryRegion markmem;
    qemu_irq irq;
    int fd;
    uint8_t *buf;           /* COSIM_MAX_MEM_BYTES scratch for guest-memory transfers */

    char *socket_path;      /* property "socket" */
    uint32_t requester_id;  /* property "requester-id": MemTxAttrs.requester_id of MSI writes */
};

static void G_NORETURN cosim_die(VirtioMmioCosimState *s, const char *what, int err)
{
    if (err) {
        error_report("virtio-mmio-cosim: %s on socket '%s' (%s); the simulator went away, "
                     "stopping QEMU", what, s->socket_path, strerror(err));
    } else {
        error_report("virtio-mmio-cosim: %s on socket '%s'; the simulator went away, "
                     "stopping QEMU", what, s->socket_path);
    }
    exit(1);
}

/* Blocking read of exactly len bytes; dies on EOF or error. */
static void cosim_read_exact(VirtioMmioCosimState *s, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = read(s->fd, p, len);
        if (n > 0) {
            p += n;
            len -= n;
        } else if (n == 0) {
            cosim_die(s, "end of file", 0);
        } else if (errno != EINTR && errno != EAGAIN) {
            cosim_die(s, "read error", errno);
        }
    }
}

/* Blocking write of exactly len bytes; dies on error. */
static void cosim_write_exact(VirtioMmioCosimState *s, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = send(s->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= n;
        } else if (n < 0 && errno != EINTR && errno != EAGAIN) {
            cosim_die(s, "write error", errno);
        }
    }
}

static void cosim_send(VirtioMmioCosimState *s, uint32_t type, uint32_t size,
                       uint64_t addr, uint64_t data)
{
    uint8_t raw[COSIM_HEADER_BYTES];

    stl_le_p(raw + 0, type);
    stl_le_p(raw + 4, size);
    stq_le_p(raw + 8, addr);
    stq_le_p(raw + 16, data);
    cosim_write_exact(s, raw, sizeof(raw));
}

static void cosim_recv(VirtioMmioCosimState *s, CosimMsg *msg)
{
    uint8_t raw[COSIM_HEADER_BYTES];

    cosim_read_exact(s, raw, sizeof(raw));
    msg->type = ldl_le_p(raw + 0);
    msg->size = ldl_le_p(raw + 4);
    msg->addr = ldq_le_p(raw + 8);
    msg->data = ldq_le_p(raw + 16);
}

/*
 * Serve one simulator-initiated message (MEM_READ, MEM_WRITE, IRQ).
 * Returns false if msg is of another type (left to the caller).
 */
static bool cosim_serve(VirtioMmioCosimState *s, const CosimMsg *msg)
{
    MemTxResult res;

    switch (msg->type) {
    case COSIM_MEM_READ:
        if (msg->size > COSIM_MAX_MEM_BYTES) {
            error_report("virtio-mmio-cosim: MEM_READ of %u bytes exceeds the limit of %u",
                         msg->size, COSIM_MAX_MEM_BYTES);
            exit(1);
        }
        res = address_space_read(&address_space_memory, msg->addr,
                                 MEMTXATTRS_UNSPECIFIED, s->buf, msg->size);
        if (res != MEMTX_OK) {
            warn_report("virtio-mmio-cosim: MEM_READ of %u bytes at 0x%" PRIx64
                        " did not complete (result %d)", msg->size, msg->addr, (int)res);
        }
        cosim_send(s, COSIM_MEM_DATA, msg->size, msg->addr, 0);
        cosim_write_exact(s, s->buf, msg->size);
        return true;
    case COSIM_MEM_WRITE:
        if (msg->size > COSIM_MAX_MEM_BYTES) {
            error_report("virtio-mmio-cosim: MEM_WRITE of %u bytes exceeds the limit of %u",
                         msg->size, COSIM_MAX_MEM_BYTES);
            exit(1);
        }
        cosim_read_exact(s, s->buf, msg->size);
        res = address_space_write(&address_space_memory, msg->addr,
                                  MEMTXATTRS_UNSPECIFIED, s->buf, msg->size);
        if (res != MEMTX_OK) {
            warn_report("virtio-mmio-cosim: MEM_WRITE of %u bytes at 0x%" PRIx64
                        " did not complete (result %d)", msg->size, msg->addr, (int)res);
        }
        cosim_send(s, COSIM_MEM_ACK, msg->size, msg->addr, 0);
        return true;
    case COSIM_IRQ:
        qemu_set_irq(s->irq, msg->data != 0);
        return true;
    case COSIM_MSI_WRITE: {
        MemTxAttrs attrs = { .requester_id = s->requester_id };

        if (msg->size != 4) {
            error_report("virtio-mmio-cosim: MSI_WRITE of %u bytes (only 4 are allowed)",
                         msg->size);
            exit(1);
        }
        address_space_stl_le(&address_space_memory, msg->addr, (uint32_t)msg->data, attrs,
                             &res);
        cosim_send(s, COSIM_MSI_DONE, msg->size, msg->addr, (uint64_t)res);
        return true;
    }
    default:
        return false;
    }
}

/* vCPU side: wait for the reply of type `expected`, serving simulator requests meanwhile. */
static uint64_t cosim_wait_reply(VirtioMmioCosimState *s, uint32_t expected)
{
    CosimMsg msg;

    for (;;) {
        cosim_recv(s, &msg);
        if (msg.type == expected) {
            return msg.data;
        }
        if (!cosim_serve(s, &msg)) {
            error_report("virtio-mmio-cosim: protocol error: got message type %u while "
                         "waiting for type %u", msg.type, expected);
            exit(1);
        }
    }
}

/* Main-loop side: serve whatever complete messages are waiting, never block on an empty socket. */
static void cosim_fd_readable(void *opaque)
{
    VirtioMmioCosimState *s = opaque;
    CosimMsg msg;
    uint8_t probe;

    for (;;) {
        ssize_t n = recv(s->fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0) {
            cosim_die(s, "end of file", 0);
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return;     /* the vCPU thread already consumed it */
            }
            if (errno == EINTR) {
                continue;
            }
            cosim_die(s, "read error", errno);
        }
        cosim_recv(s, &msg);
        if (!cosim_serve(s, &msg)) {
            error_report("virtio-mmio-cosim: protocol error: unsolicited message type %u "
                         "(no MMIO access in flight)", msg.type);
            exit(1);
        }
    }
}

static uint64_t cosim_mmio_read(void *opaque, hwaddr addr, unsigned size)
{
    VirtioMmioCosimState *s = opaque;

    cosim_send(s, COSIM_MMIO_READ, size, addr, 0);
    return cosim_wait_reply(s, COSIM_READ_DATA);
}

static void cosim_mmio_write(void *opaque, hwaddr addr, uint64_t value, unsigned size)
{
    VirtioMmioCosimState *s = opaque;

    cosim_send(s, COSIM_MMIO_WRITE, size, addr, value);
    cosim_wait_reply(s, COSIM_WRITE_ACK);
}

static uint64_t cosim_mark_read(void *opaque, hwaddr addr, unsigned size)
{
    return COSIM_MARK_MAGIC;
}

static void cosim_mark_write(void *opaque, hwaddr addr, uint64_t value, unsigned size)
{
    VirtioMmioCosimState *s = opaque;

    cosim_send(s, COSIM_MARK, size, addr, value);
    cosim_wait_reply(s, COSIM_MARK_ACK);
}

static const MemoryRegionOps cosim_mark_ops = {
    .read = cosim_mark_read,
    .write = cosim_mark_write,
    .endianness = DEVICE_LITTLE_ENDIAN,
    .valid = {
        .min_access_size = 1,
        .max_access_size = 4,
    },
    .impl = {
        .min_access_size = 1,
        .max_access_size = 4,
    },
};

static const MemoryRegionOps cosim_mmio_ops = {
    .read = cosim_mmio_read,
    .write = cosim_mmio_write,
    .endianness = DEVICE_LITTLE_ENDIAN,
    .valid = {
        .min_access_size = 1,
        .max_access_size = 4,
    },
    .impl = {
        .min_access_size = 1,
        .max_access_size = 4,
    },
};

static int cosim_connect(const char *path, Error **errp)
{
    struct sockaddr_un sa;
    int64_t deadline = g_get_monotonic_time() + COSIM_CONNECT_TIMEOUT_S * G_USEC_PER_SEC;
    int last_err = 0;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        error_setg(errp, "virtio-mmio-cosim: socket path '%s' is too long (max %zu bytes)",
                   path, sizeof(sa.sun_path) - 1);
        return -1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);

    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            error_setg_errno(errp, errno, "virtio-mmio-cosim: cannot create a UNIX socket");
            return -1;
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            return fd;
        }
        last_err = errno;
        close(fd);
        if (g_get_monotonic_time() >= deadline) {
            break;
        }
        g_usleep(100 * 1000);
    }
    error_setg(errp, "virtio-mmio-cosim: could not connect to the simulator socket '%s' "
               "within %d s (last error: %s); is the simulator running and listening?",
               path, COSIM_CONNECT_TIMEOUT_S, strerror(last_err));
    return -1;
}

static void cosim_realize(DeviceState *dev, Error **errp)
{
    VirtioMmioCosimState *s = VIRTIO_MMIO_COSIM(dev);

    if (!s->socket_path || !*s->socket_path) {
        error_setg(errp, "virtio-mmio-cosim: property 'socket' (simulator socket path) is "
                   "required");
        return;
    }
    if (s->requester_id > 0xffff) {
        error_setg(errp, "virtio-mmio-cosim: requester-id 0x%x does not fit 16 bits",
                   s->requester_id);
        return;
    }
    s->fd = cosim_connect(s->socket_path, errp);
    if (s->fd < 0) {
        return;
    }
    s->buf = g_malloc(COSIM_MAX_MEM_BYTES);
    qemu_set_fd_handler(s->fd, cosim_fd_readable, NULL, s);
}

static void cosim_unrealize(DeviceState *dev)
{
    VirtioMmioCosimState *s = VIRTIO_MMIO_COSIM(dev);

    if (s->fd >= 0) {
        qemu_set_fd_handler(s->fd, NULL, NULL, NULL);
        close(s->fd);
        s->fd = -1;
    }
    g_free(s->buf);
    s->buf = NULL;
}

static void cosim_init(Object *obj)
{
    VirtioMmioCosimState *s = VIRTIO_MMIO_COSIM(obj);
    SysBusDevice *sbd = SYS_BUS_DEVICE(obj);

    s->fd = -1;
    memory_region_init_io(&s->iomem, obj, &cosim_mmio_ops, s, TYPE_VIRTIO_MMIO_COSIM,
                          COSIM_WINDOW_SIZE);
    sysbus_init_mmio(sbd, &s->iomem);
    memory_region_init_io(&s->markmem, obj, &cosim_mark_ops, s,
                          TYPE_VIRTIO_MMIO_COSIM "-mark", COSIM_MARK_SIZE);
    sysbus_init_mmio(sbd, &s->markmem);
    sysbus_init_irq(sbd, &s->irq);
}

static Property cosim_properties[] = {
    DEFINE_PROP_STRING("socket", VirtioMmioCosimState, socket_path),
    DEFINE_PROP_UINT32("requester-id", VirtioMmioCosimState, requester_id,
                       COSIM_DEFAULT_REQUESTER_ID),
    DEFINE_PROP_END_OF_LIST(),
};

static void cosim_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);

    dc->realize = cosim_realize;
    dc->unrealize = cosim_unrealize;
    dc->desc = "virtio-mmio slot forwarded to an external simulator over a UNIX socket";
    dc->user_creatable = false;     /* placed by the virt machine option cosim-socket */
    device_class_set_props(dc, cosim_properties);
    set_bit(DEVICE_CATEGORY_MISC, dc->categories);
}

static const TypeInfo cosim_info = {
    .name = TYPE_VIRTIO_MMIO_COSIM,
    .parent = TYPE_SYS_BUS_DEVICE,
    .instance_size = sizeof(VirtioMmioCosimState),
    .instance_init = cosim_init,
    .class_init = cosim_class_init,
};

static void cosim_register_types(void)
{
    type_register_static(&cosim_info);
}

type_init(cosim_register_types)
