//! The `wgpt` command line: generate, perplexity, info, bench.
//! Text goes to stdout as it is produced; diagnostics go to stderr (`RUST_LOG` works).
//! Exit codes: 0 success, 1 usage error, 2 input or model error, 3 device error.

mod cli;

fn main() {
    let mut log = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,wgpt::server=info"),
    );
    if json_log() {
        // One JSON object per line: a request's own (already JSON), or level, target, message.
        log.format(|buf, record| {
            use std::io::Write;
            let message = record.args().to_string();
            if record.target() == "wgpt::server::request" {
                return writeln!(buf, "{message}");
            }
            let line = serde_json::json!({
                "level": record.level().as_str(),
                "target": record.target(),
                "message": message,
            });
            writeln!(buf, "{line}")
        });
    }
    log.init();
    quiet_mesa();
    std::process::exit(cli::run());
}

/// Whether `--log-format json` is on the command line (`serve`): the logger starts before the
/// arguments are parsed, so that parsing errors are logged alike.
fn json_log() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--log-format=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--log-format" && w[1] == "json")
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
