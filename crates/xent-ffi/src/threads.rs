//! Where calls run: on a rayon pool this library owns — never the host program's global
//! pool — or on the calling thread, as `xent_set_num_threads` last chose.
//!
//! Results do not depend on the choice: the core crate splits a batch by its shape alone
//! and combines partial sums in row order, and computes in the default floating-point
//! environment on every thread (the pool's threads start in it).
//!
//! Three hazards of a long-lived pool inside a host program are handled here:
//!
//! - **fork.** A child process has only the thread that forked: the pool's threads are
//!   gone, and waiting for them would hang the child's first call. Handlers registered with
//!   `pthread_atfork` hold the setting's lock across `fork()` (so the child never inherits
//!   it held by a thread that no longer exists) and, in the child, drop the pool without
//!   touching it (its threads and the locks they held are gone; its memory is leaked). The
//!   child's next call builds a new pool of the same size. `pthread_atfork` rather than a
//!   pid check on every call, because only a handler that runs at the fork itself can make
//!   the lock safe to take in the child.
//! - **A pool the system refuses.** A thread started by the standard library registers a
//!   thread-local destructor before its body runs, and rayon's workers register more as they
//!   start; glibc aborts the whole process when it cannot allocate for one ("failed to
//!   register TLS destructor: out of memory"), which is what the last threads of a pool of
//!   3000 meet under a memory limit. So on Unix the pool's threads are plain POSIX threads
//!   whose first code is this module's: each reserves memory for its start (failing
//!   gracefully), reports, and waits at a [`Gate`]. Only when every thread of the pool
//!   exists and holds its reserve do they free it and run rayon's code; otherwise they exit
//!   without touching it and are joined. A refused pool is `XENT_STATUS_INVALID_OPTION` from
//!   `xent_set_num_threads` (the previous setting stays), or, for the default pool or one
//!   rebuilt after a fork, calls on the calling thread.
//! - **The caller's floating-point environment**, which threads inherit from the thread
//!   that creates them: each pool thread sets the default one as it starts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use rayon::{ThreadBuilder, ThreadPool, ThreadPoolBuilder};

use crate::boundary::status_call;
use crate::status::XentStatus;

/// The thread setting in force.
struct State {
    /// What `xent_set_num_threads` last set: 0 one thread per core, 1 the calling thread,
    /// n > 1 a pool of n threads.
    threads: usize,
    /// The setting's pool, once built (never for setting 1).
    pool: Option<Arc<ThreadPool>>,
    /// The system refused the threads of the setting's pool when a call tried to build it
    /// (after a fork, or the default pool): calls run on their calling thread until the
    /// setting changes.
    refused: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    threads: 0,
    pool: None,
    refused: false,
});

/// The setting, whatever a panic elsewhere left (every update replaces whole fields).
fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The pool a call made now runs on, `None` for the calling thread; builds the setting's
/// pool on first use. The `Arc` keeps the pool alive for the call even if another thread
/// changes the setting meanwhile.
fn current_pool() -> Option<Arc<ThreadPool>> {
    watch_forks();
    let mut state = state();
    if state.threads == 1 || state.refused {
        return None;
    }
    if state.pool.is_none() {
        // Under the lock: the threads of concurrent first calls wait for one pool.
        match build_pool(state.threads) {
            Ok(pool) => state.pool = Some(Arc::new(pool)),
            Err(_) => state.refused = true,
        }
    }
    state.pool.clone()
}

/// Runs one call's work where the setting says.
pub(crate) fn run<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match current_pool() {
        Some(pool) => pool.install(work),
        None => xent::on_calling_thread(work),
    }
}

