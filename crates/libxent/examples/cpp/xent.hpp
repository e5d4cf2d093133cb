// xent.hpp: a header-only C++17 wrapper over xent's C ABI (xent.h).
//
// - xent::span<T> and xent::matrix_view<T>: non-owning views of contiguous values and of
//   strided rows (C++17 has no std::span). They convert from std::vector and xent::matrix.
// - xent::matrix: rows of floats owned by a std::vector, with an optional row padding.
// - xent::options: the C options plus the class weights they point to, owned.
// - The functions mirror the C ones; every refused call throws xent::error, which carries
//   the xent_status and its text. Sizes the C ABI cannot see (how many targets, lse and
//   dloss values a span holds, the gradient's shape) are checked here first and refused
//   with XENT_STATUS_INVALID_SHAPE, so a wrong size never reaches memory.
#ifndef XENT_HPP
#define XENT_HPP

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "xent.h"

namespace xent {

/// A call xent refused: its status, and a message naming the call and the status's text.
class error : public std::runtime_error {
public:
    error(xent_status status, const std::string &context)
        : std::runtime_error(context + ": " + xent_status_string(status)), status_(status) {}

    /// Why the call was refused.
    xent_status status() const noexcept { return status_; }

private:
    xent_status status_;
};

namespace detail {

/// Throws xent::error unless the call succeeded.
inline void check(xent_status status, const char *call) {
    if (status != XENT_STATUS_OK) {
        throw error(status, call);
    }
}

/// Throws xent::error(XENT_STATUS_INVALID_SHAPE) unless `ok`.
inline void require_shape(bool ok, const char *call, const char *what) {
    if (!ok) {
        throw error(XENT_STATUS_INVALID_SHAPE, std::string(call) + " (" + what + ")");
    }
}

}  // namespace detail

/// `size` contiguous values of type T, not owned.
template <class T>
class span {
public:
    constexpr span() noexcept = default;
    constexpr span(T *data, std::size_t size) noexcept : data_(data), size_(size) {}

    /// A view of a container's contiguous values (std::vector, std::array, ...).
    template <class Container,
              class = std::enable_if_t<std::is_convertible_v<
                  decltype(std::declval<Container &>().data()), T *>>>
    constexpr span(Container &values) noexcept : data_(values.data()), size_(values.size()) {}

    constexpr T *data() const noexcept { return data_; }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr T &operator[](std::size_t i) const noexcept { return data_[i]; }
    constexpr T *begin() const noexcept { return data_; }
    constexpr T *end() const noexcept { return data_ + size_; }

private:
    T *data_ = nullptr;
    std::size_t size_ = 0;
};

/// `rows` rows of `cols` values of type T, row i starting at data + i * stride; not owned.
template <class T>
class matrix_view {
public:
    constexpr matrix_view() noexcept = default;
    constexpr matrix_view(T *data, std::size_t rows, std::size_t cols, std::size_t stride) noexcept
        : data_(data), rows_(rows), cols_(cols), stride_(stride) {}
    constexpr matrix_view(T *data, std::size_t rows, std::size_t cols) noexcept
        : matrix_view(data, rows, cols, cols) {}

    /// A read-only view of a writable one.
    template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
    constexpr matrix_view(const matrix_view<U> &other) noexcept
        : matrix_view(other.data(), other.rows(), other.cols(), other.stride()) {}

    constexpr T *data() const noexcept { return data_; }
    constexpr std::size_t rows() const noexcept { return rows_; }
    constexpr std::size_t cols() const noexcept { return cols_; }
    constexpr std::size_t stride() const noexcept { return stride_; }
    constexpr span<T> row(std::size_t i) const noexcept { return {data_ + i * stride_, cols_}; }
    constexpr T &operator()(std::size_t i, std::size_t c) const noexcept {
        return data_[i * stride_ + c];
    }

