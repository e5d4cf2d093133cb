//! Where calls run: on a rayon pool this library owns — never the host program's global
//! pool — or on the calling thread, as `xent_set_num_threads` last chose.
//!
//! Results do not depend on the choice: the core crate splits a batch by its shape alone
//! and combines partial sums in row order.

use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::boundary::status_call;
use crate::status::XentStatus;

/// The thread setting in force.
enum Setting {
    /// One thread per core, on a pool built at first use (`xent_set_num_threads(0)`, the
    /// default).
    AllCores,
    /// Every call on its calling thread (`xent_set_num_threads(1)`).
    CallingThread,
    /// A pool of the requested size (`xent_set_num_threads(n)`, n > 1).
    Pool(Arc<ThreadPool>),
}

static SETTING: RwLock<Setting> = RwLock::new(Setting::AllCores);

/// A pool's worker threads are named `xent-0`, `xent-1`, …
fn pool_builder() -> ThreadPoolBuilder {
    ThreadPoolBuilder::new().thread_name(|i| format!("xent-{i}"))
}

/// The all-cores pool, built once at first use; `None` when the system refused its threads
/// (calls then run on their calling thread, with the same results).
fn all_cores_pool() -> Option<Arc<ThreadPool>> {
    static POOL: OnceLock<Option<Arc<ThreadPool>>> = OnceLock::new();
    POOL.get_or_init(|| pool_builder().build().ok().map(Arc::new))
        .clone()
}

/// The pool a call made now runs on, `None` for the calling thread. The `Arc` keeps the
/// pool alive for the call even if another thread changes the setting meanwhile.
fn current_pool() -> Option<Arc<ThreadPool>> {
    {
        let setting = SETTING.read().unwrap_or_else(PoisonError::into_inner);
        match &*setting {
            Setting::AllCores => {}
            Setting::CallingThread => return None,
            Setting::Pool(pool) => return Some(Arc::clone(pool)),
        }
    }
    // Outside the lock, which a first call would otherwise hold while it builds the pool.
    all_cores_pool()
}

/// Runs one call's work where the setting says.
pub(crate) fn run<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match current_pool() {
        Some(pool) => pool.install(work),
        None => xent_core::on_calling_thread(work),
    }
}

/// Replaces the setting; the previous pool shuts down when its last running call ends.
fn set(threads: usize) -> Result<(), XentStatus> {
    let setting = match threads {
        0 => Setting::AllCores,
        1 => Setting::CallingThread,
        n if n > rayon::max_num_threads() => return Err(XentStatus::InvalidOption),
        n => {
            let pool = pool_builder()
                .num_threads(n)
                .build()
                .map_err(|_| XentStatus::InvalidOption)?;
            Setting::Pool(Arc::new(pool))
        }
    };
    let previous = {
        let mut current = SETTING.write().unwrap_or_else(PoisonError::into_inner);
        core::mem::replace(&mut *current, setting)
    };
    drop(previous);
    Ok(())
}

/// Sets how many threads the calls that start from now on use: `0` one per core (or
/// `RAYON_NUM_THREADS` when set), the default; `1` the calling thread only, with no thread
/// pool at all; `n > 1` a pool of `n` threads. The pools belong to xent: a host program's
/// own rayon pool is never used or resized. Results are bit-identical whatever the setting.
///
/// Safe to call from any thread at any time: calls already running finish on the threads
/// they started with.
///
/// Returns `XENT_STATUS_INVALID_OPTION`, keeping the previous setting, when `n` exceeds the
/// most threads a pool can have (65535 on 64-bit targets) or the system refuses to start
/// the threads.
#[unsafe(no_mangle)]
pub extern "C" fn xent_set_num_threads(n: usize) -> XentStatus {
    status_call(|| set(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name of the thread `run` ran on.
    fn where_run() -> Option<String> {
        run(|| std::thread::current().name().map(str::to_owned))
    }

    // One test, because the setting is process-wide and tests run in parallel.
    #[test]
    fn the_setting_decides_where_calls_run() {
        assert_eq!(xent_set_num_threads(3), XentStatus::Ok);
        assert!(where_run().unwrap().starts_with("xent-"));
        assert_eq!(run(rayon::current_num_threads), 3);

        assert_eq!(xent_set_num_threads(1), XentStatus::Ok);
        let here = std::thread::current().name().map(str::to_owned);
        assert_eq!(where_run(), here);

        assert_eq!(xent_set_num_threads(usize::MAX), XentStatus::InvalidOption);
        assert_eq!(where_run(), here, "a refused count keeps the setting");

        assert_eq!(xent_set_num_threads(0), XentStatus::Ok);
        assert!(where_run().unwrap().starts_with("xent-"));
        assert_eq!(
            run(rayon::current_num_threads),
            pool_builder().build().unwrap().current_num_threads()
        );

        assert_eq!(
            status_call(|| run(|| -> Result<(), XentStatus> { panic!("a bug on a pool thread") })),
            XentStatus::InternalPanic
        );
    }
}
