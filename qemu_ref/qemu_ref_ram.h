/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * recvmap C reference, ram layer: the received-page bitmap of QEMU's
 * migration/ram.c and include/exec/ram_addr.h (commit f9494614898f and its
 * later accessors), the discard checks of system/physmem.c, and the postcopy
 * recovery bitmap stream, rewritten.
 *
 * Same ABI conventions as qemu_ref.h: one `QREF_API ` line per export, the
 * loader reads types from these lines.  QEMU's names and argument order are
 * kept; where QEMU uses process state we take it explicitly:
 * - Target page bits live in one C global, set with
 *   qref_set_target_page_bits() before any other call (QEMU's run-time
 *   target_page.bits, already finalized); qemu_target_page_bits() reads it.
 * - The host's base page (getpagesize(), QEMU's qemu_real_host_page_size)
 *   likewise, with qref_set_host_page_size(): a block whose page_size is
 *   another size is backed by a file (hugetlbfs), as is an ignored block (a
 *   shared named file); QEMU derives from this page which system call
 *   discards a block (ram_block_discard_range), and older releases derived
 *   it from max(host page, target page) (see pymodel/releases.py).
 * - QEMU's global ram_list is a RAMList passed to the functions that walk it
 *   (ramblock_recv_map_init, ram_load_cleanup, ram_discard_range,
 *   ramblock_recv_bitmap_send, ...): a NULL-terminated chain of RAMBlocks
 *   linked by rb->next, owned by the caller.  The maps (receivedmap on the
 *   destination, bmap on the source) are allocated here (qref_map_new of
 *   qemu_ref.h: calloc, or behind a guard page, qref_set_guard) and freed by
 *   ram_load_cleanup / ram_save_cleanup.
 * - ramblock_recv_bitmap_send writes the stream into a caller buffer of at
 *   least size + 16 bytes instead of a QEMUFile and returns size + 8 (the
 *   end mark is not counted), -1 for an unknown block, -ENOSPC for a short
 *   buffer.  ram_dirty_bitmap_reload reads a stream from a buffer as QEMU
 *   reads its QEMUFile (a read past the end gives zeros and an error checked
 *   after the reads; bytes after the end mark are not read) and returns 0, or
 *   -1 for QEMU's false (size mismatch, failed read, wrong end mark) with the
 *   Error's message as the last error; it changes nothing on error.
 * - This library implements the NEWEST QEMU release the model knows (see
 *   pymodel/releases.py): bool + Error recovery reload (v8.2.0 and later),
 *   nbits of the sent map from postcopy_length (v6.1.0), ignore-shared
 *   (v4.0.0), ramblock_recv_bitmap_set_offset (v9.1.0).  Older releases are
 *   the model's deltas, checked against QEMU's own code of each release.
 * - ram_list_init_bitmaps allocates nothing when ram_bytes_total() (the
 *   used_length of the blocks that migrate, summed) is 0, as QEMU does.
 * - error_report() messages are kept (last one only): qref_ram_last_error().
 * - A 32-bit build (-DQREF_BITS_PER_LONG=32) emulates an ILP32 host: 32-bit
 *   long and 32-bit pointers, so host address arithmetic wraps modulo 2^32.
 *   Host addresses are stored in the native pointer type and never
 *   dereferenced.
 *
 * Domain (unchecked, as in QEMU): qref_set_target_page_bits and
 * qref_set_host_page_size called; maps
 * allocated where used; every bit index and word inside the allocation
 * (ramblock_recv_bitmap_offset does not range-check: an address below
 * rb->host wraps to a huge index); ram_dirty_bitmap_reload needs
 * block->bmap and used_length >> bits > 0; postcopy_place_page needs a
 * host page aligned to rb->page_size inside the block and a target page no
 * bigger than the host page.
 */
#ifndef QREF_QEMU_REF_RAM_H
#define QREF_QEMU_REF_RAM_H

#include "qemu_ref.h"

