//! The `wgpt` command line: generate, perplexity, info, bench.
//! Text goes to stdout as it is produced; diagnostics go to stderr (`RUST_LOG` works).
//! Exit codes: 0 success, 1 usage error, 2 input or model error, 3 device error.

mod cli;

fn main() {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,wgpt::server=info"),
    )
    .init();
    quiet_mesa();
    std::process::exit(cli::run());
}

/// Mesa's software drivers print "XDG_RUNTIME_DIR is invalid" to stderr when that variable is
/// unset (headless machines, CI). Point it at a private directory so stderr carries only
/// wgpt's own diagnostics.
fn quiet_mesa() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    let dir = std::env::temp_dir().join("wgpt-runtime");
    if std::fs::create_dir_all(&dir).is_ok() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        // Single-threaded here: nothing else reads the environment yet.
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
    }
}
