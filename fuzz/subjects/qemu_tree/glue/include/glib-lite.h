/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * recvmap glue: the few glib calls QEMU's bitmap headers name, on the C
 * library.  Only the allocation helpers of include/qemu/bitmap.h
 * (bitmap_new, bitmap_try_new, bitmap_zero_extend) use them; the bitmap
 * layer's engine calls bitmap_new and bitmap_zero_extend and compares the
 * whole new array with the model's.  glib's g_malloc family aborts when out
 * of memory; so do these.  Our ABI (qemu_ref.h) zeroes the words a
 * reallocation adds, where glib leaves them uninitialized (QEMU then clears
 * the bits up to the new size, not the tail of the last word): g_realloc
 * here zeroes what it adds past the old block's usable size.
 */
#ifndef RECVMAP_GLIB_LITE_H
#define RECVMAP_GLIB_LITE_H

#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef int gboolean;
typedef char gchar;
typedef void *gpointer;
typedef size_t gsize;

static inline void *recvmap_g_check(void *p, size_t n)
{
    if (!p && n) {
        abort();
    }
    return p;
}

/* glib's "cannot happen" (bswap.h uses it for a long of an unknown size). */
#define g_assert_not_reached() abort()

/* glib returns NULL for 0 bytes (the C library need not): bitmap_new(0) of QEMU before
 * v9.1.0 aborts on that NULL, g_new0 of 0 elements (v9.1.0 on) returns it. */
static inline void *recvmap_g_calloc(size_t n)
{
    return n ? calloc(1, n) : NULL;
}

static inline void *recvmap_g_malloc(size_t n)
{
    return n ? malloc(n) : NULL;
}

#define g_try_malloc0(n) recvmap_g_calloc(n)
#define g_malloc0(n) recvmap_g_check(recvmap_g_calloc(n), (n))
#define g_malloc(n) recvmap_g_check(recvmap_g_malloc(n), (n))
static inline void *recvmap_g_realloc(void *p, size_t n)
{
    size_t had = p ? malloc_usable_size(p) : 0;
    unsigned char *q;

    if (!n) { /* glib: g_realloc(p, 0) frees p and returns NULL */
        free(p);
        return NULL;
    }
    q = recvmap_g_check(realloc(p, n), n);

    if (q && n > had) {
        memset(q + had, 0, n - had);
    }
    return q;
}

#define g_realloc(p, n) recvmap_g_realloc((p), (n))
#define g_free(p) free(p)
#define g_new0(type, n) ((type *)g_malloc0(sizeof(type) * (size_t)(n)))
#define g_try_new0(type, n) ((type *)g_try_malloc0(sizeof(type) * (size_t)(n)))
#define g_new(type, n) ((type *)g_malloc(sizeof(type) * (size_t)(n)))
#define g_renew(type, p, n) ((type *)g_realloc((p), sizeof(type) * (size_t)(n)))

#endif /* RECVMAP_GLIB_LITE_H */
