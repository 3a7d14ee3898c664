//! `ferry serve`: loads receiving schemes, opens the store, listens, and runs
//! [`crate::receiver::serve::serve`] until SIGTERM/SIGINT; then it stops accepting,
//! answers the requests in progress, lets the workers finish their batches and exits 0.
//!
//! With `FERRY_OPERATOR_TOKEN` set, the same server also hosts the platform's
//! mapping-table API ([`crate::platform`], `/erp/syncData/…`) and the operator console
//! ([`crate::console`], `/console/`) for every scheme given, polled ones included (those
//! are served, not run: their runs stay with `ferry run` and its timers).

use super::{load_for_run, logging, stop_on_signal, EnvArg, StoreArg};
use crate::error::exit;
use crate::http::HttpClient;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ServeArgs {
    /// Scheme files whose source is `receive` (and, with FERRY_OPERATOR_TOKEN set, polled
    /// schemes whose mappings the API and console serve).
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
    /// How long a worker's claim on inbox rows lasts; the rows of a process that died are
    /// taken over after it (e.g. 30s, 5m).
    #[arg(long, default_value = "5m")]
    lease: String,
    /// Refuse schemes that have validation warnings (exit code 2).
    #[arg(long)]
    strict: bool,
}

pub async fn serve(args: ServeArgs) -> i32 {
    let lease = match crate::window::parse_std_duration(&args.lease) {
        Ok(lease) if !lease.is_zero() => lease,
        Ok(_) => {
            logging::error("--lease must be longer than zero");
            return exit::CONFIG;
        }
        Err(e) => {
            logging::error(format_args!("--lease: {e}"));
            return exit::CONFIG;
        }
    };
    let mut plans = Vec::new();
    for path in &args.schemes {
        match load_for_run(path, &args.env, args.strict) {
            Ok(plan) => plans.push(plan),
            Err(code) => return code,
        }
    }
    // The operator token turns on the mapping-table API and the console.
    let operator_token = std::env::var("FERRY_OPERATOR_TOKEN")
        .ok()
        .filter(|token| !token.trim().is_empty());
    let (receiving, polled): (Vec<_>, Vec<_>) = plans.into_iter().partition(|p| p.source.receive.is_some());
    if operator_token.is_none() || receiving.is_empty() && polled.is_empty() {
        let all: Vec<_> = receiving.iter().chain(&polled).cloned().collect();
        if let Err(message) = crate::receiver::serve::check_plans(&all) {
            logging::error(format_args!(
                "{message}\n  hint: to serve a polled scheme's mappings (API and console) set FERRY_OPERATOR_TOKEN"
            ));
            return exit::CONFIG;
        }
    } else if let Err(message) = crate::receiver::serve::check_plans(&receiving) {
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
    let extra = operator_token.map(|token| {
        let all: Vec<crate::scheme::Plan> = receiving.iter().chain(&polled).cloned().collect();
        let bindings = std::sync::Arc::new(all.iter().map(crate::platform::Binding::of).collect::<Vec<_>>());
        let api = crate::platform::router(crate::platform::MappingApi {
            store: store.clone(),
            token: token.clone(),
            bindings: bindings.clone(),
        });
        let console = crate::console::router(crate::console::ConsoleState {
            store: store.clone(),
            token,
            bindings,
            inbox: Some(std::sync::Arc::new(crate::console::StoreInbox {
                store: store.clone(),
                receiving: receiving.iter().map(|p| p.name.clone()).collect(),
            })),
            replayer: Some(std::sync::Arc::new(crate::console::EngineReplayer {
                plans: polled.clone(),
                store: store.clone(),
                http: http.clone(),
            })),
        });
        tracing::info!("mapping-table API at /erp/syncData/…, operator console at /console/");
        api.merge(console)
    });
    let plans = receiving;
    let names: Vec<&str> = plans
        .iter()
        .map(|p| p.name.as_str())
        .chain(polled.iter().map(|p| p.name.as_str()))
        .collect();
    tracing::info!(schemes = %names.join(", "), store = %store.describe(), "serving on http://{address}");
    // One line on stdout with the address, for scripts and tests (`--listen 127.0.0.1:0`).
    println!("listening on http://{address}");
    let result = crate::receiver::serve::serve(plans, store.clone(), http, listener, lease, stop, extra).await;
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
