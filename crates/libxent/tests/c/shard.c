/*
 * Vocabulary-sharded cross-entropy from C, through the header: 1, 2 and 3 shards of uneven
 * width, simulated in one process with a padded buffer each, go through
 * xent_shard_stats_f32, xent_merge_shard_rows and xent_shard_finish_f32 under several
 * option sets. Their loss, lse and assembled gradient match the unsharded
 * xent_cross_entropy_f32 within docs/semantics.md's tolerances (row loss 1e-5 |ref| + 1e-6 (1 + |m_i|)
 * max(1, max w); gradient 1e-5 |ref| + 1e-6 |s| max(1, max w), s = grad_scale / W under a
 * mean, grad_scale otherwise), with NaN in the same places; loss and lse are the same bits
 * on every shard, in place equals separate, and no padding is written. Then the bad
 * inputs: each refused call gets its status and leaves every byte of the arena as it was;
 * the merge, which has no status, leaves it as it was too.
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

/* The whole batch: R rows of C classes at stride XS; slices of at most C columns. */
enum { R = 6, C = 29, XS = C + 3, MAX_SHARDS = 3, SLICE = R * (C + 4) };

static float X[R * XS];
static int64_t T[R];
static float W[C];

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

/* Whether n floats hold the padding's bits. */
static int is_pad(const float *a, size_t n) {
    float p = pad();
    size_t i;
    for (i = 0; i < n; i++) {
        if (!same_bits(&a[i], &p, 1)) {
            return 0;
        }
    }
    return 1;
}

