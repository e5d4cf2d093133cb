/*
 * Stress: 10,000 generated calls to every computing function of xent.h, made one after
 * another on one thread, then again from 8 POSIX threads at once under each thread
 * setting (xent_set_num_threads 1, 2, 0 and 4), every status and every output byte
 * compared with the serial call's.
 *
 * The functions: xent_cross_entropy, _soft, _backward, xent_softmax and xent_log_softmax
 * in their _f32, _f64, _bf16 and _f16 forms; xent_shard_stats_f32, xent_merge_shard_rows,
 * xent_shard_finish_f32 (no gradient, a separate one, in place); and
 * xent_linear_cross_entropy_f32, _bf16 and _f16. Shapes are mostly small, about 3% large
 * enough to run on the library's pool (2^17 elements and more in many rows, or 1 to 3 rows
 * of 16384 columns and more, whose column blocks run in parallel), some linear heads in
 * several vocabulary chunks; strides, options (every reduction, ignore_index, smoothing,
 * z-loss, softcap, class weights, grad_scale, NULL for the defaults), in-place calls and
 * optional outputs vary. About 10% of the calls are refused: a NULL pointer, zero columns,
 * a stride smaller than the row, a misaligned pointer, a target out of range, a bad
 * option, overlapping buffers, a shard past its vocabulary; the merge, which has no status,
 * gets NULL or overlapping rows and must do nothing. The serial run checks each status
 * against the one the generator meant, and that a refused call wrote no byte.
 *
 * Each run of a call gets fresh output buffers filled with the same sentinel bytes (in-place
 * calls a fresh copy of their logits), with 8 bytes more than the call may write: what it
 * leaves alone is compared too. Outputs are compared through a 64-bit digest (FxHash over
 * the bytes); a mismatch prints the call.
 *
 * The generator starts from a constant seed, so a call's index names the same call on every
 * run. Prints one line per failure and a summary; exits 1 on any failure.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

enum { CALLS = 10000, THREADS = 8, SETTINGS = 4 };
/* Every batch of logits is a window of a shared pool of this many values; its first
 * SPECIAL values include NaN and +inf, which about 3% of the batches reach. */
enum { POOL = (1 << 20) + 1024, SPECIAL = 2048 };
/* A batch of this many elements runs on the pool; rows this long are cut into blocks. */
enum { PARALLEL_MIN = 1 << 17, SPLIT_MIN = 16384 };
/* The bytes every output holds before a call, and how many bytes past each output's end
 * are compared too. */
enum { SENTINEL = 0xA5, SLACK = 8 };

static const size_t SETTING_VALUES[SETTINGS] = {1, 2, 0, 4};

/* ---- The generator: SplitMix64 from a constant seed ------------------------------------ */

static uint64_t rng_state = 0x5eed57e5c0ffeeu;

static uint64_t next_u64(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static size_t below(size_t n) { return n == 0 ? 0 : (size_t)(next_u64() % n); }

static float unit(void) { return (float)(next_u64() >> 40) / (float)(1u << 24); }

static float uniform(float lo, float hi) { return lo + (hi - lo) * unit(); }

static int coin(float p) { return unit() < p; }

static size_t pad(void) { return coin(0.5f) ? 0 : 1 + below(8); }

/* ---- Element types ---------------------------------------------------------------------- */

typedef enum { T_F32, T_F64, T_BF16, T_F16, TYPES } dtype;

static const char *const TYPE_NAMES[TYPES] = {"f32", "f64", "bf16", "f16"};

static size_t elem_size(dtype t) { return t == T_F64 ? 8 : t == T_F32 ? 4 : 2; }

/* Loss, lse and dloss: double for _f64, float for the others. */
static size_t stat_size(dtype t) { return t == T_F64 ? 8 : 4; }

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* bfloat16 by truncation: any bit pattern is an input, the rounding does not matter. */
static uint16_t to_bf16(float f) { return (uint16_t)(f32_bits(f) >> 16); }

/* IEEE binary16 by truncation of the mantissa, for values within its range (the pools
 * hold |x| < 2^15): below 2^-14 a signed zero, and infinities and NaN kept. */
static uint16_t to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    int e = (int)((x >> 23) & 0xffu);
    if (e == 0xff) {
        return (uint16_t)(sign | 0x7c00u | ((x & 0x7fffffu) != 0 ? 0x200u : 0u));
    }
    e = e - 127 + 15;
    if (e <= 0) {
        return sign;
    }
    if (e >= 0x1f) {
        return (uint16_t)(sign | 0x7c00u);
    }
    return (uint16_t)(sign | (uint32_t)e << 10 | (x & 0x7fffffu) >> 13);
}

/* Writes v as element k of a dtype buffer. */
static void put(void *buf, dtype t, size_t k, double v) {
    switch (t) {
    case T_F32: ((float *)buf)[k] = (float)v; break;
    case T_F64: ((double *)buf)[k] = v; break;
    case T_BF16: ((uint16_t *)buf)[k] = to_bf16((float)v); break;
    case T_F16: ((uint16_t *)buf)[k] = to_f16((float)v); break;
    case TYPES: break;
    }
}

/* The shared logits in each type (the same values), and soft target values. */
static unsigned char *pools[TYPES];
static float *soft_pool;

/* Scales from 0.5 to 40 in blocks of 1024, one value in 800 -inf (a masked class), NaN
 * and +inf among the first SPECIAL values; soft targets 30% zeros, the rest below 0.1. */
static void fill_pools(void) {
    static const float scales[4] = {0.5f, 3.0f, 12.0f, 40.0f};
    float scale = 1.0f;
    size_t k;
    int t;
    for (t = 0; t < TYPES; t++) {
        pools[t] = malloc(POOL * elem_size((dtype)t));
    }
    soft_pool = malloc(POOL * sizeof(float));
    if (pools[T_F32] == NULL || pools[T_F64] == NULL || pools[T_BF16] == NULL ||
        pools[T_F16] == NULL || soft_pool == NULL) {
        puts("out of memory");
        exit(1);
    }
    for (k = 0; k < POOL; k++) {
        float u = unit(), v;
        if (k % 1024 == 0) {
            scale = scales[below(4)];
        }
        if (u < 1.0f / 800.0f) {
            v = -INFINITY;
        } else if (k < SPECIAL && u < 0.01f) {
            v = NAN;
        } else if (k < SPECIAL && u < 0.015f) {
            v = INFINITY;
        } else {
            v = uniform(-1.7f, 1.7f) * scale;
        }
        for (t = 0; t < TYPES; t++) {
            put(pools[t], (dtype)t, k, (double)v);
        }
        /* f64 logits carry bits beyond f32's. */
        ((double *)(void *)pools[T_F64])[k] = (double)v * (1.0 + 1e-9 * (double)uniform(-1, 1));
        u = unit();
        soft_pool[k] = u < 0.3f ? 0.0f : u * 0.1f;
    }
}

