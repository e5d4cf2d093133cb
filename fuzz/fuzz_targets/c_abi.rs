//! The C ABI under arbitrary input: every computing export, with every pointer an
//! arbitrary byte offset into one 4 KiB allocation (or NULL), so buffers come misaligned,
//! overlapping, partially overlapping or exactly in place, with arbitrary sizes and strides.
//!
//! The arena is sized so that every buffer a call may read or write lies inside it (a
//! pointer past the arena would break the C contract, which no library can check). The
//! target asserts that
//! - nothing crashes (the build runs under AddressSanitizer) and no call returns
//!   INTERNAL_PANIC;
//! - the status is the model's: OK exactly when the model finds no fault (docs/bad-input.md's NULL,
//!   shape, alignment, overlap, option and target checks), else one of the faults found;
//! - a refused call leaves the whole arena with its exact bytes;
//! - an accepted call changes no byte outside its outputs' elements (padding included), and
//!   writes the same bytes as the same call on separate, freshly allocated copies of its
//!   inputs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xent_ffi::{self as ffi, XentOptions, XentShardRow, XentStatus};
use xent_fuzz::{Faults, Gen};

/// The arena's size in bytes.
const ARENA: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut g = Gen::new(data);
    let call = Call::draw(&mut g);
    call.check(&mut g);
});

/// The C element types.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Dtype {
    F32,
    F64,
    Bf16,
    F16,
}

impl Dtype {
    /// The logits' element size (and alignment).
    fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
            Dtype::Bf16 | Dtype::F16 => 2,
        }
    }

    /// The size of a loss, lse or dloss value.
    fn stat(self) -> usize {
        if self == Dtype::F64 { 8 } else { 4 }
    }
}

/// Which export a call makes.
#[derive(Clone, Copy, Debug)]
enum Export {
    Forward(Dtype),
    Soft(Dtype),
    Backward(Dtype),
    Softmax(Dtype),
    LogSoftmax(Dtype),
    ShardStats,
    ShardFinish,
    Merge,
    Linear(Dtype),
}

/// What an argument is to the call.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Input,
    Output,
}

/// When NULL is refused.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Null {
    /// Never allowed (`loss`).
    Refused,
    /// Allowed when the buffer holds no elements (a strided one: when it has no rows).
    WhenEmpty,
    /// Means "not given".
    Absent,
}

/// One pointer argument.
#[derive(Clone, Debug)]
struct Arg {
    name: &'static str,
    /// Byte offset into the arena, or NULL.
    at: Option<usize>,
    size: usize,
    align: usize,
    rows: usize,
    cols: usize,
    stride: usize,
    /// A batch of rows (else `cols` elements in a row).
    strided: bool,
    role: Role,
    null: Null,
    /// What kind of values to store in it before the call.
    fill: Fill,
}

/// The values an input is filled with.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fill {
    /// Logits of the call's type (or f32 values: soft targets, lse, dloss, weights).
    Values(Dtype),
    /// Class indices.
    Classes,
    /// Shard summaries.
    Summaries,
    /// Nothing (an output).
    None,
}

impl Arg {
    /// The elements it spans from its first to the end of its last row, or `None` for an
    /// impossible shape (a stride below the row, zero columns with rows, an overflow).
    fn span(&self) -> Option<usize> {
        if !self.strided {
            return Some(self.cols).filter(|n| {
                n.checked_mul(self.size)
                    .is_some_and(|b| b <= isize::MAX as usize)
            });
        }
        if self.stride < self.cols || (self.rows > 0 && self.cols == 0) {
            return None;
        }
        if self.rows == 0 {
            return Some(0);
        }
        (self.rows - 1)
            .checked_mul(self.stride)
            .and_then(|n| n.checked_add(self.cols))
            .filter(|n| {
                n.checked_mul(self.size)
                    .is_some_and(|b| b <= isize::MAX as usize)
            })
    }

    /// The bytes it occupies in the arena, when it is there and its shape is possible.
    fn bytes(&self) -> Option<core::ops::Range<usize>> {
        let (at, span) = (self.at?, self.span()?);
        Some(at..at + span * self.size)
    }

    /// The byte offsets of its elements (padding excluded).
    fn elements(&self) -> Vec<usize> {
        let Some(at) = self.at else { return Vec::new() };
        if self.span().is_none() {
            return Vec::new();
        }
        (0..self.rows)
            .flat_map(|i| (0..self.cols).map(move |c| i * self.stride + c))
            .flat_map(|e| (0..self.size).map(move |b| at + e * self.size + b))
            .collect()
    }

    /// Whether the library would look at its memory: given, with elements.
    fn present(&self) -> bool {
        self.at.is_some() && self.span().is_some_and(|n| n > 0)
    }
}

