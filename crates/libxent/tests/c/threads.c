/*
 * xent_cross_entropy_f32 from 8 POSIX threads at once, on different buffers, gives the
 * results of the same calls made one after another, bit for bit - with the library's
 * thread setting at 1, 2 and 0 in turn, and while a ninth thread keeps changing it.
 *
 * Each batch is large enough (256 x 1000 logits) that the library splits it over its pool
 * when it has one. Half the threads write the gradient into a separate buffer, half over
 * their logits (in place). Prints a summary; exits 1 on any difference or failed call.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xent.h"

enum { THREADS = 8, ROWS = 256, COLS = 1000, STRIDE = 1003, REPEATS = 3 };
enum { SPAN = (ROWS - 1) * STRIDE + COLS };

/* One thread's inputs, and the results the serial calls produced. */
typedef struct {
    float logits[SPAN];
    int64_t targets[ROWS];
    xent_options options;
    float serial_loss[ROWS];
    float serial_lse[ROWS];
    float serial_grad[SPAN];
    int in_place;
    int mismatches;
    int failed_calls;
} work;

static work *jobs;
static int workers_running; /* guarded by running_lock once the workers start */
static pthread_mutex_t running_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t rng_state = 0x7417eadd;

static uint64_t next_u64(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static float uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)(next_u64() >> 40) / (float)(1u << 24);
}

/* One call on job `j`: the loss, the lse, and the gradient (separate or in place) into
 * the buffers given; `grad` holds a copy of the logits when in place. */
static xent_status call(work *job, float *loss, float *lse, float *grad) {
    const float *logits = job->in_place ? grad : job->logits;
    return xent_cross_entropy_f32(logits, ROWS, COLS, STRIDE, job->targets, &job->options,
                                  loss, grad, STRIDE, lse);
}

/* Fresh output buffers, NaN-filled (or the logits, for in place). */
static void prepare(const work *job, float *loss, float *lse, float *grad) {
    memset(loss, 0xff, ROWS * sizeof(float));
    memset(lse, 0xff, ROWS * sizeof(float));
    if (job->in_place) {
        memcpy(grad, job->logits, SPAN * sizeof(float));
    } else {
        memset(grad, 0xff, SPAN * sizeof(float));
    }
}

static void *worker(void *arg) {
    work *job = arg;
    float *loss = malloc(ROWS * sizeof(float));
    float *lse = malloc(ROWS * sizeof(float));
    float *grad = malloc(SPAN * sizeof(float));
    int r;
    if (loss == NULL || lse == NULL || grad == NULL) {
        job->failed_calls++;
    } else {
        for (r = 0; r < REPEATS; r++) {
            prepare(job, loss, lse, grad);
            if (call(job, loss, lse, grad) != XENT_STATUS_OK) {
                job->failed_calls++;
                continue;
            }
            job->mismatches += memcmp(loss, job->serial_loss, sizeof job->serial_loss) != 0;
            job->mismatches += memcmp(lse, job->serial_lse, sizeof job->serial_lse) != 0;
            job->mismatches += memcmp(grad, job->serial_grad, sizeof job->serial_grad) != 0;
        }
    }
    free(loss);
    free(lse);
    free(grad);
    pthread_mutex_lock(&running_lock);
    workers_running--;
    pthread_mutex_unlock(&running_lock);
    return NULL;
}

/* Changes the thread setting over and over while the workers run. */
static void *switcher(void *arg) {
    static const size_t settings[] = {1, 2, 0, 3};
    int *changes = arg;
    int k = 0, running = 1;
    while (running && k < 200) {
        if (xent_set_num_threads(settings[k % 4]) != XENT_STATUS_OK) {
            *changes = -1;
            return NULL;
        }
        k++;
        sched_yield();
        pthread_mutex_lock(&running_lock);
        running = workers_running > 0;
        pthread_mutex_unlock(&running_lock);
    }
    *changes = k;
    return NULL;
}

/* Runs the 8 workers at once (and the switcher when asked); returns the failures. */
static int concurrent_round(const char *name, size_t threads, int with_switcher) {
    pthread_t ids[THREADS], switcher_id;
    int t, changes = 0, mismatches = 0, failed = 0;
    if (xent_set_num_threads(threads) != XENT_STATUS_OK) {
        printf("%s: xent_set_num_threads(%lu) failed\n", name, (unsigned long)threads);
        return 1;
    }
    workers_running = THREADS;
    for (t = 0; t < THREADS; t++) {
        jobs[t].mismatches = 0;
        jobs[t].failed_calls = 0;
        if (pthread_create(&ids[t], NULL, worker, &jobs[t]) != 0) {
            printf("%s: pthread_create failed\n", name);
            return 1;
        }
    }
    if (with_switcher && pthread_create(&switcher_id, NULL, switcher, &changes) != 0) {
        printf("%s: pthread_create failed\n", name);
        return 1;
    }
    for (t = 0; t < THREADS; t++) {
        pthread_join(ids[t], NULL);
        mismatches += jobs[t].mismatches;
        failed += jobs[t].failed_calls;
    }
    if (with_switcher) {
        pthread_join(switcher_id, NULL);
    }
    printf("%s: %d calls on %d threads, %d differ from the serial results, %d failed",
           name, THREADS * REPEATS, THREADS, mismatches, failed);
    if (with_switcher) {
        printf(", %d setting changes meanwhile", changes);
    }
    printf("\n");
    return mismatches + failed + (changes < 0);
}

int main(void) {
    int t, i, failures = 0;
    jobs = calloc(THREADS, sizeof(work));
    if (jobs == NULL) {
        puts("out of memory");
        return 1;
    }
    for (t = 0; t < THREADS; t++) {
        work *job = &jobs[t];
        for (i = 0; i < SPAN; i++) {
            job->logits[i] = i % STRIDE < COLS ? uniform(-6.0f, 6.0f) : -1.0f;
        }
        for (i = 0; i < ROWS; i++) {
            job->targets[i] = (int64_t)(next_u64() % COLS);
        }
        job->targets[t] = -100; /* one ignored row each */
        job->options = xent_options_default();
        job->options.reduction = t % 2 ? XENT_REDUCTION_NONE : XENT_REDUCTION_MEAN;
        job->options.label_smoothing = 0.01f * (float)t;
        job->options.z_loss = t % 3 ? 0.0f : 1e-4f;
        job->in_place = t % 2;
    }

    /* The serial results: one call after another, on the calling thread only. */
    xent_set_num_threads(1);
    for (t = 0; t < THREADS; t++) {
        work *job = &jobs[t];
        prepare(job, job->serial_loss, job->serial_lse, job->serial_grad);
        if (call(job, job->serial_loss, job->serial_lse, job->serial_grad) != XENT_STATUS_OK) {
            printf("serial call %d failed\n", t);
            return 1;
        }
    }

    failures += concurrent_round("xent_set_num_threads(1)", 1, 0);
    failures += concurrent_round("xent_set_num_threads(2)", 2, 0);
    failures += concurrent_round("xent_set_num_threads(0)", 0, 0);
    failures += concurrent_round("setting changed during the calls", 2, 1);
    xent_set_num_threads(0);
    free(jobs);
    printf("threads.c: %s\n", failures == 0 ? "all results identical" : "FAILED");
    return failures == 0 ? 0 : 1;
}
