/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Ours, not QEMU's: where the maps the library allocates itself come from
 * (bitmap_new, bitmap_zero_extend, the ram layer's receivedmap, bmap and its
 * stream buffers).  See alloc.h.  Kept apart from the reference's sources:
 * it is test equipment, not a rule of QEMU's, and the mutation tools leave it
 * alone.
 */

#define _DEFAULT_SOURCE 1 /* mmap's MAP_ANONYMOUS */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "alloc.h"
#include "qemu_ref.h"

#define WORD_BYTES sizeof(qref_ulong)

/*
 * From calloc, or with a guard side set, each map from a mapping of its own
 * whose inaccessible page touches the map's last word (after) or its first
 * (before).  A table of the live guarded maps tells free which they are.
 */
#define GUARDED_MAX 4096

struct guarded {
    void *map;
    void *base;
    size_t length;
};

static int guard_side = QREF_GUARD_NONE;
static struct guarded guarded[GUARDED_MAX];
static size_t nguarded;
static pthread_mutex_t guarded_lock = PTHREAD_MUTEX_INITIALIZER;

int qref_set_guard(int side)
{
    int old = guard_side;

    guard_side = side == QREF_GUARD_AFTER || side == QREF_GUARD_BEFORE ? side : QREF_GUARD_NONE;
    return old;
}

/* A zeroed guarded block of nbytes (> 0), or NULL (then calloc serves). */
static void *guarded_new(size_t nbytes, int side)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (nbytes + page - 1) / page * page;
    char *base = mmap(NULL, body + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    char *map;

    if (base == MAP_FAILED) {
        return NULL;
    }
    map = side == QREF_GUARD_AFTER ? base + body - nbytes : base + page;
    if (mprotect(side == QREF_GUARD_AFTER ? base + body : base, page, PROT_NONE) != 0) {
        munmap(base, body + page);
        return NULL;
    }
    pthread_mutex_lock(&guarded_lock);
    if (nguarded == GUARDED_MAX) {
        map = NULL;
    } else {
        guarded[nguarded++] = (struct guarded){map, base, body + page};
    }
    pthread_mutex_unlock(&guarded_lock);
    if (!map) {
        munmap(base, body + page);
    }
    return map;
}

/* The entry of a guarded map (forgotten with ``take``), or one with map NULL. */
static struct guarded guarded_find(const void *map, bool take)
{
    struct guarded found = {NULL, NULL, 0};

    pthread_mutex_lock(&guarded_lock);
    for (size_t i = 0; map && i < nguarded; i++) {
        if (guarded[i].map == map) {
            found = guarded[i];
            if (take) {
                guarded[i] = guarded[--nguarded];
            }
            break;
        }
    }
    pthread_mutex_unlock(&guarded_lock);
    return found;
}

/* nwords zeroed words (at least one word of room); abort when memory runs out. */
qref_ulong *qref_map_new(qref_ulong nwords)
{
    size_t n = nwords ? (size_t)nwords : 1;
    qref_ulong *map = NULL;

    if (guard_side != QREF_GUARD_NONE && nwords) {
        map = guarded_new(n * WORD_BYTES, guard_side);
    }
    if (!map) {
        map = calloc(n, WORD_BYTES);
    }
    if (!map) {
        abort();
    }
    return map;
}

/*
 * realloc: the first min(old, new) words kept, the others uninitialized.  A
 * guarded map's fresh pages are zero, so its added words are filled with 0xa5
 * (what glibc's M_PERTURB makes malloc return): a caller that leaves them as
 * they are shows it.
 */
qref_ulong *qref_map_resize(qref_ulong *map, qref_ulong old_nwords, qref_ulong new_nwords)
{
    qref_ulong *out;
    qref_ulong kept = map ? (old_nwords < new_nwords ? old_nwords : new_nwords) : 0;

    if (guard_side == QREF_GUARD_NONE && !guarded_find(map, false).map) {
        out = realloc(map, new_nwords * WORD_BYTES);
        if (!out) {
            abort();
        }
        return out;
    }
    out = qref_map_new(new_nwords);
    memset(out + kept, 0xa5, (new_nwords - kept) * WORD_BYTES);
    if (map) {
        memcpy(out, map, kept * WORD_BYTES);
        qref_map_free(map);
    }
    return out;
}

void qref_map_free(qref_ulong *map)
{
    struct guarded found = guarded_find(map, true);

    if (found.map) {
        munmap(found.base, found.length);
    } else {
        free(map);
    }
}
