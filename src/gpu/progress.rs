//! [`Progress`]: reporting long work (the weight upload, perplexity windows) as it advances.

use std::cell::RefCell;
use std::sync::Arc;

use crate::error::Result;

/// A progress callback for long work, called with (done, total) as it advances: bytes for
/// [`LoadOptions::progress`](crate::LoadOptions::progress), windows for
/// [`perplexity_with_progress`](crate::perplexity_with_progress).
///
/// ```
/// let opts = wgpt::LoadOptions::default()
///     .with_progress(wgpt::Progress::new(|done, total| eprint!("\r{done}/{total} bytes")));
/// assert!(opts.progress.is_some());
/// ```
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(u64, u64) + Send + Sync>);

impl Progress {
    /// Wraps a callback.
    pub fn new(f: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        Progress(Arc::new(f))
    }

    /// Reports `done` of `total`.
    pub fn report(&self, done: u64, total: u64) {
        (self.0)(done, total)
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress(..)")
    }
}

/// The weight upload under way on this thread: bytes so far, bytes in all, whom to tell.
struct Upload {
    done: u64,
    total: u64,
    progress: Progress,
}

thread_local! {
    static UPLOAD: RefCell<Option<Upload>> = const { RefCell::new(None) };
}

/// Runs `f` (a model's weight upload, on this thread) reporting the bytes that
/// [`Gpu::storage_init`] and [`Gpu::texture_init`] upload meanwhile to `progress`, out of
/// `total`; reports `total` at the end when `f` succeeds.
pub(crate) fn with_upload_progress<T>(
    progress: Option<&Progress>,
    total: u64,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let Some(p) = progress else { return f() };
    p.report(0, total);
    let previous = UPLOAD.with(|u| {
        u.replace(Some(Upload {
            done: 0,
            total,
            progress: p.clone(),
        }))
    });
    let out = f();
    UPLOAD.with(|u| *u.borrow_mut() = previous);
    if out.is_ok() {
        p.report(total, total);
    }
    out
}

pub(super) fn uploaded(bytes: u64) {
    UPLOAD.with(|u| {
        if let Some(up) = u.borrow_mut().as_mut() {
            up.done = (up.done + bytes).min(up.total);
            up.progress.report(up.done, up.total);
        }
    });
}
