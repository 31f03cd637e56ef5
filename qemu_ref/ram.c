/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The received-page bitmap of QEMU's migration/ram.c (receivedmap, one bit
 * per target page, set on the destination), the discard checks of
 * system/physmem.c, postcopy placement and the recovery bitmap stream,
 * rewritten on top of the bitmap layer.  See qemu_ref_ram.h for the ABI.
 *
 * This file implements the NEWEST QEMU release the model knows only (see
 * pymodel/releases.py for the rules of older releases): the recovery reload
 * returns -1 for QEMU's false and keeps the Error's message; the sent map
 * counts postcopy_length; ignore-shared blocks are skipped.  Rules of every
 * release: ram_list_init_bitmaps allocates nothing when ram_bytes_total() is
 * 0, and the reload reads its buffer as QEMU reads a QEMUFile (the size
 * first; a read past the end yields zeros and an error checked after the
 * reads; nothing after the end mark is read).
 */

#undef NDEBUG   /* QEMU's asserts are part of the behaviour: keep them */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "qemu_ref_ram.h"

#define DIV_ROUND_UP(n, d)      (((n) + (d) - 1) / (d))
#define ROUND_UP(n, d)          (DIV_ROUND_UP(n, d) * (d))

static int target_page_bits;
static size_t host_page_size;
static char last_error[512];

void qref_set_target_page_bits(int bits)
{
    assert(bits > 0 && bits < 32);
    target_page_bits = bits;
}

void qref_set_host_page_size(size_t size)
{
    assert(size && !(size & (size - 1)));
    host_page_size = size;
}

int qemu_target_page_bits(void)
{
    return target_page_bits;
}

size_t qemu_target_page_size(void)
{
    return (size_t)1 << target_page_bits;
}

/* error_report(): remember the message instead of printing it. */
static void __attribute__((format(printf, 1, 2))) error_report(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
}

size_t qref_ram_last_error(uint8_t *buf, size_t len)
{
    size_t n = strlen(last_error);

    if (len) {
        size_t k = n < len - 1 ? n : len - 1;
        memcpy(buf, last_error, k);
        buf[k] = 0;
    }
    return n;
}

void qref_ram_clear_error(void)
{
    last_error[0] = 0;
}

/* bitmap_new(): zeroed words, abort when out of memory (behind a guard page when the
 * caller set one: qref_set_guard; released with qref_map_free). */
