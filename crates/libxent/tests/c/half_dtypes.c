/*
 * The _bf16 and _f16 functions from C. Every call's results are the _f32 call's on the
 * widened logits: loss and lse bit for bit, and each 16-bit output (gradient, softmax,
 * log_softmax) that call's float output rounded once to nearest, ties to even - by the
 * converters below, themselves checked first against known roundings and round trips.
 * Out of place (with a stride of its own) and in place, for hard and soft targets, under
 * three sets of options. Then the bad inputs: each gets the _f32 function's status and a
 * refused call leaves every byte of every buffer exactly as it was (all buffers live in
 * one arena filled with sentinel bytes, compared byte for byte after the call).
 *
 * Prints one line per failed check and a summary; exits 1 if any check failed.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_BYTES 1024
#include "check.h"

/* R rows of C classes; logits with a stride of S, gradients and softmax outputs of GS,
 * soft targets of PS. */
enum { R = 6, C = 7, S = 9, GS = 10, PS = 8 };
enum { SPAN = (R - 1) * S + C, GSPAN = (R - 1) * GS + C, PSPAN = (R - 1) * PS + C };

/* The bits of padding no call may write, and of buffers before a call writes them. */
#define PAD16 0xA5A5u

/* ---- Conversions between float and the 16-bit formats (round to nearest, ties to even) */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint16_t bf16_from_f32(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((x >> 16) | 0x0040u); /* NaN: kept, quiet */
    }
    /* Adding 0x7fff, plus 1 when the kept part is odd, carries exactly when the dropped
     * 16 bits are above half, or half with an odd kept part. */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

static float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

static uint16_t f16_from_f32(float f) {
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exponent = (x >> 23) & 0xffu;
    uint32_t mantissa = x & 0x7fffffu;
    int e = (int)exponent - 127 + 15;
    uint32_t kept, rest, half;
    int shift;
    if (exponent == 0xffu) { /* infinity, or NaN kept quiet */
        return (uint16_t)(sign | 0x7c00u | (mantissa != 0 ? 0x0200u | (mantissa >> 13) : 0u));
    }
    if (e >= 0x1f) {
        return (uint16_t)(sign | 0x7c00u); /* beyond the largest binade: infinity */
    }
    if (e <= 0) { /* a subnormal f16, or zero */
        if (e < -10) {
            return (uint16_t)sign; /* below half the smallest subnormal */
        }
        mantissa |= 0x800000u; /* f32 zero and subnormals land here too, and round to 0 */
        shift = 14 - e;
    } else {
        mantissa |= (uint32_t)e << 23; /* exponent and fraction rounded as one integer */
        shift = 13;
    }
    kept = mantissa >> shift;
    rest = mantissa & ((1u << shift) - 1u);
    half = 1u << (shift - 1);
    if (rest > half || (rest == half && (kept & 1u))) {
        kept++; /* a carry moves to the next binade, or to infinity: both right */
    }
    return (uint16_t)(sign | kept);
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    int e;
    if (exponent == 0x1fu) {
        return bits_f32(sign | 0x7f800000u | (mantissa << 13));
    }
    if (exponent != 0) {
        return bits_f32(sign | ((exponent - 15u + 127u) << 23) | (mantissa << 13));
    }
    if (mantissa == 0) {
        return bits_f32(sign);
    }
    e = -14; /* a subnormal: normalize it */
    while ((mantissa & 0x400u) == 0) {
        mantissa <<= 1;
        e--;
    }
    return bits_f32(sign | ((uint32_t)(e + 127) << 23) | ((mantissa & 0x3ffu) << 13));
}