    /// Rows first, first + 1, ..., first + count - 1.
    constexpr matrix_view rows_from(std::size_t first, std::size_t count) const noexcept {
        return {data_ + first * stride_, count, cols_, stride_};
    }

private:
    T *data_ = nullptr;
    std::size_t rows_ = 0;
    std::size_t cols_ = 0;
    std::size_t stride_ = 0;
};

/// `rows` rows of `cols` floats, owned, each row padded to `stride` values.
class matrix {
public:
    matrix(std::size_t rows, std::size_t cols, std::size_t stride)
        : values_(rows == 0 ? 0 : (rows - 1) * stride + cols), rows_(rows), cols_(cols),
          stride_(stride) {
        detail::require_shape(stride >= cols, "xent::matrix", "stride < cols");
    }
    matrix(std::size_t rows, std::size_t cols) : matrix(rows, cols, cols) {}

    matrix_view<float> view() noexcept { return {values_.data(), rows_, cols_, stride_}; }
    matrix_view<const float> view() const noexcept {
        return {values_.data(), rows_, cols_, stride_};
    }
    float &operator()(std::size_t i, std::size_t c) noexcept { return values_[i * stride_ + c]; }
    float operator()(std::size_t i, std::size_t c) const noexcept {
        return values_[i * stride_ + c];
    }
    std::size_t rows() const noexcept { return rows_; }
    std::size_t cols() const noexcept { return cols_; }

private:
    std::vector<float> values_;
    std::size_t rows_;
    std::size_t cols_;
    std::size_t stride_;
};

/// The options of a cross-entropy call, PyTorch's defaults to start with; owns its class
/// weights. The setters chain: `xent::options().label_smoothing(0.1f)`.
class options {
public:
    options() noexcept : raw_(xent_options_default()) {}

    options &reduction(xent_reduction r) noexcept {
        raw_.reduction = static_cast<std::uint32_t>(r);
        return *this;
    }
    options &ignore_index(std::int64_t index) noexcept {
        raw_.ignore_index = index;
        return *this;
    }
    options &label_smoothing(float epsilon) noexcept {
        raw_.label_smoothing = epsilon;
        return *this;
    }
    options &z_loss(float z) noexcept {
        raw_.z_loss = z;
        return *this;
    }
    options &softcap(float c) noexcept {
        raw_.softcap = c;
        return *this;
    }
    options &grad_scale(float g) noexcept {
        raw_.grad_scale = g;
        return *this;
    }
    options &class_weights(std::vector<float> weights) {
        weights_ = std::move(weights);
        has_weights_ = true;
        return *this;
    }

    /// How many values `loss` (and `dloss`) hold for a batch of `rows` rows.
    std::size_t loss_size(std::size_t rows) const noexcept {
        return raw_.reduction == XENT_REDUCTION_NONE ? rows : 1;
    }