/// Replaces the setting; the previous pool shuts down when its last running call ends.
fn set(threads: usize) -> Result<(), XentStatus> {
    watch_forks();
    if threads > rayon::max_num_threads() {
        return Err(XentStatus::InvalidOption);
    }
    // Built before taking the lock, so that calls meanwhile are not held up; the default
    // pool is built by the first call that needs it.
    let pool = match threads {
        0 | 1 => None,
        n => Some(Arc::new(
            build_pool(n).map_err(|_| XentStatus::InvalidOption)?,
        )),
    };
    let previous = {
        let mut state = state();
        state.threads = threads;
        state.refused = false;
        core::mem::replace(&mut state.pool, pool)
    };
    drop(previous);
    Ok(())
}

/// Why a pool could not be built: the system refused a thread, or the memory it starts with.
#[derive(Debug)]
struct Refused;

/// A pool of `threads` threads (0: rayon's default, one per core or `RAYON_NUM_THREADS`),
/// named `xent-0`, `xent-1`, …, in the default floating-point environment, started through
/// a [`Gate`] so that a refused pool never runs a thread of rayon's code.
fn build_pool(threads: usize) -> Result<ThreadPool, Refused> {
    let gate = Arc::new(Gate::default());
    let spawner = Arc::clone(&gate);
    let built = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("xent-{i}"))
        .start_handler(|_| xent::set_default_on_this_thread())
        .spawn_handler(move |thread| spawner.spawn(thread))
        .build();
    match built {
        Ok(pool) if gate.all_ready(pool.current_num_threads()) => {
            gate.open(true);
            Ok(pool)
        }
        Ok(pool) => {
            gate.open(false);
            drop(pool);
            Err(Refused)
        }
        Err(_) => {
            gate.open(false);
            Err(Refused)
        }
    }
}

/// Memory each pool thread reserves before rayon's code runs on it, and frees just before:
/// the allocations of its start (rayon's and glibc's thread-local bookkeeping, a few KiB)
/// then come from memory this thread's allocator already holds. Below glibc's threshold for
/// a mapping of its own (128 KiB), so that freeing it keeps it in the allocator.
const START_RESERVE: usize = 64 << 10;

/// Memory the pool's builder reserves before starting each thread (see [`Gate::spawn`]):
/// several times what the start allocates, below glibc's threshold for a mapping of its own.
const SPAWN_RESERVE: usize = 4 << 10;

/// Where a pool's threads wait until the pool is known to be whole.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    /// A thread reported (the builder waits on this, the threads do not: waking thousands
    /// of waiting threads at each report would take quadratic time).
    reported: Condvar,
    /// The verdict was given (the threads wait on this).
    decided: Condvar,
}

#[derive(Default)]
struct GateState {
    /// The threads started, to join if the pool is refused.
    threads: Vec<os_thread::Handle>,
    /// Threads that started and hold their reserve.
    ready: usize,
    /// Threads that started but could not reserve it.
    failed: usize,
    /// `Some(true)`: run rayon's code; `Some(false)`: exit without it.
    verdict: Option<bool>,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts one of the pool's threads, gated (rayon's spawn handler).
    ///
    /// Starting a thread allocates a few hundred bytes here (its name, its boxed body, the
    /// start's box), where an allocation the system refuses would abort: the stacks of the
    /// threads already started may have used up the address space. So the memory is
    /// reserved first, failing gracefully, and freed just before those allocations, which
    /// then come from it; the handle's slot is reserved before the thread exists.
    fn spawn(self: &Arc<Self>, thread: ThreadBuilder) -> std::io::Result<()> {
        let refused = || std::io::Error::from(std::io::ErrorKind::OutOfMemory);
        self.lock().threads.try_reserve(1).map_err(|_| refused())?;
        drop(Reserve::new(SPAWN_RESERVE).ok_or_else(refused)?);
        let gate = Arc::clone(self);
        let name = thread.name().map(str::to_owned);
        let stack = thread.stack_size();
        let handle = os_thread::spawn(name, stack, Box::new(move || gate.enter(thread)))?;
        self.lock().threads.push(handle);
        Ok(())
    }

    /// A pool thread's body: reserve, report, wait for the verdict.
    fn enter(&self, thread: ThreadBuilder) {
        let reserve = Reserve::new(START_RESERVE);
        let run = {
            let mut state = self.lock();
            if reserve.is_some() {
                state.ready += 1;
            } else {
                state.failed += 1;
            }
            self.reported.notify_one();
            let state = self
                .decided
                .wait_while(state, |s| s.verdict.is_none())
                .unwrap_or_else(PoisonError::into_inner);
            state.verdict == Some(true) && reserve.is_some()
        };
        drop(reserve);
        if run {
            thread.run();
        }
        // Otherwise `thread` is dropped unrun: the pool it belonged to is being refused.
    }

    /// Waits until each of `threads` threads has started, and says whether all hold their
    /// reserve.
    fn all_ready(&self, threads: usize) -> bool {
        let state = self.lock();
        let state = self
            .reported
            .wait_while(state, |s| s.ready + s.failed < threads)
            .unwrap_or_else(PoisonError::into_inner);
        state.failed == 0
    }

    /// Lets the waiting threads run rayon's code (`true`, and they are detached) or exit
    /// (`false`, and they are joined, so that their memory is back when this returns).
    fn open(&self, run: bool) {
        let threads = {
            let mut state = self.lock();
            state.verdict = Some(run);
            core::mem::take(&mut state.threads)
        };
        self.decided.notify_all();
        for thread in threads {
            if run {
                thread.detach();
            } else {
                thread.join();
            }
        }
    }
}