#define RAMBLOCK_RECV_BITMAP_ENDING 0x0123456789abcdefULL
#define QREF_RAM_IDSTR_LEN 256

#if QREF_BITS_PER_LONG == 32
typedef uint32_t qref_uptr;     /* an ILP32 host's uintptr_t */
#else
typedef uintptr_t qref_uptr;
#endif

typedef struct RAMBlock RAMBlock;

/* The fields of QEMU's RAMBlock (include/exec/ramblock.h) this layer uses. */
struct RAMBlock {
    uint8_t *host;              /* base address, never dereferenced */
    uint64_t used_length;       /* ram_addr_t */
    uint64_t max_length;
    uint64_t postcopy_length;
    size_t page_size;           /* host page or hugepage backing the block */
    qref_ulong *receivedmap;    /* destination: one bit per target page */
    qref_ulong *bmap;           /* source: dirty bitmap, reloaded on recovery */
    RAMBlock *next;             /* ram_list chain */
    bool migratable;            /* qemu_ram_is_migratable */
    bool ignored;               /* skipped by ignore-shared */
    char idstr[QREF_RAM_IDSTR_LEN];
};

typedef struct RAMList {
    RAMBlock *blocks;
} RAMList;

/* Run-time target page bits (include/exec/target_page.h) */
QREF_API void qref_set_target_page_bits(int bits);
/* The host's base page size, a power of two (util/osdep: qemu_real_host_page_size) */
QREF_API void qref_set_host_page_size(size_t size);
QREF_API int qemu_target_page_bits(void);
QREF_API size_t qemu_target_page_size(void);

/* The last error_report() message; returns its length, copies up to len-1 bytes and a NUL. */
QREF_API size_t qref_ram_last_error(uint8_t *buf, size_t len);
QREF_API void qref_ram_clear_error(void);

/* RAM list (system/physmem.c, migration/ram.c) */
QREF_API RAMBlock *qemu_ram_block_by_name(RAMList *list, const char *name);
QREF_API bool ramblock_is_ignored(RAMBlock *rb);

/* Received-page bitmap (migration/ram.c, include/exec/ram_addr.h) */
QREF_API void ramblock_recv_map_init(RAMList *list);
QREF_API qref_ulong ramblock_recv_bitmap_offset(void *host_addr, RAMBlock *rb);
QREF_API int ramblock_recv_bitmap_test(RAMBlock *rb, void *host_addr);
QREF_API bool ramblock_recv_bitmap_test_byte_offset(RAMBlock *rb, uint64_t byte_offset);
QREF_API void ramblock_recv_bitmap_set(RAMBlock *rb, void *host_addr);
QREF_API void ramblock_recv_bitmap_set_range(RAMBlock *rb, void *host_addr, size_t nr);
QREF_API void ramblock_recv_bitmap_set_offset(RAMBlock *rb, uint64_t byte_offset);
QREF_API int ram_load_cleanup(RAMList *list);

/* Discard (migration/ram.c, system/physmem.c) */
QREF_API int ram_block_discard_range(RAMBlock *rb, uint64_t start, size_t length);
QREF_API int ram_discard_range(RAMList *list, const char *rbname, uint64_t start, size_t length);

/* Postcopy placement of one host page (migration/postcopy-ram.c) */
QREF_API bool postcopy_ram_supported_by_host(size_t host_page_size);
QREF_API int postcopy_place_page(void *host, RAMBlock *rb);

/* Source side dirty bitmap and postcopy recovery (migration/ram.c) */
QREF_API void ram_list_init_bitmaps(RAMList *list);
QREF_API void ram_save_cleanup(RAMList *list);
QREF_API int64_t ramblock_recv_bitmap_send(RAMList *list, const char *block_name, uint8_t *buf, size_t buflen);
QREF_API int ram_dirty_bitmap_reload(RAMBlock *block, const uint8_t *buf, size_t len);

#endif /* QREF_QEMU_REF_RAM_H */
