/*
 * Every row of docs/bad-input.md's table, from C: each bad argument gets its status, and a refused
 * call leaves every byte of every buffer - outputs, inputs, and the logits of an in-place
 * call - exactly as it was. All buffers live in one arena filled with sentinel bytes
 * before each call and compared byte for byte after it. The successful paths are checked
 * too, against values computed here in double precision.
 *
 * Prints one line per failed check and a summary; exits 1 if any check failed.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_BYTES 4096
#include "check.h"

#ifndef XENT_EXPECTED_VERSION
#error "compile with -DXENT_EXPECTED_VERSION=\"<the crate's version>\""
#endif

/* The batch every call uses: R rows of C classes, padded to a stride of S. */
enum { R = 4, C = 5, S = 8, SPAN = (R - 1) * S + C };

/* The buffers, carved from the arena (offsets keep each aligned and apart). */
static float *L;        /* logits, SPAN floats */
static float *G;        /* gradient / softmax output, SPAN floats */
static float *LOSS;     /* R floats */
static float *LSE;      /* lse output, R floats */
static float *LSE_IN;   /* saved lse, a backward input, R floats */
static float *DLOSS;    /* R floats */
static float *W;        /* class weights, C floats */
static float *SOFT;     /* soft targets, SPAN floats */
static int64_t *T;      /* hard targets, R values */

static float *floats_at(size_t offset) { return (float *)(void *)(arena + offset); }

static void carve(void) {
    alloc_arena();
    L = floats_at(0);
    G = floats_at(256);
    LOSS = floats_at(512);
    LSE = floats_at(576);
    LSE_IN = floats_at(640);
    DLOSS = floats_at(704);
    W = floats_at(768);
    SOFT = floats_at(832);
    T = (int64_t *)(void *)(arena + 1024);
}

/* Sentinels everywhere, then inputs that are valid unless a case changes them. */
static void reset(void) {
    int i;
    memset(arena, 0xA5, ARENA_BYTES);
    for (i = 0; i < R; i++) {
        int c;
        T[i] = i % C;
        LSE_IN[i] = 2.0f;
        DLOSS[i] = 1.0f;
        for (c = 0; c < C; c++) {
            L[i * S + c] = (float)(i + 1) * 0.25f * (float)c - 0.5f;
            SOFT[i * S + c] = 1.0f / C;
        }
    }
    for (i = 0; i < C; i++) {
        W[i] = 1.0f;
    }
}

/* Whether `bytes` bytes from `p` still hold the sentinel. */
static int is_sentinel(const void *p, size_t bytes) {
    const unsigned char *b = p;
    size_t k;
    for (k = 0; k < bytes; k++) {
        if (b[k] != 0xA5) {
            return 0;
        }
    }
    return 1;
}

/* Runs `call` on the arena as it is now and expects status `want` and no byte written. */
#define REFUSED(want, call) REFUSED_AS("f32", want, call)

/* Runs `call` and expects it to succeed. */
#define ACCEPTED(call)                                                                       \
    do {                                                                                     \
        xent_status status_ = (call);                                                        \
        checks++;                                                                            \
        if (status_ != XENT_STATUS_OK) {                                                     \
            failures++;                                                                      \
            printf("FAIL line %d: %s returned %d (%s)\n", __LINE__, #call, (int)status_,     \
                   xent_status_string(status_));                                             \
        }                                                                                    \
    } while (0)

/* The forward with everything in place and valid, but for the arguments given. */
#define CE(logits, rows, cols, stride, targets, options, loss, grad, grad_stride, lse)        \
    xent_cross_entropy_f32(logits, rows, cols, stride, targets, options, loss, grad,         \
                           grad_stride, lse)

