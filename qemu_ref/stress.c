/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qref-stress: concurrent writers set bits through the atomic functions
 * (set_bit_atomic, bitmap_set_atomic and, with the ram layer,
 * ramblock_recv_bitmap_set / _set_range / _set_offset) while readers test
 * bits.  After each round the map must be exactly the union of all
 * requests; a bit a reader saw set must never read clear again.
 *
 * Each round cuts the map into pieces at arbitrary (mostly unaligned)
 * boundaries, with small gaps, and deals them to the writers in turn, so
 * neighbouring pieces - different threads - share their boundary words; a
 * few overlapping ranges and single bits go on top.  Most rounds the writers
 * sweep their pieces in order, side by side, so boundary words are hit at
 * the same moment; some rounds they go in random order.
 *
 * Usage: qref-stress [-w WRITERS] [-r READERS] [-n ROUNDS] [-b NBITS] [-s SEED] [-v]
 * Prints the first rounds that lost bits (all with -v) and a summary line;
 * exits 1 when any bit was lost, extra or vanished.
 */

#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef QREF_STRESS_RAM
#include "qemu_ref_ram.h"
#else
#include "qemu_ref.h"
#endif

#define MAX_THREADS 64
#define PAGE_BITS 12
#define RAM_HOST ((qref_uptr)0x10000000u)

enum { SET_BIT, SET_RANGE, RAM_SET, RAM_RANGE, RAM_OFFSET, NKINDS };

static const char *const kind_names[NKINDS] = {
    "set_bit_atomic", "bitmap_set_atomic", "ramblock_recv_bitmap_set",
    "ramblock_recv_bitmap_set_range", "ramblock_recv_bitmap_set_offset",
};

typedef struct Req {
    int kind;
    qref_long start, nr;
} Req;

typedef struct Queue {
    Req *req;
    size_t n, cap;
} Queue;

static int nwriters = 4, nreaders = 2, nrounds = 300;
static long nbits = 4093;
static int verbose;
static qref_ulong *map;
static size_t nwords;
static Queue queues[MAX_THREADS];
static unsigned char *expected;
static pthread_barrier_t start_line, finish_line;
static int writers_left;                 /* atomic: writers still running */
static int writers_ready;                /* atomic: writers at the start */
static int stop;                         /* atomic: no more rounds */
static unsigned long vanished;           /* atomic: bits seen set, then clear */
static unsigned long requests[NKINDS];
#ifdef QREF_STRESS_RAM
static RAMBlock block;
#endif

/* xorshift64*: deterministic per seed. */
static uint64_t rnd_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

static long rnd_below(uint64_t *s, long n)
{
    return n <= 1 ? 0 : (long)(rnd_next(s) % (uint64_t)n);
}

static void push(Queue *q, int kind, long start, long nr)
{
    if (q->n == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 256;
        q->req = realloc(q->req, q->cap * sizeof(*q->req));
        if (!q->req) {
            perror("realloc");
            exit(2);
        }
    }
    q->req[q->n].kind = kind;
    q->req[q->n].start = start;
    q->req[q->n].nr = nr;
    q->n++;
    requests[kind]++;
    memset(expected + start, 1, (size_t)nr);
}

static int range_kind(uint64_t *s)
{
#ifdef QREF_STRESS_RAM
    return rnd_below(s, 3) ? SET_RANGE : RAM_RANGE;
#else
    (void)s;
    return SET_RANGE;
#endif
}

static int bit_kind(uint64_t *s)
{
#ifdef QREF_STRESS_RAM
    static const int kinds[] = { SET_BIT, SET_BIT, RAM_SET, RAM_OFFSET };

    return kinds[rnd_below(s, 4)];
#else
    (void)s;
    return SET_BIT;
#endif
}