/* ---- Calls ------------------------------------------------------------------------------ */

typedef enum {
    K_CE,
    K_SOFT,
    K_BACKWARD,
    K_SOFTMAX,
    K_LOG_SOFTMAX,
    K_SHARD_STATS,
    K_MERGE,
    K_SHARD_FINISH,
    K_LINEAR,
    KINDS
} kind;

static const char *const KIND_NAMES[KINDS] = {
    "xent_cross_entropy", "xent_cross_entropy_soft", "xent_cross_entropy_backward",
    "xent_softmax",       "xent_log_softmax",        "xent_shard_stats",
    "xent_merge_shard_rows", "xent_shard_finish",   "xent_linear_cross_entropy"};

/* Why a generated call must be refused. */
typedef enum {
    VALID,
    NULL_LOGITS,  /* logits, x or hidden NULL with rows */
    NULL_LOSS,    /* loss NULL (backward: dloss) */
    NULL_TARGETS, /* hard or soft targets NULL with rows */
    NULL_OUT,     /* backward grad, softmax y, shard out, shard merged, linear weight */
    ZERO_COLS,    /* cols == 0 with rows */
    SMALL_STRIDE, /* a logits stride smaller than the row */
    MISALIGNED,   /* the logits pointer one byte off */
    BAD_TARGET,   /* a class outside [0, cols) that is not ignore_index */
    BAD_OPTION,   /* an option outside its domain */
    OVERLAP,      /* an output one element into its input (linear: dW over dH) */
    LSE_OVERLAP,  /* lse over loss */
    SHARD_RANGE,  /* class_offset + cols > total_cols */
    MERGE_NULL,   /* the merge's input NULL: it must do nothing */
    MERGE_OVERLAP, /* the merge's ranges overlapping: it must do nothing */
    BADS
} bad_kind;

static const char *const BAD_NAMES[BADS] = {
    "valid",         "NULL logits", "NULL loss",    "NULL targets", "NULL output",
    "zero columns",  "small stride", "misaligned",  "target out of range", "bad option",
    "overlap",       "lse over loss", "shard out of range", "merge NULL", "merge overlap"};

/* The status a refusal gets (the merge has none: 0). */
static xent_status status_of(bad_kind b) {
    switch (b) {
    case NULL_LOGITS:
    case NULL_LOSS:
    case NULL_TARGETS:
    case NULL_OUT:
        return XENT_STATUS_NULL_POINTER;
    case ZERO_COLS:
    case SMALL_STRIDE:
    case MISALIGNED:
    case SHARD_RANGE:
        return XENT_STATUS_INVALID_SHAPE;
    case BAD_TARGET:
        return XENT_STATUS_TARGET_OUT_OF_RANGE;
    case BAD_OPTION:
        return XENT_STATUS_INVALID_OPTION;
    case OVERLAP:
    case LSE_OVERLAP:
        return XENT_STATUS_OVERLAPPING_BUFFERS;
    default:
        return XENT_STATUS_OK;
    }
}

/* Flags of a call. */
enum { GRAD = 1, IN_PLACE = 2, LSE = 4, GH = 8, GW = 16, GB = 32, NO_OPTIONS = 64 };

/* One generated call. For the linear heads `cols` is dim, the hidden states are `rows x
 * cols` at `stride`, the weight `classes x cols` at `weight_stride`. */
typedef struct {
    kind kind;
    dtype type;
    bad_kind bad;
    unsigned flags;
    size_t rows, cols, stride, out_stride;
    size_t soft_stride;
    size_t total, offset;
    size_t classes, weight_stride, gh_stride, gw_stride;
    xent_options options;
    float *weights;
    const unsigned char *logits; /* in a pool, or owned (linear) */
    int64_t *targets;
    const float *soft;
    unsigned char *lse_in, *dloss;
    xent_shard_row *merged, *merge_in, *merge_inout;
    size_t merge_n;
    unsigned char *weight, *bias; /* linear, owned */
} call;

static call *calls;

static size_t span(size_t rows, size_t cols, size_t stride) {
    return rows == 0 ? 0 : (rows - 1) * stride + cols;
}

/* The number of values `loss` receives. */
static size_t loss_len(const call *c) {
    if (c->flags & NO_OPTIONS) {
        return 1;
    }
    return c->options.reduction == XENT_REDUCTION_NONE ? c->rows : 1;
}

/* A window of `rows x cols` at `stride` in the pool of `t`. */
static const unsigned char *window(dtype t, size_t rows, size_t cols, size_t stride) {
    size_t len = span(rows, cols, stride);
    size_t lo = coin(0.03f) ? 0 : SPECIAL;
    return pools[t] + (lo + below(POOL - len - lo + 1)) * elem_size(t);
}

static void *alloc(size_t bytes) {
    void *p = malloc(bytes + 16);
    if (p == NULL) {
        puts("out of memory");
        exit(1);
    }
    return p;
}

/* Rows and columns (at least 1): 2% many rows on the pool, 1% long rows, else small. */
static void gen_shape(size_t *rows, size_t *cols) {
    float u = unit();
    if (u < 0.02f) {
        static const size_t widths[4] = {16, 100, 1000, 5000};
        *cols = widths[below(4)];
        *rows = (PARALLEL_MIN + below(PARALLEL_MIN)) / *cols + 1;
    } else if (u < 0.03f) {
        *rows = 1 + below(3);
        *cols = SPLIT_MIN + below(100000 - SPLIT_MIN);
    } else {
        size_t w = below(20);
        *cols = w < 8 ? 1 + below(16) : w < 17 ? 17 + below(300) : 300 + below(4700);
        *rows = coin(0.04f) ? 0 : 1 + below(48);
        if (*rows * *cols >= PARALLEL_MIN) {
            *rows = (PARALLEL_MIN - 1) / *cols;
        }
    }
}

/* Options for `classes` classes: every reduction, ignore_index -100, -1 or a class,
 * smoothing, z-loss, softcap, grad_scale, class weights (a quarter), NULL (5%). */
