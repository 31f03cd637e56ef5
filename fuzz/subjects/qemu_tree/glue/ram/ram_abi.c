/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * recvmap glue, ram layer: the exports of qemu_ref_ram.h over the bridge to
 * a QEMU tree's own functions.  Each call copies the ABI blocks it needs into
 * the glue's ram_list (ram_bridge.h), runs the tree's function, and copies
 * the maps back.  An ABI function whose QEMU function the tree lacks is not
 * exported at all (ram.py passes -DQTRAM_HAVE_<name>), so the loader reports
 * it absent and the layers needing it are skipped.
 *
 * Written for recvmap; no QEMU code.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_ref_ram.h"
#include "ram_bridge.h"

#define QTRAM_MAX_BLOCKS 256

/* ---- glue functions of the ABI (process state QEMU keeps elsewhere) -------------- */

QREF_API void qref_set_target_page_bits(int bits)
{
    qtram_target_page_bits = bits;
}

QREF_API void qref_set_host_page_size(size_t size)
{
    qtram_host_page_size = size;
}

QREF_API size_t qref_ram_last_error(uint8_t *buf, size_t len)
{
    const char *text = qtram_last_error();
    size_t n = strlen(text);

    if (len) {
        size_t k = n < len - 1 ? n : len - 1;
        memcpy(buf, text, k);
        buf[k] = 0;
    }
    return n;
}

QREF_API void qref_ram_clear_error(void)
{
    qtram_set_error("");
}

/* Postcopy's host check probes the kernel in QEMU; only its page-size rule is kept. */
QREF_API bool postcopy_ram_supported_by_host(size_t host_page_size)
{
    if (qemu_target_page_size() > host_page_size) {
        qtram_set_error("Target page size bigger than host page size");
        return false;
    }
    return true;
}

/* ---- ABI blocks <-> glue blocks -------------------------------------------------- */

struct qtram_call {
    struct qtram_view views[QTRAM_MAX_BLOCKS];
    RAMBlock *abi[QTRAM_MAX_BLOCKS];
    size_t n;
};

static void view_of(struct qtram_view *v, RAMBlock *rb)
{
    v->abi = rb;
    v->host = rb->host;
    v->used_length = rb->used_length;
    v->max_length = rb->max_length;
    v->postcopy_length = rb->postcopy_length;
    v->page_size = rb->page_size;
    v->receivedmap = rb->receivedmap;
    v->bmap = rb->bmap;
    v->migratable = rb->migratable;
    v->ignored = rb->ignored;
    v->idstr = rb->idstr;
}

/* The whole list when given, else the one block; then qtram_begin. */
static void enter(struct qtram_call *c, RAMList *list, RAMBlock *one)
{
    c->n = 0;
    if (list) {
        for (RAMBlock *rb = list->blocks; rb; rb = rb->next) {
            if (c->n == QTRAM_MAX_BLOCKS) {
                abort();
            }
            c->abi[c->n] = rb;
            view_of(&c->views[c->n++], rb);
        }
    } else if (one) {
        c->abi[0] = one;
        view_of(&c->views[c->n++], one);
    }
    qtram_begin(c->views, c->n);
}

static void leave(struct qtram_call *c)
{
    qtram_end(c->views, c->n);
    for (size_t i = 0; i < c->n; i++) {
        c->abi[i]->receivedmap = c->views[i].receivedmap;
        c->abi[i]->bmap = c->views[i].bmap;
    }
}

#define BLOCK_CALL(rb, expr) \
    ({ struct qtram_call c_; enter(&c_, NULL, (rb)); \
       __auto_type r_ = (expr); leave(&c_); r_; })
#define BLOCK_CALL_VOID(rb, stmt) \
    do { struct qtram_call c_; enter(&c_, NULL, (rb)); stmt; leave(&c_); } while (0)
#define LIST_CALL(list, expr) \
    ({ struct qtram_call c_; enter(&c_, (list), NULL); \
       __auto_type r_ = (expr); leave(&c_); r_; })
#define LIST_CALL_VOID(list, stmt) \
    do { struct qtram_call c_; enter(&c_, (list), NULL); stmt; leave(&c_); } while (0)
#define GLUE(rb) qtram_glue_of(rb)

/* ---- the ABI ------------------------------------------------------------------ */

#ifdef QTRAM_HAVE_qemu_ram_block_by_name
QREF_API RAMBlock *qemu_ram_block_by_name(RAMList *list, const char *name)
{
    return LIST_CALL(list, (RAMBlock *)qtram_abi_of(qtram_qemu_ram_block_by_name(name)));
}
#endif

QREF_API bool ramblock_is_ignored(RAMBlock *rb)
{
    return BLOCK_CALL(rb, qtram_ramblock_is_ignored(GLUE(rb)));
}

