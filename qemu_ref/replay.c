/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qref-replay: run operation programs on the C reference, one command per
 * line, one answer line per command ("ok ..." or "err reason").  It is a
 * persistent process for the fuzzing engine and a batch player for whole
 * programs (recvmap.fuzz.remote turns a JSON program into these lines), and
 * it runs unchanged on emulated hosts under qemu-user.
 *
 *   info                        ok bits=B big_endian=E pointer=P ram=R
 *   new NBYTES                  ok K          zeroed buffer @K
 *   word K I VALUE              ok            word I of @K = VALUE
 *   load K HEX                  ok            memory image of @K
 *   dump K                      ok HEX
 *   free K | reset              ok            reset drops every buffer and object
 *   has NAME                    ok 1|0
 *   call NAME ARG...            ok KIND VALUE
 *   calld NAME ARG...           ok KIND VALUE HEX...  images of the @ arguments
 *   block ID HOST USED MAX POSTCOPY PAGESIZE MIGRATABLE IGNORED   ok #K
 *   list #K...                  ok #L         RAMList chaining the blocks
 *   map #K recv|bmap NWORDS [same?]   ok HEX | ok null | ok same (as last sent)
 *   quit
 *
 * ARG is an integer (decimal or 0x hex, may be negative), @K a buffer, #K an
 * object, $HEX a string.  KIND is v (VALUE "-"), s (signed), u (unsigned),
 * b (bool) or o (VALUE #K or null).  Images are in this host's byte order.
 * Blank lines and lines starting with # get no answer.
 * Usage: qref-replay [FILE]   (default: standard input)
 */

#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QREF_MAX_ARGS 8

typedef struct QRefArg {
    uint64_t i;
    void *p;
    const char *s;
} QRefArg;

typedef struct QRefRet {
    char kind;
    int64_t i;
    uint64_t u;
    void *p;
} QRefRet;

typedef struct QRefFn {
    const char *name;
    const char *sig;                    /* argument kinds, then result kind */
    const char *obj[QREF_MAX_ARGS];     /* struct name of each 'o' argument */
    void (*fn)(const QRefArg *a, QRefRet *r);
} QRefFn;

#include "qref_dispatch.h"

typedef struct Buffer {
    unsigned char *mem;
    size_t len;
} Buffer;

typedef struct Object {
    const char *type;                   /* "RAMBlock" or "RAMList" */
    void *p;
    unsigned char *sent[2];             /* the maps as last sent (`map`) */
    size_t sentlen[2];
} Object;

static Buffer *buffers;
static size_t nbuffers;
static Object *objects;
static size_t nobjects;
static char strings[QREF_MAX_ARGS][512];

static FILE *out;

static void reply_err(const char *what, const char *detail)
{
    fprintf(out, "err %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
}

static void *grow(void *p, size_t n, size_t size)
{
    p = realloc(p, n * size);
    if (!p) {
        fprintf(stderr, "qref-replay: out of memory\n");
        exit(2);
    }
    return p;
}

/* Integers: 64-bit two's complement bits of a decimal or 0x token. */
static int parse_int(const char *tok, uint64_t *v)
{
    char *end;

    errno = 0;
    if (tok[0] == '-') {
        *v = (uint64_t)strtoll(tok, &end, 0);
    } else {
        *v = strtoull(tok, &end, 0);
    }
    return errno == 0 && end != tok && *end == '\0' ? 0 : -1;
}

static Buffer *buffer_ref(const char *tok)
{
    uint64_t k;

    if (parse_int(tok, &k) || k >= nbuffers || !buffers[k].mem) {
        return NULL;
    }
    return &buffers[k];
}

static Object *object_ref(const char *tok)
{
    uint64_t k;

    if (tok[0] != '#' || parse_int(tok + 1, &k) || k >= nobjects ||
        !objects[k].p) {
        return NULL;
    }
    return &objects[k];
}


static int hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static int unhex(const char *hex, unsigned char *dst, size_t len)
{
    size_t i;

    if (strlen(hex) != 2 * len) {
        return -1;
    }
    for (i = 0; i < len; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            return -1;
        }
        dst[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

static void put_hex(const unsigned char *p, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    char buf[4096];
    size_t i, n = 0;

    for (i = 0; i < len; i++) {
        buf[n++] = digits[p[i] >> 4];
        buf[n++] = digits[p[i] & 15];
        if (n == sizeof(buf)) {
            fwrite(buf, 1, n, out);
            n = 0;
        }
    }
    fwrite(buf, 1, n, out);
}

static const QRefFn *lookup(const char *name)
{
    const QRefFn *f;

    for (f = qref_functions; f->name; f++) {
        if (!strcmp(f->name, name)) {
            return f;
        }
    }
    return NULL;
}

static void cmd_new(char **tok, int ntok)
{
    uint64_t n;

    if (ntok != 2 || parse_int(tok[1], &n) || n > ((uint64_t)1 << 32)) {
        reply_err("usage", "new NBYTES");
        return;
    }
    buffers = grow(buffers, nbuffers + 1, sizeof(*buffers));
    /* one spare byte so that an empty buffer still has an address */
    buffers[nbuffers].mem = calloc(1, (size_t)n + (n == 0));
    if (!buffers[nbuffers].mem) {
        reply_err("out of memory", NULL);
        return;
    }
    buffers[nbuffers].len = (size_t)n;
    fprintf(out, "ok %zu\n", nbuffers++);
}

static void cmd_word(char **tok, int ntok)
{
    Buffer *b = ntok == 4 ? buffer_ref(tok[1]) : NULL;
    uint64_t i, v;
    qref_ulong w;

    if (!b || parse_int(tok[2], &i) || parse_int(tok[3], &v)) {
        reply_err("usage", "word K I VALUE");
        return;
    }
    if (i >= b->len / sizeof(qref_ulong)) {
        reply_err("word index past the buffer", tok[2]);
        return;
    }
    w = (qref_ulong)v;
    memcpy(b->mem + i * sizeof(w), &w, sizeof(w));
    fprintf(out, "ok\n");
}

static void cmd_load(char **tok, int ntok)
{
    Buffer *b = ntok == 3 ? buffer_ref(tok[1]) : NULL;

    if (!b) {
        reply_err("usage", "load K HEX");
    } else if (unhex(tok[2], b->mem, b->len)) {
        reply_err("image must be 2 hex digits per byte of the buffer", NULL);
    } else {
        fprintf(out, "ok\n");
    }
}

static void cmd_dump(char **tok, int ntok)
{
    Buffer *b = ntok == 2 ? buffer_ref(tok[1]) : NULL;

    if (!b) {
        reply_err("usage", "dump K");
        return;
    }
    fputs("ok ", out);
    put_hex(b->mem, b->len);
    putc('\n', out);
}

static void cmd_free(char **tok, int ntok)
{
    Buffer *b = ntok == 2 ? buffer_ref(tok[1]) : NULL;

    if (!b) {
        reply_err("usage", "free K");
        return;
    }
    free(b->mem);
    b->mem = NULL;
    fprintf(out, "ok\n");
}

/* Objects are the driver's structs; the maps inside belong to the library. */
static void reset(void)
{
    size_t k;

    for (k = 0; k < nbuffers; k++) {
        free(buffers[k].mem);
    }
    for (k = 0; k < nobjects; k++) {
        free(objects[k].p);
        free(objects[k].sent[0]);
        free(objects[k].sent[1]);
    }
    free(buffers);
    free(objects);
    buffers = NULL;
    objects = NULL;
    nbuffers = nobjects = 0;
}

/* Convert the arguments of `call` by the function's signature. */
static int parse_args(const QRefFn *f, char **tok, int ntok, QRefArg *a)
{
    int k, nargs = (int)strlen(f->sig) - 1;

    if (ntok - 2 != nargs) {
        reply_err("wrong number of arguments", f->name);
        return -1;
    }
    for (k = 0; k < nargs; k++) {
        const char *t = tok[k + 2];
        Buffer *b;
        Object *o;

        memset(&a[k], 0, sizeof(a[k]));
        switch (f->sig[k]) {
        case 'i':
        case 'a':
            if (parse_int(t, &a[k].i)) {
                reply_err("not an integer", t);
                return -1;
            }
            break;
        case 'p':
            if (t[0] != '@' || !(b = buffer_ref(t + 1))) {
                reply_err("not a buffer @K", t);
                return -1;
            }
            a[k].p = b->mem;
            break;
        case 's': {
            size_t n = strlen(t);

            if (t[0] != '$' || n % 2 == 0 || (n - 1) / 2 >= sizeof(strings[k]) ||
                unhex(t + 1, (unsigned char *)strings[k], (n - 1) / 2)) {
                reply_err("not a string $HEX", t);
                return -1;
            }
            strings[k][(n - 1) / 2] = '\0';
            a[k].s = strings[k];
            break;
        }
        case 'o':
            o = object_ref(t);
            if (!o || strcmp(o->type, f->obj[k])) {
                reply_err("not an object of the argument's type", t);
                return -1;
            }
            a[k].p = o->p;
            break;
        }
    }
    return 0;
}

static void put_result(const QRefRet *r)
{
    size_t k;

    switch (r->kind) {
    case 'v':
        fputs("ok v -", out);
        break;
    case 's':
        fprintf(out, "ok s %lld", (long long)r->i);
        break;
    case 'u':
        fprintf(out, "ok u %llu", (unsigned long long)r->u);
        break;
    case 'b':
        fprintf(out, "ok b %d", r->u ? 1 : 0);
        break;
    case 'o':
        for (k = 0; r->p && k < nobjects; k++) {
            if (objects[k].p == r->p) {
                fprintf(out, "ok o #%zu", k);
                return;
            }
        }
        fputs("ok o null", out);
        break;
    }
}

static void cmd_call(char **tok, int ntok, int dump)
{
    const QRefFn *f = ntok >= 2 ? lookup(tok[1]) : NULL;
    QRefArg a[QREF_MAX_ARGS];
    QRefRet r = { 0 };
    int k, j;

    if (!f) {
        reply_err("unknown function", ntok >= 2 ? tok[1] : NULL);
        return;
    }
    if (parse_args(f, tok, ntok, a)) {
        return;
    }
    f->fn(a, &r);
    put_result(&r);
    for (k = 0; dump && k < ntok - 2; k++) {
        if (f->sig[k] != 'p') {
            continue;
        }
        for (j = 0; j < k && strcmp(tok[j + 2], tok[k + 2]); j++) {
        }
        if (j == k) {       /* first appearance of this buffer */
            putc(' ', out);
            put_hex(a[k].p, buffer_ref(tok[k + 2] + 1)->len);
        }
    }
    putc('\n', out);
}

#ifdef QREF_QEMU_REF_RAM_H
static size_t object_new(const char *type, void *p)
{
    objects = grow(objects, nobjects + 1, sizeof(*objects));
    memset(&objects[nobjects], 0, sizeof(objects[nobjects]));
    objects[nobjects].type = type;
    objects[nobjects].p = p;
    return nobjects++;
}

static void cmd_block(char **tok, int ntok)
{
    uint64_t v[7];
    size_t n = ntok == 9 ? strlen(tok[1]) : 0;
    RAMBlock *rb;
    int k;

    for (k = 0; k < 7 && ntok == 9; k++) {
        if (parse_int(tok[k + 2], &v[k])) {
            break;
        }
    }
    if (ntok != 9 || k != 7 || tok[1][0] != '$' || n % 2 == 0 ||
        (n - 1) / 2 >= QREF_RAM_IDSTR_LEN) {
        reply_err("usage", "block $IDHEX HOST USED MAX POSTCOPY PAGESIZE "
                  "MIGRATABLE IGNORED");
        return;
    }
    rb = calloc(1, sizeof(*rb));
    if (!rb || unhex(tok[1] + 1, (unsigned char *)rb->idstr, (n - 1) / 2)) {
        free(rb);
        reply_err("bad block", tok[1]);
        return;
    }
    rb->host = (uint8_t *)(uintptr_t)(qref_uptr)v[0];
    rb->used_length = v[1];
    rb->max_length = v[2];
    rb->postcopy_length = v[3];
    rb->page_size = (size_t)v[4];
    rb->migratable = v[5] != 0;
    rb->ignored = v[6] != 0;
    fprintf(out, "ok #%zu\n", object_new("RAMBlock", rb));
}

static void cmd_list(char **tok, int ntok)
{
    RAMList *list = calloc(1, sizeof(*list));
    RAMBlock **link = &list->blocks;
    int k;

    for (k = 1; list && k < ntok; k++) {
        Object *o = object_ref(tok[k]);

        if (!o || strcmp(o->type, "RAMBlock")) {
            free(list);
            reply_err("not a block", tok[k]);
            return;
        }
        *link = o->p;
        link = &(*link)->next;
    }
    if (!list) {
        reply_err("out of memory", NULL);
        return;
    }
    *link = NULL;
    fprintf(out, "ok #%zu\n", object_new("RAMList", list));
}

/* `map`: a block's map; with "same?", just "same" when it equals the last one sent. */
static void cmd_map(char **tok, int ntok)
{
    Object *o = ntok == 4 || ntok == 5 ? object_ref(tok[1]) : NULL;
    uint64_t n;
    qref_ulong *map;
    size_t len;
    int w = ntok >= 3 && !strcmp(tok[2], "bmap");

    if (!o || strcmp(o->type, "RAMBlock") || parse_int(tok[3], &n) ||
        (ntok == 5 && strcmp(tok[4], "same?")) ||
        (strcmp(tok[2], "recv") && strcmp(tok[2], "bmap"))) {
        reply_err("usage", "map #K recv|bmap NWORDS [same?]");
        return;
    }
    map = w ? ((RAMBlock *)o->p)->bmap : ((RAMBlock *)o->p)->receivedmap;
    if (!map) {
        fprintf(out, "ok null\n");
        return;
    }
    len = (size_t)n * sizeof(*map);
    if (ntok == 5 && o->sent[w] && o->sentlen[w] == len &&
        !memcmp(o->sent[w], map, len)) {
        fprintf(out, "ok same\n");
        return;
    }
    o->sent[w] = grow(o->sent[w], len ? len : 1, 1);
    memcpy(o->sent[w], map, len);
    o->sentlen[w] = len;
    fputs("ok ", out);
    put_hex((const unsigned char *)map, len);
    putc('\n', out);
}
#endif

static void cmd_info(void)
{
    union { uint32_t w; unsigned char b[4]; } probe = { .w = 1 };
    int ram = 0, pointer = (int)sizeof(void *) * 8;

#ifdef QREF_QEMU_REF_RAM_H
    ram = 1;
    pointer = (int)sizeof(qref_uptr) * 8;   /* the emulated host's pointers */
#endif
    fprintf(out, "ok bits=%d big_endian=%d pointer=%d ram=%d\n",
            QREF_BITS_PER_LONG, probe.b[0] == 0, pointer, ram);
}

/* Split a line into blank-separated tokens, in place. */
static int split(char *line, char **tok, int max)
{
    int n = 0;
    char *save = NULL, *t;

    for (t = strtok_r(line, " \t\r\n", &save); t && n < max;
         t = strtok_r(NULL, " \t\r\n", &save)) {
        tok[n++] = t;
    }
    return t ? -1 : n;
}

static int run_line(char *line)
{
    char *tok[QREF_MAX_ARGS + 12];
    int ntok = split(line, tok, (int)(sizeof(tok) / sizeof(tok[0])));
    const char *c;

    if (ntok < 0) {
        reply_err("too many tokens", NULL);
        return 0;
    }
    if (ntok == 0 || tok[0][0] == '#') {
        return 0;                       /* blank lines and comments: no answer */
    }
    c = tok[0];
    if (!strcmp(c, "quit")) {
        return 1;
    } else if (!strcmp(c, "info")) {
        cmd_info();
    } else if (!strcmp(c, "new")) {
        cmd_new(tok, ntok);
    } else if (!strcmp(c, "word")) {
        cmd_word(tok, ntok);
    } else if (!strcmp(c, "load")) {
        cmd_load(tok, ntok);
    } else if (!strcmp(c, "dump")) {
        cmd_dump(tok, ntok);
    } else if (!strcmp(c, "free")) {
        cmd_free(tok, ntok);
    } else if (!strcmp(c, "reset")) {
        reset();
        fprintf(out, "ok\n");
    } else if (!strcmp(c, "has")) {
        fprintf(out, "ok %d\n", ntok == 2 && lookup(tok[1]) != NULL);
    } else if (!strcmp(c, "call") || !strcmp(c, "calld")) {
        cmd_call(tok, ntok, c[4] == 'd');
#ifdef QREF_QEMU_REF_RAM_H
    } else if (!strcmp(c, "block")) {
        cmd_block(tok, ntok);
    } else if (!strcmp(c, "list")) {
        cmd_list(tok, ntok);
    } else if (!strcmp(c, "map")) {
        cmd_map(tok, ntok);
#endif
    } else {
        reply_err("unknown command", c);
    }
    return 0;
}

int main(int argc, char **argv)
{
    FILE *in = stdin;
    char *line = NULL;
    size_t cap = 0;
    int done = 0;

    out = stdout;
    if (argc > 2) {
        fprintf(stderr, "usage: qref-replay [FILE]\n");
        return 2;
    }
    if (argc == 2 && !(in = fopen(argv[1], "r"))) {
        perror(argv[1]);
        return 2;
    }
    while (!done && getline(&line, &cap, in) >= 0) {
        done = run_line(line);
        fflush(out);
    }
    free(line);
    reset();
    return 0;
}
