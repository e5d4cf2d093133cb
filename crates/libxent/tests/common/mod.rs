//! Shared machinery of the tests that compile C and C++ against the library: where
//! `libxent.a`, `libxent.so` and the header are, scratch directories, and compiler, linker
//! and run steps that fail the test with the tool's own output.
#![allow(dead_code, unreachable_pub)]

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The warnings every C and C++ file of the project compiles without.
pub const STRICT: [&str; 4] = ["-Wall", "-Wextra", "-Wpedantic", "-Werror"];

/// The repository's root.
pub fn repo_root() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .ancestors()
        .nth(2)
        .expect("crates/libxent is two levels down")
        .to_path_buf()
}

/// This crate's directory.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory of the committed header.
pub fn include_dir() -> PathBuf {
    repo_root().join("include")
}

/// `target/<profile>/deps`: where cargo put this test binary, and, built for it as the
/// dependency it is, `libxent.a`, `libxent.so` and `libxent.rlib` of the current sources.
pub fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .expect("the test binary's directory")
        .to_path_buf()
}

/// The static library, built by cargo from the current sources.
pub fn static_lib() -> PathBuf {
    let lib = deps_dir().join("libxent.a");
    assert!(lib.is_file(), "{} is missing", lib.display());
    lib
}

/// The directory of the shared library, built by cargo from the current sources.
pub fn shared_lib_dir() -> PathBuf {
    let dir = deps_dir();
    assert!(
        dir.join("libxent.so").is_file(),
        "{}/libxent.so is missing",
        dir.display()
    );
    dir
}

/// A fresh, empty directory for one test's files, under `target/<profile>/libxent-tests`,
/// named after the test and this process (runs sharing a target directory do not meet).
/// It is removed when dropped, unless the test is failing: then it stays for a look.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = deps_dir()
            .parent()
            .expect("target/<profile>")
            .join("libxent-tests")
            .join(format!("{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create a scratch directory");
        Scratch(dir)
    }

    pub fn join(&self, path: impl AsRef<Path>) -> PathBuf {
        self.0.join(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// The C compiler: `$CC`, else `cc`.
pub fn c_compiler() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

/// The C++ compiler: `$CXX`, else `c++`.
pub fn cxx_compiler() -> String {
    std::env::var("CXX").unwrap_or_else(|_| "c++".into())
}

/// A command running a program this test built. Cargo runs tests with `LD_LIBRARY_PATH`
/// naming `target/<profile>` before `deps`, where an older `libxent.so` copied there by a
/// `cargo build` may lie; the programs must find the library their rpath names instead.
pub fn program(exe: &Path) -> Command {
    let mut command = Command::new(exe);
    command.env_remove("LD_LIBRARY_PATH");
    command
}

/// Runs `command`, failing the test with its output unless it succeeds.
pub fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    output
}

/// Runs `command` and returns its standard output, failing the test unless it succeeds.
pub fn run_stdout(command: &mut Command) -> String {
    String::from_utf8(run(command).stdout).expect("UTF-8 output")
}

/// The system libraries a program linking `libxent.a` needs, as rustc reports them for a
/// static library on this target (`-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc` on Linux).
pub fn native_static_libs() -> &'static [String] {
    static LIBS: OnceLock<Vec<String>> = OnceLock::new();
    LIBS.get_or_init(|| {
        let dir = Scratch::new("native-static-libs");
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        fs::write(dir.join("empty.rs"), "").unwrap();
        let output = run(Command::new(rustc)
            .current_dir(dir.join(""))
            .args(["--crate-type", "staticlib", "--crate-name", "empty"])
            .args(["--print", "native-static-libs", "empty.rs"]));
        let notes = String::from_utf8_lossy(&output.stderr);
        let line = notes
            .lines()
            .find_map(|l| l.split_once("native-static-libs:"))
            .map(|(_, libs)| libs.to_owned())
            .unwrap_or_else(|| panic!("no native-static-libs note in:\n{notes}"));
        line.split_whitespace().map(str::to_owned).collect()
    })
}

/// How a program links the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linkage {
    /// `libxent.a` and the system libraries it needs.
    Static,
    /// `-lxent` from the build directory, found again at run time through an rpath.
    Shared,
}

impl Linkage {
    pub const BOTH: [Linkage; 2] = [Linkage::Static, Linkage::Shared];

    pub fn name(self) -> &'static str {
        match self {
            Linkage::Static => "static",
            Linkage::Shared => "shared",
        }
    }

    /// The linker arguments, to follow the sources on the command line.
    pub fn link_args(self) -> Vec<String> {
        match self {
            Linkage::Static => {
                let mut args = vec![static_lib().display().to_string()];
                args.extend(native_static_libs().iter().cloned());
                args
            }
            Linkage::Shared => {
                let dir = shared_lib_dir().display().to_string();
                vec![
                    format!("-L{dir}"),
                    "-lxent".into(),
                    format!("-Wl,-rpath,{dir}"),
                ]
            }
        }
    }
}

/// A language the tests compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    C99,
    Cxx17,
}

impl Lang {
    pub fn compiler(self) -> String {
        match self {
            Lang::C99 => c_compiler(),
            Lang::Cxx17 => cxx_compiler(),
        }
    }

    pub fn std_flag(self) -> &'static str {
        match self {
            Lang::C99 => "-std=c99",
            Lang::Cxx17 => "-std=c++17",
        }
    }
}

/// Compiles and links `source` into `exe` with the strict warnings, the header's
/// directory and `flags`, linked as `linkage` says, then `libs`. Returns the command line.
pub fn build_program(
    lang: Lang,
    source: &Path,
    exe: &Path,
    linkage: Linkage,
    flags: &[&str],
    libs: &[&str],
) -> String {
    let mut command = Command::new(lang.compiler());
    command
        .arg(lang.std_flag())
        .args(STRICT)
        .args(flags)
        .arg("-I")
        .arg(include_dir())
        .arg(source)
        .args(linkage.link_args())
        .args(libs)
        .arg("-o")
        .arg(exe);
    run(&mut command);
    let words: Vec<_> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect();
    words.join(" ")
}
