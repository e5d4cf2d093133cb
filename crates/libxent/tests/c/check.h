/* What the C test programs share: the check counters, EXPECT, and the arena that a refused
 * call must leave exactly as it was. A program that wants the arena defines ARENA_BYTES
 * (its size) before including this file. */
#ifndef XENT_TESTS_CHECK_H
#define XENT_TESTS_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xent.h"

static int checks;
static int failures;

/* Counts a check and prints the printf-style message after `...` when `cond` is false. */
#define EXPECT(cond, ...)                                                                    \
    do {                                                                                     \
        checks++;                                                                            \
        if (!(cond)) {                                                                       \
            failures++;                                                                      \
            printf("FAIL line %d: ", __LINE__);                                              \
            printf(__VA_ARGS__);                                                             \
            printf("\n");                                                                    \
        }                                                                                    \
    } while (0)

/* FNV-1a over `n` bytes, continuing from `h` (start from FINGERPRINT_START): one number
 * that changes with any bit of a call's outputs. */
#define FINGERPRINT_START 0xcbf29ce484222325u
static inline unsigned long long fingerprint(unsigned long long h, const void *data, size_t n) {
    const unsigned char *p = data;
    size_t i;
    for (i = 0; i < n; i++) {
        h = (h ^ p[i]) * 0x100000001b3u;
    }
    return h;
}

/* `bytes` bytes from malloc, or the program ends saying it is out of memory. */
static inline void *alloc_or_exit(size_t bytes) {
    void *p = malloc(bytes);
    if (p == NULL) {
        puts("out of memory");
        exit(1);
    }
    return p;
}

#ifdef ARENA_BYTES
/* Every buffer of a bad-input call is carved from `arena`; `before` is its copy from just
 * before the call. */
static unsigned char *arena;
static unsigned char *before;

/* Allocates the arena and its copy (malloc's alignment suits every element type). */
static void alloc_arena(void) {
    arena = malloc(ARENA_BYTES);
    before = malloc(ARENA_BYTES);
    if (arena == NULL || before == NULL) {
        puts("out of memory");
        exit(1);
    }
}

/* Two checks: `got` is `want`, and no byte of the arena changed. `what` names the element
 * type in messages. */
static void expect_refused(xent_status got, xent_status want, const char *what,
                           const char *call, int line) {
    checks++;
    if (got != want) {
        failures++;
        printf("FAIL line %d (%s): %s returned %d (%s), expected %d (%s)\n", line, what, call,
               (int)got, xent_status_string(got), (int)want, xent_status_string(want));
    }
    checks++;
    if (memcmp(before, arena, ARENA_BYTES) != 0) {
        size_t k = 0;
        while (before[k] == arena[k]) {
            k++;
        }
        failures++;
        printf("FAIL line %d (%s): %s changed the arena (first changed byte %lu)\n", line, what,
               call, (unsigned long)k);
    }
}

/* Runs `call` on the arena as it is now and expects status `want` and no byte written. */
#define REFUSED_AS(what, want, call)                                                         \
    do {                                                                                     \
        memcpy(before, arena, ARENA_BYTES);                                                  \
        expect_refused((call), (want), (what), #call, __LINE__);                             \
    } while (0)
#endif

#endif