static void null_pointers(void) {
    xent_options none = xent_options_default();
    none.reduction = XENT_REDUCTION_NONE;
    reset();
    REFUSED(XENT_STATUS_NULL_POINTER, CE(NULL, R, C, S, T, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_NULL_POINTER, CE(L, R, C, S, NULL, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_NULL_POINTER, CE(L, R, C, S, T, NULL, NULL, G, S, LSE));
    REFUSED(XENT_STATUS_NULL_POINTER, CE(L, R, C, S, T, NULL, NULL, NULL, 0, NULL));
    REFUSED(XENT_STATUS_NULL_POINTER, CE(L, R, C, S, T, NULL, NULL, L, S, NULL)); /* in place */
    /* loss is required even when it would hold nothing. */
    REFUSED(XENT_STATUS_NULL_POINTER, CE(NULL, 0, C, S, NULL, &none, NULL, NULL, 0, NULL));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_soft_f32(NULL, R, C, S, SOFT, S, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_soft_f32(L, R, C, S, NULL, S, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_soft_f32(L, R, C, S, SOFT, S, NULL, NULL, G, S, LSE));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_backward_f32(NULL, R, C, S, T, NULL, LSE_IN, DLOSS, G, S));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_backward_f32(L, R, C, S, NULL, NULL, LSE_IN, DLOSS, G, S));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_backward_f32(L, R, C, S, T, NULL, NULL, DLOSS, G, S));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_backward_f32(L, R, C, S, T, NULL, LSE_IN, NULL, G, S));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_backward_f32(L, R, C, S, T, NULL, LSE_IN, DLOSS, NULL, S));
    /* dloss holds 1 value under mean even for no rows. */
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_backward_f32(NULL, 0, C, S, NULL, NULL, NULL, NULL, NULL, S));
    REFUSED(XENT_STATUS_NULL_POINTER, xent_softmax_f32(NULL, R, C, S, G, S));
    REFUSED(XENT_STATUS_NULL_POINTER, xent_softmax_f32(L, R, C, S, NULL, S));
    REFUSED(XENT_STATUS_NULL_POINTER, xent_log_softmax_f32(NULL, R, C, S, G, S));
    REFUSED(XENT_STATUS_NULL_POINTER, xent_log_softmax_f32(L, R, C, S, NULL, S));

    /* What may be NULL: options, grad, lse, class weights; everything but loss for 0 rows. */
    reset();
    ACCEPTED(CE(L, R, C, S, T, NULL, LOSS, NULL, 0, NULL));
    ACCEPTED(CE(NULL, 0, C, S, NULL, NULL, LOSS, NULL, 0, NULL));
    ACCEPTED(CE(NULL, 0, 0, 0, NULL, &none, LOSS, NULL, 0, NULL));
    ACCEPTED(xent_cross_entropy_soft_f32(NULL, 0, C, C, NULL, C, NULL, LOSS, NULL, 0, NULL));
    ACCEPTED(xent_cross_entropy_backward_f32(NULL, 0, C, C, NULL, &none, NULL, NULL, NULL, 0));
    ACCEPTED(xent_cross_entropy_backward_f32(NULL, 0, C, C, NULL, NULL, NULL, DLOSS, NULL, 0));
    ACCEPTED(xent_softmax_f32(NULL, 0, C, C, NULL, C));
    ACCEPTED(xent_log_softmax_f32(NULL, 0, 0, 0, NULL, 0));
}

