/*
 * fork(): a child process gets working calls with the parent's bits, under every thread
 * setting, whatever the parent's pool was doing at the fork.
 *
 * A workload of calls that use the pool (a 256 x 1024 batch in place, one 1 x 262144 row
 * split across threads, softmax, a small linear head) is fingerprinted on the calling
 * thread (setting 1) first. Then the parent forks:
 *   - after large calls on the default pool (setting 0, running);
 *   - after xent_set_num_threads(2) and calls on that pool;
 *   - with the calling thread only (setting 1);
 *   - four times while another thread of the parent is inside calls;
 * and each child runs the workload under its inherited setting, then under 2, 1, 0 and 3,
 * and forks a grandchild that does the same once. Every workload in a child is guarded by
 * alarm(): a hang kills the child with SIGALRM, which the parent reports. Prints one line
 * per scenario and a summary; exits 1 on any failure.
 *
 * Under AddressSanitizer the forks while another thread is in a call are left out: GCC's
 * ASan runtime (libasan8) does not hold its allocator's locks across fork(), so a child
 * forked while the other thread is inside malloc inherits a lock that nobody will release
 * and hangs in its first malloc (seen in ci/sanitizers.sh, in the library's own Vec
 * allocations). glibc's malloc, which the program uses without ASan, is fork-safe.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

enum { ROWS = 256, COLS = 1024, LONG = 262144, HEAD_ROWS = 64, DIM = 32, CLASSES = 300 };
/* Seconds one workload may take in a child before it counts as hung. */
enum { WORKLOAD_SECONDS = 30 };

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static float *batch, *batch_work, *long_row, *long_work, *softmax_out;
static float *hidden, *weight, *grad_hidden, *grad_weight;
static int64_t targets[ROWS], head_targets[HEAD_ROWS], long_target[1] = {12345};

/* A value in [lo, hi) that varies with `i` (a multiplicative hash of it). */
static float spread(size_t i, float lo, float hi) {
    uint32_t h = (uint32_t)i * 2654435761u;
    return lo + (hi - lo) * (float)(h >> 8) / (float)(1u << 24);
}

static float *alloc_floats(size_t n) {
    return alloc_or_exit(n * sizeof(float));
}

/* Runs the workload and returns the fingerprint of every output, or 0 if a call failed. */
static uint64_t workload(void) {
    uint64_t h = FINGERPRINT_START;
    float loss[ROWS], lse[ROWS], long_loss, head_loss;
    xent_options options = xent_options_default();
    options.label_smoothing = 0.05f;
    options.z_loss = 1e-4f;

    memcpy(batch_work, batch, (size_t)ROWS * COLS * sizeof(float));
    if (xent_cross_entropy_f32(batch_work, ROWS, COLS, COLS, targets, &options, loss,
                               batch_work, COLS, lse) != XENT_STATUS_OK) {
        return 0;
    }
    h = fingerprint(h, loss, sizeof(float));
    h = fingerprint(h, lse, sizeof lse);
    h = fingerprint(h, batch_work, (size_t)ROWS * COLS * sizeof(float));

    memcpy(long_work, long_row, LONG * sizeof(float));
    if (xent_cross_entropy_f32(long_work, 1, LONG, LONG, long_target, NULL, &long_loss,
                               long_work, LONG, NULL) != XENT_STATUS_OK) {
        return 0;
    }
    h = fingerprint(h, &long_loss, sizeof long_loss);
    h = fingerprint(h, long_work, LONG * sizeof(float));

    if (xent_softmax_f32(batch, ROWS, COLS, COLS, softmax_out, COLS) != XENT_STATUS_OK) {
        return 0;
    }
    h = fingerprint(h, softmax_out, (size_t)ROWS * COLS * sizeof(float));

    if (xent_linear_cross_entropy_f32(hidden, HEAD_ROWS, DIM, DIM, weight, CLASSES, DIM, NULL,
                                      head_targets, 0, NULL, &head_loss, grad_hidden, DIM,
                                      grad_weight, DIM, NULL, NULL) != XENT_STATUS_OK) {
        return 0;
    }
    h = fingerprint(h, &head_loss, sizeof head_loss);
    h = fingerprint(h, grad_hidden, (size_t)HEAD_ROWS * DIM * sizeof(float));
    h = fingerprint(h, grad_weight, (size_t)CLASSES * DIM * sizeof(float));
    return h;
}

static uint64_t reference;

/* The workload in a child, under alarm(): 0 when it gives the reference fingerprint. */
static int guarded_workload(void) {
    uint64_t got;
    alarm(WORKLOAD_SECONDS);
    got = workload();
    alarm(0);
    return got == reference ? 0 : 1;
}

/* What a child does: the workload under its inherited setting, then under 2, 1, 0 and 3;
 * and, unless it is a grandchild already, a grandchild that runs it under its own
 * inherited setting. Returns the child's exit status. */