/// A drawn call: the export, its scalar arguments, its pointer arguments and the options.
struct Call {
    export: Export,
    rows: usize,
    cols: usize,
    /// Shard calls: the slice's first class and the vocabulary.
    class_offset: usize,
    total_cols: usize,
    args: Vec<Arg>,
    /// Where the options struct lies (NULL for the defaults), and its contents.
    options_at: Option<usize>,
    options: XentOptions,
    /// The class weights' place and count (through `options.class_weights`).
    weights_at: Option<usize>,
    /// The arena before the call.
    arena: Vec<u64>,
}

/// A size: mostly small, now and then 0 or huge.
fn size(g: &mut Gen<'_>, max: usize) -> usize {
    match g.below(24) {
        0 => 0,
        1 => usize::MAX / (1 + g.below(4)),
        _ => 1 + g.below(max),
    }
}

/// A stride for rows of `cols`: mostly `cols` plus a little padding, now and then smaller
/// or huge.
fn stride(g: &mut Gen<'_>, cols: usize) -> usize {
    match g.below(16) {
        0 => cols.saturating_sub(1),
        1 => usize::MAX - g.below(2),
        _ => cols.saturating_add(g.below(3)),
    }
}

impl Call {
    fn draw(g: &mut Gen<'_>) -> Call {
        let dtype = g.pick(&[Dtype::F32, Dtype::F64, Dtype::Bf16, Dtype::F16]);
        let export = match g.below(11) {
            0 | 1 => Export::Forward(dtype),
            2 => Export::Soft(dtype),
            3 => Export::Backward(dtype),
            4 => Export::Softmax(dtype),
            5 => Export::LogSoftmax(dtype),
            6 => Export::ShardStats,
            7 => Export::ShardFinish,
            8 => Export::Merge,
            _ => Export::Linear(g.pick(&[Dtype::F32, Dtype::Bf16, Dtype::F16])),
        };
        let rows = if g.one_in(12) { size(g, 5) } else { g.below(6) };
        let cols = size(g, 24);
        let (class_offset, total_cols) = match g.below(8) {
            0 => (g.u64() as usize, g.u64() as usize),
            1 => (
                g.below(4),
                cols.saturating_add(g.below(3)).saturating_sub(2),
            ),
            _ => {
                let offset = g.below(4);
                (offset, cols.saturating_add(offset + g.below(4)))
            }
        };
        let reduction = if g.one_in(16) {
            g.u32()
        } else {
            g.below(3) as u32
        };
        let classes = match export {
            Export::ShardStats | Export::ShardFinish => total_cols,
            _ => cols,
        };
        let options = XentOptions {
            reduction,
            ignore_index: if g.one_in(6) { g.below(4) as i64 } else { -100 },
            label_smoothing: g.option(&[0.0, 0.0, 0.1]),
            z_loss: g.option(&[0.0, 0.0, 1e-4]),
            softcap: g.option(&[0.0, 0.0, 30.0]),
            grad_scale: g.option(&[1.0, 0.5]),
            class_weights: core::ptr::null(),
        };
        // NULL options mean the defaults (reduction mean): the loss then holds 1 value.
        let has_options = !g.one_in(4);
        let loss_len = if has_options && reduction == 2 {
            rows
        } else {
            1
        };
        let f = |dtype| Fill::Values(dtype);
        let strided = |name, size, rows, cols, stride, role, null, fill| Arg {
            name,
            at: None,
            size,
            align: size,
            rows,
            cols,
            stride,
            strided: true,
            role,
            null,
            fill,
        };
        let flat = |name, size, n, role, null, fill| Arg {
            strided: false,
            ..strided(name, size, 1, n, n, role, null, fill)
        };
        let (input, output) = (Role::Input, Role::Output);
        let (refused, when_empty, absent) = (Null::Refused, Null::WhenEmpty, Null::Absent);
        let d = dtype.size();
        let s = dtype.stat();
        let mut args = Vec::new();
        match export {
            Export::Forward(t) | Export::Soft(t) | Export::Backward(t) => {
                let (d, s) = (t.size(), t.stat());
                args.push(strided(
                    "logits",
                    d,
                    rows,
                    cols,
                    stride(g, cols),
                    input,
                    when_empty,
                    f(t),
                ));
                if let Export::Soft(_) = export {
                    args.push(strided(
                        "targets",
                        4,
                        rows,
                        cols,
                        stride(g, cols),
                        input,
                        when_empty,
                        f(Dtype::F32),
                    ));
                } else {
                    args.push(flat("targets", 8, rows, input, when_empty, Fill::Classes));
                }
                if let Export::Backward(_) = export {
                    // lse and dloss are double for double logits, float otherwise.
                    let stat = f(if t == Dtype::F64 {
                        Dtype::F64
                    } else {
                        Dtype::F32
                    });
                    args.push(flat("lse", s, rows, input, when_empty, stat));
                    args.push(flat("dloss", s, loss_len, input, when_empty, stat));
                    args.push(strided(
                        "grad",
                        d,
                        rows,
                        cols,
                        stride(g, cols),
                        output,
                        when_empty,
                        Fill::None,
                    ));
                } else {
                    args.push(flat("loss", s, loss_len, output, refused, Fill::None));
                    args.push(strided(
                        "grad",
                        d,
                        rows,
                        cols,
                        stride(g, cols),
                        output,
                        absent,
                        Fill::None,
                    ));
                    args.push(flat("lse", s, rows, output, absent, Fill::None));
                }
            }
            Export::Softmax(t) | Export::LogSoftmax(t) => {
                let d = t.size();
                args.push(strided(
                    "x",
                    d,
                    rows,
                    cols,
                    stride(g, cols),
                    input,
                    when_empty,
                    f(t),
                ));
                args.push(strided(
                    "y",
                    d,
                    rows,
                    cols,
                    stride(g, cols),
                    output,
                    when_empty,
                    Fill::None,
                ));
            }
            Export::ShardStats | Export::ShardFinish => {
                args.push(strided(
                    "logits",
                    4,
                    rows,
                    cols,
                    stride(g, cols),
                    input,
                    when_empty,
                    f(Dtype::F32),
                ));
                args.push(flat("targets", 8, rows, input, when_empty, Fill::Classes));
                let summary = |name, role, fill| Arg {
                    align: 4,
                    ..flat(name, 16, rows, role, when_empty, fill)
                };
                if let Export::ShardStats = export {
                    args.push(summary("out", output, Fill::None));
                } else {
                    args.push(summary("merged", input, Fill::Summaries));
                    args.push(flat("loss", 4, loss_len, output, refused, Fill::None));
                    args.push(strided(
                        "grad",
                        4,
                        rows,
                        cols,
                        stride(g, cols),
                        output,
                        absent,
                        Fill::None,
                    ));
                    args.push(flat("lse", 4, rows, output, absent, Fill::None));
                }
            }
            Export::Merge => {
                let n = rows.saturating_mul(2);
                for (name, role) in [("in", input), ("inout", output)] {
                    let fill = Fill::Summaries;
                    args.push(Arg {
                        align: 4,
                        ..flat(name, 16, n, role, when_empty, fill)
                    });
                }
            }
            Export::Linear(t) => {
                let d = t.size();
                let dim = 1 + g.below(6);
                // `cols` is the number of classes here.
                args.push(strided(
                    "hidden",
                    d,
                    rows,
                    dim,
                    stride(g, dim),
                    input,
                    when_empty,
                    f(t),
                ));
                args.push(strided(
                    "weight",
                    d,
                    cols,
                    dim,
                    stride(g, dim),
                    input,
                    when_empty,
                    f(t),
                ));
                args.push(flat("bias", d, cols, input, absent, f(t)));
                args.push(flat("targets", 8, rows, input, when_empty, Fill::Classes));
                args.push(flat("loss", 4, loss_len, output, refused, Fill::None));
                args.push(strided(
                    "grad_hidden",
                    d,
                    rows,
                    dim,
                    stride(g, dim),
                    output,
                    absent,
                    Fill::None,
                ));
                args.push(strided(
                    "grad_weight",
                    d,
                    cols,
                    dim,
                    stride(g, dim),
                    output,
                    absent,
                    Fill::None,
                ));
                args.push(flat("grad_bias", d, cols, output, absent, Fill::None));
                args.push(flat("lse", 4, rows, output, absent, Fill::None));
            }
        }
        let _ = (d, s);

        // Places: inside the arena whenever the call might touch the buffer; an argument
        // whose span cannot fit (a huge shape the call must refuse) points anywhere in it.
        let mut placed: Vec<usize> = Vec::new();
        for arg in &mut args {
            let optional_null = arg.null != Null::Refused
                && g.one_in(if arg.null == Null::Absent { 3 } else { 16 });
            if optional_null {
                continue;
            }
            arg.at = Some(place(g, arg.span(), arg.size, arg.align, &placed));
            placed.extend(arg.at);
        }
        let options_at =
            has_options.then(|| place(g, Some(1), size_of::<XentOptions>(), 1, &placed));
        // Class weights only where all of them fit in the arena: the call reads every one.
        let weights_at =
            (classes <= ARENA / 4 && g.one_in(3)).then(|| place(g, Some(classes), 4, 4, &placed));

        let mut call = Call {
            export,
            rows,
            cols,
            class_offset,
            total_cols,
            args,
            options_at,
            options,
            weights_at,
            arena: vec![0; ARENA / 8],
        };
        call.fill(g, classes);
        call
    }