#ifdef QTRAM_HAVE_ramblock_recv_map_init
QREF_API void ramblock_recv_map_init(RAMList *list)
{
    LIST_CALL_VOID(list, qtram_ramblock_recv_map_init());
}
#endif

#ifdef QTRAM_HAVE_ramblock_recv_bitmap_offset
QREF_API qref_ulong ramblock_recv_bitmap_offset(void *host_addr, RAMBlock *rb)
{
    return BLOCK_CALL(rb, (qref_ulong)qtram_ramblock_recv_bitmap_offset(host_addr, GLUE(rb)));
}
#endif

#ifdef QTRAM_HAVE_ramblock_recv_bitmap_test
QREF_API int ramblock_recv_bitmap_test(RAMBlock *rb, void *host_addr)
{
    return BLOCK_CALL(rb, qtram_ramblock_recv_bitmap_test(GLUE(rb), host_addr));
}
#endif

#ifdef QTRAM_HAVE_ramblock_recv_bitmap_test_byte_offset
QREF_API bool ramblock_recv_bitmap_test_byte_offset(RAMBlock *rb, uint64_t byte_offset)
{
    return BLOCK_CALL(rb, qtram_ramblock_recv_bitmap_test_byte_offset(GLUE(rb), byte_offset));
}
#endif

#ifdef QTRAM_HAVE_ramblock_recv_bitmap_set
QREF_API void ramblock_recv_bitmap_set(RAMBlock *rb, void *host_addr)
{
    BLOCK_CALL_VOID(rb, qtram_ramblock_recv_bitmap_set(GLUE(rb), host_addr));
}
#endif

#ifdef QTRAM_HAVE_ramblock_recv_bitmap_set_range
QREF_API void ramblock_recv_bitmap_set_range(RAMBlock *rb, void *host_addr, size_t nr)
{
    BLOCK_CALL_VOID(rb, qtram_ramblock_recv_bitmap_set_range(GLUE(rb), host_addr, nr));
}
#endif

#ifdef QTRAM_HAVE_ramblock_recv_bitmap_set_offset
QREF_API void ramblock_recv_bitmap_set_offset(RAMBlock *rb, uint64_t byte_offset)
{
    BLOCK_CALL_VOID(rb, qtram_ramblock_recv_bitmap_set_offset(GLUE(rb), byte_offset));
}
#endif

#ifdef QTRAM_HAVE_ram_load_cleanup
QREF_API int ram_load_cleanup(RAMList *list)
{
    return LIST_CALL(list, qtram_ram_load_cleanup());
}
#endif

#ifdef QTRAM_HAVE_ram_block_discard_range
QREF_API int ram_block_discard_range(RAMBlock *rb, uint64_t start, size_t length)
{
    return BLOCK_CALL(rb, qtram_ram_block_discard_range(GLUE(rb), start, length));
}
#endif

#ifdef QTRAM_HAVE_ram_discard_range
QREF_API int ram_discard_range(RAMList *list, const char *rbname, uint64_t start, size_t length)
{
    return LIST_CALL(list, qtram_ram_discard_range(rbname, start, length));
}
#endif

#if defined(QTRAM_HAVE_postcopy_place_page) && defined(QTRAM_HAVE_qemu_ufd_copy_ioctl)
QREF_API int postcopy_place_page(void *host, RAMBlock *rb)
{
    return BLOCK_CALL(rb, qtram_postcopy_place_page(host, GLUE(rb)));
}
#endif

#ifdef QTRAM_HAVE_ram_list_init_bitmaps
QREF_API void ram_list_init_bitmaps(RAMList *list)
{
    LIST_CALL_VOID(list, qtram_ram_list_init_bitmaps());
}
#endif

#ifdef QTRAM_HAVE_ram_save_cleanup
QREF_API void ram_save_cleanup(RAMList *list)
{
    LIST_CALL_VOID(list, qtram_ram_save_cleanup());
}
#endif

#ifdef QTRAM_HAVE_ramblock_recv_bitmap_send
/* QEMU writes to its QEMUFile; the ABI copies the stream to the caller's buffer. */
QREF_API int64_t ramblock_recv_bitmap_send(RAMList *list, const char *block_name,
                                           uint8_t *buf, size_t buflen)
{
    uint8_t *out = NULL;
    size_t outlen = 0;
    int64_t ret = LIST_CALL(list, qtram_ramblock_recv_bitmap_send(block_name, &out, &outlen));

    if (ret >= 0) {
        if (outlen > buflen) {
            ret = -ENOSPC;
        } else {
            memcpy(buf, out, outlen);
        }
    }
    free(out);
    return ret;
}
#endif

#ifdef QTRAM_HAVE_ram_dirty_bitmap_reload
QREF_API int ram_dirty_bitmap_reload(RAMBlock *block, const uint8_t *buf, size_t len)
{
    return BLOCK_CALL(block, qtram_ram_dirty_bitmap_reload(GLUE(block), buf, len));
}
#endif