static void gen_options(call *c, size_t classes) {
    size_t k;
    c->options = xent_options_default();
    c->options.reduction = (uint32_t)below(3);
    k = below(20);
    c->options.ignore_index = k < 14 ? -100 : k < 17 || classes == 0 ? -1 : (int64_t)below(classes);
    k = below(20);
    c->options.label_smoothing = k < 11 ? 0.0f : k < 18 ? uniform(0.0f, 0.3f) : 1.0f;
    c->options.z_loss = coin(0.7f) ? 0.0f : coin(0.5f) ? 1e-4f : 1e-2f;
    c->options.softcap = coin(0.7f) ? 0.0f : coin(0.5f) ? 5.0f : 30.0f;
    c->options.grad_scale = coin(0.6f) ? 1.0f : uniform(-2.0f, 2.0f);
    if (coin(0.25f)) {
        c->weights = alloc(classes * sizeof(float));
        for (k = 0; k < classes; k++) {
            c->weights[k] = uniform(0.0f, 2.0f);
        }
    }
    if (coin(0.05f)) {
        c->flags |= NO_OPTIONS;
    }
}

/* One option out of its domain. */
static void corrupt_options(call *c, size_t classes) {
    c->flags &= ~(unsigned)NO_OPTIONS;
    switch (below(6)) {
    case 0: c->options.reduction = 3 + (uint32_t)below(100); break;
    case 1: c->options.label_smoothing = coin(0.5f) ? 1.5f : NAN; break;
    case 2: c->options.z_loss = coin(0.5f) ? -1.0f : INFINITY; break;
    case 3: c->options.softcap = coin(0.5f) ? -2.0f : NAN; break;
    case 4: c->options.grad_scale = coin(0.5f) ? INFINITY : NAN; break;
    default:
        if (classes == 0) {
            c->options.grad_scale = NAN;
            break;
        }
        if (c->weights == NULL) {
            size_t k;
            c->weights = alloc(classes * sizeof(float));
            for (k = 0; k < classes; k++) {
                c->weights[k] = 1.0f;
            }
        }
        c->weights[below(classes)] = coin(0.5f) ? -1.0f : NAN;
    }
}

/* The ignore_index in force: the defaults' with NULL options. */
static int64_t ignore_of(const call *c) {
    return c->flags & NO_OPTIONS ? -100 : c->options.ignore_index;
}

/* `rows` classes in [0, classes), about 10% ignore_index. */
static int64_t *gen_targets(size_t rows, size_t classes, int64_t ignore_index) {
    int64_t *t = alloc(rows * sizeof(int64_t));
    size_t i;
    for (i = 0; i < rows; i++) {
        t[i] = classes == 0 || coin(0.1f) ? ignore_index : (int64_t)below(classes);
    }
    return t;
}

/* Which refusal a call gets, if any (10%): one from `kinds` that applies. */
static bad_kind pick_bad(const bad_kind *kinds, size_t n, size_t rows) {
    size_t tries;
    if (!coin(0.1f)) {
        return VALID;
    }
    for (tries = 0; tries < 1000; tries++) {
        bad_kind b = kinds[below(n)];
        /* These need a row (a NULL or misaligned empty buffer is allowed). */
        if (rows == 0 && (b == NULL_LOGITS || b == NULL_TARGETS || b == NULL_OUT ||
                          b == ZERO_COLS || b == MISALIGNED || b == BAD_TARGET ||
                          b == OVERLAP || b == LSE_OVERLAP || b == NULL_LOSS)) {
            continue;
        }
        return b;
    }
    return BAD_OPTION;
}

/* The lse a forward call gives (every row ignored, so any targets do), for a backward. */
static unsigned char *saved_lse(const call *c) {
    unsigned char *lse = alloc(c->rows * stat_size(c->type));
    unsigned char *loss = alloc(c->rows * stat_size(c->type));
    int64_t *ignored = gen_targets(c->rows, 0, -100);
    xent_options o = xent_options_default();
    xent_status s = XENT_STATUS_OK;
    o.reduction = XENT_REDUCTION_NONE;
    o.softcap = c->flags & NO_OPTIONS ? 0.0f : c->options.softcap;
    switch (c->type) {
    case T_F32:
        s = xent_cross_entropy_f32((const float *)(const void *)c->logits, c->rows, c->cols,
                                   c->stride, ignored, &o, (float *)(void *)loss, NULL, 0,
                                   (float *)(void *)lse);
        break;
    case T_F64:
        s = xent_cross_entropy_f64((const double *)(const void *)c->logits, c->rows, c->cols,
                                   c->stride, ignored, &o, (double *)(void *)loss, NULL, 0,
                                   (double *)(void *)lse);
        break;
    case T_BF16:
        s = xent_cross_entropy_bf16((const uint16_t *)(const void *)c->logits, c->rows, c->cols,
                                    c->stride, ignored, &o, (float *)(void *)loss, NULL, 0,
                                    (float *)(void *)lse);
        break;
    case T_F16:
        s = xent_cross_entropy_f16((const uint16_t *)(const void *)c->logits, c->rows, c->cols,
                                   c->stride, ignored, &o, (float *)(void *)loss, NULL, 0,
                                   (float *)(void *)lse);
        break;
    case TYPES: break;
    }
    if (s != XENT_STATUS_OK) {
        printf("FAIL: the forward call that saves an lse returned %d\n", (int)s);
        exit(1);
    }
    free(loss);
    free(ignored);
    return lse;
}

/* A summary row as an all-reduce might carry: finite, all -inf (sum 0), NaN, +-0 maxes. */
static xent_shard_row gen_shard_row(void) {
    xent_shard_row r;
    size_t k = below(20);
    r.max = k < 3 ? -INFINITY : k == 3 ? NAN : k == 4 ? 0.0f : k == 5 ? -0.0f : uniform(-20, 20);
    r.sumexp = r.max == -INFINITY || coin(0.05f) ? 0.0f : 1.0f + uniform(0, 100);
    r.target_logit = coin(0.5f) ? uniform(-5, 5) : 0.0f;
    r.smooth_sum = coin(0.5f) ? uniform(-50, 50) : 0.0f;
    return r;
}

/* The rows of the whole batch (columns 0..total at `stride` from `whole`) summed up over 1
 * to 3 slices and merged, as the all-reduce would: what xent_shard_finish_f32 takes. */
