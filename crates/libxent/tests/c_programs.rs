//! The C test programs of `tests/c/`, compiled with `-std=c99 -Wall -Wextra -Wpedantic
//! -Werror`, linked against the static and the shared library, and run:
//!
//! - `bad_input.c` walks every row of docs/bad-input.md's table and checks each status and that a refused
//!   call wrote no byte of any buffer; it also checks the successful paths against double
//!   precision computed in C;
//! - `half_dtypes.c` checks every `_bf16` and `_f16` call against the `_f32` call on the
//!   widened logits (loss and lse bit for bit, each 16-bit output the float one rounded to
//!   nearest even), out of place and in place, and their bad inputs as `bad_input.c` does;
//! - `f64_dtype.c` checks every `_f64` call against its own double-precision evaluation of
//!   the formulas of docs/semantics.md (within 1e-12 relative), in place against separate bit for bit,
//!   and their bad inputs as `bad_input.c` does, with misaligned `double` pointers and
//!   overlaps counted in bytes;
//! - `check.h` holds what they share: the check counters, `EXPECT`, and the arena a refused
//!   call must leave as it was;
//! - `threads.c` calls `xent_cross_entropy_f32` from 8 threads at once and compares with
//!   the serial results bit for bit, under each thread setting;
//! - `shard.c` cuts a batch into 1, 2 and 3 uneven shards of the vocabulary in one process,
//!   runs `xent_shard_stats_f32`, `xent_merge_shard_rows` and `xent_shard_finish_f32` under
//!   several option sets, and compares loss, lse and the assembled gradient with the
//!   unsharded `xent_cross_entropy_f32` within docs/semantics.md's tolerances (loss and lse the same
//!   bits on every shard); and checks their bad inputs as `bad_input.c` does;
//! - `linear.c` checks `xent_linear_cross_entropy_f32` against the unfused composition done
//!   in C (the logits H·Wᵀ + b, exact in float, through `xent_cross_entropy_f32`, then
//!   dH = G·W, dW = Gᵀ·H and db = Σ G in double) within docs/semantics.md's tolerances propagated
//!   through the GEMMs' f32 accumulation, over dims 1, 3, 17 and 65, five option sets,
//!   strides, ignored rows and −∞ bias entries; `xent_linear_cross_entropy_bf16` against the
//!   `_f32` call on the widened values (loss and lse bit for bit, each gradient rounded to
//!   nearest even); and the bf16 call's bad inputs as `bad_input.c` does;
//! - `stress.c` generates 10,000 calls (from a constant seed) to every computing function of
//!   the header — each of the five cross-entropy and softmax functions in its four types,
//!   the three sharded ones, the three linear heads — over random shapes (some on the pool,
//!   some with rows split into parallel blocks), strides, options and outputs, about 10%
//!   of them refused (NULL pointers, bad shapes, misaligned pointers, targets out of range,
//!   bad options, overlapping buffers); runs them one after another, checking each status
//!   and that a refused call wrote nothing, then from 8 threads at once under
//!   `xent_set_num_threads` 1, 2, 0 and 4, comparing every status and output byte with the
//!   serial run;
//! - `fork.c` forks after calls on the default pool, after `xent_set_num_threads(2)`, with
//!   no pool, and while another thread is inside a call; each child (and a grandchild)
//!   runs calls under every thread setting, guarded by `alarm()`, with the parent's bits;
//! - `fpenv.c` sets FTZ and DAZ (then also rounding toward zero) in MXCSR and checks that
//!   every kind of call gives the default environment's bits under settings 1, 2 and 0,
//!   with pools started from that thread, and leaves MXCSR as it was;
//! - `thread_limit.c` asks for 3000 threads in child processes under address-space limits
//!   that refuse them at every stage of a pool's start: a status, never an abort, and
//!   working calls after it;
//! - `simd_env.c` prints `xent_simd_level()`, for `XENT_SIMD` run with each name.

mod common;

use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use common::{Lang, Linkage, Scratch, build_program, crate_dir, program, run_stdout};

/// Turns at the system's threads. `thread_limit.c` asks for 3000 threads, and where its
/// loosest limit lets them start they can use up a container's process limit, so that
/// another program running beside it is refused its pool or its `pthread_create` (a
/// failure that has nothing to do with that program): it runs alone, under the write lock,
/// and the others side by side under the read lock.
static SYSTEM_THREADS: RwLock<()> = RwLock::new(());

/// A turn beside the other programs (never beside `thread_limit.c`), held while the guard
/// lives.
fn beside_others() -> RwLockReadGuard<'static, ()> {
    SYSTEM_THREADS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Builds `tests/c/<name>.c` with `flags` and `libs` against each linkage, runs it beside