static void shapes(void) {
    xent_options none = xent_options_default();
    none.reduction = XENT_REDUCTION_NONE;
    reset();
    /* cols = 0 with rows */
    REFUSED(XENT_STATUS_INVALID_SHAPE, CE(L, R, 0, S, T, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_INVALID_SHAPE, CE(L, R, 0, 0, T, NULL, LOSS, NULL, 0, NULL));
    REFUSED(XENT_STATUS_INVALID_SHAPE, xent_softmax_f32(L, R, 0, S, G, S));
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            xent_cross_entropy_backward_f32(L, R, 0, S, T, NULL, LSE_IN, DLOSS, G, S));
    /* a stride < cols, of each strided buffer, with rows and without */
    REFUSED(XENT_STATUS_INVALID_SHAPE, CE(L, R, C, C - 1, T, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_INVALID_SHAPE, CE(L, 0, C, C - 1, T, NULL, LOSS, NULL, 0, NULL));
    REFUSED(XENT_STATUS_INVALID_SHAPE, CE(L, R, C, S, T, NULL, LOSS, G, C - 1, LSE));
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            xent_cross_entropy_soft_f32(L, R, C, S, SOFT, C - 1, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            xent_cross_entropy_backward_f32(L, R, C, S, T, NULL, LSE_IN, DLOSS, G, 1));
    REFUSED(XENT_STATUS_INVALID_SHAPE, xent_softmax_f32(L, R, C, 2, G, S));
    REFUSED(XENT_STATUS_INVALID_SHAPE, xent_softmax_f32(L, R, C, S, G, 0));
    REFUSED(XENT_STATUS_INVALID_SHAPE, xent_log_softmax_f32(L, R, C, S, G, C - 1));
    /* sizes whose element or byte count overflows */
    REFUSED(XENT_STATUS_INVALID_SHAPE, CE(L, SIZE_MAX, C, S, T, NULL, LOSS, NULL, 0, NULL));
    REFUSED(XENT_STATUS_INVALID_SHAPE, CE(L, 2, C, SIZE_MAX, T, NULL, LOSS, NULL, 0, NULL));
    REFUSED(XENT_STATUS_INVALID_SHAPE, CE(L, 2, C, SIZE_MAX / 4, T, NULL, LOSS, NULL, 0, NULL));
    REFUSED(XENT_STATUS_INVALID_SHAPE, CE(L, SIZE_MAX / 8, C, C, T, NULL, LOSS, NULL, 0, NULL));
    REFUSED(XENT_STATUS_INVALID_SHAPE, CE(L, R, C, S, T, NULL, LOSS, G, SIZE_MAX, LSE));
    /* 2^60 rows of one logit fit in 2^62 bytes, their 2^60 int64 targets do not */
    REFUSED(XENT_STATUS_INVALID_SHAPE, CE(L, SIZE_MAX / 16 + 1, 1, 1, T, &none, LOSS, NULL, 0, NULL));
    REFUSED(XENT_STATUS_INVALID_SHAPE, xent_softmax_f32(L, SIZE_MAX, C, S, G, S));
    REFUSED(XENT_STATUS_INVALID_SHAPE, xent_log_softmax_f32(L, 3, C, S, G, SIZE_MAX / 2));
    /* pointers not aligned for their element type */
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            CE((const float *)(const void *)((const char *)L + 1), R, C, S, T, NULL, LOSS, G, S,
               LSE));
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            CE(L, R, C, S, (const int64_t *)(const void *)((const char *)T + 4), NULL, LOSS, G,
               S, LSE));
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            CE(L, R, C, S, T, NULL, (float *)(void *)((char *)LOSS + 2), G, S, LSE));
}

static void targets_out_of_range(void) {
    static const int64_t bad[] = {C, C + 1, -1, -99, -101, INT64_MAX, INT64_MIN};
    xent_options ignore_minus_one = xent_options_default();
    size_t k;
    ignore_minus_one.ignore_index = -1;
    for (k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        reset();
        T[2] = bad[k];
        REFUSED(XENT_STATUS_TARGET_OUT_OF_RANGE, CE(L, R, C, S, T, NULL, LOSS, G, S, LSE));
        REFUSED(XENT_STATUS_TARGET_OUT_OF_RANGE, CE(L, R, C, S, T, NULL, LOSS, L, S, LSE));
        REFUSED(XENT_STATUS_TARGET_OUT_OF_RANGE, CE(L, R, C, S, T, NULL, LOSS, NULL, 0, NULL));
        REFUSED(XENT_STATUS_TARGET_OUT_OF_RANGE,
                xent_cross_entropy_backward_f32(L, R, C, S, T, NULL, LSE_IN, DLOSS, G, S));
        REFUSED(XENT_STATUS_TARGET_OUT_OF_RANGE,
                xent_cross_entropy_backward_f32(L, R, C, S, T, NULL, LSE_IN, DLOSS, L, S));
    }
    /* -100 is a target like any other once ignore_index is something else ... */
    reset();
    T[0] = -100;
    REFUSED(XENT_STATUS_TARGET_OUT_OF_RANGE,
            CE(L, R, C, S, T, &ignore_minus_one, LOSS, L, S, LSE));
    /* ... and ignore_index itself is accepted anywhere, even outside [0, cols). */
    T[0] = -1;
    ACCEPTED(CE(L, R, C, S, T, &ignore_minus_one, LOSS, G, S, LSE));
}

