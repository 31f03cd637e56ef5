/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Ours, not QEMU's, and not exported: the maps the library allocates itself
 * (bitmap_new, bitmap_zero_extend, the ram layer's receivedmap and bmap) come
 * from here (alloc.c).  By default from calloc, where sanitizers see a block's
 * end; after qref_set_guard(QREF_GUARD_AFTER) each from a mapping of its own
 * whose inaccessible page touches its last word (_BEFORE: its first), so a
 * read one word past a map faults on every run, as it does past the arrays a
 * caller hands in (recvmap's loader sets the side it uses for those).
 */
#ifndef QREF_ALLOC_H
#define QREF_ALLOC_H

#include "qemu_ref.h"

#define QREF_GUARD_NONE   0    /* calloc */
#define QREF_GUARD_AFTER  1    /* an inaccessible page after the last word */
#define QREF_GUARD_BEFORE 2    /* an inaccessible page before the first word */

/* nwords zeroed words (at least one word of room); abort when memory runs out. */
qref_ulong *qref_map_new(qref_ulong nwords);
/* realloc: the first min(old, new) words kept, the added ones uninitialized. */
qref_ulong *qref_map_resize(qref_ulong *map, qref_ulong old_nwords, qref_ulong new_nwords);
/* Release a map of qref_map_new / qref_map_resize (NULL: nothing). */
void qref_map_free(qref_ulong *map);

#endif