static void converters(void) {
    static const struct {
        float value;
        uint16_t f16, bf16;
    } known[] = {
        {1.0f, 0x3c00, 0x3f80},
        {-2.0f, 0xc000, 0xc000},
        {0.0f, 0x0000, 0x0000},
        {-0.0f, 0x8000, 0x8000},
        {65504.0f, 0x7bff, 0x4780},        /* the largest f16; bf16 rounds it up */
        {65519.0f, 0x7bff, 0x4780},
        {65520.0f, 0x7c00, 0x4780},        /* f16: the tie above the largest, to inf */
        {0x1p-24f, 0x0001, 0x3380},        /* the smallest f16 subnormal */
        {0x1p-25f, 0x0000, 0x3300},        /* half of it: a tie, to even (zero) */
        {0x1.8p-25f, 0x0001, 0x3340},      /* above that tie */
        {0x1p-26f, 0x0000, 0x3280},
        {0x1.ffcp-15f, 0x0400, 0x3880},    /* f16: between 0x03ff and 0x0400, to even */
        {0x1.ffap-15f, 0x03ff, 0x3880},    /* f16: just below that tie */
        {0x1.002p0f, 0x3c00, 0x3f80},      /* f16: 1 + 2^-11, a tie, to even (down) */
        {0x1.006p0f, 0x3c02, 0x3f80},      /* f16: 1 + 3 * 2^-11, a tie, to even (up) */
        {0x1.01p0f, 0x3c04, 0x3f80},       /* bf16: 1 + 2^-8, a tie, to even (down) */
        {0x1.03p0f, 0x3c0c, 0x3f82},       /* bf16: 1 + 3 * 2^-8, a tie, to even (up) */
        {0x1.010002p0f, 0x3c04, 0x3f81},   /* bf16: 1 + 2^-8 + 2^-23, above the tie */
        {0x1.fffffep127f, 0x7c00, 0x7f80}, /* FLT_MAX */
        {-0x1p-149f, 0x8000, 0x8000},      /* the smallest f32 subnormal */
    };
    size_t k;
    uint32_t h;
    int f16_round_trips = 1, bf16_round_trips = 1;
    for (k = 0; k < sizeof known / sizeof known[0]; k++) {
        EXPECT(f16_from_f32(known[k].value) == known[k].f16, "f16 of %a: 0x%04x, not 0x%04x",
               (double)known[k].value, f16_from_f32(known[k].value), known[k].f16);
        EXPECT(bf16_from_f32(known[k].value) == known[k].bf16,
               "bf16 of %a: 0x%04x, not 0x%04x", (double)known[k].value,
               bf16_from_f32(known[k].value), known[k].bf16);
    }
    /* Every value that is not NaN widens exactly and narrows back to itself. */
    for (h = 0; h <= 0xffffu; h++) {
        uint16_t v = (uint16_t)h;
        if ((v & 0x7fffu) <= 0x7c00u && f16_from_f32(f16_to_f32(v)) != v) {
            f16_round_trips = 0;
        }
        if ((v & 0x7fffu) <= 0x7f80u && bf16_from_f32(bf16_to_f32(v)) != v) {
            bf16_round_trips = 0;
        }
    }
    EXPECT(f16_round_trips, "every f16 round-trips through float");
    EXPECT(bf16_round_trips, "every bf16 round-trips through float");
    EXPECT(f16_to_f32(0x0001) == 0x1p-24f && f16_to_f32(0x03ff) == 0x1.ff8p-15f &&
               f16_to_f32(0xfbff) == -65504.0f,
           "f16 widening");
}

/* ---- The element types under test ---- */

typedef xent_status (*forward_fn)(const uint16_t *, size_t, size_t, size_t, const int64_t *,
                                  const xent_options *, float *, uint16_t *, size_t, float *);
typedef xent_status (*soft_fn)(const uint16_t *, size_t, size_t, size_t, const float *,
                               size_t, const xent_options *, float *, uint16_t *, size_t,
                               float *);
typedef xent_status (*backward_fn)(const uint16_t *, size_t, size_t, size_t, const int64_t *,
                                   const xent_options *, const float *, const float *,
                                   uint16_t *, size_t);
typedef xent_status (*normalize_fn)(const uint16_t *, size_t, size_t, size_t, uint16_t *,
                                    size_t);

struct dtype {
    const char *name;
    uint16_t (*narrow)(float);
    float (*widen)(uint16_t);
    forward_fn forward;
    soft_fn soft;
    backward_fn backward;
    normalize_fn softmax;
    normalize_fn log_softmax;
};

