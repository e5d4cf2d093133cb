//! docs/bad-input.md's table from Rust: every bad input is refused with its error, by every call style, and
//! every buffer (the logits of an in-place call included) keeps its exact bits.

mod common;

use common::{PAD, Rng, random_logits};
use xent::{Error, Options, Reduction, Rows, RowsMut, Targets};

const ROWS: usize = 3;
const COLS: usize = 4;

/// One call's inputs and the sizes of its outputs; `None` targets mean the default ones.
#[derive(Clone)]
struct Call<'a> {
    options: Options<'a>,
    targets: Targets<'a>,
    loss_len: usize,
    lse_len: usize,
    grad_rows: usize,
    dloss_len: usize,
}

fn good_call<'a>(targets: &'a [i64]) -> Call<'a> {
    Call {
        options: Options::default(),
        targets: Targets::I64(targets),
        loss_len: 1,
        lse_len: ROWS,
        grad_rows: ROWS,
        dloss_len: 1,
    }
}

fn logits() -> Vec<f32> {
    random_logits(&mut Rng::new(1), ROWS, COLS, COLS + 1, 1.0, 0.0)
}

/// Which call styles a bad input concerns: a buffer only the forward or only the backward
/// reads (loss, dloss) is refused by those styles alone.
#[derive(Clone, Copy, PartialEq)]
enum Styles {
    All,
    Forward,
    Backward,
    /// The styles that write a separate gradient buffer.
    SeparateGrad,
}

/// Runs `call` in every style with sentinel-filled outputs, checks that each style returns
/// an error of the expected kind and that nothing was written, and returns the errors.
fn refused_by_every_style(call: &Call<'_>, expected: fn(&Error) -> bool) -> Vec<Error> {
    refused_by(Styles::All, call, expected)
}

fn refused_by(styles: Styles, call: &Call<'_>, expected: fn(&Error) -> bool) -> Vec<Error> {
    let forward = styles != Styles::Backward;
    let forward_only = styles == Styles::All || styles == Styles::Forward;
    let backward = styles != Styles::Forward;
    let x = logits();
    let stride = COLS + 1;
    let view = || Rows::new(&x, ROWS, COLS, stride).unwrap();
    let sentinel = |n: usize| vec![PAD; n];
    let mut errors = Vec::new();
    let mut check =
        |what: &str, result: xent::Result<()>, buffers: &[&[f32]], originals: &[&[f32]]| {
            let err = result.expect_err(what);
            assert!(expected(&err), "{what}: unexpected error {err:?}");
            for (b, o) in buffers.iter().zip(originals) {
                assert!(
                    b.iter()
                        .zip(o.iter())
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{what}: a buffer was written before the error"
                );
            }
            errors.push(err);
        };

    if forward_only {
        let (mut loss, mut lse) = (sentinel(call.loss_len), sentinel(call.lse_len));
        let r = xent::cross_entropy(
            view(),
            call.targets,
            &call.options,
            &mut loss,
            Some(&mut lse),
        );
        check(
            "forward",
            r,
            &[&loss, &lse],
            &[&sentinel(call.loss_len), &sentinel(call.lse_len)],
        );
    }
    if forward {
        let (mut loss, mut lse) = (sentinel(call.loss_len), sentinel(call.lse_len));
        let mut grad = sentinel(call.grad_rows * COLS);
        let r = xent::cross_entropy_grad(
            view(),
            call.targets,
            &call.options,
            &mut loss,
            RowsMut::packed(&mut grad, COLS).unwrap(),
            Some(&mut lse),
        );
        check(
            "separate",
            r,
            &[&loss, &lse, &grad],
            &[
                &sentinel(call.loss_len),
                &sentinel(call.lse_len),
                &sentinel(call.grad_rows * COLS),
            ],
        );
    }
    if call.grad_rows == ROWS && forward {
        let (mut loss, mut lse) = (sentinel(call.loss_len), sentinel(call.lse_len));
        let mut in_place = x.clone();
        let r = xent::cross_entropy_grad_in_place(
            RowsMut::new(&mut in_place, ROWS, COLS, stride).unwrap(),
            call.targets,
            &call.options,
            &mut loss,
            Some(&mut lse),
        );
        check(
            "in place",
            r,
            &[&loss, &lse, &in_place],
            &[&sentinel(call.loss_len), &sentinel(call.lse_len), &x],
        );
    }
    if call.grad_rows == ROWS && backward {
        let saved_lse = vec![1.0f32; call.lse_len];
        let dloss = vec![1.0f32; call.dloss_len];
        let mut in_place = x.clone();
        let r = xent::cross_entropy_backward_in_place(
            RowsMut::new(&mut in_place, ROWS, COLS, stride).unwrap(),
            call.targets,
            &call.options,
            &saved_lse,
            &dloss,
        );
        check("backward in place", r, &[&in_place], &[&x]);
    }

    if !backward {
        return errors;
    }
    let saved_lse = vec![1.0f32; call.lse_len];
    let dloss = vec![1.0f32; call.dloss_len];
    let mut grad = sentinel(call.grad_rows * COLS);
    let r = xent::cross_entropy_backward(
        view(),
        call.targets,
        &call.options,
        &saved_lse,
        &dloss,
        RowsMut::packed(&mut grad, COLS).unwrap(),
    );
    check("backward", r, &[&grad], &[&sentinel(call.grad_rows * COLS)]);
    errors
}