static xent_shard_row *merged_rows(const call *c, const float *whole) {
    size_t cuts[4], n = 0, k, i;
    xent_shard_row *merged = alloc(c->rows * sizeof(xent_shard_row));
    xent_shard_row *part = alloc(c->rows * sizeof(xent_shard_row));
    cuts[n++] = 0;
    for (k = below(3); k > 0; k--) {
        size_t cut = cuts[n - 1] + 1 + below(c->total);
        if (cut < c->total) {
            cuts[n++] = cut;
        }
    }
    cuts[n++] = c->total;
    for (i = 0; i < c->rows; i++) {
        merged[i].max = -INFINITY;
        merged[i].sumexp = 0.0f;
        merged[i].target_logit = 0.0f;
        merged[i].smooth_sum = 0.0f;
    }
    for (k = 0; k + 1 < n; k++) {
        xent_options o = c->options;
        xent_status s;
        o.class_weights = c->weights;
        s = xent_shard_stats_f32(whole + cuts[k], c->rows, cuts[k + 1] - cuts[k], c->stride,
                                 cuts[k], c->total, c->targets, c->flags & NO_OPTIONS ? NULL : &o,
                                 part);
        if (s != XENT_STATUS_OK) {
            printf("FAIL: the summaries of a valid shard returned %d\n", (int)s);
            exit(1);
        }
        xent_merge_shard_rows(part, merged, c->rows);
    }
    free(part);
    return merged;
}

/* Linear values: `rows x cols` at `stride`, uniform in [-scale, scale). */
static unsigned char *gen_values(dtype t, size_t rows, size_t cols, size_t stride, float scale) {
    size_t n = span(rows, cols, stride), k;
    unsigned char *v = alloc(n * elem_size(t));
    for (k = 0; k < n; k++) {
        put(v, t, k, (double)uniform(-scale, scale));
    }
    return v;
}

/* Makes call `c` refused for `b`: the changes that happen before a run. */
static void apply_bad(call *c, bad_kind b, size_t classes) {
    /* An overlap needs two elements to share (one element into a 1-element batch is not). */
    if (b == OVERLAP && c->kind != K_LINEAR && span(c->rows, c->cols, c->stride) < 2) {
        b = SMALL_STRIDE;
    }
    /* An in-place call runs on a fresh (aligned, non-NULL) copy of its logits, and NULL
     * outputs and overlaps are separate outputs: these refusals need the call out of place. */
    if (b == NULL_LOGITS || b == MISALIGNED || b == NULL_OUT || b == OVERLAP) {
        c->flags &= ~(unsigned)IN_PLACE;
    }
    c->bad = b;
    switch (b) {
    case NULL_LOGITS:
        if (c->kind == K_LINEAR) {
            free((void *)c->logits); /* the linear heads' hidden states are its own allocation */
        }
        c->logits = NULL;
        break;
    case NULL_TARGETS:
        free(c->targets);
        c->targets = NULL;
        c->soft = NULL;
        break;
    case ZERO_COLS: c->cols = 0; break;
    case SMALL_STRIDE: c->stride = c->cols - 1; break;
    case MISALIGNED: c->logits += 1; break;
    case BAD_TARGET: c->targets[below(c->rows)] = coin(0.5f) ? (int64_t)classes : -5; break;
    case BAD_OPTION: corrupt_options(c, classes); break;
    case LSE_OVERLAP:
        c->flags = (c->flags | LSE) & ~(unsigned)NO_OPTIONS;
        c->options.reduction = XENT_REDUCTION_NONE;
        break;
    case SHARD_RANGE: c->offset = c->total - c->cols + 1 + below(3); break;
    default: break; /* applied when the call runs */
    }
}

/* A call of the cross-entropy family, softmax or log_softmax over `t` logits. */
static void gen_dense(call *c, kind k, dtype t) {
    static const bad_kind ce[] = {NULL_LOGITS, NULL_LOSS,  NULL_TARGETS, ZERO_COLS,  SMALL_STRIDE,
                                  MISALIGNED,  BAD_TARGET, BAD_OPTION,   LSE_OVERLAP, OVERLAP};
    static const bad_kind soft[] = {NULL_LOGITS, NULL_LOSS,  NULL_TARGETS, ZERO_COLS,  SMALL_STRIDE,
                                    MISALIGNED,  BAD_OPTION, LSE_OVERLAP,  OVERLAP};
    static const bad_kind back[] = {NULL_LOGITS, NULL_LOSS, NULL_TARGETS, NULL_OUT, ZERO_COLS,
                                    SMALL_STRIDE, MISALIGNED, BAD_TARGET, BAD_OPTION, OVERLAP};
    static const bad_kind sm[] = {NULL_LOGITS, NULL_OUT, ZERO_COLS, SMALL_STRIDE, MISALIGNED,
                                  OVERLAP};
    bad_kind b;
    size_t i;
    c->kind = k;
    c->type = t;
    gen_shape(&c->rows, &c->cols);
    c->stride = c->cols + pad();
    c->out_stride = c->cols + pad();
    c->logits = window(t, c->rows, c->cols, c->stride);
    if (k == K_SOFTMAX || k == K_LOG_SOFTMAX) {
        c->flags |= coin(0.3f) ? IN_PLACE : 0;
        b = pick_bad(sm, sizeof sm / sizeof sm[0], c->rows);
        apply_bad(c, b, c->cols);
        return;
    }
    gen_options(c, c->cols);
    if (k == K_SOFT) {
        size_t room;
        c->soft_stride = c->cols + pad();
        room = POOL - span(c->rows, c->cols, c->soft_stride);
        c->soft = soft_pool + below(room + 1);
    } else {
        c->targets = gen_targets(c->rows, c->cols, ignore_of(c));
    }
    if (k == K_BACKWARD) {
        size_t n = loss_len(c);
        c->lse_in = saved_lse(c);
        c->dloss = alloc(n * stat_size(t));
        for (i = 0; i < n; i++) {
            put(c->dloss, t == T_F64 ? T_F64 : T_F32, i, (double)uniform(-2.0f, 2.0f));
        }
        c->flags |= GRAD | (coin(0.4f) ? IN_PLACE : 0);
        b = pick_bad(back, sizeof back / sizeof back[0], c->rows);
    } else {
        c->flags |= (coin(0.5f) ? LSE : 0) | (coin(0.6f) ? GRAD : 0);
        if (c->flags & GRAD && coin(0.4f)) {
            c->flags |= IN_PLACE;
        }
        b = k == K_CE ? pick_bad(ce, sizeof ce / sizeof ce[0], c->rows)
                      : pick_bad(soft, sizeof soft / sizeof soft[0], c->rows);
    }
    if (b == OVERLAP) {
        c->flags |= GRAD;
    }
    apply_bad(c, b, c->cols);
}

