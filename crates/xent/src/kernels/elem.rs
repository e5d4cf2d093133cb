//! The element types the passes read and write: f32, and bf16 and f16, which are widened
//! to f32 as they are loaded into a vector and rounded once as a vector is stored, so a
//! 16-bit row is never copied.

use core::ptr;

use half::{bf16, f16};

use super::vector::{F32Vector, MAX_LANES};
use super::{RowIo, StridedRows};

/// An element type of the rows the passes read and write.
///
/// # Safety
///
/// `load` and `store` access exactly `V::LANES` values, and the partial forms exactly `n`.
pub(crate) unsafe trait Elem: Copy + Send + Sync + 'static {
    /// The row pair with its output as f32 when this is f32 (phase 1 may then keep a row's
    /// exponentials in its output, which a 16-bit row would round), or back as it is.
    fn f32_output(io: RowIo<'_, Self>) -> Result<RowIo<'_, Self, f32>, RowIo<'_, Self>>;

    /// The rows as f32 rows when this is f32 (the short-row kernels take them directly), or
    /// back as they are.
    fn f32_rows(rows: StridedRows<'_, Self>)
    -> Result<StridedRows<'_, f32>, StridedRows<'_, Self>>;

    /// The value as f32 (exact).
    fn to_f32(self) -> f32;

    /// `v` rounded to this type (nearest, ties to even).
    fn from_f32(v: f32) -> Self;

    /// Loads `V::LANES` values at `p`, widened to f32.
    ///
    /// # Safety
    ///
    /// They are readable, and V's features are enabled.
    unsafe fn load<V: F32Vector>(p: *const Self) -> V;

    /// Stores the lanes of `v` at `p`, each rounded once to this type.
    ///
    /// # Safety
    ///
    /// `V::LANES` values at `p` are writable, and V's features are enabled.
    unsafe fn store<V: F32Vector>(v: V, p: *mut Self);

    /// Loads `n < V::LANES` values at `p`, the other lanes `fill`; reads nothing past
    /// `p + n`.
    ///
    /// # Safety
    ///
    /// As [`Elem::load`], for `n` values.
    #[inline(always)]
    unsafe fn load_partial<V: F32Vector>(p: *const Self, n: usize, fill: f32) -> V {
        let mut buf = [Self::from_f32(0.0); MAX_LANES];
        // SAFETY: `n < LANES <= MAX_LANES` values at `p` are readable (caller contract).
        unsafe {
            ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
            V::select(
                V::first_lanes(n),
                Self::load::<V>(buf.as_ptr()),
                V::splat(fill),
            )
        }
    }

    /// Stores the first `n < V::LANES` lanes of `v` at `p`; writes nothing past `p + n`.
    ///
    /// # Safety
    ///
    /// As [`Elem::store`], for `n` values.
    #[inline(always)]
    unsafe fn store_partial<V: F32Vector>(v: V, p: *mut Self, n: usize) {
        let mut buf = [Self::from_f32(0.0); MAX_LANES];
        // SAFETY: `buf` holds `LANES <= MAX_LANES` values; `n` values at `p` are writable
        // (caller contract).
        unsafe {
            Self::store(v, buf.as_mut_ptr());
            ptr::copy_nonoverlapping(buf.as_ptr(), p, n);
        }
    }
}

// SAFETY: each method forwards to the vector's own f32 access of the same extent.
unsafe impl Elem for f32 {
    fn f32_output(io: RowIo<'_>) -> Result<RowIo<'_>, RowIo<'_>> {
        Ok(io)
    }

    fn f32_rows(rows: StridedRows<'_>) -> Result<StridedRows<'_>, StridedRows<'_>> {
        Ok(rows)
    }

    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(v: f32) -> f32 {
        v
    }
    #[inline(always)]
    unsafe fn load<V: F32Vector>(p: *const f32) -> V {
        // SAFETY: caller contract.
        unsafe { V::load(p) }
    }
    #[inline(always)]
    unsafe fn store<V: F32Vector>(v: V, p: *mut f32) {
        // SAFETY: caller contract.
        unsafe { v.store(p) }
    }
    #[inline(always)]
    unsafe fn load_partial<V: F32Vector>(p: *const f32, n: usize, fill: f32) -> V {
        // SAFETY: caller contract.
        unsafe { V::load_partial(p, n, fill) }
    }
    #[inline(always)]
    unsafe fn store_partial<V: F32Vector>(v: V, p: *mut f32, n: usize) {
        // SAFETY: caller contract.
        unsafe { v.store_partial(p, n) }
    }
}

/// `Elem` for a 16-bit type (`repr(transparent)` over its bits) through the vector's
/// conversions `$load` and `$store`.
macro_rules! half_elem {
    ($t:ty, $load:ident, $store:ident) => {
        // SAFETY: `$t` is its u16 bits; the conversions access `LANES` of them.
        unsafe impl Elem for $t {
            fn f32_output(io: RowIo<'_, $t>) -> Result<RowIo<'_, $t, f32>, RowIo<'_, $t>> {
                Err(io)
            }

            fn f32_rows(
                rows: StridedRows<'_, $t>,
            ) -> Result<StridedRows<'_, f32>, StridedRows<'_, $t>> {
                Err(rows)
            }

            #[inline(always)]
            fn to_f32(self) -> f32 {
                <$t>::to_f32(self)
            }
            #[inline(always)]
            fn from_f32(v: f32) -> $t {
                <$t>::from_f32(v)
            }
            #[inline(always)]
            unsafe fn load<V: F32Vector>(p: *const $t) -> V {
                // SAFETY: caller contract.
                unsafe { V::$load(p.cast()) }
            }
            #[inline(always)]
            unsafe fn store<V: F32Vector>(v: V, p: *mut $t) {
                // SAFETY: caller contract.
                unsafe { v.$store(p.cast()) }
            }
        }
    };
}

half_elem!(bf16, load_bf16, store_bf16);
half_elem!(f16, load_f16, store_f16);
