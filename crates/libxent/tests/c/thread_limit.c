/*
 * Threads the system refuses never abort the process. Each child process lowers its
 * address-space limit (RLIMIT_AS) to a little above what it uses and asks for a pool of
 * 3000 threads, which needs about 6 GiB of stacks: the pool is refused somewhere between
 * its first thread and its last, or, under the loosest limits, built. Either way the
 * status is XENT_STATUS_OK or XENT_STATUS_INVALID_OPTION, and the calls that follow work
 * and give the bits of the calling thread. Under the tightest limit even the default pool
 * cannot start, and calls run on their calling thread. The parent checks that no child was
 * killed (glibc's "failed to register TLS destructor: out of memory" is an abort).
 *
 * Not run under AddressSanitizer, whose shadow memory needs terabytes of address space.
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

enum { ROWS = 256, COLS = 1024, ROUNDS = 8 };

/* What a child reports in its exit status. */
enum { CHILD_BUILT = 10, CHILD_REFUSED = 11, CHILD_BAD_STATUS = 12, CHILD_OTHER_BITS = 13 };

static float *logits, *grad;
static int64_t targets[ROWS];

/* A call large enough for a pool (262144 values); its outputs' fingerprint, 0 on failure. */
static uint64_t call(void) {
    float loss = 0.0f;
    if (xent_cross_entropy_f32(logits, ROWS, COLS, COLS, targets, NULL, &loss, grad, COLS,
                               NULL) != XENT_STATUS_OK) {
        return 0;
    }
    return fingerprint(fingerprint(FINGERPRINT_START, &loss, sizeof loss), grad,
                       (size_t)ROWS * COLS * sizeof(float));
}

/* This process's address space in bytes (the first field of /proc/self/statm, in pages). */
static long address_space(void) {
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%ld", &pages) != 1) {
            pages = 0;
        }
        fclose(f);
    }
    return pages * sysconf(_SC_PAGESIZE);
}

/* A child's life: `before` threads set first (0: none), then the limit, then 3000. */
static int child(long extra_mib, size_t before, uint64_t reference) {
    struct rlimit limit;
    xent_status status;
    if (before > 0 && xent_set_num_threads(before) != XENT_STATUS_OK) {
        return CHILD_BAD_STATUS;
    }
    limit.rlim_cur = limit.rlim_max = (rlim_t)(address_space() + (extra_mib << 20));
    if (setrlimit(RLIMIT_AS, &limit) != 0) {
        return CHILD_BAD_STATUS;
    }
    if (extra_mib <= 3) {
        /* No pool fits: the default pool's first call runs on the calling thread. */
        return call() == reference ? CHILD_REFUSED : CHILD_OTHER_BITS;
    }
    status = xent_set_num_threads(3000);
    if (status != XENT_STATUS_OK && status != XENT_STATUS_INVALID_OPTION) {
        return CHILD_BAD_STATUS;
    }
    /* Twice: the pool (or the setting kept) works, and keeps working. */
    if (call() != reference || call() != reference) {
        return CHILD_OTHER_BITS;
    }
    return status == XENT_STATUS_OK ? CHILD_BUILT : CHILD_REFUSED;
}

int main(void) {
    /* MiB above the child's own use: none fits a pool, then the 3000 threads' stacks give
     * out at every stage of the pool's start (each round), then they fit (the last round
     * only: a pool of 3000 takes seconds to start and stop). */
    static const long extras[] = {3, 64, 300, 700, 1024, 1100, 1536, 2048, 4096, 9000};
    enum { LIMITS = sizeof extras / sizeof extras[0] };
    uint64_t reference;
    int built = 0, refused = 0, killed = 0, round, k, i;

    logits = alloc_or_exit((size_t)ROWS * COLS * sizeof(float));
    grad = alloc_or_exit((size_t)ROWS * COLS * sizeof(float));
    for (i = 0; i < ROWS * COLS; i++) {
        logits[i] = (float)((i * 7919) % 1000) * 0.01f - 5.0f;
    }
    for (i = 0; i < ROWS; i++) {
        targets[i] = (i * 31) % COLS;
    }
    xent_set_num_threads(1);
    reference = call();
    EXPECT(reference != 0, "the reference call failed");
    /* The children fork from a process without a pool, so each starts its own. */
    for (round = 0; round < ROUNDS; round++) {
        for (k = 0; k < LIMITS - (round < ROUNDS - 1); k++) {
            int status = 0;
            size_t before = round % 2 ? 2 : 0;
            pid_t pid;
            fflush(stdout);
            pid = fork();
            if (pid == 0) {
                xent_set_num_threads(0);
                _exit(child(extras[k], before, reference));
            }
            EXPECT(pid > 0, "fork failed");
            if (pid < 0) {
                continue;
            }
            waitpid(pid, &status, 0);
            if (WIFSIGNALED(status)) {
                killed++;
                EXPECT(0, "limit +%ld MiB, %lu threads first: the child was killed by signal %d",
                       extras[k], (unsigned long)before, WTERMSIG(status));
                continue;
            }
            EXPECT(WIFEXITED(status) && (WEXITSTATUS(status) == CHILD_BUILT ||
                                         WEXITSTATUS(status) == CHILD_REFUSED),
                   "limit +%ld MiB, %lu threads first: child exit status %d (%s)", extras[k],
                   (unsigned long)before, WEXITSTATUS(status),
                   WEXITSTATUS(status) == CHILD_OTHER_BITS ? "other bits" : "a bad status");
            built += WEXITSTATUS(status) == CHILD_BUILT;
            refused += WEXITSTATUS(status) == CHILD_REFUSED;
        }
    }
    printf("thread_limit.c: %d children: %d pools of 3000 built, %d refused, %d killed\n",
           built + refused + killed, built, refused, killed);
    EXPECT(refused >= ROUNDS * 3 && built >= 1, "every kind of limit met (%d, %d)", built,
           refused);
    printf("thread_limit.c: %d of %d checks passed\n", checks - failures, checks);
    return failures == 0 ? 0 : 1;
}
