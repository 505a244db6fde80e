//! `holler`: the Hootenanny CLI (direct ZMQ to any backend), `holler serve` (the MCP
//! gateway) and `holler up` (the whole stack in one process).

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Before anything else: `holler up` starts its Lua sandboxes from this binary.
    luanette::isolation::run_if_requested();
    let args = cli::Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("holler: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    runtime.block_on(cli::main(args))
}
