/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * recvmap glue, ram layer: the bridge between the ABI side (ram_abi.c, which
 * sees qemu_ref_ram.h's RAMBlock/RAMList) and the side compiled with the
 * tree's own functions (the generated unit, which sees the glue RAMBlock of
 * ram_glue.h).  The two RAMBlock types never meet in one translation unit:
 * blocks cross this line as plain views, keyed by the ABI block's address.
 *
 * Written for recvmap; no QEMU code.
 */
#ifndef RECVMAP_RAM_BRIDGE_H
#define RECVMAP_RAM_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One ABI block as the glue needs it; receivedmap/bmap are copied back. */
struct qtram_view {
    void *abi;                  /* the ABI RAMBlock: key and identity */
    uint8_t *host;
    uint64_t used_length;
    uint64_t max_length;
    uint64_t postcopy_length;
    size_t page_size;
    unsigned long *receivedmap;
    unsigned long *bmap;
    bool migratable;
    bool ignored;
    const char *idstr;
};

/* Build the glue ram_list from views (in order) for the next call(s). */
void qtram_begin(struct qtram_view *views, size_t n);
/* Copy each glue block's maps back into the views. */
void qtram_end(struct qtram_view *views, size_t n);
/* The ABI pointer of a glue block (NULL for NULL). */
void *qtram_abi_of(void *glue_block);
/* The glue block of an ABI pointer after qtram_begin (NULL when unknown). */
void *qtram_glue_of(void *abi_block);

/* Target page bits and the host's base page, shared by both sides (set through the ABI). */
extern int qtram_target_page_bits;
extern size_t qtram_host_page_size;

/* The last error_report()/error_setg() text of the tree's code. */
void qtram_set_error(const char *text);
const char *qtram_last_error(void);

/* One bridge per ABI function, in the glue's own terms (glue blocks as void *). */
void qtram_ramblock_recv_map_init(void);
unsigned long qtram_ramblock_recv_bitmap_offset(void *host_addr, void *rb);
int qtram_ramblock_recv_bitmap_test(void *rb, void *host_addr);
bool qtram_ramblock_recv_bitmap_test_byte_offset(void *rb, uint64_t byte_offset);
void qtram_ramblock_recv_bitmap_set(void *rb, void *host_addr);
void qtram_ramblock_recv_bitmap_set_range(void *rb, void *host_addr, size_t nr);
void qtram_ramblock_recv_bitmap_set_offset(void *rb, uint64_t byte_offset);
int qtram_ram_load_cleanup(void);
int qtram_ram_block_discard_range(void *rb, uint64_t start, size_t length);
int qtram_ram_discard_range(const char *rbname, uint64_t start, size_t length);
int qtram_postcopy_place_page(void *host, void *rb);
void qtram_ram_list_init_bitmaps(void);
void qtram_ram_save_cleanup(void);
/* Writes the stream into a malloc'ed buffer (*out, *outlen); returns QEMU's return value. */
int64_t qtram_ramblock_recv_bitmap_send(const char *block_name, uint8_t **out, size_t *outlen);
/* The ABI's int: QEMU's int, or 0 for true / -1 for false where it returns bool. */
int qtram_ram_dirty_bitmap_reload(void *block, const uint8_t *buf, size_t len);
void *qtram_qemu_ram_block_by_name(const char *name);
bool qtram_ramblock_is_ignored(void *rb);

#endif /* RECVMAP_RAM_BRIDGE_H */