/* Cut [0, nbits) into pieces dealt round-robin, then add overlaps and bits. */
static void plan_round(uint64_t *s)
{
    long pos = 0, piece = 0, k;
    int w;

    memset(expected, 0, (size_t)nbits);
    for (w = 0; w < nwriters; w++) {
        queues[w].n = 0;
    }
    while (pos < nbits) {
        long len = rnd_below(s, 4) ? 1 + rnd_below(s, 12)
                                   : 1 + rnd_below(s, 3 * QREF_BITS_PER_LONG);
        long gap = rnd_below(s, 3) ? 0 : rnd_below(s, 6);

        if (len > nbits - pos) {
            len = nbits - pos;
        }
        w = (int)(piece++ % nwriters);
        push(&queues[w], len == 1 ? bit_kind(s) : range_kind(s), pos, len);
        pos += len + gap;
    }
    for (k = 0; k < nbits / 64; k++) {   /* overlapping ranges */
        long start = rnd_below(s, nbits), len = 1 + rnd_below(s, nbits - start);

        if (len > 2 * QREF_BITS_PER_LONG) {
            len = 1 + rnd_below(s, 2 * QREF_BITS_PER_LONG);
        }
        push(&queues[rnd_below(s, nwriters)], range_kind(s), start, len);
    }
    if (rnd_below(s, 4) == 0) {          /* some rounds: random order */
        for (w = 0; w < nwriters; w++) {
            Queue *q = &queues[w];
            size_t i;

            for (i = q->n; i > 1; i--) {
                size_t j = (size_t)rnd_below(s, (long)i);
                Req t = q->req[i - 1];

                q->req[i - 1] = q->req[j];
                q->req[j] = t;
            }
        }
    }
}

static void apply(const Req *r)
{
    switch (r->kind) {
    case SET_BIT:
        set_bit_atomic(r->start, map);
        break;
    case SET_RANGE:
        bitmap_set_atomic(map, r->start, r->nr);
        break;
#ifdef QREF_STRESS_RAM
    case RAM_SET:
        ramblock_recv_bitmap_set(&block, block.host +
                                 ((uint64_t)r->start << PAGE_BITS));
        break;
    case RAM_RANGE:
        ramblock_recv_bitmap_set_range(&block, block.host +
                                       ((uint64_t)r->start << PAGE_BITS),
                                       (size_t)r->nr);
        break;
    case RAM_OFFSET:
        ramblock_recv_bitmap_set_offset(&block, (uint64_t)r->start << PAGE_BITS);
        break;
#endif
    }
}

static void *writer(void *arg)
{
    Queue *q = arg;
    size_t i;

    for (;;) {
        pthread_barrier_wait(&start_line);
        if (__atomic_load_n(&stop, __ATOMIC_SEQ_CST)) {
            return NULL;
        }
        /* start together: the barrier wakes threads tens of us apart */
        __atomic_fetch_add(&writers_ready, 1, __ATOMIC_SEQ_CST);
        while (__atomic_load_n(&writers_ready, __ATOMIC_SEQ_CST) < nwriters) {
            sched_yield();
        }
        for (i = 0; i < q->n; i++) {
            apply(&q->req[i]);
        }
        __atomic_fetch_sub(&writers_left, 1, __ATOMIC_SEQ_CST);
        pthread_barrier_wait(&finish_line);
    }
}

/* Readers: a bit once seen set must stay set (nothing here ever clears). */
static void *reader(void *arg)
{
    uint64_t s = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    unsigned char *seen = malloc((size_t)nbits);

    if (!seen) {
        perror("malloc");
        exit(2);
    }
    for (;;) {
        unsigned tests = 0;

        pthread_barrier_wait(&start_line);
        if (__atomic_load_n(&stop, __ATOMIC_SEQ_CST)) {
            free(seen);
            return NULL;
        }
        memset(seen, 0, (size_t)nbits);
        while (__atomic_load_n(&writers_left, __ATOMIC_SEQ_CST) > 0) {
            long i = rnd_below(&s, nbits);

            if (++tests % 256 == 0) {
                sched_yield();          /* writers first when cores are few */
            }

            if (test_bit(i, map)) {
                seen[i] = 1;
            } else if (seen[i]) {
                __atomic_fetch_add(&vanished, 1, __ATOMIC_SEQ_CST);
                seen[i] = 0;
            }
        }
        pthread_barrier_wait(&finish_line);
    }
}

/* Compare with the union, bit by bit, including the tail of the last word. */
static void check_round(int round, unsigned long *lost, unsigned long *extra)
{
    static int reported;
    long i, first = -1, n = (long)nwords * QREF_BITS_PER_LONG;
    unsigned long l = 0, e = 0;

    for (i = 0; i < n; i++) {
        int got = (int)((map[i / QREF_BITS_PER_LONG] >> (i % QREF_BITS_PER_LONG)) & 1);
        int want = i < nbits && expected[i];

        if (got != want) {
            first = first < 0 ? i : first;
            l += want;
            e += got;
        }
    }
    *lost += l;
    *extra += e;
    if ((l || e) && (verbose || reported < 5)) {   /* the first few, always */
        reported++;
        printf("round %d: %lu lost, %lu extra bits (first at bit %ld)\n", round, l, e, first);
    }
}