/* xent_shard_stats_f32 or xent_shard_finish_f32 over a slice of the vocabulary. */
static void gen_shard(call *c, kind k) {
    static const bad_kind stats[] = {NULL_LOGITS, NULL_TARGETS, NULL_OUT,    ZERO_COLS,
                                     SMALL_STRIDE, MISALIGNED,  BAD_TARGET, BAD_OPTION,
                                     SHARD_RANGE};
    static const bad_kind finish[] = {NULL_LOGITS, NULL_LOSS,  NULL_TARGETS, NULL_OUT,
                                      ZERO_COLS,   SMALL_STRIDE, MISALIGNED, BAD_TARGET,
                                      BAD_OPTION,  SHARD_RANGE, LSE_OVERLAP, OVERLAP};
    const float *whole;
    bad_kind b;
    c->kind = k;
    c->type = T_F32;
    gen_shape(&c->rows, &c->total);
    c->stride = c->total + pad();
    c->out_stride = 0;
    whole = (const float *)(const void *)window(T_F32, c->rows, c->total, c->stride);
    c->cols = coin(c->total >= SPLIT_MIN ? 0.6f : 0.3f) ? c->total : 1 + below(c->total);
    c->offset = below(c->total - c->cols + 1);
    c->logits = (const unsigned char *)(whole + c->offset);
    gen_options(c, c->total);
    c->targets = gen_targets(c->rows, c->total, ignore_of(c));
    if (k == K_SHARD_STATS) {
        b = pick_bad(stats, sizeof stats / sizeof stats[0], c->rows);
    } else {
        c->merged = merged_rows(c, whole);
        c->out_stride = c->cols + pad();
        c->flags |= (coin(0.5f) ? LSE : 0) | (coin(0.7f) ? GRAD : 0);
        if (c->flags & GRAD && coin(0.4f)) {
            c->flags |= IN_PLACE;
        }
        b = pick_bad(finish, sizeof finish / sizeof finish[0], c->rows);
        if (b == OVERLAP) {
            c->flags |= GRAD;
        }
    }
    apply_bad(c, b, c->total);
}

/* xent_merge_shard_rows over generated summaries. */
static void gen_merge(call *c) {
    size_t i;
    c->kind = K_MERGE;
    c->type = T_F32;
    c->merge_n = coin(0.02f) ? 20000 + below(50000) : below(40);
    c->merge_in = alloc((c->merge_n + 1) * sizeof(xent_shard_row));
    c->merge_inout = alloc((c->merge_n + 1) * sizeof(xent_shard_row));
    for (i = 0; i <= c->merge_n; i++) {
        c->merge_in[i] = gen_shard_row();
        c->merge_inout[i] = gen_shard_row();
    }
    if (c->merge_n > 1 && coin(0.1f)) {
        c->bad = coin(0.5f) ? MERGE_NULL : MERGE_OVERLAP;
    }
}

/* xent_linear_cross_entropy over a `t` head (f32, bf16 or f16). */
static void gen_linear(call *c, dtype t) {
    static const bad_kind kinds[] = {NULL_LOGITS, NULL_LOSS,  NULL_TARGETS, NULL_OUT,
                                     SMALL_STRIDE, MISALIGNED, BAD_TARGET,  BAD_OPTION,
                                     LSE_OVERLAP, OVERLAP};
    bad_kind b;
    size_t k;
    c->kind = K_LINEAR;
    c->type = t;
    if (coin(0.02f)) {
        /* Several automatic chunks: 2^21 / rows classes a chunk, rounded to 64. */
        c->rows = 1100 + below(200);
        c->cols = 3 + below(4);
        c->classes = 1800 + below(600);
    } else {
        c->rows = coin(0.05f) ? 0 : 1 + below(40);
        c->cols = 1 + below(48);
        c->classes = 1 + below(300);
    }
    c->stride = c->cols + pad();
    c->weight_stride = c->cols + pad();
    c->gh_stride = c->cols + pad();
    c->gw_stride = c->cols + pad();
    c->logits = gen_values(t, c->rows, c->cols, c->stride, 1.0f);
    c->weight = gen_values(t, c->classes, c->cols, c->weight_stride, 0.5f);
    if (coin(0.6f)) {
        c->bias = alloc(c->classes * elem_size(t));
        for (k = 0; k < c->classes; k++) {
            put(c->bias, t, k, coin(0.03f) ? -INFINITY : (double)uniform(-0.5f, 0.5f));
        }
    }
    gen_options(c, c->classes);
    c->targets = gen_targets(c->rows, c->classes, ignore_of(c));
    c->flags |= (coin(0.5f) ? LSE : 0) | (coin(0.7f) ? GH : 0) | (coin(0.7f) ? GW : 0) |
                (coin(0.7f) ? GB : 0);
    b = pick_bad(kinds, sizeof kinds / sizeof kinds[0], c->rows);
    if (b == OVERLAP) {
        c->flags |= GH | GW;
    }
    apply_bad(c, b, c->classes);
}

/* ---- Running a call --------------------------------------------------------------------- */

enum { MAX_OUT = 6 };

/* The output buffers of one run: `n` bytes each compared (SLACK past what the call may
 * write included), holding SENTINEL bytes before the call, or `before` for in-place
 * logits and the merge's rows. */
typedef struct {
    unsigned char *p[MAX_OUT];
    size_t n[MAX_OUT];
    const unsigned char *before[MAX_OUT];
    size_t before_n[MAX_OUT];
    int count;
} outputs;

/* A fresh output of `bytes` (and SLACK more). */
static unsigned char *fresh(outputs *o, size_t bytes) {
    int i = o->count++;
    o->p[i] = alloc(bytes + SLACK);
    memset(o->p[i], SENTINEL, bytes + SLACK);
    o->n[i] = bytes + SLACK;
    o->before[i] = NULL;
    o->before_n[i] = 0;
    return o->p[i];
}

/* An output of `bytes` (and SLACK more) that holds a copy of `src` first. */
static unsigned char *copied(outputs *o, const unsigned char *src, size_t src_bytes,
                             size_t bytes) {
    unsigned char *p = fresh(o, bytes);
    memcpy(p, src, src_bytes);
    o->before[o->count - 1] = src;
    o->before_n[o->count - 1] = src_bytes;
    return p;
}

static int untouched(const outputs *o) {
    int i;
    for (i = 0; i < o->count; i++) {
        size_t k = o->before_n[i];
        if (o->before[i] != NULL && memcmp(o->p[i], o->before[i], o->before_n[i]) != 0) {
            return 0;
        }
        for (; k < o->n[i]; k++) {
            if (o->p[i][k] != SENTINEL) {
                return 0;
            }
        }
    }
    return 1;
}

static uint64_t fx(uint64_t h, uint64_t word) {
    h = (h << 5 | h >> 59) ^ word;
    return h * 0x517cc1b727220a95u;
}