static qref_ulong *ram_bitmap_new(qref_ulong nbits)
{
    return qref_map_new(BITS_TO_LONGS(nbits));
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8) {
        p[i] = (uint8_t)v;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

RAMBlock *qemu_ram_block_by_name(RAMList *list, const char *name)
{
    for (RAMBlock *rb = list->blocks; rb; rb = rb->next) {
        if (!strcmp(name, rb->idstr)) {
            return rb;
        }
    }
    return NULL;
}

/* Not migratable, or left out by ignore-shared. */
bool ramblock_is_ignored(RAMBlock *rb)
{
    return !rb->migratable || rb->ignored;
}

/* Destination: one map per migrated block, sized by max_length. */
void ramblock_recv_map_init(RAMList *list)
{
    for (RAMBlock *rb = list->blocks; rb; rb = rb->next) {
        if (ramblock_is_ignored(rb)) {
            continue;
        }
        assert(!rb->receivedmap);
        rb->receivedmap = ram_bitmap_new(rb->max_length >> qemu_target_page_bits());
    }
}

/* No range check: an address below rb->host wraps to a huge index. */
qref_ulong ramblock_recv_bitmap_offset(void *host_addr, RAMBlock *rb)
{
    uint64_t off = (qref_uptr)((uintptr_t)host_addr - (uintptr_t)rb->host);

    return (qref_ulong)(off >> qemu_target_page_bits());
}

int ramblock_recv_bitmap_test(RAMBlock *rb, void *host_addr)
{
    return test_bit((qref_long)ramblock_recv_bitmap_offset(host_addr, rb),
                    rb->receivedmap);
}

bool ramblock_recv_bitmap_test_byte_offset(RAMBlock *rb, uint64_t byte_offset)
{
    return test_bit((qref_long)(byte_offset >> qemu_target_page_bits()),
                    rb->receivedmap);
}

void ramblock_recv_bitmap_set(RAMBlock *rb, void *host_addr)
{
    set_bit_atomic((qref_long)ramblock_recv_bitmap_offset(host_addr, rb),
                   rb->receivedmap);
}

/* nr counts target pages. */
void ramblock_recv_bitmap_set_range(RAMBlock *rb, void *host_addr, size_t nr)
{
    bitmap_set_atomic(rb->receivedmap,
                      (qref_long)ramblock_recv_bitmap_offset(host_addr, rb),
                      (qref_long)nr);
}

void ramblock_recv_bitmap_set_offset(RAMBlock *rb, uint64_t byte_offset)
{
    set_bit_atomic((qref_long)(byte_offset >> qemu_target_page_bits()),
                   rb->receivedmap);
}

/* Free every map; a second cleanup finds NULLs and does nothing. */
int ram_load_cleanup(RAMList *list)
{
    for (RAMBlock *rb = list->blocks; rb; rb = rb->next) {
        if (ramblock_is_ignored(rb)) {
            continue;
        }
        qref_map_free(rb->receivedmap);
        rb->receivedmap = NULL;
    }
    return 0;
}

/* Checks of system/physmem.c; discarding itself is not modelled. */
int ram_block_discard_range(RAMBlock *rb, uint64_t start, size_t length)
{
    uint64_t host_startaddr = (qref_uptr)((uintptr_t)rb->host + start);

    if (host_startaddr & (rb->page_size - 1)) {
        error_report("ram_block_discard_range: Unaligned start address: 0x%" PRIx64,
                     host_startaddr);
        return -1;
    }
    if (start + length > rb->max_length) {
        error_report("ram_block_discard_range: Overrun block '%s' (%" PRIu64
                     "/%zx/%" PRIx64 ")", rb->idstr, start, length, rb->max_length);
        return -1;
    }
    if (length & (rb->page_size - 1)) {
        error_report("ram_block_discard_range: Unaligned length: %zx", length);
        return -1;
    }
    /*
     * Which system call discards: madvise for a block on the host's base page,
     * fallocate for a file (hugetlbfs, or the shared file of an ignored block).
     * From v9.0.0 every block is one or the other, and both succeed on a range
     * that passed the checks; before, madvise was chosen by max(host page,
     * target page) and a block that was neither failed (pymodel/releases.py).
     */
    bool need_madvise = rb->page_size == host_page_size;
    bool need_fallocate = rb->page_size != host_page_size || rb->ignored;

    return need_madvise || need_fallocate ? 0 : -1;
}

/* The received bits are cleared FIRST, before the checks can fail. */
int ram_discard_range(RAMList *list, const char *rbname, uint64_t start, size_t length)
{
    RAMBlock *rb = qemu_ram_block_by_name(list, rbname);

    if (!rb) {
        error_report("ram_discard_range: Failed to find block '%s'", rbname);
        return -1;
    }
    /* the source has no receivedmap */
    if (rb->receivedmap) {
        bitmap_clear(rb->receivedmap,
                     (qref_long)(start >> qemu_target_page_bits()),
                     (qref_long)(length >> qemu_target_page_bits()));
    }
    return ram_block_discard_range(rb, start, length);
}

/* Postcopy cannot handle a target page bigger than the host page. */
bool postcopy_ram_supported_by_host(size_t host_page_size)
{
    if (qemu_target_page_size() > host_page_size) {
        error_report("Target page size bigger than host page size");
        return false;
    }
    return true;
}

/* A placed host page (UFFDIO_COPY) marks all its target pages received. */
int postcopy_place_page(void *host, RAMBlock *rb)
{
    assert(!((uintptr_t)host & (rb->page_size - 1)));
    ramblock_recv_bitmap_set_range(rb, host, rb->page_size / qemu_target_page_size());
    return 0;
}

/* used_length summed over the blocks the migration walks (migration/ram.c). */
static uint64_t ram_bytes_total(RAMList *list)
{
    uint64_t total = 0;

    for (RAMBlock *rb = list->blocks; rb; rb = rb->next) {
        if (!ramblock_is_ignored(rb)) {
            total += rb->used_length;
        }
    }
    return total;
}

/*
 * Source: every page of a migrated block starts dirty.  With no RAM at all
 * (ram_bytes_total() == 0) nothing is allocated and every bmap stays NULL.
 */
void ram_list_init_bitmaps(RAMList *list)
{
    for (RAMBlock *rb = list->blocks; rb; rb = rb->next) {
        if (!ramblock_is_ignored(rb)) {
            assert(!rb->bmap);
        }
    }
    if (!ram_bytes_total(list)) {
        return;
    }
    for (RAMBlock *rb = list->blocks; rb; rb = rb->next) {
        qref_ulong pages = rb->max_length >> qemu_target_page_bits();

        if (ramblock_is_ignored(rb)) {
            continue;
        }
        rb->bmap = ram_bitmap_new(pages);
        bitmap_set(rb->bmap, 0, (qref_long)pages);
    }
}

void ram_save_cleanup(RAMList *list)
{
    for (RAMBlock *rb = list->blocks; rb; rb = rb->next) {
        if (ramblock_is_ignored(rb)) {
            continue;
        }
        qref_map_free(rb->bmap);
        rb->bmap = NULL;
    }
}

/* The map's size in bytes, padded to 8 so 32- and 64-bit hosts agree. */
static uint64_t recv_bitmap_size(qref_ulong nbits)
{
    return ROUND_UP((uint64_t)DIV_ROUND_UP((uint64_t)nbits, 8), 8);
}

/* be64 size, the map in little-endian words, be64 end mark. */
int64_t ramblock_recv_bitmap_send(RAMList *list, const char *block_name,
                                  uint8_t *buf, size_t buflen)
{
    RAMBlock *block = qemu_ram_block_by_name(list, block_name);
    qref_ulong *le_bitmap, nbits;
    uint64_t size;

    if (!block) {
        error_report("ramblock_recv_bitmap_send: invalid block name: %s", block_name);
        return -1;
    }
    nbits = (qref_ulong)(block->postcopy_length >> qemu_target_page_bits());
    size = recv_bitmap_size(nbits);
    if (buflen < size + 16) {
        return -ENOSPC;
    }
    /* one spare word: a 32-bit host pads 4 bytes past its last word */
    le_bitmap = ram_bitmap_new(nbits + QREF_BITS_PER_LONG);
    bitmap_to_le(le_bitmap, block->receivedmap, (qref_long)nbits);
    put_be64(buf, size);
    memcpy(buf + 8, le_bitmap, size);
    put_be64(buf + 8 + size, RAMBLOCK_RECV_BITMAP_ENDING);
    qref_map_free(le_bitmap);
    return (int64_t)(size + sizeof(size));
}

/*
 * A buffer read like a QEMUFile: a read past the end gives zero bytes for what
 * is missing and records an error that is only looked at later; nothing past
 * the last read is examined.
 */
struct stream_reader {
    const uint8_t *buf;
    size_t len, pos;
    bool error;
};

static size_t reader_get_buffer(struct stream_reader *f, uint8_t *dst, size_t n)
{
    size_t avail = f->len - f->pos;
    size_t got = n < avail ? n : avail;

    if (got) {
        memcpy(dst, f->buf + f->pos, got);
    }
    memset(dst + got, 0, n - got);
    f->pos += got;
    if (got < n) {
        f->error = true;
    }
    return got;
}

static uint64_t reader_get_be64(struct stream_reader *f)
{
    uint8_t b[8];

    reader_get_buffer(f, b, sizeof(b));
    return get_be64(b);
}

/*
 * Source: received map -> dirty map (complement); untouched on error.
 * The newest release's rules: false with an Error (here -1 and the Error's
 * message as the last error); QEMU's order of reads and checks.
 */
int ram_dirty_bitmap_reload(RAMBlock *block, const uint8_t *buf, size_t len)
{
    qref_ulong nbits = (qref_ulong)(block->used_length >> qemu_target_page_bits());
    uint64_t local_size = recv_bitmap_size(nbits);
    struct stream_reader f = { buf, len, 0, false };
    uint64_t size, got, end_mark;
    qref_ulong *le_bitmap;

    assert(block->bmap && nbits > 0);
    size = reader_get_be64(&f);
    if (size != local_size) {
        error_report("ramblock '%s' bitmap size mismatch (0x%" PRIx64 " != 0x%" PRIx64 ")",
                     block->idstr, size, local_size);
        return -1;
    }
    le_bitmap = ram_bitmap_new(nbits + QREF_BITS_PER_LONG);
    got = reader_get_buffer(&f, (uint8_t *)le_bitmap, local_size);
    end_mark = reader_get_be64(&f);
    if (f.error || got != local_size) {
        error_report("read bitmap failed for ramblock '%s': (size 0x%" PRIx64
                     ", got: 0x%" PRIx64 ")", block->idstr, local_size, got);
        qref_map_free(le_bitmap);
        return -1;
    }
    if (end_mark != RAMBLOCK_RECV_BITMAP_ENDING) {
        error_report("ramblock '%s' end mark incorrect: 0x%" PRIx64, block->idstr, end_mark);
        qref_map_free(le_bitmap);
        return -1;
    }
    bitmap_from_le(block->bmap, le_bitmap, (qref_long)nbits);
    /* pages not received are the dirty ones to resend */
    bitmap_complement(block->bmap, block->bmap, (qref_long)nbits);
    qref_map_free(le_bitmap);
    return 0;
}
