/*
 * The _f64 functions from C, against this file's own double-precision evaluation of the
 * formulas of docs/semantics.md, written out literally: lse as max + log(sum exp), the
 * cross-entropy with label smoothing and class weights, the z-loss z * lse^2, the
 * reductions, and the gradient s * [(1 - eps) * w_y * (p - onehot) + (eps / C) * (p * sum(w)
 * - w_c)] + s_z * 2z * lse * p, times 1 - (x' / c)^2 under a softcap (x' = c * tanh(x / c));
 * for soft targets ce = -sum(w_c * t'_c * lp_c) and the gradient p_c * sum(w * t') - w_c * t'_c.
 * Every loss, lse, gradient and softmax value must lie within 1e-12 relative (+ 1e-14
 * absolute) of it, for several shapes (2 to 4 rows of 3 to 7 classes, strided) and option
 * sets; an in-place result must equal the separate one bit for bit, and no call may write
 * the padding between rows. Then the bad inputs: each gets its status and a refused call
 * leaves every byte of every buffer exactly as it was (all buffers live in one arena
 * filled with sentinel bytes, compared byte for byte after the call). Misaligned double
 * pointers (4-byte aligned included) are refused, and overlaps are judged in bytes.
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

/* The largest shape of the result cases: rows, classes, and a stride with room to spare. */
enum { MAXR = 4, MAXC = 7, MAXS = MAXC + 3, MAXSPAN = (MAXR - 1) * MAXS + MAXC };

#define OK(call) EXPECT((call) == XENT_STATUS_OK, "%s", #call)

/* got is want within 1e-12 relative, plus 1e-14 absolute (NaN never is). */
static int close_to(double got, double want) {
    return fabs(got - want) <= 1e-12 * fabs(want) + 1e-14;
}