/* FxHash of the status and every output's bytes. */
static uint64_t digest(xent_status status, const outputs *o) {
    uint64_t h = fx(0xcbf29ce484222325u, (uint64_t)status);
    int i;
    for (i = 0; i < o->count; i++) {
        size_t k;
        h = fx(h, (uint64_t)o->n[i]);
        for (k = 0; k + 8 <= o->n[i]; k += 8) {
            uint64_t w;
            memcpy(&w, o->p[i] + k, 8);
            h = fx(h, w);
        }
        for (; k < o->n[i]; k++) {
            h = fx(h, o->p[i][k]);
        }
    }
    return h;
}

static void free_outputs(outputs *o) {
    int i;
    for (i = 0; i < o->count; i++) {
        free(o->p[i]);
    }
}

#define F32P(p) ((float *)(void *)(p))
#define F64P(p) ((double *)(void *)(p))
#define U16P(p) ((uint16_t *)(void *)(p))
#define CF32P(p) ((const float *)(const void *)(p))
#define CF64P(p) ((const double *)(const void *)(p))
#define CU16P(p) ((const uint16_t *)(const void *)(p))

/* The cross-entropy functions of every type, hard or soft targets. */
static xent_status dense_ce(const call *c, const unsigned char *x, const xent_options *o,
                            unsigned char *loss, unsigned char *grad, size_t gs,
                            unsigned char *lse) {
    size_t r = c->rows, n = c->cols, s = c->stride;
    const int64_t *t = c->targets;
    const float *p = c->soft;
    size_t ps = c->soft_stride;
    int soft = c->kind == K_SOFT;
    switch (c->type) {
    case T_F32:
        return soft ? xent_cross_entropy_soft_f32(CF32P(x), r, n, s, p, ps, o, F32P(loss),
                                                  F32P(grad), gs, F32P(lse))
                    : xent_cross_entropy_f32(CF32P(x), r, n, s, t, o, F32P(loss), F32P(grad), gs,
                                             F32P(lse));
    case T_F64:
        return soft ? xent_cross_entropy_soft_f64(CF64P(x), r, n, s, p, ps, o, F64P(loss),
                                                  F64P(grad), gs, F64P(lse))
                    : xent_cross_entropy_f64(CF64P(x), r, n, s, t, o, F64P(loss), F64P(grad), gs,
                                             F64P(lse));
    case T_BF16:
        return soft ? xent_cross_entropy_soft_bf16(CU16P(x), r, n, s, p, ps, o, F32P(loss),
                                                   U16P(grad), gs, F32P(lse))
                    : xent_cross_entropy_bf16(CU16P(x), r, n, s, t, o, F32P(loss), U16P(grad), gs,
                                              F32P(lse));
    case T_F16:
        return soft ? xent_cross_entropy_soft_f16(CU16P(x), r, n, s, p, ps, o, F32P(loss),
                                                  U16P(grad), gs, F32P(lse))
                    : xent_cross_entropy_f16(CU16P(x), r, n, s, t, o, F32P(loss), U16P(grad), gs,
                                             F32P(lse));
    case TYPES: break;
    }
    return XENT_STATUS_INTERNAL_PANIC;
}

static xent_status dense_backward(const call *c, const unsigned char *x, const xent_options *o,
                                  const unsigned char *dloss, unsigned char *grad, size_t gs) {
    size_t r = c->rows, n = c->cols, s = c->stride;
    const int64_t *t = c->targets;
    switch (c->type) {
    case T_F32:
        return xent_cross_entropy_backward_f32(CF32P(x), r, n, s, t, o, CF32P(c->lse_in),
                                               CF32P(dloss), F32P(grad), gs);
    case T_F64:
        return xent_cross_entropy_backward_f64(CF64P(x), r, n, s, t, o, CF64P(c->lse_in),
                                               CF64P(dloss), F64P(grad), gs);
    case T_BF16:
        return xent_cross_entropy_backward_bf16(CU16P(x), r, n, s, t, o, CF32P(c->lse_in),
                                                CF32P(dloss), U16P(grad), gs);
    case T_F16:
        return xent_cross_entropy_backward_f16(CU16P(x), r, n, s, t, o, CF32P(c->lse_in),
                                               CF32P(dloss), U16P(grad), gs);
    case TYPES: break;
    }
    return XENT_STATUS_INTERNAL_PANIC;
}

static xent_status dense_softmax(const call *c, const unsigned char *x, unsigned char *y,
                                 size_t ys) {
    size_t r = c->rows, n = c->cols, s = c->stride;
    int log = c->kind == K_LOG_SOFTMAX;
    switch (c->type) {
    case T_F32:
        return log ? xent_log_softmax_f32(CF32P(x), r, n, s, F32P(y), ys)
                   : xent_softmax_f32(CF32P(x), r, n, s, F32P(y), ys);
    case T_F64:
        return log ? xent_log_softmax_f64(CF64P(x), r, n, s, F64P(y), ys)
                   : xent_softmax_f64(CF64P(x), r, n, s, F64P(y), ys);
    case T_BF16:
        return log ? xent_log_softmax_bf16(CU16P(x), r, n, s, U16P(y), ys)
                   : xent_softmax_bf16(CU16P(x), r, n, s, U16P(y), ys);
    case T_F16:
        return log ? xent_log_softmax_f16(CU16P(x), r, n, s, U16P(y), ys)
                   : xent_softmax_f16(CU16P(x), r, n, s, U16P(y), ys);
    case TYPES: break;
    }
    return XENT_STATUS_INTERNAL_PANIC;
}

static xent_status linear(const call *c, const xent_options *o, unsigned char *loss,
                          unsigned char *gh, unsigned char *gw, unsigned char *gb,
                          unsigned char *lse) {
    const unsigned char *w = c->bad == NULL_OUT ? NULL : c->weight;
    switch (c->type) {
    case T_F32:
        return xent_linear_cross_entropy_f32(
            CF32P(c->logits), c->rows, c->cols, c->stride, CF32P(w), c->classes,
            c->weight_stride, CF32P(c->bias), c->targets, 0, o, F32P(loss), F32P(gh), c->gh_stride,
            F32P(gw), c->gw_stride, F32P(gb), F32P(lse));
    case T_BF16:
        return xent_linear_cross_entropy_bf16(
            CU16P(c->logits), c->rows, c->cols, c->stride, CU16P(w), c->classes,
            c->weight_stride, CU16P(c->bias), c->targets, 0, o, F32P(loss), U16P(gh), c->gh_stride,
            U16P(gw), c->gw_stride, U16P(gb), F32P(lse));
    case T_F16:
        return xent_linear_cross_entropy_f16(
            CU16P(c->logits), c->rows, c->cols, c->stride, CU16P(w), c->classes,
            c->weight_stride, CU16P(c->bias), c->targets, 0, o, F32P(loss), U16P(gh), c->gh_stride,
            U16P(gw), c->gw_stride, U16P(gb), F32P(lse));
    default: break;
    }
    return XENT_STATUS_INTERNAL_PANIC;
}

