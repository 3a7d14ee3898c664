//! `ferry serve`: loads receiving schemes, opens the store, listens, and runs
//! [`crate::receiver::serve::serve`] until SIGTERM/SIGINT; then it stops accepting,
//! answers the requests in progress, lets the workers finish their batches and exits 0.

use super::{load_for_run, logging, stop_on_signal, EnvArg, StoreArg};
use crate::error::exit;
use crate::http::HttpClient;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ServeArgs {
    /// Scheme files whose source is `receive`.
    #[arg(required = true)]
    schemes: Vec<PathBuf>,
    /// Address to listen on (`127.0.0.1:0` picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    #[command(flatten)]
    store: StoreArg,
    #[command(flatten)]
    create_dirs: super::stores::CreateDirsArg,
    #[command(flatten)]
    env: EnvArg,
    /// Refuse schemes that have validation warnings (exit code 2).
    #[arg(long)]
    strict: bool,
}

pub async fn serve(args: ServeArgs) -> i32 {
    let mut plans = Vec::new();
    for path in &args.schemes {
        match load_for_run(path, &args.env, args.strict) {
            Ok(plan) => plans.push(plan),
            Err(code) => return code,
        }
    }
    if let Err(message) = crate::receiver::serve::check_plans(&plans) {
        logging::error(message);
        return exit::CONFIG;
    }
    if let Err(code) = super::stores::check_creatable(&args.store.store, args.create_dirs) {
        return code;
    }
    let store = match super::open_store(&args.store.store).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let http = match HttpClient::new() {
        Ok(http) => http,
        Err(e) => {
            logging::error(e);
            return exit::ABORTED;
        }
    };
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            logging::error(format_args!(
                "cannot listen on {}: {e}\n  hint: pick a free address with --listen",
                args.listen
            ));
            return exit::CONFIG;
        }
    };
    let address = listener
        .local_addr()
        .map_or_else(|_| args.listen.clone(), |a| a.to_string());
    let stop = stop_on_signal();
    let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    tracing::info!(schemes = %names.join(", "), store = %store.describe(), "serving on http://{address}");
    // One line on stdout with the address, for scripts and tests (`--listen 127.0.0.1:0`).
    println!("listening on http://{address}");
    let result = crate::receiver::serve::serve(plans, store.clone(), http, listener, stop).await;
    store.close().await;
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            exit::OK
        }
        Err(e) => {
            logging::error(&e.message);
            if e.kind == crate::error::ErrorKind::Config {
                exit::CONFIG
            } else {
                exit::ABORTED
            }
        }
    }
}