/* Padding and not-yet-written outputs: a NaN with a payload, compared by its bits. */
static double pad_value(void) {
    uint64_t u = UINT64_C(0x7ff8deadbeefa5a5);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static int same_bits(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

static void fill(double *p, size_t n, double v) {
    size_t k;
    for (k = 0; k < n; k++) {
        p[k] = v;
    }
}

/* A small deterministic generator: uniform in [lo, hi), with all 53 bits random. */
static uint64_t rng_state = 20240601u;
static double uniform(double lo, double hi) {
    rng_state = rng_state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return lo + (hi - lo) * (double)(rng_state >> 11) * 0x1p-53;
}

/* ---- The reference: the formulas of docs/semantics.md in double ---- */

/* A batch: rows x cols; logits at stride xs, outputs at gs, soft targets at ps. */
struct shape {
    size_t rows, cols, xs, gs, ps;
};

struct expected {
    size_t loss_len;
    double loss[MAXR];
    double lse[MAXR];
    double grad[MAXR][MAXC];
};

static double weight(const xent_options *o, size_t c) {
    return o->class_weights != NULL ? (double)o->class_weights[c] : 1.0;
}

/* The loss, lse and gradient of logits x (at sh->xs) against the hard `targets`, or the
 * soft `probs` (at sh->ps) when not NULL. g is options->grad_scale when `dloss` is NULL
 * (the fused call), else dloss[0], or dloss[i] for row i under reduction none (backward). */
static void reference(const struct shape *sh, const double *x, const int64_t *targets,
                      const float *probs, const xent_options *o, const double *dloss,
                      struct expected *e) {
    size_t rows = sh->rows, cols = sh->cols, i, c;
    double eps = (double)o->label_smoothing, z = (double)o->z_loss, cap = (double)o->softcap;
    double sum_w = 0.0, W = 0.0, N = 0.0, sum_ce = 0.0, sum_zl = 0.0;
    double v[MAXR], ce[MAXR], zl[MAXR], lse[MAXR];
    double xp[MAXR][MAXC], lp[MAXR][MAXC], p[MAXR][MAXC], tp[MAXR][MAXC] = {{0.0}};
    int none = o->reduction == XENT_REDUCTION_NONE, mean = o->reduction == XENT_REDUCTION_MEAN;

    for (c = 0; c < cols; c++) {
        sum_w += weight(o, c);
    }
    for (i = 0; i < rows; i++) {
        double m = -INFINITY, s = 0.0;
        for (c = 0; c < cols; c++) {
            double xc = x[i * sh->xs + c];
            xp[i][c] = cap > 0.0 ? cap * tanh(xc / cap) : xc;
            m = xp[i][c] > m ? xp[i][c] : m;
        }
        for (c = 0; c < cols; c++) {
            s += exp(xp[i][c] - m);
        }
        lse[i] = m + log(s);
        for (c = 0; c < cols; c++) {
            lp[i][c] = xp[i][c] - lse[i];
            p[i][c] = exp(lp[i][c]);
        }
        ce[i] = 0.0;
        if (probs != NULL) { /* every row counts; mean divides by the number of rows */
            v[i] = 1.0;
            W += 1.0;
            N += 1.0;
            for (c = 0; c < cols; c++) {
                tp[i][c] = (1.0 - eps) * (double)probs[i * sh->ps + c] + eps / (double)cols;
                if (tp[i][c] != 0.0) {
                    ce[i] += -weight(o, c) * tp[i][c] * lp[i][c];
                }
            }
        } else if (targets[i] == o->ignore_index) {
            v[i] = 0.0;
        } else {
            size_t y = (size_t)targets[i];
            v[i] = 1.0;
            ce[i] = (1.0 - eps) * weight(o, y) * -lp[i][y];
            if (eps > 0.0) {
                double smooth = 0.0;
                for (c = 0; c < cols; c++) {
                    smooth += weight(o, c) * -lp[i][c];
                }
                ce[i] += eps / (double)cols * smooth;
            }
            W += weight(o, y);
            N += 1.0;
        }
        zl[i] = v[i] * z * lse[i] * lse[i];
        sum_ce += ce[i];
        sum_zl += zl[i];
        e->lse[i] = lse[i];
    }

    if (none) {
        e->loss_len = rows;
        for (i = 0; i < rows; i++) {
            e->loss[i] = v[i] != 0.0 ? ce[i] + zl[i] : 0.0;
        }
    } else {
        e->loss_len = 1;
        e->loss[0] = mean ? sum_ce / W + sum_zl / N : sum_ce + sum_zl;
    }

    for (i = 0; i < rows; i++) {
        double g = dloss == NULL ? (double)o->grad_scale : dloss[none ? i : 0];
        double s = mean ? g / W : g, s_z = mean ? g / N : g, sum_wt = 0.0;
        if (probs != NULL) {
            for (c = 0; c < cols; c++) {
                sum_wt += weight(o, c) * tp[i][c];
            }
        }
        for (c = 0; c < cols; c++) {
            double gc;
            if (v[i] == 0.0) {
                e->grad[i][c] = 0.0;
                continue;
            }
            if (probs != NULL) {
                gc = s * (p[i][c] * sum_wt - weight(o, c) * tp[i][c]);
            } else {
                size_t y = (size_t)targets[i];
                double onehot = c == y ? 1.0 : 0.0;
                gc = s * ((1.0 - eps) * weight(o, y) * (p[i][c] - onehot) +
                          eps / (double)cols * (p[i][c] * sum_w - weight(o, c)));
            }
            gc += s_z * 2.0 * z * lse[i] * p[i][c];
            if (cap > 0.0) {
                gc *= 1.0 - (xp[i][c] / cap) * (xp[i][c] / cap);
            }
            e->grad[i][c] = gc;
        }
    }
}

/* ---- Comparisons ---- */

static void expect_values(const double *got, const double *want, size_t n, const char *what,
                          const char *name) {
    size_t k;
    for (k = 0; k < n; k++) {
        EXPECT(close_to(got[k], want[k]), "%s (%s) [%lu]: %.17g, expected %.17g", what, name,
               (unsigned long)k, got[k], want[k]);
    }
}

/* Rows of `got` at `stride` are `want` within the tolerance; the padding holds `padding`
 * (NULL: pad_value()) bit for bit. */
static void expect_rows(const struct shape *sh, const double *got, size_t stride,
                        const struct expected *want, const double *padding, const char *what,
                        const char *name) {
    size_t i, c;
    for (i = 0; i < sh->rows; i++) {
        for (c = 0; c < sh->cols; c++) {
            double g = got[i * stride + c], w = want->grad[i][c];
            EXPECT(close_to(g, w), "%s (%s) [%lu][%lu]: %.17g, expected %.17g", what, name,
                   (unsigned long)i, (unsigned long)c, g, w);
        }
        for (c = sh->cols; i + 1 < sh->rows && c < stride; c++) {
            size_t k = i * stride + c;
            EXPECT(same_bits(got[k], padding != NULL ? padding[k] : pad_value()),
                   "%s (%s): padding [%lu][%lu] written", what, name, (unsigned long)i,
                   (unsigned long)c);
        }
    }
}

/* The entries of `got` (at `got_stride`) equal those of `want` (at `want_stride`) bit for
 * bit. */
static void expect_same_rows(const struct shape *sh, const double *got, size_t got_stride,
                             const double *want, size_t want_stride, const char *what,
                             const char *name) {
    size_t i, c;
    int same = 1;
    for (i = 0; i < sh->rows; i++) {
        for (c = 0; c < sh->cols; c++) {
            same &= same_bits(got[i * got_stride + c], want[i * want_stride + c]);
        }
    }
    EXPECT(same, "%s (%s): in place differs from separate", what, name);
}

/* ---- Results ---- */

static size_t span(size_t rows, size_t cols, size_t stride) {
    return (rows - 1) * stride + cols;
}

/* Every call on logits `x` (padding pad_value()) under `o`, against the reference. */
static void results(const char *name, const struct shape *sh, const double *x,
                    const int64_t *targets, const float *probs, const xent_options *o) {
    size_t rows = sh->rows, cols = sh->cols, xspan = span(rows, cols, sh->xs);
    double loss[MAXR], lse[MAXR], saved_lse[MAXR], sep_loss[MAXR], dloss[MAXR];
    double grad[MAXSPAN], in_place[MAXSPAN], sep_grad[MAXSPAN];
    struct expected e, eb, es;
    size_t k;

    reference(sh, x, targets, NULL, o, NULL, &e);

    /* The loss alone: loss and lse; beyond its length the loss is untouched. */
    fill(loss, MAXR, pad_value());
    fill(lse, MAXR, pad_value());
    OK(xent_cross_entropy_f64(x, rows, cols, sh->xs, targets, o, loss, NULL, 0, lse));
    expect_values(loss, e.loss, e.loss_len, "loss", name);
    expect_values(lse, e.lse, rows, "lse", name);
    for (k = e.loss_len; k < MAXR; k++) {
        EXPECT(same_bits(loss[k], pad_value()), "loss (%s): [%lu] written", name,
               (unsigned long)k);
    }
    memcpy(saved_lse, lse, sizeof lse);

    /* With the gradient into a separate buffer with a stride of its own. */
    fill(loss, MAXR, pad_value());
    fill(lse, MAXR, pad_value());
    fill(grad, MAXSPAN, pad_value());
    OK(xent_cross_entropy_f64(x, rows, cols, sh->xs, targets, o, loss, grad, sh->gs, lse));
    expect_values(loss, e.loss, e.loss_len, "loss with grad", name);
    expect_values(lse, e.lse, rows, "lse with grad", name);
    expect_rows(sh, grad, sh->gs, &e, NULL, "grad", name);
    memcpy(sep_loss, loss, sizeof loss);
    memcpy(sep_grad, grad, sizeof grad);

    /* In place: the same loss and gradient, bit for bit, and the logits' padding kept. */
    memcpy(in_place, x, xspan * sizeof(double));
    fill(loss, MAXR, pad_value());
    OK(xent_cross_entropy_f64(in_place, rows, cols, sh->xs, targets, o, loss, in_place, sh->xs,
                              NULL));
    EXPECT(memcmp(loss, sep_loss, e.loss_len * sizeof(double)) == 0,
           "in-place loss (%s) differs from separate", name);
    expect_same_rows(sh, in_place, sh->xs, sep_grad, sh->gs, "in-place grad", name);
    expect_rows(sh, in_place, sh->xs, &e, x, "in-place grad", name);

    /* Backward from the saved lse with an upstream gradient, separate and in place. */
    for (k = 0; k < MAXR; k++) {
        dloss[k] = 0.5 + 0.25 * (double)k;
    }
    reference(sh, x, targets, NULL, o, dloss, &eb);
    fill(grad, MAXSPAN, pad_value());
    OK(xent_cross_entropy_backward_f64(x, rows, cols, sh->xs, targets, o, saved_lse, dloss, grad,
                                       sh->gs));
    expect_rows(sh, grad, sh->gs, &eb, NULL, "backward", name);
    memcpy(in_place, x, xspan * sizeof(double));
    OK(xent_cross_entropy_backward_f64(in_place, rows, cols, sh->xs, targets, o, saved_lse, dloss,
                                       in_place, sh->xs));
    expect_same_rows(sh, in_place, sh->xs, grad, sh->gs, "backward in place", name);
    expect_rows(sh, in_place, sh->xs, &eb, x, "backward in place", name);

    /* Soft targets (float probabilities): the loss alone, separate, in place. */
    reference(sh, x, NULL, probs, o, NULL, &es);
    fill(loss, MAXR, pad_value());
    fill(lse, MAXR, pad_value());
    OK(xent_cross_entropy_soft_f64(x, rows, cols, sh->xs, probs, sh->ps, o, loss, NULL, 0, lse));
    expect_values(loss, es.loss, es.loss_len, "soft loss", name);
    expect_values(lse, es.lse, rows, "soft lse", name);
    fill(loss, MAXR, pad_value());
    fill(lse, MAXR, pad_value());
    fill(grad, MAXSPAN, pad_value());
    OK(xent_cross_entropy_soft_f64(x, rows, cols, sh->xs, probs, sh->ps, o, loss, grad, sh->gs, lse));
    expect_values(loss, es.loss, es.loss_len, "soft loss with grad", name);
    expect_values(lse, es.lse, rows, "soft lse with grad", name);
    expect_rows(sh, grad, sh->gs, &es, NULL, "soft grad", name);
    memcpy(sep_loss, loss, sizeof loss);
    memcpy(in_place, x, xspan * sizeof(double));
    fill(loss, MAXR, pad_value());
    OK(xent_cross_entropy_soft_f64(in_place, rows, cols, sh->xs, probs, sh->ps, o, loss, in_place,
                                   sh->xs, NULL));
    EXPECT(memcmp(loss, sep_loss, es.loss_len * sizeof(double)) == 0,
           "soft in-place loss (%s) differs from separate", name);
    expect_same_rows(sh, in_place, sh->xs, grad, sh->gs, "soft in place", name);
    expect_rows(sh, in_place, sh->xs, &es, x, "soft in place", name);
}

/* softmax and log_softmax, separate and in place: p = exp(x - lse), lp = x - lse. */
static void normalizations(const char *name, const struct shape *sh, const double *x) {
    size_t rows = sh->rows, cols = sh->cols, i, c;
    struct expected soft, log_soft;
    double y[MAXSPAN], in_place[MAXSPAN];
    int is_log;
    for (i = 0; i < rows; i++) {
        double m = -INFINITY, s = 0.0, lse;
        for (c = 0; c < cols; c++) {
            m = x[i * sh->xs + c] > m ? x[i * sh->xs + c] : m;
        }
        for (c = 0; c < cols; c++) {
            s += exp(x[i * sh->xs + c] - m);
        }
        lse = m + log(s);
        for (c = 0; c < cols; c++) {
            log_soft.grad[i][c] = x[i * sh->xs + c] - lse;
            soft.grad[i][c] = exp(log_soft.grad[i][c]);
        }
    }
    for (is_log = 0; is_log < 2; is_log++) {
        const char *what = is_log ? "log_softmax" : "softmax";
        xent_status (*f)(const double *, size_t, size_t, size_t, double *, size_t) =
            is_log ? xent_log_softmax_f64 : xent_softmax_f64;
        fill(y, MAXSPAN, pad_value());
        OK(f(x, rows, cols, sh->xs, y, sh->gs));
        expect_rows(sh, y, sh->gs, is_log ? &log_soft : &soft, NULL, what, name);
        memcpy(in_place, x, span(rows, cols, sh->xs) * sizeof(double));
        OK(f(in_place, rows, cols, sh->xs, in_place, sh->xs));
        expect_same_rows(sh, in_place, sh->xs, y, sh->gs, what, name);
        expect_rows(sh, in_place, sh->xs, is_log ? &log_soft : &soft, x, what, name);
    }
}

/* Logits (row 1 large, so a softcap of 5 bends it), targets and soft targets of a shape. */
static void inputs(const struct shape *sh, double *x, int64_t *targets, float *probs) {
    size_t i, c;
    fill(x, MAXSPAN, pad_value());
    for (i = 0; i < MAXSPAN; i++) {
        probs[i] = -1.0f;
    }
    for (i = 0; i < sh->rows; i++) {
        float sum = 0.0f;
        targets[i] = (int64_t)((i * 3 + 1) % sh->cols);
        for (c = 0; c < sh->cols; c++) {
            x[i * sh->xs + c] = uniform(-4.0, 4.0) * (i == 1 ? 3.0 : 1.0);
            /* Class 0 has target 0, which adds nothing (before smoothing). */
            probs[i * sh->ps + c] = c == 0 ? 0.0f : (float)uniform(0.0, 1.0);
            sum += probs[i * sh->ps + c];
        }
        for (c = 0; c < sh->cols; c++) {
            probs[i * sh->ps + c] /= sum;
        }
    }
}

static void all_results(void) {
    static const float weights[MAXC] = {0.5f, 1.25f, 2.0f, 0.0f, 1.0f, 0.75f, 1.5f};
    double x[MAXSPAN];
    int64_t targets[MAXR];
    float probs[MAXSPAN];
    xent_options o;
    struct shape sh;

    sh.rows = 3, sh.cols = 5, sh.xs = 7, sh.gs = 8, sh.ps = 6;
    inputs(&sh, x, targets, probs);
    o = xent_options_default();
    results("defaults, 3x5", &sh, x, targets, probs, &o);
    normalizations("3x5", &sh, x);

    /* Row 3's target, class 3, has weight 0. */
    sh.rows = 4, sh.cols = 7, sh.xs = 9, sh.gs = 10, sh.ps = 7;
    inputs(&sh, x, targets, probs);
    o = xent_options_default();
    o.label_smoothing = 0.1f;
    o.class_weights = weights;
    results("mean, smoothing 0.1, class weights, 4x7", &sh, x, targets, probs, &o);
    normalizations("4x7", &sh, x);

    sh.rows = 3, sh.cols = 6, sh.xs = 6, sh.gs = 9, sh.ps = 8;
    inputs(&sh, x, targets, probs);
    o = xent_options_default();
    o.reduction = XENT_REDUCTION_SUM;
    o.z_loss = 1e-2f;
    o.softcap = 5.0f;
    o.grad_scale = 0.5f;
    results("sum, z_loss, softcap, grad_scale, 3x6", &sh, x, targets, probs, &o);

    sh.rows = 4, sh.cols = 4, sh.xs = 5, sh.gs = 7, sh.ps = 4;
    inputs(&sh, x, targets, probs);
    o = xent_options_default();
    o.reduction = XENT_REDUCTION_NONE;
    targets[2] = o.ignore_index;
    results("none, an ignored row, 4x4", &sh, x, targets, probs, &o);
    normalizations("4x4", &sh, x);

    /* Everything at once, with a mean whose z-loss divides by the counted rows. */
    sh.rows = 2, sh.cols = 3, sh.xs = 4, sh.gs = 3, sh.ps = 5;
    inputs(&sh, x, targets, probs);
    o = xent_options_default();
    o.label_smoothing = 0.2f;
    o.class_weights = weights;
    o.z_loss = 1e-3f;
    o.softcap = 3.0f;
    o.grad_scale = 2.0f;
    results("mean, smoothing, weights, z_loss, softcap, grad_scale, 2x3", &sh, x, targets,
            probs, &o);
    o.reduction = XENT_REDUCTION_NONE;
    o.ignore_index = targets[0];
    results("none, ignore_index, smoothing, weights, z_loss, softcap, 2x3", &sh, x, targets,
            probs, &o);
    normalizations("2x3", &sh, x);

    /* No rows: every buffer but loss may be NULL; the mean over nothing is NaN. */
    {
        double loss = 0.0;
        OK(xent_cross_entropy_f64(NULL, 0, 5, 5, NULL, NULL, &loss, NULL, 0, NULL));
        EXPECT(isnan(loss), "the mean over no rows is NaN");
        OK(xent_softmax_f64(NULL, 0, 5, 5, NULL, 5));
    }
}

/* ---- Bad inputs: their statuses, and not a byte written ---- */

/* R rows of C classes at stride S for the bad inputs. */
enum { R = 4, C = 5, S = 7, SPAN = (R - 1) * S + C };

static double *L;      /* logits, SPAN doubles (208 bytes) */
static double *G;      /* gradient / softmax output, SPAN doubles */
static double *LOSS;   /* R doubles */
static double *LSE;    /* lse output, R doubles */
static double *LSE_IN; /* saved lse, a backward input, R doubles */
static double *DLOSS;  /* R doubles */
static float *SOFT;    /* soft targets, SPAN floats at stride S (104 bytes) */
static int64_t *T;     /* hard targets, R values */
static float *WTS;     /* class weights, C floats (20 bytes) */

static void carve(void) {
    alloc_arena();
    L = (double *)(void *)arena;
    G = (double *)(void *)(arena + 256);
    LOSS = (double *)(void *)(arena + 512);
    LSE = (double *)(void *)(arena + 576);
    LSE_IN = (double *)(void *)(arena + 640);
    DLOSS = (double *)(void *)(arena + 704);
    SOFT = (float *)(void *)(arena + 768);
    T = (int64_t *)(void *)(arena + 896);
    WTS = (float *)(void *)(arena + 960);
}

/* Sentinels everywhere, then inputs that are valid unless a case changes them. */
static void reset(void) {
    int i, c;
    memset(arena, 0xA5, ARENA_BYTES);
    for (i = 0; i < R; i++) {
        T[i] = i % C;
        LSE_IN[i] = 2.0;
        DLOSS[i] = 1.0;
        for (c = 0; c < C; c++) {
            L[i * S + c] = (double)(i + 1) * 0.25 * (double)c - 0.5;
            SOFT[i * S + c] = 1.0f / C;
        }
    }
    for (c = 0; c < C; c++) {
        WTS[c] = 1.0f;
    }
}

/* Runs `call` on the arena as it is now and expects status `want` and no byte written. */
#define REFUSED(want, call) REFUSED_AS("f64", want, call)

/* A pointer `bytes` bytes past `p`, as a pointer of `type`. */
#define SHIFTED(type, p, bytes) ((type)(void *)((unsigned char *)(p) + (bytes)))

static void bad_inputs(void) {
    static const int64_t bad_targets[] = {C, -1, -99, INT64_MAX, INT64_MIN};
    xent_options o = xent_options_default();
    size_t k;

    /* NULL pointers */
    reset();
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_f64(NULL, R, C, S, T, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_f64(L, R, C, S, NULL, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_f64(L, R, C, S, T, NULL, NULL, G, S, LSE));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_f64(L, R, C, S, T, NULL, NULL, L, S, NULL));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_f64(NULL, 0, C, S, NULL, NULL, NULL, NULL, 0, NULL));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_soft_f64(NULL, R, C, S, SOFT, S, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_soft_f64(L, R, C, S, NULL, S, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_soft_f64(L, R, C, S, SOFT, S, NULL, NULL, L, S, LSE));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_backward_f64(NULL, R, C, S, T, NULL, LSE_IN, DLOSS, G, S));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_backward_f64(L, R, C, S, NULL, NULL, LSE_IN, DLOSS, G, S));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_backward_f64(L, R, C, S, T, NULL, NULL, DLOSS, G, S));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_backward_f64(L, R, C, S, T, NULL, LSE_IN, NULL, L, S));
    REFUSED(XENT_STATUS_NULL_POINTER,
            xent_cross_entropy_backward_f64(L, R, C, S, T, NULL, LSE_IN, DLOSS, NULL, S));
    REFUSED(XENT_STATUS_NULL_POINTER, xent_softmax_f64(NULL, R, C, S, G, S));
    REFUSED(XENT_STATUS_NULL_POINTER, xent_softmax_f64(L, R, C, S, NULL, S));
    REFUSED(XENT_STATUS_NULL_POINTER, xent_log_softmax_f64(NULL, R, C, S, G, S));
    REFUSED(XENT_STATUS_NULL_POINTER, xent_log_softmax_f64(L, R, C, S, NULL, S));

    /* Shapes */
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            xent_cross_entropy_f64(L, R, 0, S, T, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            xent_cross_entropy_f64(L, R, C, C - 1, T, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            xent_cross_entropy_f64(L, R, C, S, T, NULL, LOSS, G, C - 1, LSE));
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            xent_cross_entropy_f64(L, R, C, S, T, NULL, LOSS, L, C - 1, LSE));
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            xent_cross_entropy_soft_f64(L, R, C, S, SOFT, C - 1, NULL, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            xent_cross_entropy_backward_f64(L, R, C, S, T, NULL, LSE_IN, DLOSS, G, 1));
    REFUSED(XENT_STATUS_INVALID_SHAPE, xent_softmax_f64(L, R, C, 2, G, S));
    REFUSED(XENT_STATUS_INVALID_SHAPE, xent_log_softmax_f64(L, R, C, S, G, C - 1));
    /* 4 * 2^62 elements overflow size_t; 2^60 + C do not, and neither do they as 4-byte
     * elements, but as 8-byte elements they are more than isize::MAX bytes. */
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            xent_cross_entropy_f64(L, 5, C, SIZE_MAX / 4 + 1, T, NULL, LOSS, NULL, 0, NULL));
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            xent_cross_entropy_f64(L, 2, C, SIZE_MAX / 16 + 1, T, NULL, LOSS, NULL, 0, NULL));
    REFUSED(XENT_STATUS_INVALID_SHAPE, xent_softmax_f64(L, 2, C, S, G, SIZE_MAX / 16 + 1));

    /* Pointers not aligned for 8-byte elements: by 1 byte, and by 4 (aligned for float). */
    for (k = 1; k <= 4; k += 3) {
        REFUSED(XENT_STATUS_INVALID_SHAPE,
                xent_cross_entropy_f64(SHIFTED(const double *, L, k), R, C, S, T, NULL, LOSS,
                                       G, S, LSE));
        REFUSED(XENT_STATUS_INVALID_SHAPE,
                xent_cross_entropy_f64(L, R, C, S, T, NULL, LOSS, SHIFTED(double *, G, k), S,
                                       LSE));
        REFUSED(XENT_STATUS_INVALID_SHAPE,
                xent_cross_entropy_f64(L, R, C, S, T, NULL, SHIFTED(double *, LOSS, k), G, S,
                                       LSE));
        REFUSED(XENT_STATUS_INVALID_SHAPE,
                xent_cross_entropy_f64(L, R, C, S, T, NULL, LOSS, G, S,
                                       SHIFTED(double *, LSE, k)));
        REFUSED(XENT_STATUS_INVALID_SHAPE,
                xent_cross_entropy_soft_f64(SHIFTED(const double *, L, k), R, C, S, SOFT, S,
                                            NULL, LOSS, G, S, LSE));
        REFUSED(XENT_STATUS_INVALID_SHAPE,
                xent_cross_entropy_soft_f64(L, R, C, S, SOFT, S, NULL,
                                            SHIFTED(double *, LOSS, k), G, S, LSE));
        REFUSED(XENT_STATUS_INVALID_SHAPE,
                xent_cross_entropy_backward_f64(L, R, C, S, T, NULL,
                                                SHIFTED(const double *, LSE_IN, k), DLOSS, G,
                                                S));
        REFUSED(XENT_STATUS_INVALID_SHAPE,
                xent_cross_entropy_backward_f64(L, R, C, S, T, NULL, LSE_IN,
                                                SHIFTED(const double *, DLOSS, k), G, S));
        REFUSED(XENT_STATUS_INVALID_SHAPE,
                xent_cross_entropy_backward_f64(L, R, C, S, T, NULL, LSE_IN, DLOSS,
                                                SHIFTED(double *, G, k), S));
        REFUSED(XENT_STATUS_INVALID_SHAPE,
                xent_softmax_f64(SHIFTED(const double *, L, k), R, C, S, G, S));
        REFUSED(XENT_STATUS_INVALID_SHAPE,
                xent_softmax_f64(L, R, C, S, SHIFTED(double *, G, k), S));
        REFUSED(XENT_STATUS_INVALID_SHAPE,
                xent_log_softmax_f64(L, R, C, S, SHIFTED(double *, G, k), S));
    }
    /* Soft targets are floats: 2 bytes off is misaligned, 4 bytes off is not. */
    REFUSED(XENT_STATUS_INVALID_SHAPE,
            xent_cross_entropy_soft_f64(L, R, C, S, SHIFTED(const float *, SOFT, 2), S, NULL,
                                        LOSS, G, S, LSE));
    reset();
    OK(xent_cross_entropy_soft_f64(L, R, C, S, SHIFTED(const float *, SOFT, 4), S, NULL, LOSS,
                                   G, S, LSE));

    /* Targets out of range, out of place and in place */
    for (k = 0; k < sizeof bad_targets / sizeof bad_targets[0]; k++) {
        reset();
        T[2] = bad_targets[k];
        REFUSED(XENT_STATUS_TARGET_OUT_OF_RANGE,
                xent_cross_entropy_f64(L, R, C, S, T, NULL, LOSS, G, S, LSE));
        REFUSED(XENT_STATUS_TARGET_OUT_OF_RANGE,
                xent_cross_entropy_f64(L, R, C, S, T, NULL, LOSS, L, S, LSE));
        REFUSED(XENT_STATUS_TARGET_OUT_OF_RANGE,
                xent_cross_entropy_f64(L, R, C, S, T, NULL, LOSS, NULL, 0, NULL));
        REFUSED(XENT_STATUS_TARGET_OUT_OF_RANGE,
                xent_cross_entropy_backward_f64(L, R, C, S, T, NULL, LSE_IN, DLOSS, G, S));
        REFUSED(XENT_STATUS_TARGET_OUT_OF_RANGE,
                xent_cross_entropy_backward_f64(L, R, C, S, T, NULL, LSE_IN, DLOSS, L, S));
    }

    /* Invalid options */
    reset();
    o.label_smoothing = 1.5f;
    REFUSED(XENT_STATUS_INVALID_OPTION,
            xent_cross_entropy_f64(L, R, C, S, T, &o, LOSS, L, S, LSE));
    REFUSED(XENT_STATUS_INVALID_OPTION,
            xent_cross_entropy_soft_f64(L, R, C, S, SOFT, S, &o, LOSS, G, S, LSE));
    REFUSED(XENT_STATUS_INVALID_OPTION,
            xent_cross_entropy_backward_f64(L, R, C, S, T, &o, LSE_IN, DLOSS, L, S));
    o = xent_options_default();
    o.reduction = 7;
    REFUSED(XENT_STATUS_INVALID_OPTION,
            xent_cross_entropy_f64(L, R, C, S, T, &o, LOSS, G, S, LSE));

    /* Overlaps, judged in bytes: an 8-byte element counts all 8. Only exactly the same
     * rows may be shared. */
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_f64(L, R, C, S, T, NULL, LOSS, L + 1, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_f64(L + 1, R, C, S, T, NULL, LOSS, L, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_f64(L, R, C, S, T, NULL, LOSS, L, S + 1, LSE));
    /* The logits' last element, in their second half counted in 4-byte units. */
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_f64(L, R, C, S, T, NULL, LOSS, L + SPAN - 1, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_f64(L, R, C, S, T, NULL, LOSS, G, S, L + SPAN - 1));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_f64(L, R, C, S, T, NULL, G + SPAN - 1, G, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_f64(L, R, C, S, T, NULL, LOSS, G, S, LOSS));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_f64(L, 1, C, S, T, NULL, LOSS, SHIFTED(double *, T, 0), S, LSE));
    /* A double gradient over the last 4 bytes of one row of 5 float targets (20 bytes). */
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_soft_f64(L, 1, C, S, SOFT, S, NULL, LOSS,
                                        SHIFTED(double *, SOFT, 16), S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_soft_f64(L, R, C, S, SOFT, S, NULL, LOSS,
                                        SHIFTED(double *, SOFT, -8), S, LSE));
    /* The loss over the last 4 bytes of 5 float class weights. */
    o = xent_options_default();
    o.class_weights = WTS;
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_f64(L, R, C, S, T, &o, SHIFTED(double *, WTS, 16), G, S, LSE));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_backward_f64(L, 1, C, S, T, NULL, LSE_IN, DLOSS,
                                            SHIFTED(double *, LSE_IN, 0), S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_backward_f64(L, 1, C, S, T, NULL, LSE_IN, DLOSS, DLOSS - 4, S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS,
            xent_cross_entropy_backward_f64(L, R, C, S, T, NULL, LSE_IN, DLOSS, L + 2, S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, xent_softmax_f64(L, R, C, S, L + 1, S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, xent_softmax_f64(L, R, C, S, L + SPAN - 1, S));
    REFUSED(XENT_STATUS_OVERLAPPING_BUFFERS, xent_log_softmax_f64(L, R, C, S, L, C));

    /* Accepted: buffers that merely touch the logits' last byte, or the weights' and the
     * float targets' (at the next 8-byte boundary), and in place. */
    reset();
    OK(xent_cross_entropy_f64(L, R, C, S, T, NULL, LOSS, L + SPAN, S, NULL));
    reset();
    OK(xent_cross_entropy_f64(L, R, C, S, T, NULL, LOSS, G, S, L + SPAN));
    reset();
    OK(xent_cross_entropy_f64(L, R, C, S, T, &o, SHIFTED(double *, WTS, 24), G, S, LSE));
    reset();
    OK(xent_cross_entropy_soft_f64(L, 1, C, S, SOFT, S, NULL, LOSS, SHIFTED(double *, SOFT, 24),
                                   S, LSE));
    reset();
    OK(xent_cross_entropy_backward_f64(L, R, C, S, T, NULL, LSE_IN, DLOSS, L, S));
    reset();
    OK(xent_softmax_f64(L, R, C, S, L, S));
}

int main(void) {
    all_results();
    carve();
    bad_inputs();
    printf("f64_dtype.c: %d of %d checks passed\n", checks - failures, checks);
    free(arena);
    free(before);
    return failures == 0 ? 0 : 1;
}
