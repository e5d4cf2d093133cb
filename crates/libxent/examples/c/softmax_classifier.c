/*
 * Trains a linear softmax classifier through xent's C ABI.
 *
 * The data is generated: 10 classes of points in 16 dimensions, each class a Gaussian
 * blob (unit variance) around a random centre, drawn with a fixed seed, so every run
 * prints the same numbers. The model is logits = W x + b, trained by minibatch SGD: each
 * step computes a batch's logits, lets xent_cross_entropy_f32 overwrite them with the
 * gradient of the mean loss (grad == logits: in place), and back-propagates it into W
 * and b. It prints the mean training loss of every epoch, then the held-out loss and
 * accuracy, and exits with status 1 if any call fails.
 *
 * Build (from the repository root, after `cargo build --release -p libxent`):
 *
 *   cc -std=c99 -Wall -Wextra -Wpedantic -Werror -I include \
 *      crates/libxent/examples/c/softmax_classifier.c \
 *      -L target/release -lxent -Wl,-rpath,"$PWD/target/release" -o softmax_classifier
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "xent.h"

enum {
    CLASSES = 10,
    FEATURES = 16,
    TRAIN = 2000,
    TEST = 500,
    BATCH = 64,
    EPOCHS = 12
};

static const float LEARNING_RATE = 0.5f;
static const float CENTRE_SPREAD = 2.0f; /* centres uniform in [-2, 2]^FEATURES */

/* SplitMix64: a small generator with a fixed seed, so every run is the same. */
static uint64_t rng_state = 0x5eedc0de;

static uint64_t next_u64(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static float uniform(void) {
    return (float)(next_u64() >> 40) / (float)(1u << 24);
}

/* Roughly standard normal: the sum of 12 uniforms, minus 6. */
static float normal(void) {
    float sum = 0.0f;
    int k;
    for (k = 0; k < 12; k++) {
        sum += uniform();
    }
    return sum - 6.0f;
}

/* Points and their classes. */
typedef struct {
    float x[TRAIN + TEST][FEATURES];
    int64_t y[TRAIN + TEST];
} dataset;

static void generate(dataset *data) {
    float centre[CLASSES][FEATURES];
    int c, f, i;
    for (c = 0; c < CLASSES; c++) {
        for (f = 0; f < FEATURES; f++) {
            centre[c][f] = CENTRE_SPREAD * (2.0f * uniform() - 1.0f);
        }
    }
    for (i = 0; i < TRAIN + TEST; i++) {
        c = (int)(next_u64() % CLASSES);
        data->y[i] = c;
        for (f = 0; f < FEATURES; f++) {
            data->x[i][f] = centre[c][f] + normal();
        }
    }
}

/* The linear model. */
typedef struct {
    float w[CLASSES][FEATURES];
    float b[CLASSES];
} model;

/* logits[k] = W x_(first + k) + b for `count` consecutive points of `order`. */
static void forward(const model *m, const dataset *data, const int *order, int count,
                    float logits[][CLASSES]) {
    int k, c, f;
    for (k = 0; k < count; k++) {
        const float *x = data->x[order[k]];
        for (c = 0; c < CLASSES; c++) {
            float z = m->b[c];
            for (f = 0; f < FEATURES; f++) {
                z += m->w[c][f] * x[f];
            }
            logits[k][c] = z;
        }
    }
}

/* Exits with the status's text if a call failed. */
static void check(xent_status status, const char *call) {
    if (status != XENT_STATUS_OK) {
        fprintf(stderr, "%s failed: %s\n", call, xent_status_string(status));
        exit(1);
    }
}

int main(void) {
    static dataset data;
    static model m;
    static float logits[TEST > BATCH ? TEST : BATCH][CLASSES];
    int order[TRAIN + TEST];
    int64_t targets[TEST > BATCH ? TEST : BATCH];
    xent_options options = xent_options_default(); /* mean reduction, PyTorch's defaults */
    int epoch, start, i, k, c, f, correct = 0;
    float loss;

    printf("xent %s (%s kernels)\n", xent_version(), xent_simd_level());
    generate(&data);
    for (i = 0; i < TRAIN + TEST; i++) {
        order[i] = i;
    }

    for (epoch = 1; epoch <= EPOCHS; epoch++) {
        double epoch_loss = 0.0;
        for (i = TRAIN - 1; i > 0; i--) { /* shuffle the training points */
            int j = (int)(next_u64() % (uint64_t)(i + 1));
            int t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (start = 0; start < TRAIN; start += BATCH) {
            int count = TRAIN - start < BATCH ? TRAIN - start : BATCH;
            forward(&m, &data, order + start, count, logits);
            for (k = 0; k < count; k++) {
                targets[k] = data.y[order[start + k]];
            }
            /* The loss, and d(loss)/d(logits) written over the logits. */
            check(xent_cross_entropy_f32(&logits[0][0], (size_t)count, CLASSES, CLASSES,
                                         targets, &options, &loss, &logits[0][0], CLASSES,
                                         NULL),
                  "xent_cross_entropy_f32");
            epoch_loss += (double)loss * count;
            for (k = 0; k < count; k++) { /* dW = G^T X, db = sum of G's rows */
                const float *x = data.x[order[start + k]];
                for (c = 0; c < CLASSES; c++) {
                    float g = LEARNING_RATE * logits[k][c];
                    m.b[c] -= g;
                    for (f = 0; f < FEATURES; f++) {
                        m.w[c][f] -= g * x[f];
                    }
                }
            }
        }
        printf("epoch %2d  mean training loss %.4f\n", epoch, epoch_loss / TRAIN);
    }

    /* Held out: the loss alone (no gradient), and the accuracy of the largest logit. */
    forward(&m, &data, order + TRAIN, TEST, logits);
    for (k = 0; k < TEST; k++) {
        targets[k] = data.y[TRAIN + k];
    }
    check(xent_cross_entropy_f32(&logits[0][0], TEST, CLASSES, CLASSES, targets, NULL, &loss,
                                 NULL, 0, NULL),
          "xent_cross_entropy_f32");
    for (k = 0; k < TEST; k++) {
        int best = 0;
        for (c = 1; c < CLASSES; c++) {
            if (logits[k][c] > logits[k][best]) {
                best = c;
            }
        }
        correct += best == targets[k];
    }
    printf("held-out loss %.4f\n", loss);
    printf("held-out accuracy %.3f (%d of %d)\n", (double)correct / TEST, correct, TEST);
    return 0;
}
