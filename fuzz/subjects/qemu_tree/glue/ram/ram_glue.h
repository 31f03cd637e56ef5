/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * recvmap glue, ram layer: what the received-bitmap functions of a QEMU
 * tree's migration/ram.c, physmem (exec.c), ram_addr.h and postcopy-ram.c
 * call, for the generated unit that holds their text (see ram.py).
 *
 * Written for recvmap from what those functions use; no QEMU code.  The
 * bitmap helpers are NOT here: the unit includes the tree's own
 * include/qemu/bitmap.h and links the tree's util/bitmap.c.  Provided:
 *  - the glue RAMBlock (every field any release's bodies touch), RAMList
 *    with its RCU list, the RAMBLOCK_FOREACH / QLIST_FOREACH_RCU walks;
 *  - TARGET_PAGE_BITS and qemu_target_page_bits/size, the host's base page
 *    (qemu_real_host_page_size) and QEMU's derived qemu_host_page_size, from
 *    the ABI settings;
 *  - error_report / error_setg captured as "the last error" text;
 *  - a QEMUFile over memory with QEMU's end-of-file behaviour (a read past
 *    the end yields zero bytes and records -EIO, which stays until the
 *    caller asks qemu_file_get_error; qemu_get_buffer returns the short
 *    count);
 *  - MigrationState in the postcopy-recover state, MigrationIncomingState,
 *    RAMState, capabilities all off;
 *  - RCU, mutex, trace and notifier no-ops; madvise, fallocate and the
 *    userfaultfd copy as stand-ins that succeed (fallocate on no file fails
 *    with EBADF, as the kernel's).
 */
#ifndef RECVMAP_RAM_GLUE_H
#define RECVMAP_RAM_GLUE_H

#include "qemu/osdep.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "qemu/bitmap.h"
/* The tree's own libpmem stand-in (v3.1.0 on: ram_load_cleanup persists pmem blocks);
 * without CONFIG_LIBPMEM its functions assert they are never reached, and they are not:
 * no ABI block is pmem. */
#if __has_include("qemu/pmem.h")
#include "qemu/pmem.h"
#endif
#include "ram_bridge.h"

/* glib's g_malloc0(0) returns NULL, and bitmap_new(0) with it: keep that. */
#undef g_malloc0
#define g_malloc0(n) qtram_g_malloc0(n)
static inline void *qtram_g_malloc0(size_t n)
{
    void *p;

    if (!n) {
        return NULL;
    }
    p = calloc(1, n);
    if (!p) {
        abort();
    }
    return p;
}
#ifndef g_autofree
#define g_autofree __attribute__((cleanup(qtram_autofree)))
static inline void qtram_autofree(void *pp)
{
    free(*(void **)pp);
}
#endif

#ifndef QEMU_MADV_DONTNEED
#define QEMU_MADV_DONTNEED MADV_DONTNEED
#endif
#ifndef QEMU_MADV_REMOVE
#define QEMU_MADV_REMOVE MADV_REMOVE
#endif
#define CONFIG_MADVISE 1
#define CONFIG_FALLOCATE_PUNCH_HOLE 1

typedef uint64_t ram_addr_t;
#ifndef RAM_ADDR_FMT
#define RAM_ADDR_FMT "%" PRIx64
#endif

/* RAMBlock flags (values are ours; only their distinctness matters). */
#define RAM_SHARED (1u << 1)
#define RAM_MIGRATABLE (1u << 4)
#define RAM_NAMED_FILE (1u << 9)
#define RAM_READONLY_FD (1u << 11)
/* RAM_PMEM: an ABI block is never persistent memory (the ABI has no such field). */
#define RAM_PMEM (1u << 5)

typedef struct RAMBlock RAMBlock;
typedef struct MemoryRegion MemoryRegion;

struct RAMBlock {
    uint8_t *host;
    ram_addr_t used_length;
    ram_addr_t max_length;
    ram_addr_t postcopy_length;
    size_t page_size;
    uint32_t flags;
    int fd;
    uint64_t fd_offset;
    MemoryRegion *mr;
    unsigned long *receivedmap;
    unsigned long *bmap;
    unsigned long *unsentmap;
    unsigned long *clear_bmap;
    uint8_t clear_bmap_shift;
    unsigned long *file_bmap;
    char idstr[256];
    struct {
        RAMBlock *le_next;
    } next;
    void *qtram_abi;            /* the ABI block this one stands for */
};

typedef struct RAMList {
    struct {
        RAMBlock *lh_first;
    } blocks;
} RAMList;

extern RAMList ram_list;

#define QLIST_FOREACH_RCU(var, head, field) \
    for ((var) = (head)->lh_first; (var); (var) = (var)->field.le_next)
#define INTERNAL_RAMBLOCK_FOREACH(block) QLIST_FOREACH_RCU(block, &ram_list.blocks, next)
#define RAMBLOCK_FOREACH(block) INTERNAL_RAMBLOCK_FOREACH(block)

#define rcu_read_lock() do { } while (0)
#define rcu_read_unlock() do { } while (0)
#define RCU_READ_LOCK_GUARD() do { } while (0)

/* Target pages: QEMU's run-time value, set through the ABI. */
#define TARGET_PAGE_BITS (qtram_target_page_bits)
int qemu_target_page_bits(void);
size_t qemu_target_page_size(void);

/* Host pages: the host's base page (getpagesize()) is the configuration's, set
 * through the ABI (qref_set_host_page_size), never a constant of ours.  QEMU
 * derived qemu_host_page_size from it in page_size_init (exec.c, then cpu.c,
 * cpu-target.c): the real host page, raised to TARGET_PAGE_SIZE when the
 * target page is bigger.  v9.0.0 removed the variable (80c3aeef7f and the
 * series around it) and compares with qemu_real_host_page_size() instead;
 * a tree of that era never names qemu_host_page_size. */
#define qemu_real_host_page_size() (qtram_host_page_size)
#define qemu_host_page_size \
    ((uintptr_t)MAX(qtram_host_page_size, (size_t)1 << TARGET_PAGE_BITS))

/* Errors: the last message is kept for qref_ram_last_error(). */
void qtram_error_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define error_report(...) qtram_error_report(__VA_ARGS__)
#define warn_report(...) do { } while (0)
#define warn_report_once(...) do { } while (0)
typedef struct Error {
    char msg[512];
} Error;
void qtram_error_setg(Error **errp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define error_setg(errp, ...) qtram_error_setg((errp), __VA_ARGS__)

/* QEMUFile over memory. */
typedef struct QEMUFile {
    const uint8_t *rbuf;        /* reader: the stream */
    size_t rlen, rpos;
    uint8_t *wbuf;              /* writer: grows */
    size_t wlen, wcap;
    int last_error;
} QEMUFile;
int qemu_file_get_error(QEMUFile *f);
int qemu_get_byte(QEMUFile *f);
uint64_t qemu_get_be64(QEMUFile *f);
size_t qemu_get_buffer(QEMUFile *f, uint8_t *buf, size_t size);
void qemu_put_byte(QEMUFile *f, int v);
void qemu_put_be64(QEMUFile *f, uint64_t v);
void qemu_put_buffer(QEMUFile *f, const uint8_t *buf, size_t size);
int qemu_fflush(QEMUFile *f);

/* Migration state. */
typedef enum {
    MIGRATION_STATUS_NONE,
    MIGRATION_STATUS_POSTCOPY_RECOVER = 12,
} MigrationStatus;
typedef enum {
    MIG_MODE_NORMAL,
    MIG_MODE_CPR_REBOOT,
    MIG_MODE_CPR_TRANSFER,
} MigMode;
typedef struct MigrationState {
    int state;
    uint8_t clear_bitmap_shift;
    struct {
        QEMUFile *from_dst_file;
    } rp_state;
} MigrationState;
typedef struct QemuMutex {
    int unused;
} QemuMutex;
typedef struct QemuCond {
    int unused;
} QemuCond;
typedef struct GTree GTree;
enum { PREEMPT_THREAD_NONE, PREEMPT_THREAD_CREATED, PREEMPT_THREAD_QUIT };
typedef struct MigrationIncomingState {
    int userfault_fd;
    QemuMutex page_request_mutex;
    QemuCond page_request_cond;
    GTree *page_requested;
    int page_requested_count;
    int preempt_thread_status;
} MigrationIncomingState;
typedef struct RAMState {
    int postcopy_bmap_sync_requested;
} RAMState;

extern MigrationState qtram_ms;
extern MigrationIncomingState qtram_mis;
static RAMState qtram_rs;
static RAMState *ram_state = &qtram_rs;

static inline MigrationState *migrate_get_current(void)
{
    return &qtram_ms;
}
static inline const char *MigrationStatus_str(int state)
{
    return state == MIGRATION_STATUS_POSTCOPY_RECOVER ? "postcopy-recover" : "none";
}
/* Capabilities: all off, except ignore-shared so the ABI's "ignored" blocks are. */
static inline bool migrate_postcopy_ram(void) { return false; }
static inline bool migrate_background_snapshot(void) { return false; }
static inline bool migrate_mapped_ram(void) { return false; }
static inline bool migrate_ignore_shared(void) { return true; }
static inline MigMode migrate_mode(void) { return MIG_MODE_NORMAL; }

#define GLOBAL_DIRTY_MIGRATION 1u
static void *migration_ops;     /* v8.x frees it in ram_save_cleanup */
static unsigned int global_dirty_tracking;
static inline void qtram_noop(void) { }
#define memory_global_dirty_log_stop(...) qtram_noop()
#define xbzrle_cleanup() qtram_noop()
#define xbzrle_load_cleanup() qtram_noop()
#define compress_threads_save_cleanup() qtram_noop()
#define compress_threads_load_cleanup() qtram_noop()
#define multifd_ram_save_cleanup() qtram_noop()
#define ram_state_cleanup(rsp) ((void)(rsp))
#define memory_region_is_nonvolatile(mr) ((void)(mr), false)
#define qemu_ram_block_writeback(rb) ((void)(rb))
#define ramblock_dirty_bitmap_clear_discarded_pages(rb) ((void)(rb), 0ul)
#define migration_rp_kick(s) ((void)(s))
#define ram_dirty_bitmap_reload_notify(s) ((void)(s))
#define mark_postcopy_blocktime_end(addr) ((void)(addr))
#define postcopy_notify_shared_wake(rb, offset) ((void)(rb), (void)(offset), 0)
#define qemu_mutex_lock(m) ((void)(m))
#define qemu_mutex_unlock(m) ((void)(m))
#define qemu_cond_signal(c) ((void)(c))
#define g_tree_lookup(t, k) ((void)(t), (void)(k), (void *)NULL)
#define g_tree_remove(t, k) ((void)(t), (void)(k), 0)
#ifndef qatomic_dec
#define qatomic_dec(p) ((void)(--*(p)))
#endif
#ifndef qatomic_dec_fetch
#define qatomic_dec_fetch(p) (--*(p))
#endif
#ifndef smp_mb
#define smp_mb() __sync_synchronize()
#endif

static inline ram_addr_t qemu_ram_block_host_offset(RAMBlock *rb, void *host)
{
    return (ram_addr_t)((uint8_t *)host - rb->host);
}

/* The leaf system calls: stand-ins that succeed on what QEMU passes them,
 * except fallocate on no file, which fails as the kernel's does (EBADF): the
 * v2.11 discard punched a hole in rb->fd even when it was -1. */
static inline int qtram_madvise(void *addr, size_t len, int advice)
{
    (void)addr, (void)len, (void)advice;
    return 0;
}
static inline int qtram_fallocate(int fd, int mode, uint64_t off, uint64_t len)
{
    (void)mode, (void)off, (void)len;
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    return 0;
}
static inline int qtram_ioctl(int fd, unsigned long req, void *arg)
{
    (void)fd, (void)req, (void)arg;
    return 0;
}
#define madvise(addr, len, advice) qtram_madvise((addr), (len), (advice))
#define fallocate(fd, mode, off, len) qtram_fallocate((fd), (mode), (off), (len))
#define ioctl(fd, req, arg) qtram_ioctl((fd), (unsigned long)(req), (arg))
#define uffd_copy_page(fd, dst, src, len, wake) \
    ((void)(fd), (void)(dst), (void)(src), (void)(len), (void)(wake), 0)
#define uffd_zero_page(fd, dst, len, wake) \
    ((void)(fd), (void)(dst), (void)(len), (void)(wake), 0)

/* Migration's clear-bitmap granularity, where the tree does not say. */
#ifndef CLEAR_BITMAP_SHIFT_MIN
#define CLEAR_BITMAP_SHIFT_MIN 6
#endif
#ifndef CLEAR_BITMAP_SHIFT_DEFAULT
#define CLEAR_BITMAP_SHIFT_DEFAULT 18
#endif
#ifndef CLEAR_BITMAP_SHIFT_MAX
#define CLEAR_BITMAP_SHIFT_MAX 31
#endif

#endif /* RECVMAP_RAM_GLUE_H */