    /// Fills the arena: any f32 values everywhere, then each input with values of its
    /// kind, then the options struct (last, so its class_weights pointer is the drawn one).
    fn fill(&mut self, g: &mut Gen<'_>, classes: usize) {
        let mut bytes = vec![0u8; ARENA];
        for word in bytes.chunks_exact_mut(4) {
            word.copy_from_slice(&g.logit().to_ne_bytes());
        }
        let ignore_index = self.options.ignore_index;
        for arg in self.args.iter().filter(|a| a.role == Role::Input) {
            let Some(at) = arg.at else { continue };
            let Some(span) = arg.span() else { continue };
            if at + span * arg.size > ARENA {
                continue;
            }
            for e in 0..span {
                let slot = &mut bytes[at + e * arg.size..at + (e + 1) * arg.size];
                match arg.fill {
                    Fill::Values(Dtype::F32) => slot.copy_from_slice(&g.logit().to_ne_bytes()),
                    Fill::Summaries => {
                        for field in slot.chunks_exact_mut(4) {
                            field.copy_from_slice(&g.logit().to_ne_bytes());
                        }
                    }
                    Fill::Values(Dtype::F64) => {
                        slot.copy_from_slice(&f64::from(g.logit()).to_ne_bytes())
                    }
                    Fill::Values(Dtype::Bf16) => {
                        slot.copy_from_slice(&half::bf16::from_f32(g.logit()).to_ne_bytes())
                    }
                    Fill::Values(Dtype::F16) => {
                        slot.copy_from_slice(&half::f16::from_f32(g.logit()).to_ne_bytes())
                    }
                    Fill::Classes => {
                        let y = match g.below(10) {
                            0 => ignore_index,
                            1 => g.u64() as i64,
                            _ => g.below(classes.clamp(1, 64)) as i64,
                        };
                        slot.copy_from_slice(&y.to_ne_bytes());
                    }
                    Fill::None => {}
                }
            }
        }
        if let Some(at) = self.weights_at {
            for c in 0..classes.min((ARENA - at) / 4) {
                let w = g.option(&[1.0, 0.5, 2.0]);
                bytes[at + 4 * c..at + 4 * c + 4].copy_from_slice(&w.to_ne_bytes());
            }
        }
        self.arena_from(&bytes);
    }

