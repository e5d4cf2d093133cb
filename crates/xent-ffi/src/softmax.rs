//! `xent_softmax_<dtype>` and `xent_log_softmax_<dtype>`: each row normalized on its own,
//! written to another batch or over the input.

use xent::{Logit, Rows, RowsMut, bf16, f16};

use crate::args::Write;
use crate::boundary::status_call;
use crate::raw::{StridedBuffer, check_disjoint};
use crate::status::XentStatus;
use crate::threads;

macro_rules! export {
    ($docs:tt $separate:path, $in_place:path; $($name:ident: $t:ty as $c:ty;)*) => {$(
        export!(@one $docs $separate, $in_place; $name: $t as $c);
    )*};
    (@one {$(#[doc = $doc:expr])*} $separate:path, $in_place:path; $name:ident: $t:ty as $c:ty) => {
        $(#[doc = $doc])*
        ///
        /// # Safety
        ///
        /// As `xent_cross_entropy_f32`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            x: *const $c,
            rows: usize,
            cols: usize,
            x_stride: usize,
            y: *mut $c,
            y_stride: usize,
        ) -> XentStatus {
            status_call(|| {
                let x = StridedBuffer::new(x.cast::<$t>(), rows, cols, x_stride)?;
                // SAFETY: this function's contract is `normalize`'s.
                unsafe { normalize(x, (y.cast::<$t>(), y_stride), $separate, $in_place) }
            })
        }
    };
}

export! {
    {
        /// Writes the softmax of each of the `rows` rows of `x` (`cols` values, row `i` at
        /// `x + i * x_stride`) into `y` (row `i` at `y + i * y_stride`). `y == x` with
        /// `y_stride == x_stride` is in place; any other overlap is refused.
    }
    xent::softmax, xent::softmax_in_place;
    xent_softmax_f32: f32 as f32;
    xent_softmax_bf16: bf16 as u16;
    xent_softmax_f16: f16 as u16;
    xent_softmax_f64: f64 as f64;
}

export! {
    {
        /// The softmax function of the same element type writing each row's log-softmax,
        /// `x - logsumexp(x)`.
    }
    xent::log_softmax, xent::log_softmax_in_place;
    xent_log_softmax_f32: f32 as f32;
    xent_log_softmax_bf16: bf16 as u16;
    xent_log_softmax_f16: f16 as u16;
    xent_log_softmax_f64: f64 as f64;
}

/// The body of every function here: `separate` or `in_place` over the checked rows.
///
/// # Safety
///
/// As [`forward`](crate::cross_entropy::forward).
unsafe fn normalize<T: Logit>(
    x: StridedBuffer<T>,
    (y, y_stride): (*mut T, usize),
    separate: fn(Rows<'_, T>, RowsMut<'_, T>) -> xent::Result<()>,
    in_place: fn(RowsMut<'_, T>) -> xent::Result<()>,
) -> Result<(), XentStatus> {
    let y = x.write_to(y, y_stride)?;
    check_disjoint(&[Some(y.output_bytes())], &[y.input_bytes()])?;
    // SAFETY: C's contract makes both buffers valid for this call; y was just checked
    // disjoint from x, or is x exactly (in place) with no other view.
    let write = unsafe { y.views() }?;
    threads::run(|| match write {
        Write::Separate(x, y) => separate(x, y),
        Write::InPlace(x) => in_place(x),
    })?;
    Ok(())
}
