/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The batch interpreter: a whole bitmap-layer program in ONE foreign call.
 *
 * The differential engine compares the model and an implementation after every
 * operation: the return value and the memory image of every array.  Called one
 * operation at a time through ctypes, the per-call cost of the foreign-function
 * interface is a large part of the engine's loop.  This interpreter takes the
 * program as a flat array of 64-bit codes, calls the implementation's functions
 * through the addresses Python looked up in that library (any library exporting
 * QEMU's names: ours, a user's, a mutant), and records after every operation its
 * result and a copy of every array.  Python then compares that record with the
 * model's trace, with the same strength as the per-operation path.
 *
 * Program code: for each operation, a function number (an index into
 * qb_functions, generated from qemu_ref.h by gen_batch.py) followed by its
 * arguments: an array argument is an array number, an integer is its value.
 *
 * It is built once per word width, like the libraries it drives, and links none
 * of them.
 */
#include <stdint.h>
#include <string.h>

#include "qemu_ref.h"

typedef struct QBatchFn {
    const char *name;
    char result;       /* v void, b bool, s signed, u unsigned */
    const char *args;  /* per argument: m array, i integer */
    uint64_t (*call)(void (*fn)(void), const int64_t *a, qref_ulong *const *m);
} QBatchFn;

#include "qref_batch.h"

#define QB_API __attribute__((visibility("default")))

QB_API int qref_batch_bits_per_long(void)
{
    return QREF_BITS_PER_LONG;
}

/* Function number i: its name, result kind and argument kinds; 0 past the end. */
QB_API int qref_batch_function(int i, const char **name, char *result, const char **args)
{
    if (i < 0 || i >= QB_NFUNCTIONS) {
        return 0;
    }
    *name = qb_functions[i].name;
    *result = qb_functions[i].result;
    *args = qb_functions[i].args;
    return 1;
}

/*
 * Run ncode codes on narrays arrays.  Each array first gets its initial image
 * (the images are concatenated in `initial`); after operation n, results[n] holds
 * its result (bool 0/1, signed sign-extended, void 0) and images + n * stride
 * the images of every array, stride being the sum of nbytes.  Returns the number
 * of operations run, or -1 - (index of the bad code) when a code names no
 * function, a function the library lacks, or an array that does not exist.
 */
QB_API int64_t qref_batch_run(void (*const *fns)(void), const int64_t *code, int64_t ncode,
                              qref_ulong *const *arrays, const int64_t *nbytes,
                              int64_t narrays, const uint8_t *initial, uint64_t *results,
                              uint8_t *images)
{
    int64_t stride = 0;
    for (int64_t k = 0; k < narrays; k++) {
        memcpy(arrays[k], initial + stride, (size_t)nbytes[k]);
        stride += nbytes[k];
    }
    int64_t pc = 0, n = 0;
    while (pc < ncode) {
        int64_t f = code[pc];
        if (f < 0 || f >= QB_NFUNCTIONS || fns[f] == NULL) {
            return -1 - pc;
        }
        const QBatchFn *d = &qb_functions[f];
        const int64_t *a = code + pc + 1;
        int64_t argc = (int64_t)strlen(d->args);
        if (argc > ncode - pc - 1) {
            return -1 - pc;
        }
        for (int64_t k = 0; k < argc; k++) {
            if (d->args[k] == 'm' && (a[k] < 0 || a[k] >= narrays)) {
                return -1 - pc;
            }
        }
        results[n] = d->call(fns[f], a, arrays);
        uint8_t *out = images + n * stride;
        for (int64_t k = 0; k < narrays; k++) {
            memcpy(out, arrays[k], (size_t)nbytes[k]);
            out += nbytes[k];
        }
        n++;
        pc += 1 + argc;
    }
    return n;
}
