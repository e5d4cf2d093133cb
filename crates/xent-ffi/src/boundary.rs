//! The panic boundary: every exported function runs its body through one of these, so a
//! panic never unwinds into C and never aborts the host program.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::status::XentStatus;

/// Runs the body of a function that returns a status: `Ok` → `XENT_STATUS_OK`, `Err(s)` →
/// `s`, a panic → `XENT_STATUS_INTERNAL_PANIC`.
pub(crate) fn status_call(body: impl FnOnce() -> Result<(), XentStatus>) -> XentStatus {
    catch_panic(Err(XentStatus::InternalPanic), body)
        .err()
        .unwrap_or(XentStatus::Ok)
}

/// Runs the body of a function that returns a value, returning `on_panic` if it panics.
pub(crate) fn catch_panic<R>(on_panic: R, body: impl FnOnce() -> R) -> R {
    // AssertUnwindSafe: after a panic no state of the body is observed again. The library's
    // own state (the thread setting) is only ever replaced whole, so a panic cannot leave it
    // half-updated; C's buffers may be partly written, which INTERNAL_PANIC documents.
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(on_panic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_pass_through_and_panics_become_internal_panic() {
        assert_eq!(status_call(|| Ok(())), XentStatus::Ok);
        assert_eq!(
            status_call(|| Err(XentStatus::InvalidShape)),
            XentStatus::InvalidShape
        );
        assert_eq!(status_call(|| panic!("a bug")), XentStatus::InternalPanic);
        assert_eq!(catch_panic(7, || -> i32 { panic!("a bug") }), 7);
    }
}