/* Runs call `c` with fresh outputs: returns its status and sets the digest of its
 * outputs, and (when `same` is not NULL) whether they are as they were before the call. */
static xent_status run_call(const call *c, uint64_t *hash, int *same) {
    outputs o;
    xent_options opts = c->options;
    const xent_options *op = c->flags & NO_OPTIONS ? NULL : &opts;
    size_t es = elem_size(c->type), ss = stat_size(c->type);
    size_t x_bytes = span(c->rows, c->cols, c->stride) * es;
    size_t out_bytes = span(c->rows, c->cols, c->out_stride) * es;
    const unsigned char *x = c->logits;
    unsigned char *loss = NULL, *lse = NULL, *grad = NULL;
    /* In place (or one element into the logits), the gradient has the logits' stride. */
    size_t gs = c->flags & IN_PLACE || c->bad == OVERLAP ? c->stride : c->out_stride;
    xent_status status = XENT_STATUS_OK;
    o.count = 0;
    opts.class_weights = c->weights;
    /* The loss first, so that lse can lie on it. */
    if (c->kind == K_CE || c->kind == K_SOFT || c->kind == K_SHARD_FINISH ||
        c->kind == K_LINEAR) {
        loss = fresh(&o, (c->rows + 1) * ss);
        if (c->flags & LSE) {
            lse = c->bad == LSE_OVERLAP ? loss : fresh(&o, c->rows * ss);
        }
        if (c->bad == NULL_LOSS) {
            loss = NULL;
        }
    }
    /* The gradient or softmax output: in place over a copy of the logits, one element into
     * such a copy (an overlap), or fresh. */
    if (c->flags & IN_PLACE || c->bad == OVERLAP) {
        if (c->kind != K_LINEAR) {
            unsigned char *copy = copied(&o, x, x_bytes, x_bytes + es);
            x = copy;
            grad = c->bad == OVERLAP ? copy + es : copy;
        }
    } else if (((c->flags & GRAD) || c->kind == K_SOFTMAX || c->kind == K_LOG_SOFTMAX) &&
               c->bad != NULL_OUT) {
        grad = fresh(&o, out_bytes);
    }
    switch (c->kind) {
    case K_CE:
    case K_SOFT:
        status = dense_ce(c, x, op, loss, grad, gs, lse);
        break;
    case K_BACKWARD:
        status = dense_backward(c, x, op, c->bad == NULL_LOSS ? NULL : c->dloss, grad, gs);
        break;
    case K_SOFTMAX:
    case K_LOG_SOFTMAX:
        status = dense_softmax(c, x, grad, gs);
        break;
    case K_SHARD_STATS: {
        xent_shard_row *out = NULL;
        if (c->bad != NULL_OUT) {
            out = (xent_shard_row *)(void *)fresh(&o, c->rows * sizeof(xent_shard_row));
        }
        status = xent_shard_stats_f32(CF32P(x), c->rows, c->cols, c->stride, c->offset, c->total,
                                      c->targets, op, out);
        break;
    }
    case K_SHARD_FINISH:
        status = xent_shard_finish_f32(CF32P(x), c->rows, c->cols, c->stride, c->offset,
                                       c->total, c->targets, op,
                                       c->bad == NULL_OUT ? NULL : c->merged, F32P(loss),
                                       F32P(grad), gs, F32P(lse));
        break;
    case K_MERGE: {
        size_t bytes = c->merge_n * sizeof(xent_shard_row);
        xent_shard_row *inout = (xent_shard_row *)(void *)copied(
            &o, (const unsigned char *)c->merge_inout, bytes, bytes + sizeof(xent_shard_row));
        const xent_shard_row *in = c->bad == MERGE_NULL      ? NULL
                                   : c->bad == MERGE_OVERLAP ? inout + 1
                                                             : c->merge_in;
        xent_merge_shard_rows(in, inout, c->merge_n);
        break;
    }
    case K_LINEAR: {
        size_t gh_bytes = span(c->rows, c->cols, c->gh_stride) * es;
        size_t gw_bytes = span(c->classes, c->cols, c->gw_stride) * es;
        unsigned char *gh = NULL, *gw = NULL, *gb = NULL;
        if (c->flags & GH) {
            gh = fresh(&o, gh_bytes > gw_bytes ? gh_bytes : gw_bytes);
        }
        if (c->flags & GW) {
            /* An overlap: dW written over dH. */
            gw = c->bad == OVERLAP ? gh : fresh(&o, gw_bytes);
        }
        if (c->flags & GB) {
            gb = fresh(&o, c->classes * es);
        }
        status = linear(c, op, loss, gh, gw, gb, lse);
        break;
    }
    case KINDS: break;
    }
    *hash = digest(status, &o);
    if (same != NULL) {
        *same = untouched(&o);
    }
    free_outputs(&o);
    return status;
}

/* The function a call makes, e.g. "xent_cross_entropy_soft_bf16". */
static void export_name(const call *c, char *buf, size_t len) {
    if (c->kind == K_MERGE) {
        snprintf(buf, len, "%s", KIND_NAMES[c->kind]);
    } else {
        snprintf(buf, len, "%s_%s", KIND_NAMES[c->kind], TYPE_NAMES[c->type]);
    }
}

static void describe(size_t i, const call *c, char *buf, size_t len) {
    char name[64];
    export_name(c, name, sizeof name);
    snprintf(buf, len,
             "call #%lu %s: %lu x %lu, stride %lu, out stride %lu, flags %#x, total %lu, "
             "offset %lu, classes %lu, merge %lu, %s",
             (unsigned long)i, name, (unsigned long)c->rows, (unsigned long)c->cols,
             (unsigned long)c->stride, (unsigned long)c->out_stride, c->flags,
             (unsigned long)c->total, (unsigned long)c->offset, (unsigned long)c->classes,
             (unsigned long)c->merge_n, BAD_NAMES[c->bad]);
}

/* Every computing function and its share of the calls. */
typedef struct {
    kind kind;
    dtype type;
    int weight;
} entry;

