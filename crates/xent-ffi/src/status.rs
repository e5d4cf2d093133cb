//! The status every call returns, its text, and the one mapping from the core crate's
//! [`Error`](xent::Error) to it.

use core::ffi::{CStr, c_char, c_int};

/// What a call did: `XENT_STATUS_OK`, or why it refused its arguments. A refused call has
/// written nothing: every output buffer, and the logits of an in-place call, are exactly as
/// they were (`XENT_STATUS_INTERNAL_PANIC` excepted, which only a bug in xent can cause).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XentStatus {
    /// The call succeeded.
    Ok = 0,
    /// A required pointer is NULL: `loss` always; every other buffer the call reads or must
    /// write when it holds at least one element (so any of them may be NULL when
    /// `rows == 0`).
    NullPointer = 1,
    /// A shape that cannot be: `cols == 0` with `rows > 0`, a stride smaller than `cols`, a
    /// buffer whose byte count overflows (`isize`, or the address space), a pointer not
    /// aligned for its element type, or a shard whose columns reach past `total_cols`.
    InvalidShape = 2,
    /// A hard target outside `[0, cols)` (for the shard calls `[0, total_cols)`) that is
    /// not `ignore_index`.
    TargetOutOfRange = 3,
    /// An option outside its domain: an unknown `reduction` value; `label_smoothing`
    /// outside `[0, 1]` or NaN; `z_loss` or `softcap` negative, NaN or infinite; a subnormal
    /// `softcap`; `grad_scale` not finite; a class weight negative or not finite.
    /// `xent_set_num_threads`: a thread count the library cannot have.
    InvalidOption = 4,
    /// An output shares memory with another output or with an input (the gradient may equal
    /// the logits only exactly: same pointer, same stride).
    OverlappingBuffers = 5,
    /// xent panicked: a bug, reported instead of unwinding into C. The outputs may have been
    /// partly written.
    InternalPanic = 6,
}

/// A status as C passes it in: any integer, so that a value outside the enum never becomes
/// an [`XentStatus`] (that would be undefined behaviour). The header spells it
/// `xent_status`, an enum of the same size as `int`.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct XentStatusCode(pub c_int);

impl From<XentStatus> for XentStatusCode {
    fn from(status: XentStatus) -> Self {
        XentStatusCode(status as c_int)
    }
}

/// Every status, in value order.
const ALL_STATUSES: [XentStatus; 7] = [
    XentStatus::Ok,
    XentStatus::NullPointer,
    XentStatus::InvalidShape,
    XentStatus::TargetOutOfRange,
    XentStatus::InvalidOption,
    XentStatus::OverlappingBuffers,
    XentStatus::InternalPanic,
];

impl XentStatus {
    /// The status whose value is `code`, `None` for any other integer.
    pub fn from_code(code: XentStatusCode) -> Option<XentStatus> {
        ALL_STATUSES.into_iter().find(|&s| s as c_int == code.0)
    }

    /// What the status means, in words.
    pub fn description(self) -> &'static CStr {
        match self {
            XentStatus::Ok => c"success",
            XentStatus::NullPointer => c"a required pointer is NULL",
            XentStatus::InvalidShape => {
                c"invalid shape: zero columns with rows, a stride smaller \
                than the row, a size whose byte count overflows, or a misaligned pointer"
            }
            XentStatus::TargetOutOfRange => {
                c"a hard target lies outside [0, cols) and is not ignore_index"
            }
            XentStatus::InvalidOption => c"an option is outside its domain",
            XentStatus::OverlappingBuffers => {
                c"buffers overlap: an output shares memory with another buffer"
            }
            XentStatus::InternalPanic => c"internal error: xent panicked (a bug in xent)",
        }
    }
}

/// The text of a status that no [`XentStatus`] has.
const UNKNOWN_STATUS: &CStr = c"unknown status";

impl From<xent::Error> for XentStatus {
    /// The status of each way the core crate refuses a call.
    fn from(error: xent::Error) -> Self {
        use xent::Error;
        match error {
            Error::InvalidShape { .. } => XentStatus::InvalidShape,
            Error::TargetOutOfRange { .. } => XentStatus::TargetOutOfRange,
            Error::InvalidOption { .. } => XentStatus::InvalidOption,
            Error::OverlappingBuffers { .. } => XentStatus::OverlappingBuffers,
            // An error this version of the C ABI has no status for can only come from a
            // core crate newer than this file: an internal inconsistency, not bad input.
            _ => XentStatus::InternalPanic,
        }
    }
}

/// A static, NUL-terminated English description of `status`; never NULL, also for a value
/// that is no `xent_status` ("unknown status"). The string must not be freed.
#[unsafe(no_mangle)]
pub extern "C" fn xent_status_string(status: XentStatusCode) -> *const c_char {
    crate::boundary::catch_panic(UNKNOWN_STATUS.as_ptr(), || {
        XentStatus::from_code(status)
            .map_or(UNKNOWN_STATUS, XentStatus::description)
            .as_ptr()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_refused() {
        for (value, status) in ALL_STATUSES.into_iter().enumerate() {
            assert_eq!(status as usize, value);
            assert_eq!(XentStatus::from_code(status.into()), Some(status));
        }
        for code in [-1, 7, 1000, c_int::MIN, c_int::MAX] {
            assert_eq!(XentStatus::from_code(XentStatusCode(code)), None);
        }
    }

    #[test]
    fn every_core_error_has_its_status() {
        let cases = [
            (
                xent::Error::InvalidShape {
                    buffer: "logits",
                    reason: String::new(),
                },
                XentStatus::InvalidShape,
            ),
            (
                xent::Error::TargetOutOfRange {
                    row: 0,
                    target: 9,
                    cols: 3,
                    ignore_index: -100,
                },
                XentStatus::TargetOutOfRange,
            ),
            (
                xent::Error::InvalidOption {
                    option: "z_loss",
                    reason: String::new(),
                },
                XentStatus::InvalidOption,
            ),
            (
                xent::Error::OverlappingBuffers {
                    first: "loss",
                    second: "grad",
                },
                XentStatus::OverlappingBuffers,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(XentStatus::from(error), status);
        }
    }

    #[test]
    fn every_status_has_a_distinct_text() {
        let texts: std::collections::HashSet<_> = ALL_STATUSES
            .into_iter()
            .map(XentStatus::description)
            .chain([UNKNOWN_STATUS])
            .collect();
        assert_eq!(texts.len(), ALL_STATUSES.len() + 1);
    }
}