/// the other programs but never beside `thread_limit.c`, and returns its outputs.
fn build_and_run(name: &str, flags: &[&str], libs: &[&str]) -> Vec<String> {
    let _turn = beside_others();
    build_and_run_now(name, flags, libs)
}

/// [`build_and_run`] without waiting for a turn.
fn build_and_run_now(name: &str, flags: &[&str], libs: &[&str]) -> Vec<String> {
    let dir = Scratch::new(&format!("c-{name}"));
    let source = crate_dir().join("tests/c").join(format!("{name}.c"));
    Linkage::BOTH
        .into_iter()
        .map(|linkage| {
            let exe = dir.join(format!("{name}-{}", linkage.name()));
            build_program(Lang::C99, &source, &exe, linkage, flags, libs);
            let output = run_stdout(&mut program(&exe));
            println!("{name} ({}):\n{output}", linkage.name());
            output
        })
        .collect()
}

/// Checks a program's last line, "<name>.c: N of N checks passed", with more than `min`
/// checks, and that no line says FAIL.
fn assert_all_checks_passed(output: &str, name: &str, min: u32) {
    assert!(!output.contains("FAIL"), "{output}");
    let summary = output.lines().last().unwrap_or_default();
    let (passed, total) = summary
        .strip_prefix(&format!("{name}.c: "))
        .and_then(|s| s.split_once(" checks passed"))
        .and_then(|(s, _)| s.split_once(" of "))
        .unwrap_or_else(|| panic!("no summary line in:\n{output}"));
    assert_eq!(passed, total, "{output}");
    assert!(
        total.parse::<u32>().unwrap() > min,
        "too few checks ran:\n{output}"
    );
}

#[test]
fn every_bad_input_gets_its_status_and_writes_nothing() {
    let version = format!("-DXENT_EXPECTED_VERSION=\"{}\"", env!("CARGO_PKG_VERSION"));
    for output in build_and_run("bad_input", &[&version], &["-lm"]) {
        assert_all_checks_passed(&output, "bad_input", 300);
    }
}

#[test]
fn half_dtypes_give_the_f32_results_rounded_once() {
    for output in build_and_run("half_dtypes", &[], &["-lm"]) {
        assert_all_checks_passed(&output, "half_dtypes", 2000);
    }
}

#[test]
fn f64_matches_the_formulas_in_double() {
    for output in build_and_run("f64_dtype", &[], &["-lm"]) {
        assert_all_checks_passed(&output, "f64_dtype", 1000);
    }
}

#[test]
fn concurrent_calls_from_c_threads_match_serial_calls() {
    for output in build_and_run("threads", &["-pthread"], &[]) {
        assert!(
            output.ends_with("threads.c: all results identical\n"),
            "{output}"
        );
    }
}

#[test]
fn shards_match_the_unsharded_call() {
    for output in build_and_run("shard", &[], &["-lm"]) {
        assert_all_checks_passed(&output, "shard", 3000);
    }
}

#[test]
fn linear_matches_the_unfused_composition() {
    for output in build_and_run("linear", &[], &["-lm"]) {
        assert_all_checks_passed(&output, "linear", 30000);
    }
}

#[test]
fn ten_thousand_mixed_calls_from_c_threads_match_serial_calls() {
    // -O2: the program's own generating, copying and hashing, not the library, would take
    // most of the time at -O0.
    for output in build_and_run("stress", &["-pthread", "-O2"], &["-lm"]) {
        assert!(!output.contains("FAIL"), "{output}");
        let mut lines = output.lines().rev();
        // The last line: "stress.c: 10000 calls (N ok, M refused) compared under 4 thread
        // settings from 8 threads, 0 differ".
        let summary = lines.next().unwrap_or_default();
        let (calls, ok, refused, differ) = summary
            .strip_prefix("stress.c: ")
            .and_then(|s| s.split_once(" calls ("))
            .and_then(|(calls, s)| {
                let (ok, s) = s.split_once(" ok, ")?;
                let (refused, s) = s.split_once(" refused) compared under 4 thread settings")?;
                let differ = s
                    .strip_prefix(" from 8 threads, ")?
                    .strip_suffix(" differ")?;
                Some((calls, ok, refused, differ))
            })
            .unwrap_or_else(|| panic!("no summary line in:\n{output}"));
        let count = |s: &str| s.parse::<usize>().unwrap();
        assert_eq!(count(calls), 10_000, "{output}");
        assert_eq!(count(ok) + count(refused), 10_000, "{output}");
        assert!(
            (500..1500).contains(&count(refused)),
            "about 10% refused:\n{output}"
        );
        assert_eq!(count(differ), 0, "{output}");
        // The line before: every serial check passed.
        let (passed, total) = lines
            .next()
            .and_then(|s| s.strip_prefix("stress.c: "))
            .and_then(|s| s.split_once(" checks passed"))
            .and_then(|(s, _)| s.split_once(" of "))
            .unwrap_or_else(|| panic!("no checks line in:\n{output}"));
        assert_eq!(passed, total, "{output}");
        assert!(count(total) > 20_000, "too few checks ran:\n{output}");
    }
}

