/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * recvmap glue: a stand-in for QEMU's include/qemu/osdep.h.
 *
 * Every QEMU .c file includes "qemu/osdep.h" first.  QEMU's own osdep.h
 * pulls in the configure/meson output (config-host.h), glib and the whole
 * system layer; the bitmap helpers need very little of that.  recvmap puts
 * this folder before the tree's include/ on the include path, so the tree's
 * util/bitmap.c, util/bitops.c and the headers of include/qemu compile unmodified
 * against this file instead.  Written for recvmap; it provides, under the
 * names QEMU's code uses:
 *  - the generated config header (config-host.h, written by recvmap's
 *    build next to the objects, per release: see docs/qemu-tree.md);
 *  - the C library headers QEMU's osdep.h includes;
 *  - the tree's own qemu/compiler.h (likely, QEMU_GNUC_PREREQ ...);
 *  - the few glib allocation calls the bitmap.h inlines name (g_malloc0,
 *    g_try_malloc0, g_new0 ...), mapped to the C library (glue/glib-lite.h);
 *  - the arithmetic macros of osdep.h (MIN, MAX, DIV_ROUND_UP,
 *    QEMU_ALIGN_DOWN ...).
 */
#ifndef QEMU_OSDEP_H
#define QEMU_OSDEP_H

#include "config-host.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <inttypes.h>
#include <limits.h>
#include <unistd.h>
#include <errno.h>
#include <assert.h>

#include "qemu/compiler.h"
#include "glib-lite.h"

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif
#ifndef DIV_ROUND_UP
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
#endif
#ifndef ROUND_UP
#define ROUND_UP(n, d) (((n) + (d) - 1) & -(0 ? (n) : (d)))
#endif
#ifndef QEMU_ALIGN_DOWN
#define QEMU_ALIGN_DOWN(n, m) ((n) / (m) * (m))
#endif
#ifndef QEMU_ALIGN_UP
#define QEMU_ALIGN_UP(n, m) QEMU_ALIGN_DOWN((n) + (m) - 1, (m))
#endif
#ifndef QEMU_IS_ALIGNED
#define QEMU_IS_ALIGNED(n, m) (((n) % (m)) == 0)
#endif
#ifndef QEMU_PTR_IS_ALIGNED
#define QEMU_PTR_IS_ALIGNED(p, n) QEMU_IS_ALIGNED((uintptr_t)(p), (n))
#endif
/* osdep.h's compile-time assertion (atomic.h checks operand sizes with it). */
#ifndef qemu_build_assert
#define qemu_build_assert(test) ((void)sizeof(char[(test) ? 1 : -1]))
#endif
#ifndef ARRAY_SIZE
#define ARRAY_SIZE(x) (sizeof(x) / sizeof((x)[0]))
#endif

#endif /* QEMU_OSDEP_H */
