/*
 * The caller's floating-point environment changes nothing: with FTZ and DAZ set in MXCSR
 * (what torch.set_flush_denormal(True) does), and then also rounding toward zero, every
 * call gives the bits it gives in the default environment, under thread settings 1, 2 and
 * 0, and leaves MXCSR exactly as the caller set it, exception flags included. The pools of
 * settings 2 and 0 are started from the flushing thread, so their threads must not inherit
 * its environment.
 *
 * The inputs make subnormals matter: probabilities of e^-90 (subnormal results), gradients
 * scaled by a grad_scale of 1e-40 (a subnormal input) or 1e-38, and a linear head whose
 * weights of 1e-37 give a subnormal gradient of the hidden states. Each call's outputs are
 * fingerprinted; the reference is the calling thread in the default environment.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#if defined(__x86_64__)
#include <xmmintrin.h>

enum { ROWS = 512, COLS = 512, HEAD_ROWS = 48, DIM = 24, CLASSES = 200 };
enum { CALLS = 9 };

/* MXCSR bits: flush to zero, denormals are zero, rounding toward zero. */
#define FTZ 0x8000u
#define DAZ 0x0040u
#define ROUND_TOWARD_ZERO 0x6000u

static float *logits, *work_f32, *out_f32, *soft;
static double *logits_f64, *work_f64;
static uint16_t *logits_bf16, *work_bf16;
static float *hidden, *weight, *grad_hidden, *grad_weight;
static int64_t targets[ROWS], head_targets[HEAD_ROWS];

/* Runs call `k` and returns the fingerprint of its outputs (0 if it failed). */
static uint64_t call(int k) {
    uint64_t h = FINGERPRINT_START;
    float loss[ROWS], lse[ROWS];
    double loss64[ROWS];
    size_t n = (size_t)ROWS * COLS;
    xent_options o = xent_options_default();
    xent_status status = XENT_STATUS_OK;
    memset(loss, 0, sizeof loss);
    memset(lse, 0, sizeof lse);
    switch (k) {
    case 0: /* fused, in place: probabilities of e^-90 in the gradient */
        memcpy(work_f32, logits, n * sizeof(float));
        status = xent_cross_entropy_f32(work_f32, ROWS, COLS, COLS, targets, &o, loss, work_f32,
                                        COLS, lse);
        h = fingerprint(h, work_f32, n * sizeof(float));
        break;
    case 1: /* a subnormal grad_scale, sum, separate output, label smoothing */
        o.reduction = XENT_REDUCTION_SUM;
        o.grad_scale = 1e-40f;
        o.label_smoothing = 0.1f;
        status = xent_cross_entropy_f32(logits, ROWS, COLS, COLS, targets, &o, loss, out_f32,
                                        COLS, lse);
        h = fingerprint(h, out_f32, n * sizeof(float));
        break;
    case 2: /* a grad_scale whose products are subnormal, per-row losses, z-loss */
        o.reduction = XENT_REDUCTION_NONE;
        o.grad_scale = 1e-38f;
        o.z_loss = 1e-3f;
        status = xent_cross_entropy_f32(logits, ROWS, COLS, COLS, targets, &o, loss, out_f32,
                                        COLS, lse);
        h = fingerprint(h, out_f32, n * sizeof(float));
        break;
    case 3:
        status = xent_softmax_f32(logits, ROWS, COLS, COLS, out_f32, COLS);
        h = fingerprint(h, out_f32, n * sizeof(float));
        break;
    case 4:
        status = xent_log_softmax_f32(logits, ROWS, COLS, COLS, out_f32, COLS);
        h = fingerprint(h, out_f32, n * sizeof(float));
        break;
    case 5: /* bf16 in place */
        memcpy(work_bf16, logits_bf16, n * sizeof(uint16_t));
        o.grad_scale = 1e-38f;
        o.reduction = XENT_REDUCTION_SUM;
        status = xent_cross_entropy_bf16(work_bf16, ROWS, COLS, COLS, targets, &o, loss,
                                         work_bf16, COLS, lse);
        h = fingerprint(h, work_bf16, n * sizeof(uint16_t));
        break;
    case 6: /* f64 with a subnormal double grad_scale */
        memcpy(work_f64, logits_f64, n * sizeof(double));
        o.reduction = XENT_REDUCTION_SUM;
        o.grad_scale = 1e-30f;
        status = xent_cross_entropy_f64(work_f64, ROWS, COLS, COLS, targets, &o, loss64,
                                        work_f64, COLS, NULL);
        h = fingerprint(h, loss64, sizeof(double));
        h = fingerprint(h, work_f64, n * sizeof(double));
        break;
    case 7: /* soft targets, some of them subnormal */
        status = xent_cross_entropy_soft_f32(logits, 8, COLS, COLS, soft, COLS, &o, loss,
                                             out_f32, COLS, lse);
        h = fingerprint(h, out_f32, 8 * COLS * sizeof(float));
        break;
    case 8: /* a linear head with subnormal dH = G W */
        status = xent_linear_cross_entropy_f32(hidden, HEAD_ROWS, DIM, DIM, weight, CLASSES, DIM,
                                               NULL, head_targets, 0, &o, loss, grad_hidden, DIM,
                                               grad_weight, DIM, NULL, lse);
        h = fingerprint(h, grad_hidden, (size_t)HEAD_ROWS * DIM * sizeof(float));
        h = fingerprint(h, grad_weight, (size_t)CLASSES * DIM * sizeof(float));
        break;
    }
    h = fingerprint(h, loss, sizeof loss);
    h = fingerprint(h, lse, sizeof lse);
    return status == XENT_STATUS_OK ? h : 0;
}

