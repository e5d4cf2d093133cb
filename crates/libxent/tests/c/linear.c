/*
 * The fused linear + cross-entropy from C, through the header: xent_linear_cross_entropy_f32
 * against the unfused composition done here. The logits X = H W^T + b are computed in C (H
 * and W hold multiples of 1/8 in [-1, 1], b multiples of 1/4 or -INFINITY: every logit is
 * exact in float), xent_cross_entropy_f32 on X gives the loss, lse and gradient G, then
 * dH = G W, dW = G^T H and db = sum_i G in double. Over dims 1, 3, 17, 65, 5 option sets,
 * strided inputs and gradients (NaN padding that must survive), ignored rows, masked classes.
 * Then xent_linear_cross_entropy_backward_f32 from the fused call's lse (a dloss per row under
 * reduction none) against xent_cross_entropy_backward_f32 on X and the same sums.
 *
 * Tolerances: the fused G and the unfused G are each within docs/semantics.md's tg = 1e-5 |G| +
 * 1e-6 |s| max(1, max w) (1 + c/2) of the exact gradient (s = grad_scale / min(W, N) under a
 * mean, else grad_scale; c the softcap), so within 2 tg of each other; a GEMM accumulating n
 * products in f32 is within n FLT_EPSILON sum |terms| of their exact sum, in any order. So an
 * entry sum_j G_j a_j (a exact) is within sum_j (2 tg(G_j) |a_j| + n FLT_EPSILON |G_j a_j|).
 * Loss and lse: within twice docs/semantics.md's 1e-5 |ref| + 1e-6 (1 + |m_i|) max(1, max w) per row
 * (over min(W, N) for a mean) and 1e-6 (1 + |m_i|) + 1e-6 |lse|.
 *
 * Then xent_linear_cross_entropy_bf16 on the same (bf16-exact) values, packed: loss and lse
 * the _f32 call's bit for bit, each gradient that call's rounded to nearest even; and its bad
 * inputs: each refused call gets its status and leaves every byte of the arena as it was.
 * Prints one line per failed check and a summary; exits 1 if any check failed.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_BYTES 2048
#include "check.h"

/* R rows, K classes, dims up to DMAX; strides are dim + HP (hidden), + WP (weight), + GHP
 * (grad_hidden), + GWP (grad_weight); each gradient has one more padded row as a guard. */
enum { R = 7, K = 29, DMAX = 65, HP = 1, WP = 3, GHP = 2, GWP = 1 };

static float H[R * (DMAX + HP)], WM[K * (DMAX + WP)], B[K], CW[K], X[R * K], G[R * K], G2[R * K];
static float GH[(R + 1) * (DMAX + GHP)], GW[(K + 1) * (DMAX + GWP)], GB[K + 1];
static int64_t T[R];

