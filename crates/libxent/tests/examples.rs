//! The C and C++ examples compile without a warning (`-std=c99` / `-std=c++17` with
//! `-Wall -Wextra -Wpedantic -Werror`), link against the static and the shared library,
//! run, reach their accuracy, and print the same thing either way.
//!
//! `cargo test -p libxent --test examples -- --nocapture` shows each compile line and the
//! programs' output.

mod common;

use common::{Lang, Linkage, Scratch, build_program, crate_dir, program, run_stdout};

/// The held-out accuracy an example must beat.
const MIN_ACCURACY: f64 = 0.9;

/// The accuracy on the example's `held-out accuracy 0.972 (486 of 500)` line.
fn accuracy(output: &str) -> f64 {
    output
        .lines()
        .find_map(|line| line.strip_prefix("held-out accuracy "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy line in:\n{output}"))
}

/// Builds and runs one example with each linkage; returns the output of the last.
fn build_and_run(lang: Lang, source: &str, include_example_dir: bool) -> String {
    let name = source.rsplit('/').next().unwrap().replace('.', "-");
    let dir = Scratch::new(&format!("example-{name}"));
    let source = crate_dir().join("examples").join(source);
    let example_dir = source.parent().unwrap().display().to_string();
    let extra: Vec<&str> = if include_example_dir {
        vec!["-I", &example_dir]
    } else {
        vec![]
    };
    let mut outputs = Vec::new();
    for linkage in Linkage::BOTH {
        let exe = dir.join(format!("{name}-{}", linkage.name()));
        let line = build_program(lang, &source, &exe, linkage, &extra, &[]);
        println!("$ {line}");
        let output = run_stdout(&mut program(&exe));
        println!("{output}");
        let acc = accuracy(&output);
        assert!(
            acc > MIN_ACCURACY,
            "{name} ({}) reached {acc}, not above {MIN_ACCURACY}",
            linkage.name()
        );
        outputs.push(output);
    }
    assert_eq!(
        outputs[0], outputs[1],
        "{name}: the static and the shared library disagree"
    );
    outputs.pop().unwrap()
}

#[test]
fn c_example_trains_a_classifier() {
    let output = build_and_run(Lang::C99, "c/softmax_classifier.c", false);
    assert!(output.starts_with("xent "), "version line first:\n{output}");
    assert!(output.contains("epoch 12  mean training loss"), "{output}");
}

#[test]
fn cpp_example_trains_a_classifier_and_catches_a_refusal() {
    let output = build_and_run(Lang::Cxx17, "cpp/softmax_classifier.cpp", true);
    assert!(
        output.contains(
            "refused (status 3): xent_cross_entropy_f32: a hard target lies outside [0, cols)"
        ),
        "the refused call's line is missing:\n{output}"
    );
}

/// The `c` code block of the README's "Use from C" section.
fn readme_c_example() -> (String, String) {
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Use from C"))
        .expect("the README has a section \"Use from C\"")
        .to_owned();
    let code = section
        .split_once("```c\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(code, _)| code.to_owned())
        .expect("the section has a c code block");
    (section, code)
}

#[test]
fn readme_c_example_prints_what_the_readme_says() {
    let (section, code) = readme_c_example();
    let dir = Scratch::new("readme");
    let source = dir.join("example.c");
    std::fs::write(&source, code).unwrap();
    for linkage in Linkage::BOTH {
        let exe = dir.join(format!("example-{}", linkage.name()));
        build_program(Lang::C99, &source, &exe, linkage, &[], &[]);
        let output = run_stdout(&mut program(&exe));
        assert!(
            section.contains(&format!("`{}`", output.trim())),
            "the README's example prints {output:?}, which the README does not say"
        );
    }
}
