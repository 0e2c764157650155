//! The `wgpt` command line: generate, perplexity, info, bench.
//! Text goes to stdout as it is produced; diagnostics go to stderr (`RUST_LOG` works).
//! Exit codes: 0 success, 1 usage error, 2 input or model error, 3 device error.

mod cli;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    std::process::exit(cli::run());
}