int main(void) {
    static const size_t settings[] = {1, 2, 0};
    static const unsigned environments[] = {FTZ | DAZ, FTZ | DAZ | ROUND_TOWARD_ZERO};
    uint64_t reference[CALLS];
    size_t n = (size_t)ROWS * COLS, i;
    unsigned default_csr = _mm_getcsr();
    int k, s, e;

    logits = alloc_or_exit(n * sizeof(float));
    work_f32 = alloc_or_exit(n * sizeof(float));
    out_f32 = alloc_or_exit(n * sizeof(float));
    soft = alloc_or_exit(8 * COLS * sizeof(float));
    logits_f64 = (double *)(void *)alloc_or_exit(n * sizeof(double));
    work_f64 = (double *)(void *)alloc_or_exit(n * sizeof(double));
    logits_bf16 = (uint16_t *)(void *)alloc_or_exit(n * sizeof(uint16_t));
    work_bf16 = (uint16_t *)(void *)alloc_or_exit(n * sizeof(uint16_t));
    hidden = alloc_or_exit((size_t)HEAD_ROWS * DIM * sizeof(float));
    weight = alloc_or_exit((size_t)CLASSES * DIM * sizeof(float));
    grad_hidden = alloc_or_exit((size_t)HEAD_ROWS * DIM * sizeof(float));
    grad_weight = alloc_or_exit((size_t)CLASSES * DIM * sizeof(float));
    /* Each row: 0 at its target, then -85 ... -100 elsewhere (exps of 1e-37 to 4e-44). */
    for (i = 0; i < ROWS; i++) {
        targets[i] = (int64_t)((i * 37) % COLS);
    }
    for (i = 0; i < n; i++) {
        size_t row = i / COLS, col = i % COLS;
        float v = col == (size_t)targets[row] ? 0.0f : -85.0f - (float)((i * 7919) % 16);
        uint32_t bits;
        logits[i] = v;
        logits_f64[i] = (double)v - 650.0 * (double)(col % 2); /* e^-735: subnormal doubles */
        memcpy(&bits, &v, sizeof bits);
        logits_bf16[i] = (uint16_t)(bits >> 16); /* exact: these values fit bf16 */
    }
    for (i = 0; i < 8 * COLS; i++) {
        soft[i] = i % 3 == 0 ? 1e-39f : 1.0f / (float)COLS;
    }
    for (i = 0; i < (size_t)HEAD_ROWS * DIM; i++) {
        hidden[i] = (float)((int)(i % 9) - 4) * 0.25f;
    }
    for (i = 0; i < (size_t)CLASSES * DIM; i++) {
        weight[i] = (float)((int)(i % 5) - 2) * 1e-37f;
    }
    for (i = 0; i < HEAD_ROWS; i++) {
        head_targets[i] = (int64_t)((i * 13) % CLASSES);
    }

    xent_set_num_threads(1);
    for (k = 0; k < CALLS; k++) {
        reference[k] = call(k);
        EXPECT(reference[k] != 0, "call %d failed in the default environment", k);
    }

    /* The caller flushes; the pools are started from here. */
    for (e = 0; e < 2; e++) {
        for (s = 0; s < 3; s++) {
            unsigned csr = default_csr | environments[e];
            /* A fresh pool for each environment, started from this flushing thread:
             * xent_set_num_threads(2) builds it now, setting 0 at its first call. */
            _mm_setcsr(csr);
            EXPECT(xent_set_num_threads(settings[s]) == XENT_STATUS_OK, "setting %lu",
                   (unsigned long)settings[s]);
            for (k = 0; k < CALLS; k++) {
                uint64_t got;
                unsigned after;
                _mm_setcsr(csr);
                got = call(k);
                after = _mm_getcsr();
                _mm_setcsr(default_csr);
                EXPECT(got == reference[k],
                       "MXCSR %#x, setting %lu: call %d gives other bits than in the default "
                       "environment",
                       csr, (unsigned long)settings[s], k);
                EXPECT(after == csr, "MXCSR %#x, setting %lu: call %d left MXCSR at %#x", csr,
                       (unsigned long)settings[s], k, after);
            }
        }
    }
    /* The environment really is flushing: the same product in C loses its subnormal. */
    {
        volatile float tiny = 1e-39f, two = 2.0f, flushed;
        _mm_setcsr(default_csr | FTZ | DAZ);
        flushed = tiny * two;
        _mm_setcsr(default_csr);
        EXPECT(flushed == 0.0f, "FTZ/DAZ do not flush on this machine");
    }
    xent_set_num_threads(0);
    printf("fpenv.c: %d of %d checks passed\n", checks - failures, checks);
    return failures == 0 ? 0 : 1;
}

#else
int main(void) {
    printf("fpenv.c: 0 of 0 checks passed (MXCSR is x86-64's)\n");
    return 0;
}
#endif
