// Trains a linear softmax classifier through xent.hpp, the C++17 wrapper of xent's C ABI.
//
// The task is the C example's (examples/c/softmax_classifier.c): 10 Gaussian blobs in 16
// dimensions drawn with a fixed seed, a linear model trained by minibatch SGD on the
// fused loss and gradient, written over the logits. Here the loss uses label smoothing,
// the logits live in a padded xent::matrix, and every refused call would throw
// xent::error. It prints the loss per epoch, the held-out accuracy, the softmax of one
// held-out point, and what a refused call looks like.
//
// Build (from the repository root, after `cargo build --release -p libxent`), one line:
//
//   c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror -I include
//       -I crates/libxent/examples/cpp crates/libxent/examples/cpp/softmax_classifier.cpp
//       -L target/release -lxent -Wl,-rpath,"$PWD/target/release" -o softmax_classifier_cpp
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <vector>

#include "xent.hpp"

namespace {

constexpr std::size_t classes = 10;
constexpr std::size_t features = 16;
constexpr std::size_t train_size = 2000;
constexpr std::size_t test_size = 500;
constexpr std::size_t batch_size = 64;
constexpr int epochs = 12;
constexpr float learning_rate = 0.5f;
constexpr float centre_spread = 2.0f;

/// SplitMix64 with a fixed seed.
class generator {
public:
    std::uint64_t next() {
        std::uint64_t z = (state_ += 0x9e3779b97f4a7c15u);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
        return z ^ (z >> 31);
    }
    float uniform() { return static_cast<float>(next() >> 40) / static_cast<float>(1u << 24); }
    float normal() {
        float sum = 0.0f;
        for (int k = 0; k < 12; ++k) {
            sum += uniform();
        }
        return sum - 6.0f;
    }

private:
    std::uint64_t state_ = 0x5eedc0de;
};

struct dataset {
    xent::matrix x{train_size + test_size, features};
    std::vector<std::int64_t> y = std::vector<std::int64_t>(train_size + test_size);
};

dataset generate(generator &rng) {
    dataset data;
    xent::matrix centre(classes, features);
    for (std::size_t c = 0; c < classes; ++c) {
        for (std::size_t f = 0; f < features; ++f) {
            centre(c, f) = centre_spread * (2.0f * rng.uniform() - 1.0f);
        }
    }
    for (std::size_t i = 0; i < train_size + test_size; ++i) {
        const std::size_t c = static_cast<std::size_t>(rng.next() % classes);
        data.y[i] = static_cast<std::int64_t>(c);
        for (std::size_t f = 0; f < features; ++f) {
            data.x(i, f) = centre(c, f) + rng.normal();
        }
    }
    return data;
}

struct model {
    xent::matrix w{classes, features};
    std::vector<float> b = std::vector<float>(classes);

    /// logits row k = W x_(points[k]) + b.
    void forward(const dataset &data, const std::vector<std::size_t> &points,
                 xent::matrix_view<float> logits) const {
        for (std::size_t k = 0; k < points.size(); ++k) {
            for (std::size_t c = 0; c < classes; ++c) {
                float z = b[c];
                for (std::size_t f = 0; f < features; ++f) {
                    z += w(c, f) * data.x(points[k], f);
                }
                logits(k, c) = z;
            }
        }
    }
};

}  // namespace

int main() {
    std::cout << "xent " << xent::version() << " (" << xent::simd_level() << " kernels)\n";
    generator rng;
    const dataset data = generate(rng);
    model m;
    const auto opts = xent::options().label_smoothing(0.05f);
    // Logits padded to 16 floats a row: strides are part of every view.
    xent::matrix logits(std::max(batch_size, test_size), classes, 16);

    std::vector<std::size_t> order(train_size);
    std::iota(order.begin(), order.end(), std::size_t{0});
    for (int epoch = 1; epoch <= epochs; ++epoch) {
        for (std::size_t i = train_size - 1; i > 0; --i) {
            std::swap(order[i], order[static_cast<std::size_t>(rng.next() % (i + 1))]);
        }
        double epoch_loss = 0.0;
        for (std::size_t start = 0; start < train_size; start += batch_size) {
            const std::size_t count = std::min(batch_size, train_size - start);
            const std::vector<std::size_t> points(order.begin() + static_cast<std::ptrdiff_t>(start),
                                                  order.begin() + static_cast<std::ptrdiff_t>(start + count));
            std::vector<std::int64_t> targets(count);
            for (std::size_t k = 0; k < count; ++k) {
                targets[k] = data.y[points[k]];
            }
            const auto batch = logits.view().rows_from(0, count);
            m.forward(data, points, batch);
            const float loss = xent::cross_entropy_grad_in_place(batch, targets, opts)[0];
            epoch_loss += static_cast<double>(loss) * static_cast<double>(count);
            for (std::size_t k = 0; k < count; ++k) {
                for (std::size_t c = 0; c < classes; ++c) {
                    const float g = learning_rate * batch(k, c);
                    m.b[c] -= g;
                    for (std::size_t f = 0; f < features; ++f) {
                        m.w(c, f) -= g * data.x(points[k], f);
                    }
                }
            }
        }
        std::printf("epoch %2d  mean training loss %.4f\n", epoch,
                    epoch_loss / static_cast<double>(train_size));
    }

    std::vector<std::size_t> held_out(test_size);
    std::iota(held_out.begin(), held_out.end(), train_size);
    const std::vector<std::int64_t> targets(data.y.begin() + static_cast<std::ptrdiff_t>(train_size),
                                            data.y.end());
    const auto test_logits = logits.view().rows_from(0, test_size);
    m.forward(data, held_out, test_logits);
    const float loss = xent::cross_entropy(test_logits, targets, opts)[0];
    std::size_t correct = 0;
    for (std::size_t k = 0; k < test_size; ++k) {
        const auto row = test_logits.row(k);
        const auto best = std::max_element(row.begin(), row.end()) - row.begin();
        correct += static_cast<std::int64_t>(best) == targets[k];
    }
    std::printf("held-out loss %.4f\n", static_cast<double>(loss));
    std::printf("held-out accuracy %.3f (%zu of %zu)\n",
                static_cast<double>(correct) / static_cast<double>(test_size), correct, test_size);

    xent::matrix probs(1, classes);
    xent::softmax(test_logits.rows_from(0, 1), probs.view());
    std::printf("p(class %lld | first held-out point) = %.3f\n",
                static_cast<long long>(targets[0]),
                static_cast<double>(probs(0, static_cast<std::size_t>(targets[0]))));

    try {
        const std::vector<std::int64_t> wrong(test_size, static_cast<std::int64_t>(classes));
        xent::cross_entropy(test_logits, wrong, opts);
        std::puts("a target out of range was accepted");
        return 1;
    } catch (const xent::error &e) {
        std::printf("refused (status %d): %s\n", static_cast<int>(e.status()), e.what());
    }
    return 0;
}
