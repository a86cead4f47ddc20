//! The `tidemark` binary: parse arguments, run the command, turn an error into a message
//! and the exit code of its kind (see `ErrorKind`).

mod cli;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = cli::Cli::parse();
    // The daemon's log is its record: info by default; other commands stay quiet.
    let is_daemon =
        matches!(cli.command, cli::Command::Serve(_) | cli::Command::Wal(cli::wal::WalCommand::Stream { .. }));
    let default_level = match (cli.verbose, is_daemon) {
        (0, false) => "warn",
        (0, true) | (1, _) => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("TIDEMARK_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    // Colours only on a terminal: a log file or journal gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    match cli.log_format {
        cli::LogFormat::Text => logs.init(),
        cli::LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let json = cli.json;
    // These handle SIGTERM/SIGINT themselves: the daemon stops gracefully (exit 0), a drill
    // removes its throwaway first, a restore drops the database it created, a snapshot
    // records its job as interrupted.
    let handles_signals = is_daemon
        || matches!(
            cli.command,
            cli::Command::Drill(_)
                | cli::Command::Restore(_)
                | cli::Command::Snapshot(cli::snapshot::SnapshotCommand::Create { .. })
        );

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        if handles_signals {
            return cli::run(cli).await;
        }
        // SIGTERM like SIGINT: the work is dropped, nothing half-done is committed.
        let stop = tokio_util::sync::CancellationToken::new();
        let listener = tokio::spawn(cli::serve::stop_on_signal(stop.clone()));
        let result = tokio::select! {
            r = cli::run(cli) => r,
            () = stop.cancelled() => Err(tidemark::Error::new(
                tidemark::ErrorKind::Interrupted,
                "interrupted: nothing was committed by the interrupted operation",
            )),
        };
        listener.abort();
        result
    });
    // Uploads an interrupted or failed command left unfinished are aborted (no staging
    // file, no incomplete multipart upload stays behind); then spawned work is dropped.
    runtime.block_on(tidemark::repo::pipeline::finish_aborts(std::time::Duration::from_secs(10)));
    // Workspace leases let go of are freed, and the process leaves the fleet.
    runtime.block_on(tidemark::catalog::fleet::finish(std::time::Duration::from_secs(10)));
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    if let Err(e) = result {
        if json && !e.is_result_printed() {
            println!("{}", serde_json::to_string_pretty(&e.to_json()).expect("serializable"));
        }
        eprintln!("error: {}", e.report());
        std::process::exit(e.exit_code());
    }
}