static const struct dtype DTYPES[2] = {
    {"bf16", bf16_from_f32, bf16_to_f32, xent_cross_entropy_bf16, xent_cross_entropy_soft_bf16,
     xent_cross_entropy_backward_bf16, xent_softmax_bf16, xent_log_softmax_bf16},
    {"f16", f16_from_f32, f16_to_f32, xent_cross_entropy_f16, xent_cross_entropy_soft_f16,
     xent_cross_entropy_backward_f16, xent_softmax_f16, xent_log_softmax_f16},
};

/* ---- Results: the f32 call's, rounded once ---- */

/* A small deterministic generator: uniform in [lo, hi). */
static uint32_t rng_state = 12345u;
static float uniform(float lo, float hi) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return lo + (hi - lo) * (float)(rng_state >> 8) / 16777216.0f;
}

static void fill16(uint16_t *p, size_t n) {
    size_t k;
    for (k = 0; k < n; k++) {
        p[k] = PAD16;
    }
}

static void fill32(float *p, size_t n, float v) {
    size_t k;
    for (k = 0; k < n; k++) {
        p[k] = v;
    }
}

/* `got` (rows of C at `got_stride`) is `want` (at `want_stride`) rounded by `d`, bit for
 * bit, and the padding of `got` still holds PAD16. */
static void expect_rounded(const struct dtype *d, const uint16_t *got, size_t got_stride,
                           const float *want, size_t want_stride, const char *what,
                           const char *options) {
    size_t i, c;
    for (i = 0; i < R; i++) {
        for (c = 0; c < C; c++) {
            uint16_t g = got[i * got_stride + c];
            float w = want[i * want_stride + c];
            EXPECT(g == d->narrow(w),
                   "%s %s (%s) [%lu][%lu]: 0x%04x; the f32 call's %a rounds to 0x%04x",
                   d->name, what, options, (unsigned long)i, (unsigned long)c, g, (double)w,
                   d->narrow(w));
        }
        for (c = C; i < R - 1 && c < got_stride; c++) {
            EXPECT(got[i * got_stride + c] == PAD16, "%s %s (%s): padding [%lu][%lu] written",
                   d->name, what, options, (unsigned long)i, (unsigned long)c);
        }
    }
}

/* `n` floats equal `want`'s bit for bit. */
static void expect_same_floats(const float *got, const float *want, size_t n, const char *what,
                               const struct dtype *d, const char *options) {
    EXPECT(memcmp(got, want, n * sizeof(float)) == 0, "%s %s (%s): differs from the f32 call's",
           d->name, what, options);
}

#define OK(call) EXPECT((call) == XENT_STATUS_OK, "%s", #call)

