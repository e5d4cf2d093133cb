//! The one error type: every way a call can be refused, checked before anything is written.

use core::fmt;

/// Why a call was refused. Every check runs before the first output byte is written, so an
/// `Err` leaves every buffer (and the logits of an in-place call) exactly as it was.
///
/// The variants mirror the C ABI's status codes (a null pointer cannot occur in Rust).
///
/// ```
/// use xent::{Error, Options, Rows};
///
/// let logits = [0.0f32; 10];
/// let batch = Rows::new(&logits, 2, 5, 5)?;
/// let mut loss = [0.0f32];
/// let err = xent::cross_entropy(batch, &[1i64, 7][..], &Options::default(), &mut loss, None)
///     .unwrap_err();
/// assert_eq!(err.to_string(), "target 7 of row 1 is outside 0..5 (and is not ignore_index -100)");
/// assert!(matches!(err, Error::TargetOutOfRange { row: 1, target: 7, cols: 5, .. }));
/// assert_eq!(loss, [0.0]); // nothing was written
/// # Ok::<(), xent::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A buffer's size or layout does not fit the call: zero columns with rows, a stride
    /// smaller than the row, a slice too short for its shape, lengths that disagree, or a
    /// size whose byte count overflows.
    InvalidShape {
        /// The buffer or argument at fault (`"logits"`, `"grad"`, `"loss"`, …).
        buffer: &'static str,
        /// What is wrong with it, in words a caller can act on.
        reason: String,
    },
    /// A hard target lies outside `0..cols` and is not `ignore_index`.
    TargetOutOfRange {
        /// The row whose target is out of range (the first such row).
        row: usize,
        /// The target found there.
        target: i64,
        /// The number of classes.
        cols: usize,
        /// The `ignore_index` in force.
        ignore_index: i64,
    },
    /// An option's value is outside its domain.
    InvalidOption {
        /// The option at fault (`"label_smoothing"`, `"class_weights"`, …).
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Two buffers share memory where the call does not allow it (only reachable through
    /// raw pointers, that is from the C ABI).
    OverlappingBuffers {
        /// One of the two buffers.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
}

impl Error {
    pub(crate) fn shape(buffer: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidShape {
            buffer,
            reason: reason.into(),
        }
    }

    pub(crate) fn option(option: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidOption {
            option,
            reason: reason.into(),
        }
    }

    /// Checks that a buffer holds exactly `expected` elements.
    pub(crate) fn check_len(buffer: &'static str, len: usize, expected: usize) -> Result<()> {
        if len == expected {
            Ok(())
        } else {
            Err(Error::shape(
                buffer,
                format!("has {len} elements, the call needs {expected}"),
            ))
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidShape { buffer, reason } => write!(f, "invalid shape: {buffer} {reason}"),
            Error::TargetOutOfRange {
                row,
                target,
                cols,
                ignore_index,
            } => write!(
                f,
                "target {target} of row {row} is outside 0..{cols} (and is not ignore_index {ignore_index})"
            ),
            Error::InvalidOption { option, reason } => {
                write!(f, "invalid option: {option} {reason}")
            }
            Error::OverlappingBuffers { first, second } => {
                write!(f, "buffers overlap: {first} and {second} share memory")
            }
        }
    }
}

impl std::error::Error for Error {}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;