    /// The C options for a batch of `cols` classes, pointing at the owned weights.
    xent_options c_options(std::size_t cols, const char *call) const {
        xent_options raw = raw_;
        if (has_weights_) {
            detail::require_shape(weights_.size() == cols, call, "class weights != cols");
            raw.class_weights = weights_.data();
        }
        return raw;
    }

private:
    xent_options raw_;
    std::vector<float> weights_;
    bool has_weights_ = false;
};

/// The loss of a batch against hard targets (1 value, or one per row for reduction none);
/// with `grad`, its gradient too (grad may be the logits themselves: in place); with
/// `lse`, each row's logsumexp.
inline std::vector<float> cross_entropy(matrix_view<const float> logits,
                                        span<const std::int64_t> targets,
                                        const options &opts = options(),
                                        matrix_view<float> grad = {}, span<float> lse = {}) {
    const char *call = "xent_cross_entropy_f32";
    detail::require_shape(targets.size() == logits.rows(), call, "targets != rows");
    detail::require_shape(grad.data() == nullptr ||
                              (grad.rows() == logits.rows() && grad.cols() == logits.cols()),
                          call, "grad's shape != logits'");
    detail::require_shape(lse.data() == nullptr || lse.size() == logits.rows(), call,
                          "lse != rows");
    const xent_options raw = opts.c_options(logits.cols(), call);
    std::vector<float> loss(opts.loss_size(logits.rows()));
    detail::check(xent_cross_entropy_f32(logits.data(), logits.rows(), logits.cols(),
                                         logits.stride(), targets.data(), &raw, loss.data(),
                                         grad.data(), grad.stride(), lse.data()),
                  call);
    return loss;
}

/// The loss, with the logits overwritten by their gradient.
inline std::vector<float> cross_entropy_grad_in_place(matrix_view<float> logits,
                                                      span<const std::int64_t> targets,
                                                      const options &opts = options(),
                                                      span<float> lse = {}) {
    return cross_entropy(logits, targets, opts, logits, lse);
}

/// The loss against soft targets (a probability row per logits row).
inline std::vector<float> cross_entropy_soft(matrix_view<const float> logits,
                                             matrix_view<const float> targets,
                                             const options &opts = options(),
                                             matrix_view<float> grad = {},
                                             span<float> lse = {}) {
    const char *call = "xent_cross_entropy_soft_f32";
    detail::require_shape(targets.rows() == logits.rows() && targets.cols() == logits.cols(),
                          call, "targets' shape != logits'");
    detail::require_shape(grad.data() == nullptr ||
                              (grad.rows() == logits.rows() && grad.cols() == logits.cols()),
                          call, "grad's shape != logits'");
    detail::require_shape(lse.data() == nullptr || lse.size() == logits.rows(), call,
                          "lse != rows");
    const xent_options raw = opts.c_options(logits.cols(), call);
    std::vector<float> loss(opts.loss_size(logits.rows()));
    detail::check(xent_cross_entropy_soft_f32(logits.data(), logits.rows(), logits.cols(),
                                              logits.stride(), targets.data(), targets.stride(),
                                              &raw, loss.data(), grad.data(), grad.stride(),
                                              lse.data()),
                  call);
    return loss;
}

/// The gradient from the `lse` a forward call saved and the upstream `dloss`.
inline void cross_entropy_backward(matrix_view<const float> logits,
                                   span<const std::int64_t> targets, const options &opts,
                                   span<const float> lse, span<const float> dloss,
                                   matrix_view<float> grad) {
    const char *call = "xent_cross_entropy_backward_f32";
    detail::require_shape(targets.size() == logits.rows(), call, "targets != rows");
    detail::require_shape(lse.size() == logits.rows(), call, "lse != rows");
    detail::require_shape(dloss.size() == opts.loss_size(logits.rows()), call,
                          "dloss != the loss's size");
    detail::require_shape(grad.rows() == logits.rows() && grad.cols() == logits.cols(), call,
                          "grad's shape != logits'");
    const xent_options raw = opts.c_options(logits.cols(), call);
    detail::check(xent_cross_entropy_backward_f32(
                      logits.data(), logits.rows(), logits.cols(), logits.stride(),
                      targets.data(), &raw, lse.data(), dloss.data(), grad.data(), grad.stride()),
                  call);
}

/// softmax of each row of x into y (the same shape; y may be x: in place).
inline void softmax(matrix_view<const float> x, matrix_view<float> y) {
    const char *call = "xent_softmax_f32";
    detail::require_shape(y.rows() == x.rows() && y.cols() == x.cols(), call,
                          "y's shape != x's");
    detail::check(
        xent_softmax_f32(x.data(), x.rows(), x.cols(), x.stride(), y.data(), y.stride()), call);
}

/// log_softmax of each row of x into y (the same shape; y may be x: in place).
inline void log_softmax(matrix_view<const float> x, matrix_view<float> y) {
    const char *call = "xent_log_softmax_f32";
    detail::require_shape(y.rows() == x.rows() && y.cols() == x.cols(), call,
                          "y's shape != x's");
    detail::check(
        xent_log_softmax_f32(x.data(), x.rows(), x.cols(), x.stride(), y.data(), y.stride()),
        call);
}

/// How many threads the calls use: 0 one per core, 1 the calling thread, n a pool of n.
inline void set_num_threads(std::size_t n) {
    detail::check(xent_set_num_threads(n), "xent_set_num_threads");
}

/// The version of the linked library.
inline std::string version() { return xent_version(); }

/// The kernel tier the library runs.
inline std::string simd_level() { return xent_simd_level(); }

}  // namespace xent

#endif  // XENT_HPP