/* A NaN with a payload: the padding no call may write. */
static float pad(void) {
    uint32_t bits = 0x7fc0deadu;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static int same_bits(const float *a, const float *b, size_t n) {
    return memcmp(a, b, n * sizeof(float)) == 0;
}

static int is_pad(const float *a, size_t n) {
    float p = pad();
    while (n > 0 && same_bits(&a[n - 1], &p, 1)) {
        n--;
    }
    return n == 0;
}

/* Whether every element of rows + 1 rows at `stride` but the first `rows` rows' `cols`
 * holds pad(). */
static int padded(const float *a, int rows, int cols, int stride) {
    int i, ok = is_pad(&a[rows * stride], (size_t)stride);
    for (i = 0; i < rows; i++) {
        ok = ok && is_pad(&a[i * stride + cols], (size_t)(stride - cols));
    }
    return ok;
}

static void pad_all(float *a, size_t n) {
    while (n > 0) {
        a[--n] = pad();
    }
}

/* NaN meets NaN, an infinity the same infinity, anything else within tol. */
static int close_to(double got, double want, double tol) {
    if (isnan(want)) {
        return isnan(got);
    }
    if (isinf(want)) {
        return got == want;
    }
    return fabs(got - want) <= tol;
}

/* float to bfloat16 bits, to nearest, ties to even (NaN kept quiet); and back. */
static uint16_t bf16_from_f32(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((x >> 16) | 0x0040u);
    }
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

static float bf16_to_f32(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

/* The options (the defaults but these), and the bias: 0 none, 1 finite, 2 with -INFINITY at
 * every class c % 5 == 2. */
typedef struct {
    const char *name;
    xent_reduction reduction;
    float smoothing, z, softcap, scale;
    int64_t ignore;
    int weighted, bias;
} option_set;

static xent_options options_of(const option_set *set) {
    xent_options o = xent_options_default();
    o.reduction = (uint32_t)set->reduction;
    o.label_smoothing = set->smoothing;
    o.z_loss = set->z;
    o.softcap = set->softcap;
    o.grad_scale = set->scale;
    o.ignore_index = set->ignore;
    o.class_weights = set->weighted ? CW : NULL;
    return o;
}

/* H and W from a small LCG, multiples of 1/8 in [-1, 1]; b multiples of 1/4 in [-4, 4];
 * padding pad(). Row 4 is ignored; no target is a masked class. */
static void fill(const option_set *set, int dim) {
    static const int64_t targets[R] = {3, 20, 15, 0, 0, 28, 9};
    uint32_t state = 2024u + (uint32_t)dim;
    int i, c, k, hs = dim + HP, ws = dim + WP;
#define NEXT(n) (state = state * 1664525u + 1013904223u, (int)((state >> 16) % (n)))
    for (k = 0; k < R * hs; k++) {
        H[k] = k % hs < dim ? (float)(NEXT(17) - 8) / 8.0f : pad();
    }
    for (k = 0; k < K * ws; k++) {
        WM[k] = k % ws < dim ? (float)(NEXT(17) - 8) / 8.0f : pad();
    }
    for (c = 0; c < K; c++) {
        B[c] = set->bias == 2 && c % 5 == 2 ? -INFINITY : (float)(NEXT(33) - 16) / 4.0f;
        CW[c] = c == 11 ? 0.0f : 0.25f + (float)((c * 7) % 11) * 0.15f;
    }
#undef NEXT
    for (i = 0; i < R; i++) {
        T[i] = i == 4 ? set->ignore : targets[i];
    }
}

/* The run in progress, for the messages and the gradient's tolerance. */
static const char *NAME;
static int DIM;
static double S, MAXW, CAP;

/* sum_t g[t * gs] a[t * as] over n terms (a NULL: all 1), the composition's entry, against
 * `got`: within sum_t (2 tg(g_t) |a_t| + n FLT_EPSILON |g_t a_t|), tg docs/semantics.md's tolerance. */
static void check_sum(const char *what, int i, int j, float got, const float *g, int gs,
                      const float *a, int as, int n) {
    double want = 0.0, tol = 0.0;
    int t;
    for (t = 0; t < n; t++) {
        double gt = g[t * gs], at = a ? a[t * as] : 1.0;
        want += gt * at;
        tol += 2.0 * (1e-5 * fabs(gt) + 1e-6 * S * MAXW * CAP) * fabs(at) +
               n * FLT_EPSILON * fabs(gt * at);
    }
    EXPECT(close_to(got, want, tol),
           "%s, dim %d: %s[%d][%d] = %.9g, composition %.9g (tolerance %.3g)", NAME, DIM, what, i,
           j, got, want, tol);
}

static void run(const option_set *set, int dim) {
    xent_options o = options_of(set), per_row;
    const float *bias = set->bias ? B : NULL;
    int hs = dim + HP, ws = dim + WP, ghs = dim + GHP, gws = dim + GWP, i, c, k;
    size_t loss_len = o.reduction == XENT_REDUCTION_NONE ? R : 1;
    float ref_loss[R], row_ref[R], ref_lse[R], loss[R + 1], lse[R + 1], loss2[R], lse2[R];
    double maxw = 1.0, wsum = 0.0, count = 0.0, tol_total = 0.0, row_tol[R], div;

    fill(set, dim);
    per_row = o;
    per_row.reduction = XENT_REDUCTION_NONE;
    for (i = 0; i < R; i++) {
        for (c = 0; c < K; c++) {
            double x = bias ? bias[c] : 0.0;
            for (k = 0; k < dim; k++) {
                x += (double)H[i * hs + k] * WM[c * ws + k];
            }
            X[i * K + c] = (float)x; /* exact */
        }
    }
    EXPECT(xent_cross_entropy_f32(X, R, K, K, T, &per_row, row_ref, NULL, 0, NULL) ==
               XENT_STATUS_OK, "%s, dim %d: unfused per-row call", set->name, dim);
    EXPECT(xent_cross_entropy_f32(X, R, K, K, T, &o, ref_loss, G, K, ref_lse) == XENT_STATUS_OK,
           "%s, dim %d: unfused call", set->name, dim);

    pad_all(GH, (size_t)((R + 1) * ghs));
    pad_all(GW, (size_t)((K + 1) * gws));
    pad_all(GB, K + 1);
    pad_all(loss, R + 1);
    pad_all(lse, R + 1);
    EXPECT(xent_linear_cross_entropy_f32(H, R, (size_t)dim, (size_t)hs, WM, K, (size_t)ws, bias,
                                         T, 0, &o, loss, GH, (size_t)ghs, GW, (size_t)gws, GB,
                                         lse) == XENT_STATUS_OK,
           "%s, dim %d: fused call", set->name, dim);
    EXPECT(xent_linear_cross_entropy_f32(H, R, (size_t)dim, (size_t)hs, WM, K, (size_t)ws, bias,
                                         T, 0, &o, loss2, NULL, 0, NULL, 0, NULL, lse2) ==
                   XENT_STATUS_OK &&
               same_bits(loss2, loss, loss_len) && same_bits(lse2, lse, R),
           "%s, dim %d: loss and lse without gradients differ", set->name, dim);
    EXPECT(is_pad(&loss[loss_len], 1) && is_pad(&lse[R], 1) && is_pad(&GB[K], 1),
           "%s, dim %d: written past loss, lse or grad_bias", set->name, dim);

    /* m_i: the row's max of x' (finite values); W and N; s. */
    for (c = 0; set->weighted && c < K; c++) {
        maxw = CW[c] > maxw ? CW[c] : maxw;
    }
    for (i = 0; i < R; i++) {
        double m = -INFINITY;
        if (T[i] != o.ignore_index) {
            wsum += set->weighted ? CW[T[i]] : 1.0;
            count += 1.0;
        }
        for (c = 0; c < K; c++) {
            double x = X[i * K + c];
            if (o.softcap > 0.0f) {
                x = o.softcap * tanh(x / o.softcap);
            }
            m = isfinite(x) && x > m ? x : m;
        }
        m = isfinite(m) ? fabs(m) : 0.0;
        row_tol[i] = 2.0 * (1e-5 * fabs(row_ref[i]) + 1e-6 * (1.0 + m) * maxw);
        tol_total += row_tol[i];
        EXPECT(close_to(lse[i], ref_lse[i], 2.0 * (1e-6 * (1.0 + m) + 1e-6 * fabs(ref_lse[i]))),
               "%s, dim %d: lse[%d] = %.9g, unfused %.9g", set->name, dim, i, lse[i], ref_lse[i]);
    }
    div = o.reduction == XENT_REDUCTION_MEAN ? (wsum < count ? wsum : count) : 1.0;
    for (i = 0; i < (int)loss_len; i++) {
        EXPECT(close_to(loss[i], ref_loss[i], loss_len == 1 ? tol_total / div : row_tol[i]),
               "%s, dim %d: loss[%d] = %.9g, unfused %.9g", set->name, dim, i, loss[i],
               ref_loss[i]);
    }
    S = fabs(o.grad_scale) / div;
    NAME = set->name, DIM = dim, MAXW = maxw, CAP = 1.0 + o.softcap / 2.0;
    /* dH = G W (K terms); dW = G^T H and db = sum_i G (R terms); padding and guards intact. */
    for (i = 0; i < R; i++) {
        for (k = 0; k < dim; k++) {
            check_sum("grad_hidden", i, k, GH[i * ghs + k], &G[i * K], 1, &WM[k], ws, K);
        }
    }
    for (c = 0; c < K; c++) {
        for (k = 0; k < dim; k++) {
            check_sum("grad_weight", c, k, GW[c * gws + k], &G[c], K, &H[k], hs, R);
        }
        check_sum("grad_bias", c, 0, GB[c], &G[c], K, NULL, 0, R);
    }
    EXPECT(padded(GH, R, dim, ghs) && padded(GW, K, dim, gws),
           "%s, dim %d: grad_hidden's or grad_weight's padding or guard row written", set->name,
           dim);

    /* The backward from the fused call's lse, with per-row dloss for reduction none: the
     * unfused backward on X from the same lse gives G2, then the same sums. */
    {
        float dloss[R];
        double top = fabs(o.grad_scale);
        for (i = 0; i < (int)loss_len; i++) {
            dloss[i] = loss_len == 1 ? o.grad_scale : 0.5f + 0.25f * (float)(i % 3) - (i == 5);
            top = fabs(dloss[i]) > top ? fabs(dloss[i]) : top;
        }
        EXPECT(xent_cross_entropy_backward_f32(X, R, K, K, T, &o, lse, dloss, G2, K) ==
                   XENT_STATUS_OK, "%s, dim %d: unfused backward", set->name, dim);
        pad_all(GH, (size_t)((R + 1) * ghs));
        pad_all(GW, (size_t)((K + 1) * gws));
        pad_all(GB, K + 1);
        EXPECT(xent_linear_cross_entropy_backward_f32(H, R, (size_t)dim, (size_t)hs, WM, K,
                                                      (size_t)ws, bias, T, 0, &o, lse, dloss, GH,
                                                      (size_t)ghs, GW, (size_t)gws,
                                                      GB) == XENT_STATUS_OK,
               "%s, dim %d: fused backward", set->name, dim);
        S = top / div;
        for (i = 0; i < R; i++) {
            for (k = 0; k < dim; k++) {
                check_sum("backward grad_hidden", i, k, GH[i * ghs + k], &G2[i * K], 1, &WM[k],
                          ws, K);
            }
        }
        for (c = 0; c < K; c++) {
            for (k = 0; k < dim; k++) {
                check_sum("backward grad_weight", c, k, GW[c * gws + k], &G2[c], K, &H[k], hs,
                          R);
            }
            check_sum("backward grad_bias", c, 0, GB[c], &G2[c], K, NULL, 0, R);
        }
        EXPECT(padded(GH, R, dim, ghs) && padded(GW, K, dim, gws) && is_pad(&GB[K], 1),
               "%s, dim %d: the backward wrote past a gradient", set->name, dim);
    }
}

/* ---- bf16: the _f32 call on the widened values, each gradient rounded once. Packed. ---- */
static void check_rounded(const char *what, const uint16_t *got, const float *f32, int n) {
    int k;
    for (k = 0; k < n; k++) {
        EXPECT(got[k] == bf16_from_f32(f32[k]), "%s, dim %d: bf16 %s[%d] = 0x%04x, f32 %.9g",
               NAME, DIM, what, k, got[k], f32[k]);
    }
}

static void run_bf16(const option_set *set, int dim) {
    static float h[R * DMAX], w[K * DMAX], b[K], gh[R * DMAX], gw[K * DMAX], gb[K];
    static uint16_t hb[R * DMAX], wb[K * DMAX], bb[K], ghb[R * DMAX], gwb[K * DMAX], gbb[K];
    xent_options o = options_of(set);
    int hs = dim + HP, ws = dim + WP, i;
    float loss[R], lse[R], lossb[R], lseb[R];
    size_t loss_len = o.reduction == XENT_REDUCTION_NONE ? R : 1;
    fill(set, dim);
    NAME = set->name, DIM = dim;
    for (i = 0; i < R * dim; i++) {
        hb[i] = bf16_from_f32(H[i / dim * hs + i % dim]);
        h[i] = bf16_to_f32(hb[i]);
    }
    for (i = 0; i < K * dim; i++) {
        wb[i] = bf16_from_f32(WM[i / dim * ws + i % dim]);
        w[i] = bf16_to_f32(wb[i]);
    }
    for (i = 0; i < K; i++) {
        bb[i] = bf16_from_f32(B[i]);
        b[i] = bf16_to_f32(bb[i]);
    }
    EXPECT(xent_linear_cross_entropy_f32(h, R, (size_t)dim, (size_t)dim, w, K, (size_t)dim,
                                         set->bias ? b : NULL, T, 0, &o, loss, gh, (size_t)dim, gw,
                                         (size_t)dim, gb, lse) == XENT_STATUS_OK,
           "%s, dim %d: packed f32 call", set->name, dim);
    EXPECT(xent_linear_cross_entropy_bf16(hb, R, (size_t)dim, (size_t)dim, wb, K, (size_t)dim,
                                          set->bias ? bb : NULL, T, 0, &o, lossb, ghb, (size_t)dim,
                                          gwb, (size_t)dim, gbb, lseb) == XENT_STATUS_OK,
           "%s, dim %d: bf16 call", set->name, dim);
    EXPECT(same_bits(lossb, loss, loss_len) && same_bits(lseb, lse, R),
           "%s, dim %d: bf16 loss or lse differ from the f32 call's", set->name, dim);
    check_rounded("grad_hidden", ghb, gh, R * dim);
    check_rounded("grad_weight", gwb, gw, K * dim);
    check_rounded("grad_bias", gbb, gb, K);
}

/* ---- Bad inputs of the bf16 call: 3 rows of 3 features at stride 5, 4 classes at stride
 * 4, gradients at strides 4 and 5; every buffer in the arena, 16-byte aligned. ---- */
enum { BR = 3, BD = 3, BK = 4, BH_SPAN = (BR - 1) * 5 + BD, BW_SPAN = (BK - 1) * 4 + BD };
enum { H_AT = 0, W_AT = 128, B_AT = 256, T_AT = 320, CW_AT = 384, LOSS_AT = 448, LSE_AT = 512,
       GH_AT = 576, GW_AT = 704, GB_AT = 832 };
#define AT(type, bytes) ((type *)(void *)(arena + (bytes)))
#define NULL_PTR XENT_STATUS_NULL_POINTER
#define SHAPE XENT_STATUS_INVALID_SHAPE
#define RANGE XENT_STATUS_TARGET_OUT_OF_RANGE
#define OPTION XENT_STATUS_INVALID_OPTION
#define OVERLAP XENT_STATUS_OVERLAPPING_BUFFERS

typedef struct {
    const uint16_t *h, *w, *b;
    size_t rows, dim, hs, k, ws, ghs, gws;
    const int64_t *t;
    const xent_options *o;
    float *loss, *lse;
    uint16_t *gh, *gw, *gb;
} args;

static xent_options none, weighted, bad;

static args valid(void) {
    args a;
    a.h = AT(uint16_t, H_AT), a.w = AT(uint16_t, W_AT), a.b = AT(uint16_t, B_AT);
    a.rows = BR, a.dim = BD, a.hs = 5, a.k = BK, a.ws = 4, a.ghs = 4, a.gws = 5;
    a.t = AT(int64_t, T_AT), a.o = NULL, a.loss = AT(float, LOSS_AT), a.lse = AT(float, LSE_AT);
    a.gh = AT(uint16_t, GH_AT), a.gw = AT(uint16_t, GW_AT), a.gb = AT(uint16_t, GB_AT);
    return a;
}

static xent_status call(args a) {
    return xent_linear_cross_entropy_bf16(a.h, a.rows, a.dim, a.hs, a.w, a.k, a.ws, a.b, a.t,
                                          0,
                                          a.o, a.loss, a.gh, a.ghs, a.gw, a.gws, a.gb, a.lse);
}

/* Sentinel bytes, then valid inputs: targets 1, ignore_index and 3; class weights. */
static void reset(void) {
    int k;
    memset(arena, 0xA5, ARENA_BYTES);
    for (k = 0; k < BW_SPAN; k++) { /* BW_SPAN > BH_SPAN */
        AT(uint16_t, W_AT)[k] = bf16_from_f32(0.5f - (float)(k % 7) * 0.125f);
        AT(uint16_t, H_AT)[k] = k < BH_SPAN ? bf16_from_f32((float)(k % 9) * 0.125f - 0.5f) : 0;
    }
    for (k = 0; k < BK; k++) {
        AT(uint16_t, B_AT)[k] = bf16_from_f32((float)k * 0.25f);
        AT(float, CW_AT)[k] = 1.0f + (float)k * 0.125f;
    }
    AT(int64_t, T_AT)[0] = 1;
    AT(int64_t, T_AT)[1] = -100;
    AT(int64_t, T_AT)[2] = 3;
}

/* The valid call with two arguments changed (WITH: one): status `want`, no byte written. */
#define WITH2(f1, v1, f2, v2, want)                                                          \
    do {                                                                                     \
        args a_ = valid();                                                                   \
        a_.f1 = v1;                                                                          \
        a_.f2 = v2;                                                                          \
        memcpy(before, arena, ARENA_BYTES);                                                  \
        expect_refused(call(a_), want, "bf16", #f1 " = " #v1 ", " #f2 " = " #v2, __LINE__);  \
    } while (0)
#define WITH(f, v, want) WITH2(rows, BR, f, v, want)

static void bad_inputs(void) {
    const int64_t out_of_range[] = {BK, -1, INT64_MAX, INT64_MIN};
    size_t k;
    args a;
    alloc_arena();
    none = weighted = bad = xent_options_default();
    none.reduction = XENT_REDUCTION_NONE;
    weighted.class_weights = AT(float, CW_AT);
    reset();
    EXPECT(call(valid()) == XENT_STATUS_OK, "the valid call");
    reset();

    WITH(h, NULL, NULL_PTR);
    WITH(w, NULL, NULL_PTR);
    WITH(t, NULL, NULL_PTR);
    WITH(loss, NULL, NULL_PTR);
    WITH2(rows, 0, loss, NULL, NULL_PTR); /* loss is required even without rows */
    WITH(hs, BD - 1, SHAPE);
    WITH(ws, BD - 1, SHAPE); /* W's rows shorter than dim */
    WITH(ghs, BD - 1, SHAPE);
    WITH(gws, 0, SHAPE);
    WITH(dim, 0, SHAPE);
    WITH(k, 0, SHAPE);
    WITH(rows, SIZE_MAX / 4, SHAPE);
    WITH(k, SIZE_MAX / 2, SHAPE);
    WITH(ws, SIZE_MAX / 2, SHAPE);
    WITH(h, AT(uint16_t, H_AT + 1), SHAPE);
    WITH(w, AT(uint16_t, W_AT + 1), SHAPE);
    WITH(b, AT(uint16_t, B_AT + 1), SHAPE);
    WITH(t, AT(int64_t, T_AT + 4), SHAPE);
    WITH(loss, AT(float, LOSS_AT + 2), SHAPE);
    WITH(lse, AT(float, LSE_AT + 2), SHAPE);
    WITH(gh, AT(uint16_t, GH_AT + 1), SHAPE);
    WITH(gw, AT(uint16_t, GW_AT + 1), SHAPE);
    WITH(gb, AT(uint16_t, GB_AT + 1), SHAPE);
    WITH2(ghs, BD - 1, loss, AT(float, LSE_AT), SHAPE); /* a shape before an overlap */
    /* Every output over an input or another output (padding included). */
    WITH(loss, AT(float, LSE_AT), OVERLAP);
    WITH(loss, AT(float, H_AT + 8), OVERLAP);
    WITH(lse, AT(float, T_AT + 16), OVERLAP);
    WITH(lse, AT(float, GW_AT + 32), OVERLAP);
    WITH(gh, AT(uint16_t, H_AT), OVERLAP);
    WITH(gh, AT(uint16_t, LOSS_AT - 20), OVERLAP);
    WITH(gw, AT(uint16_t, W_AT + 8), OVERLAP);
    WITH(gw, AT(uint16_t, GH_AT + 20), OVERLAP);
    WITH(gb, AT(uint16_t, B_AT), OVERLAP);
    WITH(gb, AT(uint16_t, GH_AT + 20), OVERLAP);
    WITH2(gb, AT(uint16_t, CW_AT + 12), o, &weighted, OVERLAP);
    WITH2(lse, AT(float, LOSS_AT + 8), o, &none, OVERLAP);

    /* Targets and option values come after the shapes and overlaps. */
    for (k = 0; k < sizeof out_of_range / sizeof out_of_range[0]; k++) {
        reset();
        AT(int64_t, T_AT)[2] = out_of_range[k];
        WITH(o, NULL, RANGE);
        WITH(o, &none, RANGE);
        WITH2(gh, NULL, gw, NULL, RANGE);
        WITH(gb, AT(uint16_t, B_AT), OVERLAP);
    }
    reset();
    bad.label_smoothing = NAN;
    WITH(o, &bad, OPTION);
    WITH2(o, &bad, gb, AT(uint16_t, B_AT), OVERLAP);
    bad.label_smoothing = 0.0f;
    bad.z_loss = -1.0f;
    WITH2(o, &bad, gh, NULL, OPTION);
    bad.z_loss = 0.0f;
    bad.reduction = 3;
    WITH(o, &bad, OPTION);
    WITH2(o, &bad, gb, AT(uint16_t, B_AT), OPTION); /* the reduction: before overlaps */
    AT(float, CW_AT)[1] = NAN;
    WITH(o, &weighted, OPTION);

    /* Accepted: no rows nor classes with NULL everywhere but loss; touching buffers. */
    reset();
    EXPECT(xent_linear_cross_entropy_bf16(NULL, 0, BD, 0, NULL, 0, 0, NULL, NULL, 0, NULL,
                                          AT(float, LOSS_AT), NULL, 0, NULL, 0, NULL,
                                          NULL) == XENT_STATUS_OK && isnan(AT(float, LOSS_AT)[0]),
           "no rows: the mean over no rows is NaN");
    a = valid();
    a.gh = AT(uint16_t, H_AT + 2 * BH_SPAN);
    a.gw = AT(uint16_t, W_AT + 2 * BW_SPAN);
    a.lse = AT(float, CW_AT);
    EXPECT(call(a) == XENT_STATUS_OK,
           "gradients just after their inputs, lse over the unused class weights' memory");
    free(arena);
    free(before);
}

int main(void) {
    static const int dims[4] = {1, 3, 17, 65};
    static const option_set sets[5] = {
        {"defaults, masked bias", XENT_REDUCTION_MEAN, 0.0f, 0.0f, 0.0f, 1.0f, -100, 0, 2},
        {"sum, smoothing, weights, bias", XENT_REDUCTION_SUM, 0.1f, 0.0f, 0.0f, 1.0f, -100, 1, 1},
        {"none, z_loss, softcap, ignore_index -1, masked bias", XENT_REDUCTION_NONE, 0.0f, 1e-3f,
         5.0f, 1.0f, -1, 0, 2},
        {"mean, smoothing, z_loss, softcap, weights, grad_scale, ignore_index 7",
         XENT_REDUCTION_MEAN, 0.2f, 1e-4f, 20.0f, 0.5f, 7, 1, 0},
        {"none, smoothing 1, weights, grad_scale -2, masked bias", XENT_REDUCTION_NONE, 1.0f, 0.0f,
         0.0f, -2.0f, -100, 1, 2},
    };
    int s, d;
    EXPECT(bf16_from_f32(1.0f) == 0x3f80 && bf16_from_f32(0x1.01p0f) == 0x3f80 &&
               bf16_from_f32(0x1.03p0f) == 0x3f82 && bf16_from_f32(0x1.010002p0f) == 0x3f81 &&
               bf16_from_f32(-INFINITY) == 0xff80,
           "bf16_from_f32 does not round to nearest even");
    for (s = 0; s < 5; s++) {
        for (d = 0; d < 4; d++) {
            run(&sets[s], dims[d]);
            run_bf16(&sets[s], dims[d]);
        }
    }
    bad_inputs();
    printf("linear.c: %d of %d checks passed\n", checks - failures, checks);
    return failures == 0 ? 0 : 1;
}