    /// A copy of the arena with the options struct written into it last (its class_weights
    /// pointing into this copy), as the call will see it.
    fn arena_for_call(&self) -> Vec<u64> {
        let mut arena = self.arena.clone();
        if let Some(at) = self.options_at {
            let base = arena.as_mut_ptr().cast::<u8>();
            let options = XentOptions {
                class_weights: self.weights_at.map_or(core::ptr::null(), |w| {
                    base.wrapping_add(w).cast_const().cast()
                }),
                ..self.options
            };
            // SAFETY: `at + size_of::<XentOptions>() <= ARENA` (`place`), and an unaligned
            // write needs no alignment.
            unsafe {
                base.wrapping_add(at)
                    .cast::<XentOptions>()
                    .write_unaligned(options)
            };
        }
        arena
    }

    fn arena_from(&mut self, bytes: &[u8]) {
        for (w, chunk) in self.arena.iter_mut().zip(bytes.chunks_exact(8)) {
            *w = u64::from_ne_bytes(chunk.try_into().unwrap());
        }
    }
}

/// A byte offset for a buffer of `span` elements of `size` bytes: mostly aligned, now and
/// then on another buffer's start (exact overlap or in place), anywhere when it cannot fit.
fn place(
    g: &mut Gen<'_>,
    span: Option<usize>,
    size: usize,
    align: usize,
    placed: &[usize],
) -> usize {
    let bytes = span
        .and_then(|n| n.checked_mul(size))
        .filter(|&b| b <= ARENA);
    let Some(bytes) = bytes else {
        return g.below(ARENA);
    };
    let room = ARENA - bytes;
    if !placed.is_empty() && g.one_in(4) {
        let at = g.pick(placed);
        if at <= room {
            return at;
        }
    }
    let at = g.below(room + 1);
    if g.one_in(8) { at } else { at / align * align }
}