/* Every call of `d` on logits `x16` (stride S) against the f32 calls on their widening. */
static void results(const struct dtype *d, const uint16_t *x16, const int64_t *targets,
                    const float *probs, const xent_options *o, const char *options) {
    float x32[SPAN], g32[GSPAN], in_place32[SPAN];
    float loss32[R], lse32[R], loss[R], lse[R], dloss[R];
    uint16_t g16[GSPAN], in_place16[SPAN];
    size_t k, loss_len = o->reduction == XENT_REDUCTION_NONE ? R : 1;
    for (k = 0; k < SPAN; k++) {
        x32[k] = d->widen(x16[k]); /* the padding too: never read */
    }
    for (k = 0; k < R; k++) {
        dloss[k] = 0.5f + 0.25f * (float)k;
    }

    /* The loss alone. */
    OK(xent_cross_entropy_f32(x32, R, C, S, targets, o, loss32, NULL, 0, lse32));
    fill32(loss, R, -1.0f);
    fill32(lse, R, -1.0f);
    OK(d->forward(x16, R, C, S, targets, o, loss, NULL, 0, lse));
    expect_same_floats(loss, loss32, loss_len, "loss", d, options);
    expect_same_floats(lse, lse32, R, "lse", d, options);

    /* With the gradient into a separate buffer with its own stride. */
    fill32(g32, GSPAN, 0.0f);
    OK(xent_cross_entropy_f32(x32, R, C, S, targets, o, loss32, g32, GS, lse32));
    fill16(g16, GSPAN);
    fill32(loss, R, -1.0f);
    OK(d->forward(x16, R, C, S, targets, o, loss, g16, GS, lse));
    expect_same_floats(loss, loss32, loss_len, "loss with grad", d, options);
    expect_same_floats(lse, lse32, R, "lse with grad", d, options);
    expect_rounded(d, g16, GS, g32, GS, "grad", options);

    /* In place. */
    memcpy(in_place32, x32, sizeof in_place32);
    OK(xent_cross_entropy_f32(in_place32, R, C, S, targets, o, loss32, in_place32, S, lse32));
    memcpy(in_place16, x16, sizeof in_place16);
    fill32(loss, R, -1.0f);
    OK(d->forward(in_place16, R, C, S, targets, o, loss, in_place16, S, lse));
    expect_same_floats(loss, loss32, loss_len, "in-place loss", d, options);
    expect_rounded(d, in_place16, S, in_place32, S, "in-place grad", options);

    /* Backward from the saved lse, separate and in place. */
    OK(xent_cross_entropy_f32(x32, R, C, S, targets, o, loss32, NULL, 0, lse32));
    OK(xent_cross_entropy_backward_f32(x32, R, C, S, targets, o, lse32, dloss, g32, GS));
    fill16(g16, GSPAN);
    OK(d->backward(x16, R, C, S, targets, o, lse32, dloss, g16, GS));
    expect_rounded(d, g16, GS, g32, GS, "backward", options);
    memcpy(in_place16, x16, sizeof in_place16);
    OK(d->backward(in_place16, R, C, S, targets, o, lse32, dloss, in_place16, S));
    expect_rounded(d, in_place16, S, g32, GS, "backward in place", options);

    /* Soft targets (float whatever the logits' type), separate and in place. */
    OK(xent_cross_entropy_soft_f32(x32, R, C, S, probs, PS, o, loss32, g32, GS, lse32));
    fill16(g16, GSPAN);
    fill32(loss, R, -1.0f);
    fill32(lse, R, -1.0f);
    OK(d->soft(x16, R, C, S, probs, PS, o, loss, g16, GS, lse));
    expect_same_floats(loss, loss32, loss_len, "soft loss", d, options);
    expect_same_floats(lse, lse32, R, "soft lse", d, options);
    expect_rounded(d, g16, GS, g32, GS, "soft grad", options);
    memcpy(in_place16, x16, sizeof in_place16);
    fill32(loss, R, -1.0f);
    OK(d->soft(in_place16, R, C, S, probs, PS, o, loss, in_place16, S, NULL));
    expect_same_floats(loss, loss32, loss_len, "soft loss in place", d, options);
    expect_rounded(d, in_place16, S, g32, GS, "soft grad in place", options);
}

/* softmax and log_softmax of `d`, separate and in place, against the f32 ones. */
static void normalizations(const struct dtype *d, const uint16_t *x16) {
    float x32[SPAN], y32[GSPAN];
    uint16_t y16[GSPAN], in_place16[SPAN];
    size_t k;
    int log;
    for (k = 0; k < SPAN; k++) {
        x32[k] = d->widen(x16[k]);
    }
    for (log = 0; log < 2; log++) {
        const char *what = log ? "log_softmax" : "softmax";
        normalize_fn f = log ? d->log_softmax : d->softmax;
        fill32(y32, GSPAN, 0.0f);
        OK((log ? xent_log_softmax_f32 : xent_softmax_f32)(x32, R, C, S, y32, GS));
        fill16(y16, GSPAN);
        OK(f(x16, R, C, S, y16, GS));
        expect_rounded(d, y16, GS, y32, GS, what, "separate");
        memcpy(in_place16, x16, sizeof in_place16);
        OK(f(in_place16, R, C, S, in_place16, S));
        expect_rounded(d, in_place16, S, y32, GS, what, "in place");
    }
}

