/*
 * Vocabulary-parallel (tensor-parallel) cross-entropy over MPI with xent's C ABI.
 *
 * In a language model whose output layer is split by vocabulary, every rank holds all rows
 * of the batch but only a slice of the columns: rank r has the logits of the classes
 * [class_offset, class_offset + cols) of the total_cols classes. The full logits never
 * exist anywhere. The recipe is three xent calls around one collective:
 *
 *   1. xent_shard_stats_f32 reduces this rank's slice to one xent_shard_row per row: the
 *      slice's max and sum of exp of the (softcapped) logits, the target's logit when the
 *      target lies in the slice, and the label-smoothing sum.
 *   2. MPI_Allreduce with an operation that calls xent_merge_shard_rows gives every rank
 *      the statistics of the whole rows: 16 bytes per row, whatever the vocabulary size.
 *   3. xent_shard_finish_f32 turns the merged rows into the loss (the same on every rank)
 *      and the gradient of this rank's slice, which stays where the output layer's
 *      backward pass needs it.
 *
 * The rest of the program checks the recipe on the same deterministic batches on every
 * rank, with the columns split unevenly, several option sets and the awkward rows (an
 * ignored row, a row whose whole slice on one rank is -inf, a row whose max lies in the
 * last slice, a row holding a NaN). It checks that every rank merged the same rows and
 * computed the same loss and lse, bit for bit, and, on rank 0, that loss, lse and the
 * gathered gradient match the unsharded xent_cross_entropy_f32 on the full batch within
 * the accuracy docs/semantics.md states. Exit status 0: every check passed; 1: a mismatch (the
 * details on stderr). A call xent refuses aborts the whole job.
 *
 * Build and run from the repository root (ci/mpi.sh does this):
 *
 *   cargo build --release -p libxent
 *   mpicc -std=c99 -Wall -Wextra -Wpedantic -Werror -I include \
 *       crates/libxent/examples/mpi/vocab_parallel.c target/release/libxent.a \
 *       -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o vocab_parallel
 *   mpirun -np 3 ./vocab_parallel
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "xent.h"

/* MPI moves an xent_shard_row as 4 MPI_FLOATs, so it must be exactly that (C99 has no
 * _Static_assert: a negative array size stops the build instead). */
typedef char shard_row_is_four_floats[sizeof(xent_shard_row) == 4 * sizeof(float) ? 1 : -1];

static int rank;  /* this process's rank in MPI_COMM_WORLD */
static int ranks; /* the number of ranks */

/* Aborts the whole job when xent refused a call: the other ranks would otherwise wait
 * forever in the next collective. */