impl Call {
    /// The faults the model finds (docs/bad-input.md over the C arguments) in the arena `bytes`.
    fn faults(&self, bytes: &[u8]) -> Faults {
        let mut f = Faults::default();
        for arg in &self.args {
            match arg.at {
                None => {
                    let empty = if arg.strided {
                        arg.rows == 0
                    } else {
                        arg.cols == 0
                    };
                    f.null |= arg.null == Null::Refused || (arg.null == Null::WhenEmpty && !empty);
                }
                Some(at) => match arg.span() {
                    None => f.shape = true,
                    Some(n) => f.shape |= n > 0 && at % arg.align != 0,
                },
            }
        }
        // A shard's columns must lie inside the vocabulary; a linear head needs classes.
        match self.export {
            Export::ShardStats | Export::ShardFinish => {
                f.shape |= self
                    .class_offset
                    .checked_add(self.cols)
                    .is_none_or(|end| end > self.total_cols);
            }
            Export::Linear(_) => f.shape |= self.rows > 0 && self.cols == 0,
            _ => {}
        }
        // The options (the defaults when NULL).
        let options = self.options_at.map_or_else(
            || XentOptions {
                class_weights: core::ptr::null(),
                ..ffi::xent_options_default()
            },
            |_| self.options,
        );
        let classes = match self.export {
            Export::ShardStats | Export::ShardFinish => self.total_cols,
            _ => self.cols,
        };
        // softmax, log_softmax and the merge take no options and no targets.
        let normalize = matches!(
            self.export,
            Export::Softmax(_) | Export::LogSoftmax(_) | Export::Merge
        );
        if !normalize {
            f.option |= options.reduction > 2;
            let weights_given = self.options_at.is_some() && self.weights_at.is_some();
            let mut weights = Vec::new();
            if weights_given {
                let at = self.weights_at.unwrap();
                if classes > 0 && !at.is_multiple_of(4) {
                    f.shape = true;
                } else {
                    weights = (0..classes)
                        .map(|c| {
                            f32::from_ne_bytes(
                                bytes[at + 4 * c..at + 4 * c + 4].try_into().unwrap(),
                            )
                        })
                        .collect();
                }
            }
            let core = xent::Options {
                reduction: xent::Reduction::Mean,
                ignore_index: options.ignore_index,
                label_smoothing: options.label_smoothing,
                z_loss: options.z_loss,
                softcap: options.softcap,
                class_weights: (weights_given && weights.len() == classes).then_some(&weights[..]),
                grad_scale: options.grad_scale,
            };
            f.check_options(&core, classes);
            // Hard targets, read from the arena.
            let hard = self
                .args
                .iter()
                .find(|a| a.name == "targets" && a.size == 8);
            if let Some((at, n)) = hard.and_then(|t| t.at.zip(t.span()))
                && at + n * 8 <= ARENA
                && (n == 0 || at.is_multiple_of(8))
            {
                let classes_of: Vec<i64> = (0..n)
                    .map(|k| {
                        i64::from_ne_bytes(bytes[at + 8 * k..at + 8 * k + 8].try_into().unwrap())
                    })
                    .collect();
                f.check_targets(&classes_of, options.ignore_index, classes);
            }
        }
        // Overlaps: an output may meet no other buffer, except a gradient (or softmax
        // output) placed exactly over its logits with the same stride (in place).
        let in_place_of = |out: &Arg| -> Option<&Arg> {
            let source = self.args.first()?;
            (matches!(out.name, "grad" | "y")
                && out.at == source.at
                && out.stride == source.stride
                && source.role == Role::Input)
                .then_some(source)
        };
        for (i, out) in self
            .args
            .iter()
            .enumerate()
            .filter(|(_, a)| a.role == Role::Output && a.present())
        {
            let range = out.bytes().unwrap();
            let exempt = in_place_of(out).map(|s| s.name);
            let weights = self
                .options_at
                .and(self.weights_at)
                .filter(|_| classes > 0)
                .map(|at| at..at + classes.saturating_mul(4));
            let others = self
                .args
                .iter()
                .enumerate()
                .filter(|&(j, a)| {
                    j != i
                        && a.present()
                        && (a.role == Role::Input || j > i)
                        && Some(a.name) != exempt
                })
                .filter_map(|(_, a)| a.bytes())
                .chain(weights.filter(|_| !normalize));
            for other in others {
                f.overlap |= range.start < other.end && other.start < range.end;
            }
        }
        f
    }
}

/// The status as the model's kinds of fault.
fn allowed(status: XentStatus, f: &Faults) -> bool {
    match status {
        XentStatus::Ok => !f.any(),
        XentStatus::NullPointer => f.null,
        XentStatus::InvalidShape => f.shape,
        XentStatus::TargetOutOfRange => f.target,
        XentStatus::InvalidOption => f.option,
        XentStatus::OverlappingBuffers => f.overlap,
        XentStatus::InternalPanic => false,
    }
}