static int child_body(int depth) {
    static const size_t settings[] = {2, 1, 0, 3};
    int bad = 0, k, repeat;
    for (repeat = 0; repeat < 2; repeat++) {
        bad += guarded_workload();
    }
    if (depth == 0) {
        pid_t grandchild = fork();
        if (grandchild == 0) {
            _exit(guarded_workload());
        }
        if (grandchild < 0) {
            bad++;
        } else {
            int status;
            waitpid(grandchild, &status, 0);
            bad += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
    }
    for (k = 0; k < 4; k++) {
        if (xent_set_num_threads(settings[k]) != XENT_STATUS_OK) {
            bad++;
            continue;
        }
        for (repeat = 0; repeat < 2; repeat++) {
            bad += guarded_workload();
        }
    }
    return bad == 0 ? 0 : 1;
}

/* Forks a child that runs `child_body`, waits for it and checks that it exited 0. */
static void fork_and_check(const char *scenario) {
    int status = 0;
    pid_t pid;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        _exit(child_body(0));
    }
    EXPECT(pid > 0, "%s: fork failed", scenario);
    if (pid < 0) {
        return;
    }
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) {
        EXPECT(0, "%s: the child was killed by signal %d%s", scenario, WTERMSIG(status),
               WTERMSIG(status) == SIGALRM ? " (a call hung)" : "");
    } else {
        EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "%s: the child's calls failed or gave other bits", scenario);
    }
    printf("%s: child %s\n", scenario,
           WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "ok" : "FAILED");
}

/* Another thread of the parent, making calls until told to stop. */
static volatile int keep_calling = 1;
static volatile int calls_made = 0;

static void *caller(void *arg) {
    (void)arg;
    while (keep_calling) {
        if (workload() != reference) {
            calls_made = -1000000;
        }
        calls_made++;
    }
    return NULL;
}

int main(void) {
    int i;
    pthread_t thread;
    struct timespec pause = {0, 3000000};

    batch = alloc_floats((size_t)ROWS * COLS);
    batch_work = alloc_floats((size_t)ROWS * COLS);
    softmax_out = alloc_floats((size_t)ROWS * COLS);
    long_row = alloc_floats(LONG);
    long_work = alloc_floats(LONG);
    hidden = alloc_floats((size_t)HEAD_ROWS * DIM);
    weight = alloc_floats((size_t)CLASSES * DIM);
    grad_hidden = alloc_floats((size_t)HEAD_ROWS * DIM);
    grad_weight = alloc_floats((size_t)CLASSES * DIM);
    for (i = 0; i < ROWS * COLS; i++) {
        batch[i] = spread((size_t)i, -5.0f, 5.0f);
    }
    for (i = 0; i < ROWS; i++) {
        targets[i] = i % 7 == 0 ? -100 : (int64_t)((i * 389) % COLS);
    }
    for (i = 0; i < LONG; i++) {
        long_row[i] = spread((size_t)i + 1, -8.0f, 8.0f);
    }
    for (i = 0; i < HEAD_ROWS * DIM; i++) {
        hidden[i] = spread((size_t)i + 2, -1.0f, 1.0f);
    }
    for (i = 0; i < CLASSES * DIM; i++) {
        weight[i] = spread((size_t)i + 3, -0.5f, 0.5f);
    }
    for (i = 0; i < HEAD_ROWS; i++) {
        head_targets[i] = (int64_t)((i * 47) % CLASSES);
    }

    /* The reference: the calling thread only, no pool. */
    xent_set_num_threads(1);
    reference = workload();
    EXPECT(reference != 0, "the reference workload failed");
    EXPECT(workload() == reference, "the calling thread gives other bits on a second run");

    /* The default pool, running. */
    xent_set_num_threads(0);
    EXPECT(workload() == reference, "the default pool gives other bits");
    fork_and_check("after calls on the default pool");

    /* A pool of 2. */
    xent_set_num_threads(2);
    EXPECT(workload() == reference, "a pool of 2 gives other bits");
    fork_and_check("after xent_set_num_threads(2) and calls");

    /* No pool at all. */
    xent_set_num_threads(1);
    fork_and_check("with the calling thread only");

    /* While another thread is inside calls on the default pool. */
    xent_set_num_threads(0);
    if (UNDER_ASAN) {
        puts("while another thread is in a call: left out (ASan's allocator is not fork-safe)");
    } else {
        if (pthread_create(&thread, NULL, caller, NULL) != 0) {
            puts("pthread_create failed");
            return 1;
        }
        for (i = 0; i < 4; i++) {
            nanosleep(&pause, NULL);
            fork_and_check("while another thread is in a call");
        }
        keep_calling = 0;
        pthread_join(thread, NULL);
        EXPECT(calls_made > 0, "the calling thread's results changed (%d)", calls_made);
    }

    /* The parent's own pool still works after all that. */
    EXPECT(workload() == reference, "the parent's calls after the forks give other bits");

    printf("fork.c: %d of %d checks passed\n", checks - failures, checks);
    return failures == 0 ? 0 : 1;
}