static int usage(const char *prog)
{
    fprintf(stderr, "usage: %s [-w WRITERS] [-r READERS] [-n ROUNDS] [-b NBITS] "
            "[-s SEED] [-v]\n", prog);
    return 2;
}

int main(int argc, char **argv)
{
    pthread_t tid[2 * MAX_THREADS];
    uint64_t seed = 1;
    unsigned long lost = 0, extra = 0, bad_rounds = 0;
    int opt, t, round, nthreads;

    while ((opt = getopt(argc, argv, "w:r:n:b:s:v")) != -1) {
        switch (opt) {
        case 'w': nwriters = atoi(optarg); break;
        case 'r': nreaders = atoi(optarg); break;
        case 'n': nrounds = atoi(optarg); break;
        case 'b': nbits = atol(optarg); break;
        case 's': seed = 2 * strtoull(optarg, NULL, 0) + 1; break;
        case 'v': verbose = 1; break;
        default: return usage(argv[0]);
        }
    }
    if (nwriters < 1 || nwriters > MAX_THREADS || nreaders < 0 ||
        nreaders > MAX_THREADS || nrounds < 1 || nbits < 1 || nbits > (1L << 24)) {
        return usage(argv[0]);
    }
    nwords = (size_t)BITS_TO_LONGS(nbits);
    map = calloc(nwords, sizeof(*map));
    expected = malloc((size_t)nbits);
    if (!map || !expected) {
        perror("malloc");
        return 2;
    }
#ifdef QREF_STRESS_RAM
    qref_set_target_page_bits(PAGE_BITS);
    qref_set_host_page_size((size_t)1 << PAGE_BITS);
    block.host = (uint8_t *)(uintptr_t)RAM_HOST;
    block.used_length = block.max_length = block.postcopy_length =
        (uint64_t)nbits << PAGE_BITS;
    block.page_size = 1u << PAGE_BITS;
    block.receivedmap = map;             /* the map under test */
    block.migratable = true;
    strcpy(block.idstr, "stress.ram");
#endif
    nthreads = nwriters + nreaders;
    pthread_barrier_init(&start_line, NULL, (unsigned)nthreads + 1);
    pthread_barrier_init(&finish_line, NULL, (unsigned)nthreads + 1);
    for (t = 0; t < nthreads; t++) {
        void *arg = t < nwriters ? (void *)&queues[t] : (void *)(uintptr_t)(t + 1);

        if (pthread_create(&tid[t], NULL, t < nwriters ? writer : reader, arg)) {
            perror("pthread_create");
            return 2;
        }
    }
    for (round = 0; round < nrounds; round++) {
        unsigned long before = lost + extra;

        plan_round(&seed);
        memset(map, 0, nwords * sizeof(*map));
        __atomic_store_n(&writers_left, nwriters, __ATOMIC_SEQ_CST);
        __atomic_store_n(&writers_ready, 0, __ATOMIC_SEQ_CST);
        pthread_barrier_wait(&start_line);
        pthread_barrier_wait(&finish_line);
        check_round(round, &lost, &extra);
        bad_rounds += lost + extra != before;
    }
    __atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
    pthread_barrier_wait(&start_line);
    for (t = 0; t < nthreads; t++) {
        pthread_join(tid[t], NULL);
    }
    printf("qref-stress: %d-bit words, writers=%d readers=%d rounds=%d nbits=%ld "
           "requests:", QREF_BITS_PER_LONG, nwriters, nreaders, nrounds, nbits);
    for (t = 0; t < NKINDS; t++) {
        if (requests[t]) {
            printf(" %s=%lu", kind_names[t], requests[t]);
        }
    }
    printf("; lost=%lu extra=%lu vanished=%lu bad_rounds=%lu %s\n", lost, extra,
           vanished, bad_rounds, lost || extra || vanished ? "FAIL" : "OK");
    for (t = 0; t < nwriters; t++) {
        free(queues[t].req);
    }
    free(map);
    free(expected);
    return lost || extra || vanished ? 1 : 0;
}
