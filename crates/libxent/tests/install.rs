//! `ci/install-c.sh` installs the library, header, pkg-config file and CMake package under
//! a prefix, and a C program builds against that prefix the two documented ways:
//! `pkg-config --cflags --libs xent`, and CMake's `find_package(xent)` with the targets
//! `xent::xent` (shared) and `xent::xent_static`.
//!
//! pkg-config and CMake are installed by `ci/install-c-tools.sh`. Without one of them the
//! check that needs it is skipped with a message, except under `CI=true`, where it fails.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use common::{
    STRICT, Scratch, c_compiler, crate_dir, deps_dir, program, repo_root, run, run_stdout,
};

/// Whether `tool` runs; when it does not, fails under CI and otherwise says so.
fn tool_available(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is required under CI: run `bash ci/install-c-tools.sh` first"
        );
        eprintln!("{tool} is not installed: skipping its check (bash ci/install-c-tools.sh)");
    }
    found
}

/// Installs the libraries of this build under `dir/prefix`.
fn install(dir: &Scratch) -> PathBuf {
    let prefix = dir.join("prefix");
    run(Command::new("bash")
        .arg(repo_root().join("ci/install-c.sh"))
        .arg(&prefix)
        .arg(deps_dir()));
    for file in [
        "include/xent.h",
        "lib/libxent.so",
        "lib/libxent.a",
        "lib/pkgconfig/xent.pc",
        "lib/cmake/xent/xentConfig.cmake",
        "lib/cmake/xent/xentConfigVersion.cmake",
    ] {
        assert!(prefix.join(file).is_file(), "{file} was not installed");
    }
    prefix
}

fn c_example() -> PathBuf {
    crate_dir().join("examples/c/softmax_classifier.c")
}

/// Runs the example and checks its accuracy line.
fn run_example(example: &mut Command) {
    let output = run_stdout(example);
    let accuracy: f64 = output
        .lines()
        .find_map(|l| l.strip_prefix("held-out accuracy "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy line in:\n{output}"));
    assert!(accuracy > 0.9, "{output}");
}

#[test]
fn pkg_config_finds_the_installed_library() {
    if !tool_available("pkg-config") {
        return;
    }
    let dir = Scratch::new("install-pkg-config");
    let prefix = install(&dir);
    let pkg_config = |args: &[&str]| {
        run_stdout(
            Command::new("pkg-config")
                .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
                .args(args)
                .arg("xent"),
        )
    };
    assert_eq!(
        pkg_config(&["--modversion"]).trim(),
        env!("CARGO_PKG_VERSION")
    );
    let flags = pkg_config(&["--cflags", "--libs"]);
    assert!(flags.contains("-lxent"), "{flags}");
    println!("pkg-config --cflags --libs xent: {}", flags.trim());

    let exe = prefix.join("softmax_classifier");
    run(Command::new(c_compiler())
        .arg("-std=c99")
        .args(STRICT)
        .arg(c_example())
        .args(flags.split_whitespace())
        .arg("-o")
        .arg(&exe));
    // The loader finds the installed library through LD_LIBRARY_PATH (or ldconfig, for a
    // system prefix).
    run_example(program(&exe).env("LD_LIBRARY_PATH", prefix.join("lib")));
}

#[test]
fn cmake_find_package_links_both_libraries() {
    if !tool_available("cmake") {
        return;
    }
    let dir = Scratch::new("install-cmake");
    let prefix = install(&dir);
    let project = dir.join("consumer");
    fs::create_dir_all(&project).unwrap();
    fs::copy(c_example(), project.join("softmax_classifier.c")).unwrap();
    fs::write(
        project.join("CMakeLists.txt"),
        format!(
            r#"cmake_minimum_required(VERSION 3.13)
project(xent_consumer C)
find_package(xent {version} REQUIRED)
foreach(kind shared static)
    add_executable(classifier_${{kind}} softmax_classifier.c)
    set_target_properties(classifier_${{kind}} PROPERTIES
        C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
    target_compile_options(classifier_${{kind}} PRIVATE {strict})
endforeach()
target_link_libraries(classifier_shared PRIVATE xent::xent)
target_link_libraries(classifier_static PRIVATE xent::xent_static)
"#,
            version = env!("CARGO_PKG_VERSION"),
            strict = STRICT.join(" "),
        ),
    )
    .unwrap();
    let build = project.join("build");
    run(Command::new("cmake")
        .arg("-S")
        .arg(&project)
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display()))
        .arg(format!("-DCMAKE_C_COMPILER={}", c_compiler())));
    run(Command::new("cmake").arg("--build").arg(&build));
    // CMake gives the shared build an rpath to the installed library.
    run_example(&mut program(&build.join("classifier_shared")));
    run_example(&mut program(&build.join("classifier_static")));

    // A version from another series is refused.
    fs::write(
        project.join("CMakeLists.txt"),
        "cmake_minimum_required(VERSION 3.13)\nproject(too_new C)\nfind_package(xent 99.0 REQUIRED)\n",
    )
    .unwrap();
    let refused = Command::new("cmake")
        .arg("-S")
        .arg(&project)
        .arg("-B")
        .arg(project.join("build-too-new"))
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display()))
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "find_package(xent 99.0) succeeded"
    );
}