impl Call {
    fn check(&self, _g: &mut Gen<'_>) {
        // Every buffer the library could read or write lies in the arena (the C contract);
        // a call that would need more is not made.
        let fits = |a: &Arg| match (a.at, a.span()) {
            (Some(at), Some(n)) => at + n * a.size <= ARENA,
            _ => true,
        };
        if !self.args.iter().all(fits) {
            return;
        }
        let mut arena = self.arena_for_call();
        let before: Vec<u8> = arena.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let faults = self.faults(&before);
        if std::env::var_os("XENT_FUZZ_DEBUG").is_some() {
            eprintln!("{:?} {faults:?}\n{}", self.export, self.describe());
        }
        let base = arena.as_mut_ptr().cast::<u8>();
        let at = |a: &Arg| {
            a.at.map_or(core::ptr::null_mut(), |at| base.wrapping_add(at))
        };
        let ptrs: Vec<*mut u8> = self.args.iter().map(at).collect();
        let options = self.options_at.map_or(core::ptr::null(), |at| {
            base.wrapping_add(at).cast_const().cast::<XentOptions>()
        });
        // SAFETY: every pointer is NULL or inside `arena` with its whole span (checked
        // above), and the options struct's class_weights points to weights inside it.
        let status = unsafe { self.invoke(&ptrs, options) };
        let after: Vec<u8> = arena.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let accepted = match status {
            Some(status) => {
                assert!(
                    allowed(status, &faults),
                    "{:?}: status {status:?}, but the model found {faults:?}\n{}",
                    self.export,
                    self.describe()
                );
                status == XentStatus::Ok
            }
            // xent_merge_shard_rows has no status: it does nothing with a fault.
            None => !faults.any(),
        };
        if !accepted {
            assert!(
                before == after,
                "{:?}: a refused call wrote to the arena\n{}",
                self.export,
                self.describe()
            );
            return;
        }
        // Accepted: nothing outside the outputs' elements changed...
        let mut written = vec![false; ARENA];
        for arg in self.args.iter().filter(|a| a.role == Role::Output) {
            for b in arg.elements() {
                written[b] = true;
            }
        }
        for b in 0..ARENA {
            assert!(
                written[b] || before[b] == after[b],
                "{:?}: byte {b} outside the outputs changed\n{}",
                self.export,
                self.describe()
            );
        }
        // ... and the outputs hold what the same call writes on separate copies.
        let fresh = self.on_separate_copies(&before);
        for (arg, copy) in self.args.iter().zip(&fresh) {
            if arg.role != Role::Output || arg.at.is_none() {
                continue;
            }
            let at = arg.at.unwrap();
            for b in arg.elements() {
                assert_eq!(
                    after[b],
                    copy[b - at],
                    "{:?}: {} differs from the call on separate buffers\n{}",
                    self.export,
                    arg.name,
                    self.describe()
                );
            }
        }
    }

    /// The call again, with each argument in its own allocation holding a copy of its bytes
    /// (a gradient written in place shares its logits' copy). Returns each argument's
    /// bytes after the call.
    fn on_separate_copies(&self, before: &[u8]) -> Vec<Vec<u8>> {
        let copy = |at: Option<usize>, len: usize| -> Vec<u64> {
            let mut words = vec![0u64; len.div_ceil(8).max(1)];
            if let Some(at) = at {
                let dst = words.as_mut_ptr().cast::<u8>();
                // SAFETY: `words` holds at least `len` bytes and `at + len <= ARENA`.
                unsafe { core::ptr::copy_nonoverlapping(before[at..at + len].as_ptr(), dst, len) };
            }
            words
        };
        let len = |a: &Arg| a.span().map_or(0, |n| n * a.size);
        let mut buffers: Vec<Vec<u64>> = self.args.iter().map(|a| copy(a.at, len(a))).collect();
        let mut weights = self.weights_at.map(|at| {
            let classes = match self.export {
                Export::ShardStats | Export::ShardFinish => self.total_cols,
                _ => self.cols,
            };
            copy(Some(at), classes * 4)
        });
        let mut ptrs: Vec<*mut u8> = self
            .args
            .iter()
            .zip(buffers.iter_mut())
            .map(|(a, b)| {
                if a.at.is_some() {
                    b.as_mut_ptr().cast::<u8>()
                } else {
                    core::ptr::null_mut()
                }
            })
            .collect();
        // The in-place gradient (or softmax output) shares the logits' copy.
        if let Some(first) = self.args.first() {
            for (k, a) in self.args.iter().enumerate().skip(1) {
                if matches!(a.name, "grad" | "y")
                    && a.at.is_some()
                    && a.at == first.at
                    && a.stride == first.stride
                {
                    ptrs[k] = ptrs[0];
                }
            }
        }
        let options = self.options_at.map(|_| XentOptions {
            class_weights: weights
                .as_mut()
                .map_or(core::ptr::null(), |w| w.as_ptr().cast()),
            ..self.options
        });
        let options_ptr = options
            .as_ref()
            .map_or(core::ptr::null(), |o| o as *const XentOptions);
        // SAFETY: each pointer is NULL or a fresh buffer of the argument's whole span.
        let status = unsafe { self.invoke(&ptrs, options_ptr) };
        assert!(
            status.is_none_or(|s| s == XentStatus::Ok),
            "{:?}: refused on separate buffers: {status:?}",
            self.export
        );
        let in_place: Vec<bool> = ptrs
            .iter()
            .enumerate()
            .map(|(k, &p)| k > 0 && !p.is_null() && p == ptrs[0])
            .collect();
        let mut out: Vec<Vec<u8>> = buffers
            .iter()
            .map(|b| b.iter().flat_map(|w| w.to_ne_bytes()).collect())
            .collect();
        for k in 0..out.len() {
            if in_place[k] {
                out[k] = out[0].clone();
            }
        }
        out
    }