/// A block of memory taken from the allocator without aborting when it is refused.
struct Reserve {
    block: core::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

impl Reserve {
    /// `bytes` bytes, touched page by page so that the system backs them now; `None` when
    /// the allocator refuses them.
    fn new(bytes: usize) -> Option<Reserve> {
        let layout = std::alloc::Layout::from_size_align(bytes, 64).ok()?;
        // SAFETY: the layout has a non-zero size.
        let block = core::ptr::NonNull::new(unsafe { std::alloc::alloc(layout) })?;
        for offset in (0..bytes).step_by(4096) {
            // SAFETY: `offset < bytes`, inside the block just allocated.
            unsafe { block.as_ptr().add(offset).write_volatile(0) };
        }
        Some(Reserve { block, layout })
    }
}

impl Drop for Reserve {
    fn drop(&mut self) {
        // SAFETY: allocated in `Reserve::new` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.block.as_ptr(), self.layout) };
    }
}

/// The pool's threads: plain POSIX threads on Unix, whose first code is the body given (see
/// the module's documentation); the standard library's elsewhere, and under Miri (which
/// runs the standard library's threads, not every call of the POSIX API).
#[cfg(all(unix, not(miri)))]
mod os_thread {
    use core::ffi::c_void;
    use std::ffi::CString;
    use std::io;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    /// What a thread runs.
    type Body = Box<dyn FnOnce() + Send>;

    /// A started thread, to join or detach exactly once.
    pub(super) struct Handle(libc::pthread_t);

    // SAFETY: a pthread_t is an identifier, usable from any thread.
    unsafe impl Send for Handle {}

    /// Rust's default stack for spawned threads (rayon asks for none of its own).
    const DEFAULT_STACK: usize = 2 << 20;