static void check_status(xent_status status, const char *call) {
    if (status != XENT_STATUS_OK) {
        fprintf(stderr, "rank %d: %s: %s\n", rank, call, xent_status_string(status));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

/* ---- The recipe ------------------------------------------------------------------- */

static MPI_Datatype row_type; /* one xent_shard_row: 4 contiguous MPI_FLOATs */
static MPI_Op merge_op;       /* merge_shard_rows, declared commutative */

/* The MPI user function: merges in[i] into inout[i] for the *len rows MPI passes. The merge
 * is commutative bit for bit (associative up to rounding), so it is declared commutative
 * and MPI may combine the ranks' rows in any order. Every rank must still receive the same
 * bits, or the ranks would disagree on the loss: Open MPI does, and check 1 below (in
 * run_case) verifies it. */
static void merge_shard_rows(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type; /* always row_type */
    xent_merge_shard_rows((const xent_shard_row *)in, (xent_shard_row *)inout, (size_t)*len);
}

static void create_merge_op(void) {
    MPI_Type_contiguous(4, MPI_FLOAT, &row_type);
    MPI_Type_commit(&row_type);
    MPI_Op_create(merge_shard_rows, /* commute = */ 1, &merge_op);
}

/* The sharded cross-entropy of `rows` rows whose columns are spread over the ranks; every
 * rank calls it with its own slice (cols columns from class_offset, row i at
 * logits + i * logits_stride). `targets` holds global class ids and
 * options->class_weights, when not NULL, all total_cols weights. `merged` receives the
 * merged rows (rows values, scratch for the caller), `loss` 1 or rows values (the same on
 * every rank), `grad` NULL or this slice's gradient, `lse` NULL or rows values. MPI's
 * default error handler aborts on a failed collective, so only xent's statuses need
 * checking. */
static void sharded_cross_entropy(const float *logits, size_t rows, size_t cols,
                                  size_t logits_stride, size_t class_offset,
                                  size_t total_cols, const int64_t *targets,
                                  const xent_options *options, xent_shard_row *merged,
                                  float *loss, float *grad, size_t grad_stride, float *lse) {
    /* 1. This slice's statistics of every row. */
    check_status(xent_shard_stats_f32(logits, rows, cols, logits_stride, class_offset,
                                      total_cols, targets, options, merged),
                 "xent_shard_stats_f32");
    /* 2. The whole rows' statistics, on every rank (MPI counts are int: rows <= INT_MAX). */
    MPI_Allreduce(MPI_IN_PLACE, merged, (int)rows, row_type, merge_op, MPI_COMM_WORLD);
    /* 3. The loss, lse and this slice's gradient from the merged rows. */
    check_status(xent_shard_finish_f32(logits, rows, cols, logits_stride, class_offset,
                                       total_cols, targets, options, merged, loss, grad,
                                       grad_stride, lse),
                 "xent_shard_finish_f32");
}

/* ---- The test batches ------------------------------------------------------------- */

/* Rank r holds the columns [slice_begin(r), slice_begin(r + 1)): one column each, then the
 * remaining total - n in proportion to r + 1. Uneven on purpose: the recipe does not care.
 * Needs total >= n. */
static size_t slice_begin(size_t total, int n, int r) {
    size_t weight_before = (size_t)r * (size_t)(r + 1) / 2;
    size_t weight_all = (size_t)n * (size_t)(n + 1) / 2;
    return (size_t)r + (total - (size_t)n) * weight_before / weight_all;
}

/* A small LCG, the same on every rank and platform (rand() is neither). */
static uint32_t lcg_state;

static uint32_t lcg_next(void) { /* 24 random bits */
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return lcg_state >> 8;
}

static float lcg_uniform(float lo, float hi) {
    return lo + (hi - lo) * ((float)lcg_next() / 16777216.0f);
}

/* A column of rank r's slice. */
static int64_t lcg_column_of(size_t total, int r) {
    size_t begin = slice_begin(total, ranks, r), end = slice_begin(total, ranks, r + 1);
    return (int64_t)(begin + (size_t)lcg_next() % (end - begin));
}

/* The ignore_index of the batch's ignored row (an option set may map it to its own). */
#define IGNORED (-100)

typedef struct {
    const char *name;
    size_t rows, cols;
    int masked_row; /* row 4: the whole slice of one rank is -inf */
    int nan_row;    /* row 5: a NaN in the first column */
} shape;

static const shape SHAPES[] = {
    {"37 x 1001", 37, 1001, 1, 1},
    {"5 x 32003", 5, 32003, 1, 0}, /* long rows: each slice spans several column blocks */
    {"64 x 4097 finite", 64, 4097, 0, 0}, /* no -inf or NaN: every reduced loss finite */
};

enum { NAN_ROW = 5 };

/* The full batch (packed, rows x cols), the same on every rank. Row i's target lies in
 * rank i % ranks's slice, so every slice holds targets; rows 0 to 5 are the edge cases. */
static void make_batch(const shape *s, float *logits, int64_t *targets) {
    size_t rows = s->rows, cols = s->cols, i, c;
    int middle = ranks / 2, last = ranks - 1;
    lcg_state = 20261128u;
    for (i = 0; i < rows * cols; i++) {
        logits[i] = lcg_uniform(-4.0f, 4.0f);
    }
    for (i = 0; i < rows; i++) {
        targets[i] = lcg_column_of(cols, (int)(i % (size_t)ranks));
    }
    /* Row 0: the target is the first class. */
    targets[0] = 0;
    /* Row 1: the target is the last class, predicted confidently (p_y close to 1). */
    targets[1] = (int64_t)cols - 1;
    logits[1 * cols + cols - 1] = 20.0f;
    /* Row 2: the max lies in the last slice, far from the target (in the middle slice). */
    logits[2 * cols + slice_begin(cols, ranks, last)] = 40.0f;
    targets[2] = lcg_column_of(cols, middle);
    /* Row 3: ignored. */
    targets[3] = IGNORED;
    /* Row 4: the middle rank's whole slice is masked (-inf), the target elsewhere. With a
     * single rank that would be the whole row, another case (a NaN loss): skipped. */
    if (s->masked_row && ranks > 1) {
        for (c = slice_begin(cols, ranks, middle); c < slice_begin(cols, ranks, middle + 1);
             c++) {
            logits[4 * cols + c] = -INFINITY;
        }
        targets[4] = lcg_column_of(cols, 0);
    }
    /* Row 5: one NaN, in the first slice: the row's loss, lse and gradient are NaN on every
     * rank, every other row is unaffected. */
    if (s->nan_row && rows > NAN_ROW) {
        logits[NAN_ROW * cols] = NAN;
    }
}

/* Every class c weighs (c % 7) / 4: some weigh 0, the largest 1.5. Label smoothing over a
 * masked (-inf) class of weight 0 adds 0 * inf = NaN to the row's loss, as in PyTorch:
 * the weighted smoothed sums of the shapes with a masked row are NaN on both sides, and
 * the finite shape checks their value. */
static float class_weight(size_t c) {
    return (float)(c % 7) * 0.25f;
}
static const float MAX_CLASS_WEIGHT = 1.5f;

/* ---- The option sets -------------------------------------------------------------- */

enum grad_mode { NO_GRAD, GRAD_BUFFER, GRAD_IN_PLACE };

typedef struct {
    const char *name;
    uint32_t reduction;
    float label_smoothing, z_loss, softcap, grad_scale;
    int weighted;         /* class_weights: class_weight(c) */
    int64_t ignore_index; /* the batch's IGNORED rows get this target */
    int ignore_more;      /* also ignore every row i with i % 5 == 3 */
    enum grad_mode grad;
} option_set;

static const option_set SETS[] = {
    {"mean, no grad", XENT_REDUCTION_MEAN, 0.0f, 0.0f, 0.0f, 1.0f, 0, IGNORED, 0, NO_GRAD},
    {"sum+smoothing+weights", XENT_REDUCTION_SUM, 0.1f, 0.0f, 0.0f, 1.0f, 1, IGNORED, 0,
     GRAD_BUFFER},
    {"none+z_loss+softcap", XENT_REDUCTION_NONE, 0.0f, 1e-4f, 30.0f, 1.0f, 0, IGNORED, 0,
     GRAD_BUFFER},
    {"mean+ignore+scale+smoothing, in place", XENT_REDUCTION_MEAN, 0.05f, 0.0f, 0.0f, 0.5f, 0,
     -1, 1, GRAD_IN_PLACE},
};

/* ---- Checking --------------------------------------------------------------------- */

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes == 0 ? 1 : bytes);
    if (p == NULL) {
        fprintf(stderr, "rank %d: out of memory\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return p;
}

/* The bits the padding between rows holds: a quiet NaN, so a read of the padding would
 * show in the results, and a write is seen by padding_changes. */
static const uint32_t PADDING_BITS = 0x7fdeadbeu;

static void fill_padding(float *buffer, size_t rows, size_t cols, size_t stride) {
    size_t i, c;
    for (i = 0; i < rows; i++) {
        for (c = cols; c < stride; c++) {
            memcpy(&buffer[i * stride + c], &PADDING_BITS, sizeof PADDING_BITS);
        }
    }
}

static long padding_changes(const float *buffer, size_t rows, size_t cols, size_t stride) {
    long changes = 0;
    size_t i, c;
    for (i = 0; i < rows; i++) {
        for (c = cols; c < stride; c++) {
            changes += memcmp(&buffer[i * stride + c], &PADDING_BITS, sizeof PADDING_BITS) != 0;
        }
    }
    return changes;
}

/* How many of `count` elements of `size` bytes differ, bit for bit, from rank 0's. */
static long differences_from_rank0(const void *mine, int count, MPI_Datatype type,
                                   size_t size) {
    unsigned char *root = xmalloc((size_t)count * size);
    long differences = 0;
    int k;
    memcpy(root, mine, (size_t)count * size);
    MPI_Bcast(root, count, type, 0, MPI_COMM_WORLD);
    for (k = 0; k < count; k++) {
        differences +=
            memcmp(root + (size_t)k * size, (const unsigned char *)mine + (size_t)k * size,
                   size) != 0;
    }
    free(root);
    return differences;
}

/* A comparison of sharded against unsharded values: the largest finite |difference| seen,
 * and the mismatches (the first few printed). */
typedef struct {
    const char *label; /* "<shape> | <option set>" */
    double max_diff;
    long mismatches;
} comparison;

/* Counts a mismatch unless `got` is within `tol` of `want`, or both are NaN, or both the
 * same infinity. `what`, row and col (col < 0: none) name the value in the message. */
static void compare(comparison *cmp, const char *what, size_t row, long col, float got,
                    float want, double tol) {
    int bad;
    if (isnan(got) || isnan(want)) {
        bad = !(isnan(got) && isnan(want));
    } else if (isinf(got) || isinf(want)) {
        bad = got != want;
    } else {
        double diff = fabs((double)got - (double)want);
        if (diff > cmp->max_diff) {
            cmp->max_diff = diff;
        }
        bad = diff > tol;
    }
    if (bad) {
        if (cmp->mismatches < 8) {
            char where[64];
            if (col < 0) {
                snprintf(where, sizeof where, "%s[%zu]", what, row);
            } else {
                snprintf(where, sizeof where, "%s[%zu][%ld]", what, row, col);
            }
            fprintf(stderr, "MISMATCH %s | %s: sharded %.9g, unsharded %.9g (tolerance %.3g)\n",
                    cmp->label, where, (double)got, (double)want, tol);
        }
        cmp->mismatches++;
    }
}

/* Runs one option set over one batch through the recipe and checks it; returns the number
 * of failed checks summed over all ranks (the same on every rank). */
static long run_case(const shape *s, const float *full, const int64_t *batch_targets,
                     const float *weights, const option_set *set) {
    const size_t rows = s->rows, total = s->cols;
    const size_t offset = slice_begin(total, ranks, rank);
    const size_t cols = slice_begin(total, ranks, rank + 1) - offset;
    const size_t stride = cols + 3;      /* padded rows, to exercise the strides */
    const size_t grad_stride = cols + 5; /* another padding for a separate gradient */
    const size_t loss_count = set->reduction == XENT_REDUCTION_NONE ? rows : 1;
    xent_options options = xent_options_default();
    int64_t *targets = xmalloc(rows * sizeof *targets);
    float *logits = xmalloc(rows * stride * sizeof *logits);
    float *grad = NULL;
    size_t grad_stride_used = 0;
    xent_shard_row *merged = xmalloc(rows * sizeof *merged);
    float *loss = xmalloc(loss_count * sizeof *loss);
    float *lse = xmalloc(rows * sizeof *lse);
    float *grad_packed = NULL;
    long errors = 0, total_errors = 0;
    size_t i, c;
    char label[128];
    comparison cmp;

    options.reduction = set->reduction;
    options.ignore_index = set->ignore_index;
    options.label_smoothing = set->label_smoothing;
    options.z_loss = set->z_loss;
    options.softcap = set->softcap;
    options.grad_scale = set->grad_scale;
    options.class_weights = set->weighted ? weights : NULL; /* the global array */
    for (i = 0; i < rows; i++) {
        int ignored = batch_targets[i] == IGNORED || (set->ignore_more && i % 5 == 3);
        targets[i] = ignored ? set->ignore_index : batch_targets[i];
    }

    /* This rank's slice, copied out of the full batch into its own padded buffer. */
    for (i = 0; i < rows; i++) {
        memcpy(&logits[i * stride], &full[i * total + offset], cols * sizeof *logits);
    }
    fill_padding(logits, rows, cols, stride);
    if (set->grad == GRAD_BUFFER) {
        grad = xmalloc(rows * grad_stride * sizeof *grad);
        grad_stride_used = grad_stride;
        fill_padding(grad, rows, cols, grad_stride);
    } else if (set->grad == GRAD_IN_PLACE) {
        grad = logits; /* the gradient overwrites the logits */
        grad_stride_used = stride;
    }

    sharded_cross_entropy(logits, rows, cols, stride, offset, total, targets, &options, merged,
                          loss, grad, grad_stride_used, lse);

    /* Every rank merged the same rows and computed the same loss and lse, bit for bit. */
    errors += differences_from_rank0(merged, (int)rows, row_type, sizeof *merged);
    errors += differences_from_rank0(loss, (int)loss_count, MPI_FLOAT, sizeof *loss);
    errors += differences_from_rank0(lse, (int)rows, MPI_FLOAT, sizeof *lse);
    /* xent left the padding alone. */
    errors += padding_changes(logits, rows, cols, stride);
    if (set->grad == GRAD_BUFFER) {
        errors += padding_changes(grad, rows, cols, grad_stride);
    }

    /* Rank 0 gathers the gradient slices: rank r's rows x cols_r values, packed. */
    if (grad != NULL) {
        int *counts = NULL, *displs = NULL;
        float *packed = xmalloc(rows * cols * sizeof *packed);
        int r;
        for (i = 0; i < rows; i++) {
            memcpy(&packed[i * cols], &grad[i * grad_stride_used], cols * sizeof *packed);
        }
        if (rank == 0) {
            counts = xmalloc((size_t)ranks * sizeof *counts);
            displs = xmalloc((size_t)ranks * sizeof *displs);
            for (r = 0; r < ranks; r++) {
                size_t begin = slice_begin(total, ranks, r);
                counts[r] = (int)(rows * (slice_begin(total, ranks, r + 1) - begin));
                displs[r] = (int)(rows * begin);
            }
            grad_packed = xmalloc(rows * total * sizeof *grad_packed);
        }
        MPI_Gatherv(packed, (int)(rows * cols), MPI_FLOAT, grad_packed, counts, displs,
                    MPI_FLOAT, 0, MPI_COMM_WORLD);
        free(packed);
        free(counts);
        free(displs);
    }

    snprintf(label, sizeof label, "%s | %s", s->name, set->name);
    cmp.label = label;
    cmp.max_diff = 0.0;
    cmp.mismatches = 0;
    if (rank == 0) {
        /* The unsharded call on the full batch, and docs/semantics.md's accuracy bounds. */
        float *ref_loss = xmalloc(loss_count * sizeof *ref_loss);
        float *ref_lse = xmalloc(rows * sizeof *ref_lse);
        float *ref_grad = grad != NULL ? xmalloc(rows * total * sizeof *ref_grad) : NULL;
        float *sharded_grad = grad != NULL ? xmalloc(rows * total * sizeof *sharded_grad) : NULL;
        double *row_max = xmalloc(rows * sizeof *row_max);
        double largest_max = 0.0, counted_weight = 0.0, scale, grad_abs_tol;
        double loss_diff, lse_diff;
        int r;

        check_status(xent_cross_entropy_f32(full, rows, total, total, targets, &options,
                                            ref_loss, ref_grad, total, ref_lse),
                     "xent_cross_entropy_f32");

        /* m_i, the max of each row's softcapped logits (NaN for the NaN row), and W, the
         * weight of the counted targets. */
        for (i = 0; i < rows; i++) {
            double m = -INFINITY;
            for (c = 0; c < total; c++) {
                double x = full[i * total + c];
                if (set->softcap > 0.0f) {
                    x = set->softcap * tanh(x / set->softcap);
                }
                m = isnan(x) || x > m ? x : m;
                if (isnan(m)) {
                    break;
                }
            }
            row_max[i] = m;
            if (isfinite(m) && fabs(m) > largest_max) {
                largest_max = fabs(m);
            }
            if (targets[i] != set->ignore_index) {
                counted_weight += set->weighted ? class_weight((size_t)targets[i]) : 1.0;
            }
        }

        if (set->reduction == XENT_REDUCTION_NONE) {
            for (i = 0; i < rows; i++) {
                compare(&cmp, "loss", i, -1, loss[i], ref_loss[i],
                        1e-5 * fabs(ref_loss[i]) + 1e-6 * (1.0 + fabs(row_max[i])));
            }
        } else {
            compare(&cmp, "loss", 0, -1, loss[0], ref_loss[0],
                    1e-5 * fabs(ref_loss[0]) + 1e-6 * (1.0 + largest_max));
        }
        loss_diff = cmp.max_diff;
        cmp.max_diff = 0.0;
        for (i = 0; i < rows; i++) {
            compare(&cmp, "lse", i, -1, lse[i], ref_lse[i],
                    1e-5 * fabs(ref_lse[i]) + 1e-6 * (1.0 + fabs(row_max[i])));
        }
        lse_diff = cmp.max_diff;
        cmp.max_diff = 0.0;

        if (grad != NULL) {
            /* s = g / W under mean, g otherwise; under a softcap docs/semantics.md widens the
             * absolute bound by 1 + c/2 (x' = c tanh(x/c) is itself rounded). */
            scale = set->grad_scale;
            if (set->reduction == XENT_REDUCTION_MEAN) {
                scale /= counted_weight;
            }
            grad_abs_tol = 1e-6 * fabs(scale) * (set->weighted ? MAX_CLASS_WEIGHT : 1.0) *
                           (1.0 + set->softcap / 2.0);
            for (r = 0; r < ranks; r++) { /* unpack the gathered slices */
                size_t begin = slice_begin(total, ranks, r);
                size_t width = slice_begin(total, ranks, r + 1) - begin;
                for (i = 0; i < rows; i++) {
                    memcpy(&sharded_grad[i * total + begin],
                           &grad_packed[rows * begin + i * width], width * sizeof(float));
                }
            }
            for (i = 0; i < rows; i++) {
                for (c = 0; c < total; c++) {
                    float want = ref_grad[i * total + c];
                    compare(&cmp, "grad", i, (long)c, sharded_grad[i * total + c], want,
                            1e-5 * fabs(want) + grad_abs_tol);
                }
            }
        }

        /* The NaN row is NaN in its lse, its loss and its whole gradient, on every rank's
         * slice (only the first slice holds the NaN). */
        if (s->nan_row && rows > NAN_ROW && targets[NAN_ROW] != set->ignore_index) {
            int all_nan = isnan(lse[NAN_ROW]) && isnan(loss[loss_count == 1 ? 0 : NAN_ROW]);
            for (c = 0; grad != NULL && c < total; c++) {
                all_nan = all_nan && isnan(sharded_grad[NAN_ROW * total + c]);
            }
            if (!all_nan) {
                fprintf(stderr, "MISMATCH %s | row %d holds a NaN but is not NaN throughout\n",
                        label, NAN_ROW);
                cmp.mismatches++;
            }
        }
        errors += cmp.mismatches;

        MPI_Allreduce(&errors, &total_errors, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
        if (set->reduction == XENT_REDUCTION_NONE) {
            printf("ranks %d | %s | %s | loss[0] %.6f (unsharded %.6f)", ranks, s->name,
                   set->name, (double)loss[0], (double)ref_loss[0]);
        } else {
            printf("ranks %d | %s | %s | loss %.6f (unsharded %.6f)", ranks, s->name,
                   set->name, (double)loss[0], (double)ref_loss[0]);
        }
        printf(" | max |dloss| %.2g | max |dlse| %.2g", loss_diff, lse_diff);
        if (grad != NULL) {
            printf(" | max |dgrad| %.2g", cmp.max_diff);
        }
        if (total_errors == 0) {
            printf(" | ok\n");
        } else {
            printf(" | FAILED (%ld)\n", total_errors);
        }
        fflush(stdout);
        free(ref_loss);
        free(ref_lse);
        free(ref_grad);
        free(sharded_grad);
        free(row_max);
    } else {
        MPI_Allreduce(&errors, &total_errors, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    }
    if (errors > 0 && rank != 0) {
        fprintf(stderr, "MISMATCH %s | rank %d: %ld values differ from rank 0's or padding "
                "changed\n", label, rank, errors);
    }

    free(targets);
    free(logits);
    if (set->grad == GRAD_BUFFER) {
        free(grad);
    }
    free(merged);
    free(loss);
    free(lse);
    free(grad_packed);
    return total_errors;
}

/* A slice reaching past the vocabulary (class_offset + cols > total_cols) is refused with
 * XENT_STATUS_INVALID_SHAPE before anything is written. Returns the failures over all
 * ranks. */
static long refusal_check(void) {
    const float logits[2 * 3] = {0.5f, -1.0f, 2.0f, 1.0f, 0.0f, -0.5f};
    const int64_t targets[2] = {0, 7};
    xent_options options = xent_options_default();
    xent_shard_row out[2], before[2];
    xent_status status;
    long errors = 0, total_errors = 0;

    memset(out, 0xa5, sizeof out);
    memcpy(before, out, sizeof out);
    status = xent_shard_stats_f32(logits, 2, 3, 3, /* class_offset = */ 6,
                                  /* total_cols = */ 8, targets, &options, out);
    errors += status != XENT_STATUS_INVALID_SHAPE;
    errors += memcmp(out, before, sizeof out) != 0;
    if (errors > 0) {
        fprintf(stderr, "MISMATCH rank %d: class_offset + cols > total_cols: status %d (%s), "
                "out %s\n", rank, (int)status, xent_status_string(status),
                memcmp(out, before, sizeof out) == 0 ? "unchanged" : "CHANGED");
    }
    MPI_Allreduce(&errors, &total_errors, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("ranks %d | refusal | class_offset + cols > total_cols: invalid shape, out "
               "unchanged | %s\n", ranks, total_errors == 0 ? "ok" : "FAILED");
    }
    return total_errors;
}

int main(int argc, char **argv) {
    const size_t shape_count = sizeof SHAPES / sizeof SHAPES[0];
    const size_t set_count = sizeof SETS / sizeof SETS[0];
    long failed = 0;
    size_t k, j, c;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    /* MPI runs one process per core: xent's own threads would only compete for it. */
    check_status(xent_set_num_threads(1), "xent_set_num_threads");
    create_merge_op();
    if (rank == 0) {
        printf("xent %s (%s kernels), %d ranks, 1 thread each\n", xent_version(),
               xent_simd_level(), ranks);
    }

    for (k = 0; k < shape_count; k++) {
        const shape *s = &SHAPES[k];
        float *full = xmalloc(s->rows * s->cols * sizeof *full);
        int64_t *targets = xmalloc(s->rows * sizeof *targets);
        float *weights = xmalloc(s->cols * sizeof *weights);
        if (s->cols < (size_t)ranks) {
            if (rank == 0) {
                fprintf(stderr, "%s: more ranks than columns\n", s->name);
            }
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        make_batch(s, full, targets);
        for (c = 0; c < s->cols; c++) {
            weights[c] = class_weight(c);
        }
        for (j = 0; j < set_count; j++) {
            failed += run_case(s, full, targets, weights, &SETS[j]) != 0;
        }
        free(full);
        free(targets);
        free(weights);
    }
    failed += refusal_check() != 0;

    if (rank == 0) {
        size_t checks = shape_count * set_count + 1;
        if (failed == 0) {
            printf("all %zu checks passed on %d ranks\n", checks, ranks);
        } else {
            printf("%ld of %zu checks FAILED on %d ranks\n", failed, checks, ranks);
        }
    }
    MPI_Op_free(&merge_op);
    MPI_Type_free(&row_type);
    MPI_Finalize();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