static const entry ENTRIES[] = {
    {K_CE, T_F32, 6},          {K_CE, T_F64, 6},          {K_CE, T_BF16, 6},
    {K_CE, T_F16, 6},          {K_SOFT, T_F32, 6},        {K_SOFT, T_F64, 6},
    {K_SOFT, T_BF16, 6},       {K_SOFT, T_F16, 6},        {K_BACKWARD, T_F32, 6},
    {K_BACKWARD, T_F64, 6},    {K_BACKWARD, T_BF16, 6},   {K_BACKWARD, T_F16, 6},
    {K_SOFTMAX, T_F32, 3},     {K_SOFTMAX, T_F64, 3},     {K_SOFTMAX, T_BF16, 3},
    {K_SOFTMAX, T_F16, 3},     {K_LOG_SOFTMAX, T_F32, 3}, {K_LOG_SOFTMAX, T_F64, 3},
    {K_LOG_SOFTMAX, T_BF16, 3}, {K_LOG_SOFTMAX, T_F16, 3}, {K_SHARD_STATS, T_F32, 8},
    {K_MERGE, T_F32, 3},       {K_SHARD_FINISH, T_F32, 12}, {K_LINEAR, T_F32, 6},
    {K_LINEAR, T_BF16, 6},     {K_LINEAR, T_F16, 6}};

enum { ENTRY_COUNT = sizeof ENTRIES / sizeof ENTRIES[0] };

static void generate(void) {
    int total = 0, e;
    size_t i;
    calls = calloc(CALLS, sizeof(call));
    if (calls == NULL) {
        puts("out of memory");
        exit(1);
    }
    for (e = 0; e < ENTRY_COUNT; e++) {
        total += ENTRIES[e].weight;
    }
    for (i = 0; i < CALLS; i++) {
        int r = (int)below((size_t)total);
        for (e = 0; r >= ENTRIES[e].weight; e++) {
            r -= ENTRIES[e].weight;
        }
        switch (ENTRIES[e].kind) {
        case K_SHARD_STATS:
        case K_SHARD_FINISH: gen_shard(&calls[i], ENTRIES[e].kind); break;
        case K_MERGE: gen_merge(&calls[i]); break;
        case K_LINEAR: gen_linear(&calls[i], ENTRIES[e].type); break;
        default: gen_dense(&calls[i], ENTRIES[e].kind, ENTRIES[e].type); break;
        }
    }
}

/* ---- The runs --------------------------------------------------------------------------- */

static xent_status serial_status[CALLS];
static uint64_t serial_digest[CALLS];

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static size_t next_call; /* guarded by lock */
static int mismatches;   /* guarded by lock */

static void *worker(void *arg) {
    (void)arg;
    for (;;) {
        size_t i;
        uint64_t h;
        xent_status s;
        pthread_mutex_lock(&lock);
        i = next_call++;
        pthread_mutex_unlock(&lock);
        if (i >= CALLS) {
            return NULL;
        }
        s = run_call(&calls[i], &h, NULL);
        if (s != serial_status[i] || h != serial_digest[i]) {
            char what[512];
            describe(i, &calls[i], what, sizeof what);
            pthread_mutex_lock(&lock);
            if (mismatches++ < 20) {
                printf("FAIL %s: status %d (serially %d), outputs %s\n", what, (int)s,
                       (int)serial_status[i], h == serial_digest[i] ? "the same" : "differ");
            }
            pthread_mutex_unlock(&lock);
        }
    }
}

/* All the calls from THREADS threads at once under thread setting `n`; returns how many
 * differ from the serial run. */
static int concurrent_round(size_t n) {
    pthread_t ids[THREADS];
    int t, started = 0;
    if (xent_set_num_threads(n) != XENT_STATUS_OK) {
        printf("FAIL: xent_set_num_threads(%lu)\n", (unsigned long)n);
        return 1;
    }
    next_call = 0;
    mismatches = 0;
    for (t = 0; t < THREADS; t++) {
        if (pthread_create(&ids[t], NULL, worker, NULL) != 0) {
            printf("FAIL: pthread_create\n");
            break;
        }
        started++;
    }
    for (t = 0; t < started; t++) {
        pthread_join(ids[t], NULL);
    }
    printf("xent_set_num_threads(%lu): %d calls from %d threads, %d differ from the serial "
           "results\n",
           (unsigned long)n, CALLS, started, mismatches);
    return mismatches + (started < THREADS);
}

int main(void) {
    static int ok_count[ENTRY_COUNT], refused_count[ENTRY_COUNT];
    int ok = 0, refused = 0, differ = 0, large = 0, e, k;
    size_t i;
    fill_pools();
    generate();

    /* The serial run, on the calling thread: each status is the one the generator meant,
     * and a refused call wrote nothing. */
    EXPECT(xent_set_num_threads(1) == XENT_STATUS_OK, "xent_set_num_threads(1)");
    for (i = 0; i < CALLS; i++) {
        const call *c = &calls[i];
        int same;
        char what[512];
        serial_status[i] = run_call(c, &serial_digest[i], &same);
        describe(i, c, what, sizeof what);
        EXPECT(serial_status[i] == status_of(c->bad), "%s: status %d (%s), expected %d", what,
               (int)serial_status[i], xent_status_string(serial_status[i]),
               (int)status_of(c->bad));
        EXPECT(c->bad == VALID || same, "%s: refused, but an output changed", what);
        for (e = 0; ENTRIES[e].kind != c->kind || ENTRIES[e].type != c->type; e++) {
        }
        if (c->bad == VALID) {
            ok++;
            ok_count[e]++;
        } else {
            refused++;
            refused_count[e]++;
        }
        large += c->rows * c->cols >= PARALLEL_MIN || (c->cols >= SPLIT_MIN && c->rows <= 3) ||
                 (c->kind == K_LINEAR && c->rows >= 1100);
    }

    for (k = 0; k < SETTINGS; k++) {
        differ += concurrent_round(SETTING_VALUES[k]);
    }
    xent_set_num_threads(0);

    /* Every function ran, succeeding and refused. */
    for (e = 0; e < ENTRY_COUNT; e++) {
        call probe;
        char name[64];
        probe.kind = ENTRIES[e].kind;
        probe.type = ENTRIES[e].type;
        export_name(&probe, name, sizeof name);
        printf("  %-32s %5d ok %4d refused\n", name, ok_count[e], refused_count[e]);
        EXPECT(ok_count[e] > 0 && refused_count[e] > 0, "%s: %d ok, %d refused", name,
               ok_count[e], refused_count[e]);
    }
    printf("stress.c: %d of %d checks passed; %d calls on the pool's paths\n", checks - failures,
           checks, large);
    printf("stress.c: %d calls (%d ok, %d refused) compared under %d thread settings from %d "
           "threads, %d differ\n",
           CALLS, ok, refused, SETTINGS, THREADS, differ);
    return failures == 0 && differ == 0 ? 0 : 1;
}