    /// Starts a thread named `name` (as the system shows it) with a stack of `stack` bytes
    /// running `body`; the system's refusal is an error, never an abort.
    pub(super) fn spawn(
        name: Option<String>,
        stack: Option<usize>,
        body: Body,
    ) -> io::Result<Handle> {
        let name = name.and_then(|n| CString::new(n).ok());
        let start: Box<(Option<CString>, Body)> = Box::new((name, body));
        let stack = stack.unwrap_or(DEFAULT_STACK).max(libc::PTHREAD_STACK_MIN);
        // SAFETY: `attr` is initialised before use and destroyed after; `start` is leaked
        // into the thread, which takes it back exactly once (or it is taken back here if
        // the thread is not created).
        unsafe {
            let mut attr: libc::pthread_attr_t = core::mem::zeroed();
            let status = libc::pthread_attr_init(&mut attr);
            if status != 0 {
                return Err(io::Error::from_raw_os_error(status));
            }
            let status = match libc::pthread_attr_setstacksize(&mut attr, stack) {
                0 => {
                    let mut thread: libc::pthread_t = core::mem::zeroed();
                    let arg = Box::into_raw(start).cast::<c_void>();
                    let status = libc::pthread_create(&mut thread, &attr, run, arg);
                    if status == 0 {
                        Ok(Handle(thread))
                    } else {
                        drop(Box::from_raw(arg.cast::<(Option<CString>, Body)>()));
                        Err(io::Error::from_raw_os_error(status))
                    }
                }
                status => Err(io::Error::from_raw_os_error(status)),
            };
            libc::pthread_attr_destroy(&mut attr);
            status
        }
    }

    /// The thread's entry: names it, runs the body (a panic stays in the thread; rayon's
    /// workers catch their jobs' panics themselves).
    extern "C" fn run(arg: *mut c_void) -> *mut c_void {
        // SAFETY: `arg` is the box `spawn` leaked for this thread, taken back once.
        let (name, body) = *unsafe { Box::from_raw(arg.cast::<(Option<CString>, Body)>()) };
        #[cfg(target_os = "linux")]
        if let Some(name) = &name {
            // SAFETY: a NUL-terminated name for this thread (the system truncates nothing
            // shorter than 16 bytes, like "xent-65535"; a longer one is refused, harmlessly).
            unsafe { libc::pthread_setname_np(libc::pthread_self(), name.as_ptr()) };
        }
        drop(name);
        let _ = catch_unwind(AssertUnwindSafe(body));
        core::ptr::null_mut()
    }

    impl Handle {
        /// Waits for the thread to end.
        pub(super) fn join(self) {
            // SAFETY: a thread created joinable, joined once (`self` is consumed).
            unsafe { libc::pthread_join(self.0, core::ptr::null_mut()) };
        }

        /// Lets the thread end on its own.
        pub(super) fn detach(self) {
            // SAFETY: a thread created joinable, detached once (`self` is consumed).
            unsafe { libc::pthread_detach(self.0) };
        }
    }
}

#[cfg(any(not(unix), miri))]
mod os_thread {
    use std::io;
    use std::thread::JoinHandle;

    /// A started thread.
    pub(super) struct Handle(JoinHandle<()>);

    /// Starts a thread of the standard library.
    pub(super) fn spawn(
        name: Option<String>,
        stack: Option<usize>,
        body: Box<dyn FnOnce() + Send>,
    ) -> io::Result<Handle> {
        let mut builder = std::thread::Builder::new();
        if let Some(name) = name {
            builder = builder.name(name);
        }
        if let Some(stack) = stack {
            builder = builder.stack_size(stack);
        }
        builder.spawn(body).map(Handle)
    }

    impl Handle {
        pub(super) fn join(self) {
            let _ = self.0.join();
        }

        pub(super) fn detach(self) {}
    }
}

/// Registers the fork handlers once per process (before the first pool can exist). An
/// atomic rather than a `Once`, which a fork in the middle of it would leave "running"
/// for the child's first call to wait on forever.
fn watch_forks() {
    static WATCHING: AtomicBool = AtomicBool::new(false);
    if !WATCHING.swap(true, Ordering::AcqRel) {
        fork::register();
    }
}

#[cfg(all(unix, not(miri)))]
mod fork {
    use core::cell::UnsafeCell;
    use std::sync::MutexGuard;

    use super::{State, state};