    /// Calls the export with `ptrs[k]` as the k-th pointer argument.
    ///
    /// # Safety
    ///
    /// Every pointer is NULL or valid for the argument's whole span.
    unsafe fn invoke(&self, p: &[*mut u8], options: *const XentOptions) -> Option<XentStatus> {
        let (rows, cols) = (self.rows, self.cols);
        let st = |k: usize| self.args[k].stride;
        let (f, d, h, i) = (
            |k: usize| p[k].cast::<f32>(),
            |k: usize| p[k].cast::<f64>(),
            |k: usize| p[k].cast::<u16>(),
            |k: usize| p[k].cast::<i64>().cast_const(),
        );
        let r = |k: usize| p[k].cast::<XentShardRow>();
        // SAFETY: forwarded from this function's contract; the argument order is the one
        // `Call::draw` built for the export.
        unsafe {
            Some(match self.export {
                Export::Forward(Dtype::F32) => ffi::xent_cross_entropy_f32(
                    f(0),
                    rows,
                    cols,
                    st(0),
                    i(1),
                    options,
                    f(2),
                    f(3),
                    st(3),
                    f(4),
                ),
                Export::Forward(Dtype::F64) => ffi::xent_cross_entropy_f64(
                    d(0),
                    rows,
                    cols,
                    st(0),
                    i(1),
                    options,
                    d(2),
                    d(3),
                    st(3),
                    d(4),
                ),
                Export::Forward(Dtype::Bf16) => ffi::xent_cross_entropy_bf16(
                    h(0),
                    rows,
                    cols,
                    st(0),
                    i(1),
                    options,
                    f(2),
                    h(3),
                    st(3),
                    f(4),
                ),
                Export::Forward(Dtype::F16) => ffi::xent_cross_entropy_f16(
                    h(0),
                    rows,
                    cols,
                    st(0),
                    i(1),
                    options,
                    f(2),
                    h(3),
                    st(3),
                    f(4),
                ),
                Export::Soft(Dtype::F32) => ffi::xent_cross_entropy_soft_f32(
                    f(0),
                    rows,
                    cols,
                    st(0),
                    f(1),
                    st(1),
                    options,
                    f(2),
                    f(3),
                    st(3),
                    f(4),
                ),
                Export::Soft(Dtype::F64) => ffi::xent_cross_entropy_soft_f64(
                    d(0),
                    rows,
                    cols,
                    st(0),
                    f(1),
                    st(1),
                    options,
                    d(2),
                    d(3),
                    st(3),
                    d(4),
                ),
                Export::Soft(Dtype::Bf16) => ffi::xent_cross_entropy_soft_bf16(
                    h(0),
                    rows,
                    cols,
                    st(0),
                    f(1),
                    st(1),
                    options,
                    f(2),
                    h(3),
                    st(3),
                    f(4),
                ),
                Export::Soft(Dtype::F16) => ffi::xent_cross_entropy_soft_f16(
                    h(0),
                    rows,
                    cols,
                    st(0),
                    f(1),
                    st(1),
                    options,
                    f(2),
                    h(3),
                    st(3),
                    f(4),
                ),
                Export::Backward(Dtype::F32) => ffi::xent_cross_entropy_backward_f32(
                    f(0),
                    rows,
                    cols,
                    st(0),
                    i(1),
                    options,
                    f(2),
                    f(3),
                    f(4),
                    st(4),
                ),
                Export::Backward(Dtype::F64) => ffi::xent_cross_entropy_backward_f64(
                    d(0),
                    rows,
                    cols,
                    st(0),
                    i(1),
                    options,
                    d(2),
                    d(3),
                    d(4),
                    st(4),
                ),
                Export::Backward(Dtype::Bf16) => ffi::xent_cross_entropy_backward_bf16(
                    h(0),
                    rows,
                    cols,
                    st(0),
                    i(1),
                    options,
                    f(2),
                    f(3),
                    h(4),
                    st(4),
                ),
                Export::Backward(Dtype::F16) => ffi::xent_cross_entropy_backward_f16(
                    h(0),
                    rows,
                    cols,
                    st(0),
                    i(1),
                    options,
                    f(2),
                    f(3),
                    h(4),
                    st(4),
                ),
                Export::Softmax(Dtype::F32) => {
                    ffi::xent_softmax_f32(f(0), rows, cols, st(0), f(1), st(1))
                }
                Export::Softmax(Dtype::F64) => {
                    ffi::xent_softmax_f64(d(0), rows, cols, st(0), d(1), st(1))
                }
                Export::Softmax(Dtype::Bf16) => {
                    ffi::xent_softmax_bf16(h(0), rows, cols, st(0), h(1), st(1))
                }
                Export::Softmax(Dtype::F16) => {
                    ffi::xent_softmax_f16(h(0), rows, cols, st(0), h(1), st(1))
                }
                Export::LogSoftmax(Dtype::F32) => {
                    ffi::xent_log_softmax_f32(f(0), rows, cols, st(0), f(1), st(1))
                }
                Export::LogSoftmax(Dtype::F64) => {
                    ffi::xent_log_softmax_f64(d(0), rows, cols, st(0), d(1), st(1))
                }
                Export::LogSoftmax(Dtype::Bf16) => {
                    ffi::xent_log_softmax_bf16(h(0), rows, cols, st(0), h(1), st(1))
                }
                Export::LogSoftmax(Dtype::F16) => {
                    ffi::xent_log_softmax_f16(h(0), rows, cols, st(0), h(1), st(1))
                }
                Export::ShardStats => ffi::xent_shard_stats_f32(
                    f(0),
                    rows,
                    cols,
                    st(0),
                    self.class_offset,
                    self.total_cols,
                    i(1),
                    options,
                    r(2),
                ),
                Export::ShardFinish => ffi::xent_shard_finish_f32(
                    f(0),
                    rows,
                    cols,
                    st(0),
                    self.class_offset,
                    self.total_cols,
                    i(1),
                    options,
                    r(2),
                    f(3),
                    f(4),
                    st(4),
                    f(5),
                ),
                Export::Merge => {
                    ffi::xent_merge_shard_rows(r(0), r(1), self.args[0].cols);
                    return None;
                }
                Export::Linear(t) => {
                    let dim = self.args[0].cols;
                    match t {
                        Dtype::F32 => ffi::xent_linear_cross_entropy_f32(
                            f(0),
                            rows,
                            dim,
                            st(0),
                            f(1),
                            cols,
                            st(1),
                            f(2),
                            i(3),
                            0,
                            options,
                            f(4),
                            f(5),
                            st(5),
                            f(6),
                            st(6),
                            f(7),
                            f(8),
                        ),
                        Dtype::Bf16 => ffi::xent_linear_cross_entropy_bf16(
                            h(0),
                            rows,
                            dim,
                            st(0),
                            h(1),
                            cols,
                            st(1),
                            h(2),
                            i(3),
                            0,
                            options,
                            f(4),
                            h(5),
                            st(5),
                            h(6),
                            st(6),
                            h(7),
                            f(8),
                        ),
                        _ => ffi::xent_linear_cross_entropy_f16(
                            h(0),
                            rows,
                            dim,
                            st(0),
                            h(1),
                            cols,
                            st(1),
                            h(2),
                            i(3),
                            0,
                            options,
                            f(4),
                            h(5),
                            st(5),
                            h(6),
                            st(6),
                            h(7),
                            f(8),
                        ),
                    }
                }
            })
        }
    }

    /// The call in words, for a failure message.
    fn describe(&self) -> String {
        let mut s = format!(
            "rows {} cols {} class_offset {} total_cols {} options at {:?} {:?} weights at {:?}\n",
            self.rows,
            self.cols,
            self.class_offset,
            self.total_cols,
            self.options_at,
            self.options,
            self.weights_at
        );
        for a in &self.args {
            s += &format!(
                "  {} at {:?}: {}x{} stride {} (size {}, {:?}, {:?})\n",
                a.name, a.at, a.rows, a.cols, a.stride, a.size, a.role, a.null
            );
        }
        s
    }
}