static void all_results(const struct dtype *d) {
    uint16_t x16[SPAN];
    int64_t targets[R];
    float probs[PSPAN], weights[C];
    xent_options o;
    size_t i, c;
    fill16(x16, SPAN);
    fill32(probs, PSPAN, -1.0f);
    for (i = 0; i < R; i++) {
        float sum = 0.0f;
        targets[i] = (int64_t)((i * 3) % C);
        for (c = 0; c < C; c++) {
            /* Row 0 is confident (p_y near 1: tiny gradients, subnormal in f16); row 1
             * has large logits. */
            float v = uniform(-8.0f, 8.0f) * (i == 1 ? 4.0f : 1.0f);
            x16[i * S + c] = d->narrow(i == 0 ? ((int64_t)c == targets[0] ? 14.0f : v / 4) : v);
            probs[i * PS + c] = uniform(0.0f, 1.0f);
            sum += probs[i * PS + c];
        }
        for (c = 0; c < C; c++) {
            probs[i * PS + c] /= sum;
        }
    }
    for (c = 0; c < C; c++) {
        weights[c] = c == 2 ? 0.0f : 0.5f + 0.25f * (float)c;
    }

    o = xent_options_default();
    results(d, x16, targets, probs, &o, "defaults");

    o.reduction = XENT_REDUCTION_SUM;
    o.label_smoothing = 0.1f;
    o.ignore_index = 3;
    o.class_weights = weights;
    results(d, x16, targets, probs, &o, "sum, smoothing, weights, ignore_index");

    o = xent_options_default();
    o.reduction = XENT_REDUCTION_NONE;
    o.z_loss = 1e-3f;
    o.softcap = 5.0f;
    o.grad_scale = 0.5f;
    targets[4] = o.ignore_index;
    results(d, x16, targets, probs, &o, "none, z_loss, softcap, grad_scale");

    normalizations(d, x16);

    /* No rows: every buffer but loss may be NULL; the mean over nothing is NaN. */
    {
        float loss = 0.0f;
        OK(d->forward(NULL, 0, C, S, NULL, NULL, &loss, NULL, 0, NULL));
        EXPECT(isnan(loss), "%s: the mean over no rows is NaN", d->name);
        OK(d->softmax(NULL, 0, C, C, NULL, C));
    }
}

/* ---- Bad inputs: the f32 functions' statuses, and not a byte written ---- */

static uint16_t *L;    /* logits, SPAN values (2 bytes each) */
static uint16_t *G;    /* gradient / softmax output, SPAN values */
static float *LOSS;    /* R floats */
static float *LSE;     /* lse output, R floats */
static float *LSE_IN;  /* saved lse, a backward input, R floats */
static float *DLOSS;   /* R floats */
static float *SOFT;    /* soft targets, SPAN floats at stride S */
static int64_t *T;     /* hard targets, R values */

static void carve(void) {
    alloc_arena();
    L = (uint16_t *)(void *)arena;
    G = (uint16_t *)(void *)(arena + 128);
    LOSS = (float *)(void *)(arena + 256);
    LSE = (float *)(void *)(arena + 320);
    LSE_IN = (float *)(void *)(arena + 384);
    DLOSS = (float *)(void *)(arena + 448);
    SOFT = (float *)(void *)(arena + 512);
    T = (int64_t *)(void *)(arena + 768);
}

/* Sentinels everywhere, then inputs that are valid unless a case changes them. */
static void reset(const struct dtype *d) {
    int i, c;
    memset(arena, 0xA5, ARENA_BYTES);
    for (i = 0; i < R; i++) {
        T[i] = i % C;
        LSE_IN[i] = 2.0f;
        DLOSS[i] = 1.0f;
        for (c = 0; c < C; c++) {
            L[i * S + c] = d->narrow((float)(i + 1) * 0.25f * (float)c - 0.5f);
            SOFT[i * S + c] = 1.0f / C;
        }
    }
}

/* Runs `call` on the arena as it is now and expects status `want` and no byte written. */
#define REFUSED(want, call) REFUSED_AS(d->name, want, call)

/* A pointer `bytes` bytes past `p`, as a pointer of `type`. */
#define SHIFTED(type, p, bytes) ((type)(void *)((unsigned char *)(p) + (bytes)))