/* Columns off..off+cols of the whole rows at stride st, padding (to SLICE) as pad(). */
static void copy_slice(float *slice, size_t off, size_t cols, size_t st) {
    size_t i;
    for (i = 0; i < SLICE; i++) {
        slice[i] = i / st < R && i % st < cols ? X[i / st * XS + off + i % st] : pad();
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

typedef struct {
    const char *name;
    xent_options o;
    int weighted, special;
} option_set;

/* Logits in [-6, 6) from a small LCG; with `special`: row 1 is -INFINITY over columns
 * 0..11 (whole shards of two cuts), row 2 holds a NaN, row 3 a max far above the rest in
 * the one-column shard. Row 4 is ignored. */
static void fill(const option_set *set) {
    static const int64_t targets[R] = {3, 20, 15, 0, 0, 28};
    uint32_t state = 12345u;
    int i, c;
    for (i = 0; i < R * XS; i++) {
        state = state * 1664525u + 1013904223u;
        X[i] = (i % XS < C) ? (float)(state >> 8) / 16777216.0f * 12.0f - 6.0f : pad();
    }
    for (i = 0; i < R; i++) {
        T[i] = i == 4 ? set->o.ignore_index : targets[i];
    }
    for (c = 0; c < C; c++) {
        W[c] = c == 9 ? 0.0f : 0.25f + (float)((c * 7) % 11) * 0.15f;
    }
    if (set->special) {
        for (c = 0; c < 11; c++) {
            X[XS + c] = -INFINITY;
        }
        X[2 * XS + 20] = NAN;
        X[3 * XS] = 40.0f;
    }
}

/* One cut into shards: run every call, assemble, compare. */
static void run(const option_set *set, const size_t *bounds, int shards) {
    xent_options o = set->o, per_row = set->o;
    size_t loss_len = o.reduction == XENT_REDUCTION_NONE ? R : 1;
    float ref_loss[R], row_ref[R], ref_lse[R], ref_grad[R * C], grad[R * C];
    float loss[MAX_SHARDS][R], lse[MAX_SHARDS][R], loss2[R], lse2[R];
    float slice[SLICE], g[SLICE], ip[SLICE];
    xent_shard_row stats[MAX_SHARDS][R], merged[R];
    double maxw = 1.0, wsum = 0.0, count = 0.0, s, tol_total = 0.0, row_tol[R];
    int i, c, k;

    o.class_weights = set->weighted ? W : NULL;
    per_row = o;
    per_row.reduction = XENT_REDUCTION_NONE;
    EXPECT(xent_cross_entropy_f32(X, R, C, XS, T, &per_row, row_ref, NULL, 0, NULL) ==
               XENT_STATUS_OK, "%s: unsharded per-row call", set->name);
    EXPECT(xent_cross_entropy_f32(X, R, C, XS, T, &o, ref_loss, ref_grad, C, ref_lse) ==
               XENT_STATUS_OK, "%s: unsharded call", set->name);

    for (k = 0; k < shards; k++) {
        size_t off = bounds[k], cols = bounds[k + 1] - off, st = cols + 1 + (size_t)k;
        copy_slice(slice, off, cols, st);
        EXPECT(xent_shard_stats_f32(slice, R, cols, st, off, C, T, &o, stats[k]) ==
                   XENT_STATUS_OK, "%s: stats of shard %d", set->name, k);
    }
    /* The all-reduce: every shard's rows merged into the first's. */
    memcpy(merged, stats[0], sizeof merged);
    for (k = 1; k < shards; k++) {
        xent_merge_shard_rows(stats[k], merged, R);
    }

    for (k = 0; k < shards; k++) {
        size_t off = bounds[k], cols = bounds[k + 1] - off, st = cols + 1 + (size_t)k;
        size_t gs = cols + 2, r;
        copy_slice(slice, off, cols, st);
        copy_slice(ip, off, cols, st);
        for (i = 0; i < SLICE; i++) {
            g[i] = pad();
        }
        EXPECT(xent_shard_finish_f32(slice, R, cols, st, off, C, T, &o, merged, loss[k], g, gs,
                                     lse[k]) == XENT_STATUS_OK, "%s: finish %d", set->name, k);
        EXPECT(xent_shard_finish_f32(ip, R, cols, st, off, C, T, &o, merged, loss2, ip, st,
                                     NULL) == XENT_STATUS_OK, "%s: in place %d", set->name, k);
        EXPECT(same_bits(loss2, loss[k], loss_len), "%s: in-place loss, shard %d", set->name, k);
        for (r = 0; r < R; r++) {
            EXPECT(same_bits(&ip[r * st], &g[r * gs], cols), "%s: in place = separate, shard %d",
                   set->name, k);
            EXPECT(is_pad(&g[r * gs + cols], gs - cols) && is_pad(&ip[r * st + cols], st - cols),
                   "%s: padding of row %d written, shard %d", set->name, (int)r, k);
            memcpy(&grad[r * C + off], &g[r * gs], cols * sizeof(float));
        }
        EXPECT(xent_shard_finish_f32(slice, R, cols, st, off, C, T, &o, merged, loss2, NULL, 0,
                                     lse2) == XENT_STATUS_OK, "%s: no grad %d", set->name, k);
        EXPECT(same_bits(loss2, loss[k], loss_len) && same_bits(lse2, lse[k], R),
               "%s: loss and lse without a gradient, shard %d", set->name, k);
        EXPECT(same_bits(loss[k], loss[0], loss_len) && same_bits(lse[k], lse[0], R),
               "%s: loss and lse of shard %d differ from shard 0's", set->name, k);
    }

    /* docs/semantics.md's tolerances: m_i the row's max of x' (finite values), w the
       largest weight. */
    for (c = 0; set->weighted && c < C; c++) {
        maxw = W[c] > maxw ? W[c] : maxw;
    }
    for (i = 0; i < R; i++) {
        double m = -INFINITY;
        if (T[i] != o.ignore_index) {
            wsum += set->weighted ? W[T[i]] : 1.0;
            count += 1.0;
        }
        for (c = 0; c < C; c++) {
            double x = X[i * XS + c];
            if (o.softcap > 0.0f) {
                x = o.softcap * tanh(x / o.softcap);
            }
            m = isfinite(x) && x > m ? x : m;
        }
        m = isfinite(m) ? fabs(m) : 0.0;
        row_tol[i] = 1e-5 * fabs(row_ref[i]) + 1e-6 * (1.0 + m) * maxw;
        tol_total += row_tol[i];
        EXPECT(close_to(lse[0][i], ref_lse[i], 1e-6 * (1.0 + m) + 1e-6 * fabs(ref_lse[i])),
               "%s, %d shards: lse[%d] = %.9g, unsharded %.9g", set->name, shards, i, lse[0][i],
               ref_lse[i]);
    }
    if (o.reduction == XENT_REDUCTION_NONE) {
        for (i = 0; i < R; i++) {
            EXPECT(close_to(loss[0][i], ref_loss[i], row_tol[i]),
                   "%s, %d shards: loss[%d] = %.9g, unsharded %.9g", set->name, shards, i,
                   loss[0][i], ref_loss[i]);
        }
    } else {
        /* A mean divides the rows' tolerances by the smaller of W and N (z_loss by N). */
        double div = wsum < count ? wsum : count;
        double tol = o.reduction == XENT_REDUCTION_MEAN ? tol_total / div : tol_total;
        EXPECT(close_to(loss[0][0], ref_loss[0], tol), "%s, %d shards: loss = %.9g, unsharded %.9g",
               set->name, shards, loss[0][0], ref_loss[0]);
    }
    s = fabs(o.grad_scale) / (o.reduction == XENT_REDUCTION_MEAN ? wsum : 1.0);
    for (i = 0; i < R * C; i++) {
        double tol = 1e-5 * fabs(ref_grad[i]) + 1e-6 * s * maxw;
        EXPECT(close_to(grad[i], ref_grad[i], tol),
               "%s, %d shards: grad[%d][%d] = %.9g, unsharded %.9g (tolerance %.3g)", set->name,
               shards, i / C, i % C, grad[i], ref_grad[i], tol);
    }
}

/* ---- Bad inputs: 3 rows of classes 2, 3 and 4 of 7, every buffer in the arena. ---- */
enum { BR = 3, BC = 3, BS = 5, OFF = 2, TOT = 7, BSPAN = (BR - 1) * BS + BC };

static float *L, *G, *LOSS, *LSE, *BW;
static int64_t *BT;
static xent_shard_row *OUT, *M;

static void reset(void) {
    int i;
    memset(arena, 0xA5, ARENA_BYTES);
    for (i = 0; i < BSPAN; i++) {
        L[i] = (float)i * 0.25f - 1.0f;
    }
    BT[0] = 4; /* in the shard */
    BT[1] = 0; /* outside it */
    BT[2] = 6;
    for (i = 0; i < TOT; i++) {
        BW[i] = 1.0f + (float)i * 0.125f;
    }
    for (i = 0; i < BR; i++) {
        M[i].max = 2.0f;
        M[i].sumexp = 3.5f;
        M[i].target_logit = 0.5f;
        M[i].smooth_sum = -1.0f;
    }
}

#define REFUSED(want, call) REFUSED_AS("shard", want, call)
#define NULL_PTR XENT_STATUS_NULL_POINTER
#define SHAPE XENT_STATUS_INVALID_SHAPE
#define RANGE XENT_STATUS_TARGET_OUT_OF_RANGE
#define OPTION XENT_STATUS_INVALID_OPTION
#define OVERLAP XENT_STATUS_OVERLAPPING_BUFFERS
#define STATS(l, cols, st, off, tot, t, o, out)                                              \
    xent_shard_stats_f32(l, BR, cols, st, off, tot, t, o, out)
#define FINISH(l, off, tot, t, o, m, loss, g, gs, lse)                                       \
    xent_shard_finish_f32(l, BR, BC, BS, off, tot, t, o, m, loss, g, gs, lse)
/* Both with the shard's place and shape valid. */
#define ST(l, t, o, out) STATS(l, BC, BS, OFF, TOT, t, o, out)
#define FIN(l, t, o, m, loss, g, gs, lse) FINISH(l, OFF, TOT, t, o, m, loss, g, gs, lse)
/* A pointer `bytes` into the arena, as type `type`. */
#define AT(type, bytes) ((type *)(void *)(arena + (bytes)))
/* The merge has no status: it must leave the arena as it was. */
#define UNCHANGED(call)                                                                      \
    do {                                                                                     \
        memcpy(before, arena, ARENA_BYTES);                                                  \
        call;                                                                                \
        EXPECT(memcmp(before, arena, ARENA_BYTES) == 0, "%s wrote the arena", #call);         \
    } while (0)

static void bad_inputs(void) {
    xent_options none = xent_options_default(), weighted = xent_options_default(), bad;
    const int64_t out_of_range[] = {TOT, TOT + 1, -1, INT64_MAX, INT64_MIN};
    size_t k;
    float *fm;
    alloc_arena();
    L = AT(float, 0);
    G = AT(float, 128);
    BT = AT(int64_t, 256);
    BW = AT(float, 320);
    OUT = AT(xent_shard_row, 384);
    M = AT(xent_shard_row, 448);
    LOSS = AT(float, 512);
    LSE = AT(float, 576);
    fm = (float *)(void *)M;
    none.reduction = XENT_REDUCTION_NONE;
    weighted.class_weights = BW;
    reset();

    REFUSED(NULL_PTR, ST(NULL, BT, NULL, OUT));
    REFUSED(NULL_PTR, ST(L, NULL, NULL, OUT));
    REFUSED(NULL_PTR, ST(L, BT, NULL, NULL));
    REFUSED(SHAPE, STATS(L, BC, BS, TOT - BC + 1, TOT, BT, NULL, OUT));
    REFUSED(SHAPE, STATS(L, BC, BS, SIZE_MAX, SIZE_MAX, BT, NULL, OUT));
    REFUSED(SHAPE, STATS(L, BC, BC - 1, OFF, TOT, BT, NULL, OUT));
    REFUSED(SHAPE, ST(AT(float, 2), BT, NULL, OUT));
    REFUSED(SHAPE, ST(L, AT(int64_t, 260), NULL, OUT));
    REFUSED(SHAPE, ST(L, BT, NULL, AT(xent_shard_row, 386)));
    REFUSED(OVERLAP, ST(L, BT, NULL, (xent_shard_row *)(void *)(L + 4)));
    REFUSED(OVERLAP, ST(L, BT, NULL, (xent_shard_row *)(void *)(BT + 1)));
    REFUSED(OVERLAP, ST(L, BT, &weighted, (xent_shard_row *)(void *)(BW + 4)));

    REFUSED(NULL_PTR, FIN(NULL, BT, NULL, M, LOSS, G, BS, LSE));
    REFUSED(NULL_PTR, FIN(L, NULL, NULL, M, LOSS, L, BS, LSE));
    REFUSED(NULL_PTR, FIN(L, BT, NULL, NULL, LOSS, G, BS, LSE));
    REFUSED(NULL_PTR, FIN(L, BT, NULL, M, NULL, L, BS, LSE));
    /* loss is required even when it holds nothing */
    REFUSED(NULL_PTR, xent_shard_finish_f32(NULL, 0, BC, BS, OFF, TOT, NULL, &none, NULL, NULL,
                                            NULL, 0, NULL));
    REFUSED(SHAPE, FINISH(L, TOT - 1, TOT, BT, NULL, M, LOSS, L, BS, LSE));
    REFUSED(SHAPE, FINISH(L, SIZE_MAX - 1, SIZE_MAX, BT, NULL, M, LOSS, G, BS, LSE));
    REFUSED(SHAPE, FIN(L, BT, NULL, M, LOSS, G, BC - 1, LSE));
    REFUSED(SHAPE, FIN(L, BT, NULL, AT(xent_shard_row, 450), LOSS, G, BS, LSE));
    REFUSED(SHAPE, FIN(L, BT, NULL, M, LOSS, G, BS, AT(float, 578)));
    REFUSED(SHAPE, FIN(L, BT, NULL, M, LOSS, AT(float, 130), BS, LSE));
    REFUSED(OVERLAP, FIN(L, BT, NULL, M, fm + 3, G, BS, LSE));
    REFUSED(OVERLAP, FIN(L, BT, NULL, M, LOSS, G, BS, fm + 9));
    REFUSED(OVERLAP, FIN(L, BT, NULL, M, LOSS, fm, BS, LSE));
    REFUSED(OVERLAP, FIN(L, BT, &none, M, LSE, G, BS, LSE));
    REFUSED(OVERLAP, FIN(L, BT, NULL, M, LOSS, L + 1, BS, LSE));
    REFUSED(OVERLAP, FIN(L, BT, NULL, M, LOSS, L, BS + 1, LSE));
    REFUSED(OVERLAP, FIN(L, BT, NULL, M, LOSS, L, BS, L + BS + BC));
    REFUSED(OVERLAP, FIN(L, BT, &weighted, M, BW + 6, L, BS, LSE));

    /* Targets are global classes: in place or not, a target >= TOT is refused. */
    for (k = 0; k < sizeof out_of_range / sizeof out_of_range[0]; k++) {
        reset();
        BT[1] = out_of_range[k];
        REFUSED(RANGE, ST(L, BT, NULL, OUT));
        REFUSED(RANGE, FIN(L, BT, NULL, M, LOSS, L, BS, LSE));
        REFUSED(RANGE, FIN(L, BT, &none, M, LOSS, G, BS, LSE));
    }
    /* Options, a weight outside the shard included. */
    reset();
    bad = xent_options_default();
    bad.label_smoothing = NAN;
    REFUSED(OPTION, ST(L, BT, &bad, OUT));
    REFUSED(OPTION, FIN(L, BT, &bad, M, LOSS, L, BS, LSE));
    bad = xent_options_default();
    bad.grad_scale = INFINITY;
    REFUSED(OPTION, FIN(L, BT, &bad, M, LOSS, L, BS, LSE));
    bad.grad_scale = 1.0f;
    bad.reduction = 3;
    REFUSED(OPTION, ST(L, BT, &bad, OUT));
    BW[0] = -1.0f;
    REFUSED(OPTION, ST(L, BT, &weighted, OUT));
    REFUSED(OPTION, FIN(L, BT, &weighted, M, LOSS, L, BS, LSE));

    /* The merge: nothing on NULL, misaligned or overlapping rows; n = 0 does nothing. */
    reset();
    UNCHANGED(xent_merge_shard_rows(NULL, NULL, 0));
    UNCHANGED(xent_merge_shard_rows(OUT, M, 0));
    UNCHANGED(xent_merge_shard_rows(NULL, M, BR));
    UNCHANGED(xent_merge_shard_rows(M, NULL, BR));
    UNCHANGED(xent_merge_shard_rows(AT(xent_shard_row, 386), M, BR));
    UNCHANGED(xent_merge_shard_rows(OUT, AT(xent_shard_row, 450), BR));
    UNCHANGED(xent_merge_shard_rows(M, M, BR));
    UNCHANGED(xent_merge_shard_rows(M + 1, M, BR));
    UNCHANGED(xent_merge_shard_rows(M, M + 2, BR));
    UNCHANGED(xent_merge_shard_rows(OUT, M, SIZE_MAX));

    /* Accepted: no rows with NULL everywhere but loss; buffers that only touch; targets 0
     * and 6, outside the shard's classes 2..4. */
    EXPECT(xent_shard_stats_f32(NULL, 0, BC, 0, OFF, TOT, NULL, NULL, NULL) == XENT_STATUS_OK,
           "no rows, stats");
    EXPECT(xent_shard_finish_f32(NULL, 0, BC, 0, OFF, TOT, NULL, NULL, NULL, LOSS, NULL, 0,
                                 NULL) == XENT_STATUS_OK && isnan(LOSS[0]),
           "no rows, finish: the mean over no rows is NaN");
    EXPECT(ST(L, BT, NULL, (xent_shard_row *)(void *)(L + BSPAN)) == XENT_STATUS_OK,
           "out just after the logits");
    EXPECT(FIN(L, BT, NULL, M, fm + 4 * BR, L + BSPAN, BS, LSE) == XENT_STATUS_OK,
           "loss just after merged, grad just after the logits");
    free(arena);
    free(before);
}

int main(void) {
    static const size_t cuts[3][4] = {{0, C}, {0, 11, C}, {0, 1, 17, C}};
    option_set sets[5];
    int s, n;
    for (s = 0; s < 5; s++) {
        sets[s].o = xent_options_default();
        sets[s].weighted = sets[s].special = 0;
    }
    sets[0].name = "defaults";
    sets[1].name = "sum, smoothing, weights";
    sets[1].o.reduction = XENT_REDUCTION_SUM;
    sets[1].o.label_smoothing = 0.1f;
    sets[1].weighted = 1;
    sets[2].name = "none, z_loss, softcap, ignore_index -1, masked/NaN/far rows";
    sets[2].o.reduction = XENT_REDUCTION_NONE;
    sets[2].o.z_loss = 1e-3f;
    sets[2].o.softcap = 5.0f;
    sets[2].o.ignore_index = -1;
    sets[2].special = 1;
    sets[3].name = "mean, smoothing, z_loss, softcap, weights, grad_scale, ignore_index 7";
    sets[3].o.label_smoothing = 0.2f;
    sets[3].o.z_loss = 1e-4f;
    sets[3].o.softcap = 20.0f;
    sets[3].o.grad_scale = 0.5f;
    sets[3].o.ignore_index = 7;
    sets[3].weighted = 1;
    sets[4].name = "none, smoothing 1, weights, grad_scale -2, masked/NaN/far rows";
    sets[4].o.reduction = XENT_REDUCTION_NONE;
    sets[4].o.label_smoothing = 1.0f;
    sets[4].o.grad_scale = -2.0f;
    sets[4].weighted = sets[4].special = 1;
    for (s = 0; s < 5; s++) {
        fill(&sets[s]);
        for (n = 1; n <= MAX_SHARDS; n++) {
            run(&sets[s], cuts[n - 1], n);
        }
    }
    bad_inputs();
    printf("shard.c: %d of %d checks passed\n", checks - failures, checks);
    return failures == 0 ? 0 : 1;
}
