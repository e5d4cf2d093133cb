//! The committed header, `include/xent.h`, is what cbindgen generates from the crate now,
//! and it compiles on its own as C99 and as C++17 without a warning.
//!
//! After changing the C ABI, rewrite the header with
//! `XENT_BLESS=1 cargo test -p libxent --test header`.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use common::{Lang, STRICT, Scratch, crate_dir, include_dir, repo_root, run};

fn header_path() -> PathBuf {
    include_dir().join("xent.h")
}

/// The crate's source as rustc expands it: one file, each module inline and every macro
/// expanded, so that cbindgen sees the functions the export macros define. This is
/// `rustc -Zunpretty=expanded` (what cbindgen's own `parse.expand` runs), through a check
/// build in a directory of its own under the test's target directory; a stable toolchain
/// accepts the flag with `RUSTC_BOOTSTRAP=1`, set for that build only.
fn expanded_source() -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("header");
    fs::create_dir_all(&out).unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let expanded = Command::new(cargo)
        .args([
            "rustc",
            "--quiet",
            "--locked",
            "--lib",
            "--profile=check",
            "-p",
            "xent-ffi",
        ])
        .arg("--manifest-path")
        .arg(repo_root().join("crates/xent-ffi/Cargo.toml"))
        .args(["--", "-Zunpretty=expanded"])
        .env("CARGO_TARGET_DIR", out.join("target"))
        .env("RUSTC_BOOTSTRAP", "1")
        .output()
        .expect("cargo runs");
    assert!(
        expanded.status.success(),
        "expanding the crate failed:\n{}",
        String::from_utf8_lossy(&expanded.stderr)
    );
    let path = out.join("expanded.rs");
    fs::write(&path, &expanded.stdout).unwrap();
    path
}

/// The header cbindgen generates from the expanded sources with `cbindgen.toml`.
fn generate() -> String {
    let config = cbindgen::Config::from_file(crate_dir().join("cbindgen.toml"))
        .expect("cbindgen.toml parses");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(expanded_source())
        .generate()
        .expect("cbindgen generates the header");
    let mut text = Vec::new();
    bindings.write(&mut text);
    String::from_utf8(text).expect("the header is UTF-8")
}

/// A line diff of `old` → `new` (longest common subsequence): the lines only `old` has, as
/// `-` with their number in `old`, and those only `new` has, as `+` with their number in
/// `new`.
fn diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    // common[i][j]: the length of the longest common subsequence of a[i..] and b[j..].
    let mut common = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = if a[i] == b[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || common[i + 1][j] >= common[i][j + 1]) {
            out += &format!("{:>5} - {}\n", i + 1, a[i]);
            i += 1;
        } else {
            out += &format!("{:>5} + {}\n", j + 1, b[j]);
            j += 1;
        }
    }
    out
}

#[test]
fn committed_header_is_what_cbindgen_generates() {
    let generated = generate();
    assert!(
        generated.is_ascii(),
        "the header must be ASCII: keep the exported doc comments ASCII"
    );
    let path = header_path();
    let committed = fs::read_to_string(&path).unwrap_or_default();
    if committed == generated {
        return;
    }
    if std::env::var_os("XENT_BLESS").is_some_and(|v| v == "1") {
        fs::create_dir_all(include_dir()).unwrap();
        fs::write(&path, &generated).unwrap();
        eprintln!("rewrote {}", path.display());
        return;
    }
    panic!(
        "{} is stale: it differs from what cbindgen generates now.\n\
         Rewrite it with `XENT_BLESS=1 cargo test -p libxent --test header` and commit it.\n\
         Changes (- committed, + generated):\n{}",
        path.display(),
        diff(&committed, &generated)
    );
}

#[test]
fn the_diff_names_changed_lines() {
    assert_eq!(diff("a\nb\nc\n", "a\nb\nc\n"), "");
    assert_eq!(diff("a\nb\nc\n", "a\nx\nc\n"), "    2 - b\n    2 + x\n");
    assert_eq!(diff("a\n", "a\nb\n"), "    2 + b\n");
}

/// Compiles a file that includes only the header, with every declaration used.
fn compile_header_alone(lang: Lang, extra: &[&str]) {
    let dir = Scratch::new(&format!(
        "header-{}",
        lang.std_flag().trim_start_matches("-std=")
    ));
    let source = dir.join(match lang {
        Lang::C99 => "use_header.c",
        Lang::Cxx17 => "use_header.cpp",
    });
    fs::write(
        &source,
        r#"#include "xent.h"
#include "xent.h" /* the include guard makes a second inclusion harmless */

int main(void) {
    xent_options options = xent_options_default();
    xent_reduction reduction = XENT_REDUCTION_NONE;
    xent_status status = XENT_STATUS_OK;
    float logits[2] = {0.0f, 1.0f};
    int64_t target = 1;
    float loss = 0.0f;
    options.reduction = (uint32_t)reduction;
    status = xent_set_num_threads(1);
    status = xent_cross_entropy_f32(logits, 1, 2, 2, &target, &options, &loss, NULL, 0, NULL);
    (void)xent_cross_entropy_soft_f32;
    (void)xent_cross_entropy_backward_f32;
    (void)xent_softmax_f32;
    (void)xent_log_softmax_f32;
    (void)xent_cross_entropy_bf16;
    (void)xent_cross_entropy_soft_bf16;
    (void)xent_cross_entropy_backward_bf16;
    (void)xent_softmax_bf16;
    (void)xent_log_softmax_bf16;
    (void)xent_cross_entropy_f16;
    (void)xent_cross_entropy_soft_f16;
    (void)xent_cross_entropy_backward_f16;
    (void)xent_softmax_f16;
    (void)xent_log_softmax_f16;
    (void)xent_cross_entropy_f64;
    (void)xent_cross_entropy_soft_f64;
    (void)xent_cross_entropy_backward_f64;
    (void)xent_softmax_f64;
    (void)xent_log_softmax_f64;
    return (xent_status_string(status) != NULL && xent_version() != NULL
            && xent_simd_level() != NULL) ? 0 : 1;
}
"#,
    )
    .unwrap();
    run(Command::new(lang.compiler())
        .arg(lang.std_flag())
        .args(STRICT)
        .args(extra)
        .arg("-I")
        .arg(include_dir())
        .arg("-fsyntax-only")
        .arg(&source));
}

#[test]
fn header_compiles_as_c99() {
    compile_header_alone(
        Lang::C99,
        &[
            "-Wstrict-prototypes",
            "-Wmissing-prototypes",
            "-Wconversion",
        ],
    );
}

#[test]
fn header_compiles_as_cxx17() {
    compile_header_alone(Lang::Cxx17, &["-Wconversion"]);
}