static void bad_inputs(const struct dtype *d) {
    static const int64_t bad_targets[] = {C, -1, -99, INT64_MAX, INT64_MIN};
    xent_options o = xent_options_default();
    size_t k;

    /* NULL pointers */
    reset(d);
    REFUSED(XENT_STATUS_NULL_POINTER, d->forward(NULL, R, C, S, T, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_NULL_POINTER, d->forward(L, R, C, S, NULL, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_NULL_POINTER, d->forward(L, R, C, S, T, NULL, NULL, G, S, LSE));
    REFUSED(XENT_STATUS_NULL_POINTER, d->forward(L, R, C, S, T, NULL, NULL, L, S, NULL));
    REFUSED(XENT_STATUS_NULL_POINTER, d->forward(NULL, 0, C, S, NULL, NULL, NULL, NULL, 0, NULL));
    REFUSED(XENT_STATUS_NULL_POINTER, d->soft(NULL, R, C, S, SOFT, S, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_NULL_POINTER, d->soft(L, R, C, S, NULL, S, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_NULL_POINTER, d->soft(L, R, C, S, SOFT, S, NULL, NULL, L, S, LSE));
    REFUSED(XENT_STATUS_NULL_POINTER, d->backward(NULL, R, C, S, T, NULL, LSE_IN, DLOSS, G, S));
    REFUSED(XENT_STATUS_NULL_POINTER, d->backward(L, R, C, S, NULL, NULL, LSE_IN, DLOSS, G, S));
    REFUSED(XENT_STATUS_NULL_POINTER, d->backward(L, R, C, S, T, NULL, NULL, DLOSS, G, S));
    REFUSED(XENT_STATUS_NULL_POINTER, d->backward(L, R, C, S, T, NULL, LSE_IN, NULL, L, S));
    REFUSED(XENT_STATUS_NULL_POINTER, d->backward(L, R, C, S, T, NULL, LSE_IN, DLOSS, NULL, S));
    REFUSED(XENT_STATUS_NULL_POINTER, d->softmax(NULL, R, C, S, G, S));
    REFUSED(XENT_STATUS_NULL_POINTER, d->softmax(L, R, C, S, NULL, S));
    REFUSED(XENT_STATUS_NULL_POINTER, d->log_softmax(NULL, R, C, S, G, S));
    REFUSED(XENT_STATUS_NULL_POINTER, d->log_softmax(L, R, C, S, NULL, S));

    /* Shapes */
    REFUSED(XENT_STATUS_INVALID_SHAPE, d->forward(L, R, 0, S, T, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_INVALID_SHAPE, d->forward(L, R, C, C - 1, T, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_INVALID_SHAPE, d->forward(L, R, C, S, T, NULL, LOSS, G, C - 1, LSE));
    REFUSED(XENT_STATUS_INVALID_SHAPE, d->forward(L, R, C, S, T, NULL, LOSS, L, C - 1, LSE));
    REFUSED(XENT_STATUS_INVALID_SHAPE, d->soft(L, R, C, S, SOFT, C - 1, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_INVALID_SHAPE, d->backward(L, R, C, S, T, NULL, LSE_IN, DLOSS, G, 1));
    REFUSED(XENT_STATUS_INVALID_SHAPE, d->softmax(L, R, C, 2, G, S));
    REFUSED(XENT_STATUS_INVALID_SHAPE, d->log_softmax(L, R, C, S, G, C - 1));
    /* 4 * 2^62 elements overflow size_t; 2^62 + C do not, but as 2-byte elements they are
     * more than isize::MAX bytes. */
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            d->forward(L, 5, C, SIZE_MAX / 4 + 1, T, NULL, LOSS, NULL, 0, NULL));
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            d->forward(L, 2, C, SIZE_MAX / 4 + 1, T, NULL, LOSS, NULL, 0, NULL));
    REFUSED(XENT_STATUS_INVALID_SHAPE, d->softmax(L, 2, C, S, G, SIZE_MAX / 4 + 1));
    /* pointers not aligned for 2-byte elements */
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            d->forward(SHIFTED(const uint16_t *, L, 1), R, C, S, T, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            d->forward(L, R, C, S, T, NULL, LOSS, SHIFTED(uint16_t *, G, 1), S, LSE));
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            d->backward(L, R, C, S, T, NULL, LSE_IN, DLOSS, SHIFTED(uint16_t *, G, 3), S));
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            d->softmax(L, R, C, S, SHIFTED(uint16_t *, G, 1), S));
    /* a float buffer aligned for uint16_t only */
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            d->forward(L, R, C, S, T, NULL, SHIFTED(float *, LOSS, 2), G, S, LSE));

    /* Targets out of range, out of place and in place */
    for (k = 0; k < sizeof bad_targets / sizeof bad_targets[0]; k++) {
        reset(d);
        T[2] = bad_targets[k];
        REFUSED(XENT_STATUS_TARGET_OUT_OF_RANGE, d->forward(L, R, C, S, T, NULL, LOSS, G, S, LSE));
        REFUSED(XENT_STATUS_TARGET_OUT_OF_RANGE, d->forward(L, R, C, S, T, NULL, LOSS, L, S, LSE));
        REFUSED(XENT_STATUS_TARGET_OUT_OF_RANGE,
                d->forward(L, R, C, S, T, NULL, LOSS, NULL, 0, NULL));
        REFUSED(XENT_STATUS_TARGET_OUT_OF_RANGE,
                d->backward(L, R, C, S, T, NULL, LSE_IN, DLOSS, G, S));
        REFUSED(XENT_STATUS_TARGET_OUT_OF_RANGE,
                d->backward(L, R, C, S, T, NULL, LSE_IN, DLOSS, L, S));
    }

    /* Invalid options */
    reset(d);
    o.label_smoothing = 1.5f;
    REFUSED(XENT_STATUS_INVALID_OPTION, d->forward(L, R, C, S, T, &o, LOSS, L, S, LSE));
    REFUSED(XENT_STATUS_INVALID_OPTION, d->soft(L, R, C, S, SOFT, S, &o, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_INVALID_OPTION, d->backward(L, R, C, S, T, &o, LSE_IN, DLOSS, L, S));
    o = xent_options_default();
    o.reduction = 7;
    REFUSED(XENT_STATUS_INVALID_OPTION, d->forward(L, R, C, S, T, &o, LOSS, G, S, LSE));

    /* Overlaps, in bytes of 2-byte elements: only exactly the same rows may be shared. */
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, d->forward(L, R, C, S, T, NULL, LOSS, L + 1, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, d->forward(L + 1, R, C, S, T, NULL, LOSS, L, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, d->forward(L, R, C, S, T, NULL, LOSS, L, S + 1, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            d->forward(L, R, C, S, T, NULL, LOSS, L + SPAN - 1, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            d->forward(L, R, C, S, T, NULL, LOSS, G, S, SHIFTED(float *, L, 2 * SPAN - 4)));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            d->forward(L, R, C, S, T, NULL, SHIFTED(float *, G, 2 * SPAN - 4), G, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            d->forward(L, 1, C, S, T, NULL, LOSS, SHIFTED(uint16_t *, T, 0), S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            d->soft(L, R, C, S, SOFT, S, NULL, LOSS, SHIFTED(uint16_t *, SOFT, 8), S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            d->backward(L, 1, C, S, T, NULL, LSE_IN, DLOSS, SHIFTED(uint16_t *, LSE_IN, 0), S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            d->backward(L, R, C, S, T, NULL, LSE_IN, DLOSS, L + 2, S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, d->softmax(L, R, C, S, L + 1, S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, d->log_softmax(L, R, C, S, L, C));

    /* Accepted: buffers that merely touch the 2-byte logits' last byte, and in place. */
    reset(d);
    OK(d->forward(L, R, C, S, T, NULL, LOSS, L + SPAN, S, NULL));
    reset(d);
    OK(d->forward(L, R, C, S, T, NULL, SHIFTED(float *, L, 2 * SPAN), NULL, 0, LSE));
    reset(d);
    OK(d->backward(L, R, C, S, T, NULL, LSE_IN, DLOSS, L, S));
    reset(d);
    OK(d->softmax(L, R, C, S, L, S));
}

int main(void) {
    size_t k;
    converters();
    for (k = 0; k < 2; k++) {
        all_results(&DTYPES[k]);
    }
    carve();
    for (k = 0; k < 2; k++) {
        bad_inputs(&DTYPES[k]);
    }
    printf("half_dtypes.c: %d of %d checks passed\n", checks - failures, checks);
    free(arena);
    free(before);
    return failures == 0 ? 0 : 1;
}