    /// The setting's lock, held by the forking thread from the prepare handler to the
    /// parent's or the child's.
    struct Held(UnsafeCell<Option<MutexGuard<'static, State>>>);

    // SAFETY: only the thread inside `fork()` touches the cell, between `prepare` (which
    // fills it once it holds the lock) and `parent`/`child` (which empty it before
    // releasing the lock); a second forking thread waits in `prepare` for that lock.
    unsafe impl Sync for Held {}

    static HELD: Held = Held(UnsafeCell::new(None));

    unsafe extern "C" fn prepare() {
        let guard = state();
        // SAFETY: see `Held`; this thread holds the lock.
        unsafe { *HELD.0.get() = Some(guard) };
    }

    /// The guard `prepare` stored.
    fn take() -> Option<MutexGuard<'static, State>> {
        // SAFETY: see `Held`; this thread holds the lock.
        unsafe { (*HELD.0.get()).take() }
    }

    unsafe extern "C" fn parent() {
        drop(take());
    }

    unsafe extern "C" fn child() {
        if let Some(mut state) = take() {
            // The pool's threads do not exist here, and any lock one of them held stays
            // held: the pool must not even be dropped (which would signal them). Its
            // memory is leaked; the next call builds a pool of the same size.
            if let Some(pool) = state.pool.take() {
                core::mem::forget(pool);
            }
            state.refused = false;
        }
    }

    pub(super) fn register() {
        // SAFETY: three `extern "C" fn()` handlers that live as long as the library; they
        // take, store and release one lock, which `prepare` waits for like any caller.
        // (On ENOMEM the handlers are missing and a child inherits a dead pool, as before
        // they existed; there is nothing better to do with the error.)
        unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    }
}

#[cfg(any(not(unix), miri))]
mod fork {
    /// No `fork` to survive (Miri has none either).
    pub(super) fn register() {}
}

/// Sets how many threads the calls that start from now on use: `0` one per core (or
/// `RAYON_NUM_THREADS` when set), the default; `1` the calling thread only, with no thread
/// pool at all; `n > 1` a pool of `n` threads. The pools belong to xent: a host program's
/// own rayon pool is never used or resized. Results are bit-identical whatever the setting.
///
/// Safe to call from any thread at any time: calls already running finish on the threads
/// they started with. A child process created by `fork()` keeps the setting and gets a
/// pool of its own at its first call.
///
/// Returns `XENT_STATUS_INVALID_OPTION`, keeping the previous setting, when `n` exceeds the
/// most threads a pool can have (65535 on 64-bit targets) or the system refuses to start
/// the threads (or the memory they start with); the process is never aborted for it. If
/// the default pool cannot be started, calls run on their calling thread.
#[unsafe(no_mangle)]
pub extern "C" fn xent_set_num_threads(n: usize) -> XentStatus {
    status_call(|| set(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread `run` ran on, and its index in a pool (`None` off a pool).
    fn where_run() -> (std::thread::ThreadId, Option<usize>) {
        run(|| (std::thread::current().id(), rayon::current_thread_index()))
    }

    // One test, because the setting is process-wide and tests run in parallel.
    #[test]
    fn the_setting_decides_where_calls_run() {
        let here = std::thread::current().id();
        assert_eq!(xent_set_num_threads(3), XentStatus::Ok);
        let (thread, index) = where_run();
        assert!(thread != here && index.is_some());
        assert_eq!(run(rayon::current_num_threads), 3);

        assert_eq!(xent_set_num_threads(1), XentStatus::Ok);
        assert_eq!(where_run(), (here, None));

        assert_eq!(xent_set_num_threads(usize::MAX), XentStatus::InvalidOption);
        assert_eq!(
            where_run(),
            (here, None),
            "a refused count keeps the setting"
        );

        assert_eq!(xent_set_num_threads(0), XentStatus::Ok);
        let (thread, index) = where_run();
        assert!(thread != here && index.is_some());
        assert_eq!(
            run(rayon::current_num_threads),
            ThreadPoolBuilder::new()
                .build()
                .unwrap()
                .current_num_threads()
        );

        assert_eq!(
            status_call(|| run(|| -> Result<(), XentStatus> { panic!("a bug on a pool thread") })),
            XentStatus::InternalPanic
        );
    }
}