/* Every invalid value of every option, on the forward (out of place and in place), the
 * soft forward and the backward. */
static void invalid_options(void) {
    const float nan = NAN, inf = INFINITY;
    const float bad_smoothing[] = {-0.1f, 1.5f, -0.0001f, nan, inf, -inf};
    const float bad_nonnegative[] = {-1.0f, -1e-30f, nan, inf, -inf};
    const float bad_scale[] = {nan, inf, -inf};
    const float bad_weight[] = {-1.0f, -1e-30f, nan, inf, -inf};
    const uint32_t bad_reduction[] = {3, 7, 255, UINT32_MAX};
    xent_options o;
    size_t k;

#define ALL_CALLS_REFUSED(options_ptr)                                                       \
    do {                                                                                     \
        REFUSED(XENT_STATUS_INVALID_OPTION, CE(L, R, C, S, T, options_ptr, LOSS, G, S, LSE)); \
        REFUSED(XENT_STATUS_INVALID_OPTION, CE(L, R, C, S, T, options_ptr, LOSS, L, S, LSE)); \
        REFUSED(XENT_STATUS_INVALID_OPTION,                                                  \
                xent_cross_entropy_soft_f32(L, R, C, S, SOFT, S, options_ptr, LOSS, G, S,    \
                                            LSE));                                           \
        REFUSED(XENT_STATUS_INVALID_OPTION,                                                  \
                xent_cross_entropy_backward_f32(L, R, C, S, T, options_ptr, LSE_IN, DLOSS,   \
                                                L, S));                                      \
    } while (0)

    for (k = 0; k < sizeof bad_reduction / sizeof bad_reduction[0]; k++) {
        reset();
        o = xent_options_default();
        o.reduction = bad_reduction[k];
        ALL_CALLS_REFUSED(&o);
    }
    for (k = 0; k < sizeof bad_smoothing / sizeof bad_smoothing[0]; k++) {
        reset();
        o = xent_options_default();
        o.label_smoothing = bad_smoothing[k];
        ALL_CALLS_REFUSED(&o);
    }
    for (k = 0; k < sizeof bad_nonnegative / sizeof bad_nonnegative[0]; k++) {
        reset();
        o = xent_options_default();
        o.z_loss = bad_nonnegative[k];
        ALL_CALLS_REFUSED(&o);
        o = xent_options_default();
        o.softcap = bad_nonnegative[k];
        ALL_CALLS_REFUSED(&o);
    }
    /* A subnormal softcap (found by the fuzzer): the kernels' 1/c overflows float. */
    reset();
    o = xent_options_default();
    o.softcap = FLT_MIN / 2.0f;
    ALL_CALLS_REFUSED(&o);
    for (k = 0; k < sizeof bad_scale / sizeof bad_scale[0]; k++) {
        reset();
        o = xent_options_default();
        o.grad_scale = bad_scale[k];
        REFUSED(XENT_STATUS_INVALID_OPTION, CE(L, R, C, S, T, &o, LOSS, G, S, LSE));
        REFUSED(XENT_STATUS_INVALID_OPTION, CE(L, R, C, S, T, &o, LOSS, L, S, LSE));
        REFUSED(XENT_STATUS_INVALID_OPTION, CE(L, R, C, S, T, &o, LOSS, NULL, 0, NULL));
        REFUSED(XENT_STATUS_INVALID_OPTION,
                xent_cross_entropy_soft_f32(L, R, C, S, SOFT, S, &o, LOSS, L, S, LSE));
    }
    for (k = 0; k < sizeof bad_weight / sizeof bad_weight[0]; k++) {
        reset();
        W[C - 1] = bad_weight[k];
        o = xent_options_default();
        o.class_weights = W;
        ALL_CALLS_REFUSED(&o);
    }
#undef ALL_CALLS_REFUSED

    /* The edges of each domain are valid. */
    reset();
    o = xent_options_default();
    o.label_smoothing = 1.0f;
    o.z_loss = 0.0f;
    o.softcap = 0.0f;
    o.grad_scale = -3.0f;
    W[0] = 0.0f;
    o.class_weights = W;
    ACCEPTED(CE(L, R, C, S, T, &o, LOSS, G, S, LSE));

    /* A thread count no pool can have. */
    EXPECT(xent_set_num_threads(SIZE_MAX) == XENT_STATUS_INVALID_OPTION,
           "xent_set_num_threads(SIZE_MAX)");
}