fn is_shape(e: &Error) -> bool {
    matches!(e, Error::InvalidShape { .. })
}

fn is_option(e: &Error) -> bool {
    matches!(e, Error::InvalidOption { .. })
}

fn is_target(e: &Error) -> bool {
    matches!(e, Error::TargetOutOfRange { .. })
}

#[test]
fn views_refuse_bad_shapes() {
    let data = [0.0f32; 12];
    let shape = |r: xent::Result<Rows<'_>>| matches!(r, Err(Error::InvalidShape { .. }));
    assert!(shape(Rows::new(&data, 2, 0, 0)), "cols = 0 with rows");
    assert!(shape(Rows::new(&data, 2, 4, 3)), "stride < cols");
    assert!(
        shape(Rows::new(&data, 0, 4, 3)),
        "stride < cols without rows"
    );
    assert!(shape(Rows::new(&data, 3, 4, 5)), "slice too short");
    assert!(shape(Rows::new(&data, usize::MAX, 4, 4)), "span overflows");
    assert!(
        shape(Rows::new(&data, 2, 4, usize::MAX / 2)),
        "span overflows"
    );
    assert!(
        shape(Rows::new(&data, 2, usize::MAX / 4 + 1, usize::MAX / 4 + 1)),
        "bytes overflow"
    );
    assert!(shape(Rows::packed(&data, 5)), "12 is not a multiple of 5");
    assert!(shape(Rows::packed(&data, 0)), "0 columns");
    assert!(Rows::new(&data, 0, 0, 0).is_ok());
    assert!(
        Rows::new(&data, 2, 4, 8).is_ok(),
        "the last row needs no padding"
    );
    let mut data = data;
    assert!(matches!(
        RowsMut::new(&mut data, 2, 4, 3),
        Err(Error::InvalidShape { .. })
    ));
}

#[test]
fn mismatched_lengths_are_invalid_shapes() {
    let targets = [0i64, 1, 2];
    let short_targets = [0i64, 1];
    let none = Options {
        reduction: Reduction::None,
        ..Options::default()
    };
    let weights = [1.0f32; COLS + 1];
    let soft = [0.25f32; ROWS * (COLS - 1)];
    let calls = [
        Call {
            targets: Targets::I64(&short_targets),
            ..good_call(&targets)
        },
        Call {
            loss_len: 2,
            ..good_call(&targets)
        },
        Call {
            options: none,
            loss_len: 1,
            lse_len: ROWS,
            ..good_call(&targets)
        },
        Call {
            options: none,
            loss_len: ROWS,
            dloss_len: 1,
            ..good_call(&targets)
        },
        Call {
            lse_len: ROWS - 1,
            ..good_call(&targets)
        },
        Call {
            grad_rows: ROWS - 1,
            ..good_call(&targets)
        },
        Call {
            options: Options {
                class_weights: Some(&weights),
                ..Options::default()
            },
            ..good_call(&targets)
        },
        Call {
            targets: Targets::Soft(Rows::packed(&soft, COLS - 1).unwrap()),
            ..good_call(&targets)
        },
    ];
    for (k, call) in calls.iter().enumerate() {
        let styles = match k {
            1 | 2 => Styles::Forward,
            3 => Styles::Backward,
            5 => Styles::SeparateGrad,
            _ => Styles::All,
        };
        refused_by(styles, call, is_shape);
    }
}