#[test]
fn forked_children_get_working_calls_with_the_same_bits() {
    for output in build_and_run("fork", &["-pthread"], &[]) {
        assert_all_checks_passed(&output, "fork", 15);
    }
}

#[test]
fn the_callers_floating_point_environment_changes_no_bit() {
    for output in build_and_run("fpenv", &[], &[]) {
        let min = if cfg!(target_arch = "x86_64") { 100 } else { 0 };
        if min == 0 {
            assert!(output.ends_with("fpenv.c: 0 of 0 checks passed (MXCSR is x86-64's)\n"));
        } else {
            assert_all_checks_passed(&output, "fpenv", min);
        }
    }
}

#[test]
fn threads_the_system_refuses_never_abort() {
    let _alone = SYSTEM_THREADS
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    for output in build_and_run_now("thread_limit", &[], &[]) {
        assert_all_checks_passed(&output, "thread_limit", 100);
        assert!(output.contains(", 0 killed\n"), "{output}");
    }
}

/// `XENT_SIMD` takes every name `xent_simd_level()` prints and the short ones, in any case;
/// a tier the CPU lacks or an unknown name leaves the detected tier after one line on
/// stderr; an empty value is no value.
#[test]
fn xent_simd_takes_every_name_it_prints() {
    let _turn = beside_others();
    let dir = Scratch::new("c-simd_env");
    let source = crate_dir().join("tests/c/simd_env.c");
    let exe = dir.join("simd_env");
    build_program(Lang::C99, &source, &exe, Linkage::Static, &[], &[]);
    let run_with = |value: Option<&str>| {
        let mut command = program(&exe);
        match value {
            Some(v) => command.env("XENT_SIMD", v),
            None => command.env_remove("XENT_SIMD"),
        };
        let output = command.output().expect("run simd_env");
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        (stdout.trim_end().to_owned(), stderr)
    };
    let (detected, quiet) = run_with(None);
    assert_eq!(quiet, "");
    // Every tier, best first, with its printed and short names; those from the detected
    // one down run here.
    let portable = if cfg!(target_feature = "avx2") {
        "portable-avx2"
    } else if cfg!(target_arch = "x86_64") {
        "sse2"
    } else {
        "neon"
    };
    let mut tiers = vec![(portable, "portable"), ("scalar", "scalar")];
    if cfg!(target_arch = "x86_64") {
        tiers.splice(
            0..0,
            [
                ("avx512", "avx512"),
                ("avx512vl", "avx512vl"),
                ("avx2+fma", "avx2"),
            ],
        );
    }
    let best = tiers
        .iter()
        .position(|&(name, _)| name == detected)
        .unwrap_or_else(|| panic!("detected {detected:?}, not a tier of {tiers:?}"));
    for (k, &(name, short)) in tiers.iter().enumerate() {
        for value in [
            name.to_owned(),
            short.to_owned(),
            name.to_uppercase(),
            format!(" {} ", short.to_uppercase()),
        ] {
            let (level, stderr) = run_with(Some(&value));
            if k >= best {
                assert_eq!(
                    (level.as_str(), stderr.as_str()),
                    (name, ""),
                    "XENT_SIMD={value:?}"
                );
            } else {
                assert_eq!(level, detected, "XENT_SIMD={value:?} on a CPU without it");
                assert_eq!(stderr.lines().count(), 1, "{stderr}");
                assert!(stderr.contains("this CPU lacks"), "{stderr}");
            }
        }
    }
    for value in ["avx", "sse", "fast", "avx2fma"] {
        let (level, stderr) = run_with(Some(value));
        assert_eq!(level, detected, "XENT_SIMD={value:?}");
        assert_eq!(stderr.lines().count(), 1, "one line, once: {stderr}");
        assert!(stderr.starts_with("xent: XENT_SIMD="), "{stderr}");
        assert!(stderr.contains("names no kernel tier"), "{stderr}");
    }
    assert_eq!(run_with(Some("")), (detected.clone(), String::new()));
}