static void overlaps(void) {
    xent_options none = xent_options_default();
    xent_options weighted = xent_options_default();
    none.reduction = XENT_REDUCTION_NONE;
    weighted.class_weights = W;
    reset();
    /* grad and logits: only exactly the same rows may be shared */
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L, R, C, S, T, NULL, LOSS, L + 1, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L + 1, R, C, S, T, NULL, LOSS, L, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L, R, C, S, T, NULL, LOSS, L + S, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L, R, C, S, T, NULL, LOSS, L, S + 1, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L, R, C, S, T, NULL, LOSS, L, C, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L, R, C, S, T, NULL, LOSS, L + SPAN - 1, S, LSE));
    /* the padding counts: a gradient interleaved in the logits' padding is refused too */
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L, 2, 2, 4, T, NULL, LOSS, L + 2, 4, LSE));
    /* loss and lse against everything */
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L, R, C, S, T, NULL, L + 2, G, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L, R, C, S, T, NULL, L + C, G, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L, R, C, S, T, NULL, L + 2, L, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L, R, C, S, T, NULL, G + 3, G, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L, R, C, S, T, NULL, LOSS, G, S, G + S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L, R, C, S, T, NULL, LOSS, G, S, L + 4));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L, R, C, S, T, NULL, LOSS, L, S, L + S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L, R, C, S, T, &none, LOSS, G, S, LOSS + 2));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L, R, C, S, T, NULL, LOSS, G, S, LOSS));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            CE(L, R, C, S, T, NULL, (float *)(void *)(T + 1), G, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            CE(L, R, C, S, T, NULL, LOSS, G, S, (float *)(void *)(T + 2)));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            CE(L, 1, C, S, T, NULL, LOSS, (float *)(void *)T, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L, R, C, S, T, &weighted, W + 1, G, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L, R, C, S, T, &weighted, LOSS, G, S, W));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, CE(L, 1, C, S, T, &weighted, LOSS, W, S, LSE));
    /* soft targets are an input */
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_soft_f32(L, R, C, S, SOFT, S, NULL, LOSS, SOFT, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_soft_f32(L, R, C, S, SOFT, S, NULL, SOFT + 3, G, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_soft_f32(L, R, C, S, SOFT, S, NULL, LOSS, L, S, SOFT + S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_soft_f32(L, R, C, S, L, S, NULL, LOSS, L, S, LSE));
    /* backward: lse, dloss, targets and weights are inputs of the gradient */
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_backward_f32(L, R, C, S, T, NULL, LSE_IN, DLOSS, L + 1, S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_backward_f32(L, R, C, S, T, NULL, LSE_IN, DLOSS, L, S + 1));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_backward_f32(L, 1, C, S, T, NULL, LSE_IN, DLOSS, LSE_IN, S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_backward_f32(L, R, C, S, T, NULL, L + 4, DLOSS, L, S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_backward_f32(L, R, C, S, T, NULL, LSE_IN, G + S, G, S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_backward_f32(L, 1, C, S, T, NULL, LSE_IN, DLOSS,
                                            (float *)(void *)T, S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_backward_f32(L, 1, C, S, T, &weighted, LSE_IN, DLOSS, W, S));
    /* softmax and log_softmax */
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, xent_softmax_f32(L, R, C, S, L + 1, S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, xent_softmax_f32(L, R, C, S, L, S - 1));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, xent_softmax_f32(L + S, R, C, S, L, S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, xent_log_softmax_f32(L, R, C, S, L + 2, S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, xent_log_softmax_f32(L, R, C, S, L, C));

    /* Accepted: in place exactly, buffers that merely touch, inputs sharing memory. */
    reset();
    ACCEPTED(CE(L, R, C, S, T, NULL, L + SPAN, G, S, G + SPAN));
    ACCEPTED(CE(L, R, C, S, T, NULL, LOSS, L + SPAN, S, NULL));
    ACCEPTED(xent_cross_entropy_soft_f32(L, R, C, S, L, S, NULL, LOSS, G, S, LSE));
    ACCEPTED(xent_softmax_f32(L, R, C, S, L, S));
}

/* The successful paths agree with double-precision sums computed here. */
static void results(void) {
    double loss = 0.0, lse[R], p[R][C];
    float separate[SPAN];
    int i, c;
    reset();
    for (i = 0; i < R; i++) {
        double m = -INFINITY, sum = 0.0;
        for (c = 0; c < C; c++) {
            m = L[i * S + c] > m ? L[i * S + c] : m;
        }
        for (c = 0; c < C; c++) {
            sum += exp(L[i * S + c] - m);
        }
        lse[i] = m + log(sum);
        for (c = 0; c < C; c++) {
            p[i][c] = exp(L[i * S + c] - lse[i]);
        }
        loss += (lse[i] - L[i * S + T[i]]) / R;
    }

    ACCEPTED(CE(L, R, C, S, T, NULL, LOSS, G, S, LSE));
    EXPECT(fabs(LOSS[0] - loss) <= 1e-6 * (1.0 + fabs(loss)), "mean loss");
    for (i = 0; i < R; i++) {
        EXPECT(fabs(LSE[i] - lse[i]) <= 1e-6 * (1.0 + fabs(lse[i])), "lse");
        for (c = 0; c < C; c++) {
            double want = (p[i][c] - (c == T[i])) / R;
            EXPECT(fabs(G[i * S + c] - want) <= 1e-6, "gradient");
        }
        if (i < R - 1) {
            EXPECT(is_sentinel(&G[i * S + C], (S - C) * sizeof(float)), "grad's padding");
        }
    }
    memcpy(separate, G, sizeof separate);

    /* In place: the gradient over the logits, their padding untouched. */
    ACCEPTED(CE(L, R, C, S, T, NULL, LOSS, L, S, LSE));
    for (i = 0; i < R; i++) {
        for (c = 0; c < C; c++) {
            EXPECT(fabs(L[i * S + c] - separate[i * S + c]) <= 1e-7, "in place = separate");
        }
        if (i < R - 1) {
            EXPECT(is_sentinel(&L[i * S + C], (S - C) * sizeof(float)), "the logits' padding");
        }
    }

    /* Backward from the saved lse: the fused gradient again. */
    reset();
    ACCEPTED(CE(L, R, C, S, T, NULL, LOSS, NULL, 0, LSE_IN));
    DLOSS[0] = 1.0f;
    ACCEPTED(xent_cross_entropy_backward_f32(L, R, C, S, T, NULL, LSE_IN, DLOSS, G, S));
    for (i = 0; i < R; i++) {
        for (c = 0; c < C; c++) {
            EXPECT(fabs(G[i * S + c] - separate[i * S + c]) <= 1e-6, "backward = fused");
        }
    }

    /* Per-row losses, and an ignored row. */
    {
        xent_options none = xent_options_default();
        none.reduction = XENT_REDUCTION_NONE;
        T[1] = none.ignore_index;
        ACCEPTED(CE(L, R, C, S, T, &none, LOSS, G, S, NULL));
        for (i = 0; i < R; i++) {
            double want = i == 1 ? 0.0 : lse[i] - L[i * S + T[i]];
            EXPECT(fabs(LOSS[i] - want) <= 1e-6 * (1.0 + fabs(want)), "row loss");
        }
        for (c = 0; c < C; c++) {
            EXPECT(G[S + c] == 0.0f, "an ignored row's gradient is 0");
        }
    }

    /* Soft targets: uniform ones give the mean of lse - mean(x). */
    reset();
    {
        double want = 0.0;
        for (i = 0; i < R; i++) {
            double mean_x = 0.0;
            for (c = 0; c < C; c++) {
                mean_x += L[i * S + c] / (double)C;
            }
            want += (lse[i] - mean_x) / R;
        }
        ACCEPTED(xent_cross_entropy_soft_f32(L, R, C, S, SOFT, S, NULL, LOSS, NULL, 0, NULL));
        EXPECT(fabs(LOSS[0] - want) <= 1e-6 * (1.0 + want), "soft loss");
    }

    /* softmax and log_softmax. */
    ACCEPTED(xent_softmax_f32(L, R, C, S, G, S));
    for (i = 0; i < R; i++) {
        for (c = 0; c < C; c++) {
            EXPECT(fabs(G[i * S + c] - p[i][c]) <= 1e-6, "softmax");
        }
    }
    ACCEPTED(xent_log_softmax_f32(L, R, C, S, L, S));
    for (i = 0; i < R; i++) {
        for (c = 0; c < C; c++) {
            EXPECT(fabs(L[i * S + c] - log(p[i][c])) <= 1e-5, "log_softmax in place");
        }
    }
}

static void strings_and_defaults(void) {
    xent_options o = xent_options_default();
    int s, t;
    for (s = XENT_STATUS_OK; s <= XENT_STATUS_INTERNAL_PANIC; s++) {
        const char *text = xent_status_string((xent_status)s);
        EXPECT(text != NULL && strlen(text) > 0, "every status has a text");
        for (t = XENT_STATUS_OK; t < s; t++) {
            EXPECT(strcmp(text, xent_status_string((xent_status)t)) != 0, "distinct texts");
        }
    }
    EXPECT(strcmp(xent_status_string((xent_status)7), "unknown status") == 0, "status 7");
    EXPECT(strcmp(xent_status_string((xent_status)-1), "unknown status") == 0, "status -1");
    EXPECT(strcmp(xent_version(), XENT_EXPECTED_VERSION) == 0, "xent_version");
    EXPECT(strlen(xent_simd_level()) > 0, "xent_simd_level");
    EXPECT(xent_version() == xent_version(), "a static version string");
    EXPECT(o.reduction == XENT_REDUCTION_MEAN && o.ignore_index == -100 &&
               o.label_smoothing == 0.0f && o.z_loss == 0.0f && o.softcap == 0.0f &&
               o.grad_scale == 1.0f && o.class_weights == NULL,
           "the default options are PyTorch's");
    EXPECT(XENT_STATUS_OK == 0 && XENT_STATUS_NULL_POINTER == 1 &&
               XENT_STATUS_INVALID_SHAPE == 2 && XENT_STATUS_TARGET_OUT_OF_RANGE == 3 &&
               XENT_STATUS_INVALID_OPTION == 4 && XENT_STATUS_OVERLAPPING_BUFFERS == 5 &&
               XENT_STATUS_INTERNAL_PANIC == 6 && XENT_REDUCTION_MEAN == 0 &&
               XENT_REDUCTION_SUM == 1 && XENT_REDUCTION_NONE == 2,
           "the values the header documents");
}

int main(void) {
    carve();
    xent_set_num_threads(1);
    null_pointers();
    shapes();
    targets_out_of_range();
    invalid_options();
    overlaps();
    results();
    strings_and_defaults();
    xent_set_num_threads(0);
    printf("bad_input.c: %d of %d checks passed\n", checks - failures, checks);
    free(arena);
    free(before);
    return failures == 0 ? 0 : 1;
}