#[test]
fn out_of_range_targets() {
    let cases: [(&[i64], usize, i64); 5] = [
        (&[0, 1, 4], 2, 4),
        (&[0, -1, 2], 1, -1),
        (&[i64::MIN, 0, 0], 0, i64::MIN),
        (&[3, 2, i64::MAX], 2, i64::MAX),
        (&[9, -100, 9], 0, 9),
    ];
    for (targets, row, target) in cases {
        let errors = refused_by_every_style(&good_call(targets), is_target);
        for e in errors {
            assert_eq!(
                e,
                Error::TargetOutOfRange {
                    row,
                    target,
                    cols: COLS,
                    ignore_index: -100
                }
            );
        }
    }
    // A target equal to a non-default ignore_index is fine; -100 then is not.
    let targets = [7i64, 0, -100];
    let call = Call {
        options: Options {
            ignore_index: 7,
            ..Options::default()
        },
        ..good_call(&targets)
    };
    refused_by_every_style(&call, is_target);
    let wide = [u32::MAX, 0, 1];
    let call = Call {
        targets: Targets::U32(&wide),
        ..good_call(&targets)
    };
    refused_by_every_style(&call, is_target);
}

#[test]
fn invalid_options() {
    let targets = [0i64, 1, 2];
    let d = Options::default;
    let bad_weights: [[f32; COLS]; 3] = [
        [1.0, -1.0, 1.0, 1.0],
        [1.0, 1.0, f32::NAN, 1.0],
        [f32::INFINITY, 1.0, 1.0, 1.0],
    ];
    let mut options = vec![
        Options {
            label_smoothing: -0.1,
            ..d()
        },
        Options {
            label_smoothing: 1.0001,
            ..d()
        },
        Options {
            label_smoothing: f32::NAN,
            ..d()
        },
        Options {
            z_loss: -1e-9,
            ..d()
        },
        Options {
            z_loss: f32::NAN,
            ..d()
        },
        Options {
            z_loss: f32::INFINITY,
            ..d()
        },
        Options {
            softcap: -1.0,
            ..d()
        },
        Options {
            softcap: f32::NAN,
            ..d()
        },
        Options {
            softcap: f32::INFINITY,
            ..d()
        },
        // Fuzzer-found: a subnormal cap's reciprocal overflows, and the SIMD tiers gave a −∞
        // gradient where the slope is 0.
        Options {
            softcap: 1e-40,
            ..d()
        },
        Options {
            softcap: f32::MIN_POSITIVE / 2.0,
            ..d()
        },
        Options {
            grad_scale: f32::NAN,
            ..d()
        },
        Options {
            grad_scale: f32::INFINITY,
            ..d()
        },
        Options {
            grad_scale: f32::NEG_INFINITY,
            ..d()
        },
    ];
    for w in &bad_weights {
        options.push(Options {
            class_weights: Some(w),
            ..d()
        });
    }
    for o in options {
        let errors = refused_by_every_style(
            &Call {
                options: o,
                ..good_call(&targets)
            },
            is_option,
        );
        let shown = errors[0].to_string();
        assert!(shown.starts_with("invalid option: "), "{shown}");
    }
    // The edges of each domain are accepted.
    for o in [
        Options {
            label_smoothing: 1.0,
            ..d()
        },
        Options {
            label_smoothing: 0.0,
            z_loss: 0.0,
            softcap: 0.0,
            grad_scale: -0.0,
            ..d()
        },
    ] {
        let x = logits();
        let mut loss = [0.0f32];
        xent::cross_entropy(
            Rows::new(&x, ROWS, COLS, COLS + 1).unwrap(),
            &targets[..],
            &o,
            &mut loss,
            None,
        )
        .unwrap();
    }
}

#[test]
fn messages_say_what_to_fix() {
    let x = [0.0f32; 8];
    let err = Rows::new(&x, 2, 5, 4).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid shape: rows have stride 4, smaller than the 5 columns of a row"
    );
    let mut loss = [0.0f32; 2];
    let err = xent::cross_entropy(
        Rows::packed(&x, 4).unwrap(),
        &[0i64, 1][..],
        &Options::default(),
        &mut loss,
        None,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid shape: loss has 2 elements, the call needs 1"
    );
    let o = Options {
        label_smoothing: 2.0,
        ..Options::default()
    };
    let err = xent::cross_entropy(
        Rows::packed(&x, 4).unwrap(),
        &[0i64, 1][..],
        &o,
        &mut loss[..1],
        None,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid option: label_smoothing is 2, it must lie in [0, 1]"
    );
}

#[test]
fn standalone_kernels_refuse_mismatched_outputs() {
    let x = [1.0f32; 12];
    let mut y = [PAD; 12];
    let in_view = Rows::packed(&x, 4).unwrap();
    let err = xent::softmax(in_view, RowsMut::packed(&mut y, 3).unwrap()).unwrap_err();
    assert!(is_shape(&err));
    let err = xent::log_softmax(in_view, RowsMut::new(&mut y, 2, 4, 4).unwrap()).unwrap_err();
    assert!(is_shape(&err));
    assert!(y.iter().all(|v| v.to_bits() == PAD.to_bits()));
}
