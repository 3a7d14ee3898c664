//! Shared harness of the integration tests: schemes run against Ferry's own simulators on
//! 127.0.0.1:0, with a store the test can inspect afterwards.
#![allow(dead_code)] // each test binary uses a different part of it

use ferry::engine::{check, run, CheckOptions, CheckReport, RunOptions, Summary};
use ferry::error::Error;
use ferry::http::HttpClient;
use ferry::scheme::{load_str, Plan};
use ferry::sim::scripted::{Reply, ScriptedSim};
use ferry::sim::SimHandle;
use ferry::store::{Failure, FailureLedger, FailureStatus, Store};
use std::process::{Command, Output};

/// The built `ferry` with `args` and `envs`, kept from the test's own environment
/// (`FERRY_STORE`, `CREDENTIALS_DIRECTORY`) and logging warnings only.
pub fn ferry_command(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .args(args)
        .env_remove("FERRY_STORE")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("FERRY_LOG", "warn");
    for (k, v) in envs {
        command.env(k, v);
    }
    command
}

/// Runs [`ferry_command`] to its end.
pub fn ferry(args: &[&str], envs: &[(&str, &str)]) -> Output {
    ferry_command(args, envs).output().expect("run ferry")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Exit code, stdout and stderr of a finished `ferry`, for failure messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// A finished `ferry`'s stdout as JSON.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(out)))
}

/// Loads `scheme` with `env`, failing the test on any diagnostic error.
pub fn plan(scheme: &str, env: &dyn Fn(&str) -> Option<String>) -> Plan {
    let loaded = load_str(scheme, "test.yaml", env);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    loaded.plan.expect("a plan")
}

/// A scripted simulator serving `routes`, with a plan of `scheme` pointed at it
/// (`${SIM_URL}`) and a memory store.
pub struct Scripted {
    pub sim: ScriptedSim,
    pub handle: SimHandle,
    pub store: Store,
    pub url: String,
}

impl Scripted {
    pub async fn start(routes: Vec<(&str, Vec<Reply>)>) -> Scripted {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (sim, handle) = ScriptedSim::start(listener, routes).await.unwrap();
        let url = handle.base_url();
        Scripted {
            sim,
            handle,
            store: Store::memory(),
            url,
        }
    }

    /// The plan of `scheme`, whose `${SIM_URL}` is this simulator.
    pub fn plan(&self, scheme: &str) -> Plan {
        let url = self.url.clone();
        plan(scheme, &move |name| (name == "SIM_URL").then(|| url.clone()))
    }

    /// Runs `scheme` once against this simulator and store.
    pub async fn run(&self, scheme: &str) -> Summary {
        self.run_with(scheme, RunOptions::default()).await
    }

    pub async fn run_with(&self, scheme: &str, options: RunOptions) -> Summary {
        run(&self.plan(scheme), &self.store, &HttpClient::new().unwrap(), &options)
            .await
            .expect("a run reports problems in its summary")
    }

    /// `ferry check` of `scheme` against this simulator (the harness store is not used).
    pub async fn check(&self, scheme: &str, options: CheckOptions) -> Result<CheckReport, Error> {
        check(&self.plan(scheme), &HttpClient::new().unwrap(), &options).await
    }

    /// The scheme's open ledger rows.
    pub async fn open_failures(&self, scheme: &str) -> Vec<Failure> {
        self.store
            .list_failures(Some(scheme), Some(FailureStatus::Open), 1000)
            .await
            .unwrap()
    }
}

/// A shop simulator with `config` and the bearer `token` on 127.0.0.1:0, the plan of
/// `scheme` against it (`SHOP_URL` and `ERP_URL`, with `SHOP_TOKEN` = `token`), and an
/// empty SQLite store in a temporary folder (kept alive by the returned `TempDir`).
pub async fn shop_rig(
    config: ferry::sim::shop::ShopConfig,
    scheme: &str,
    token: &str,
) -> (ferry::sim::shop::ShopSim, SimHandle, Plan, Store, tempfile::TempDir) {
    let config = ferry::sim::shop::ShopConfig {
        token: Some(token.into()),
        ..config
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (sim, handle) = ferry::sim::shop::ShopSim::start(config, listener).await.unwrap();
    let url = handle.base_url();
    let plan = plan(scheme, &|name| match name {
        "SHOP_URL" | "ERP_URL" => Some(url.clone()),
        "SHOP_TOKEN" => Some(token.into()),
        _ => None,
    });
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("ferry.db").display().to_string())
        .await
        .unwrap();
    (sim, handle, plan, store, dir)
}

/// A simulator that `start` serves on 127.0.0.1:0 in its own runtime (for tests that run
/// the `ferry` binary against it): the runtime, the simulator and its URL. It serves as
/// long as the runtime lives.
pub fn in_own_runtime<S, F>(start: impl FnOnce(tokio::net::TcpListener) -> F) -> (tokio::runtime::Runtime, S, String)
where
    F: std::future::Future<Output = std::io::Result<(S, SimHandle)>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (sim, url) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (sim, handle) = start(listener).await.unwrap();
        let url = handle.base_url();
        std::mem::forget(handle); // lives as long as the runtime
        (sim, url)
    });
    (runtime, sim, url)
}

/// A shop simulator with `config` [in its own runtime](in_own_runtime).
pub fn start_shop(
    config: ferry::sim::shop::ShopConfig,
) -> (tokio::runtime::Runtime, ferry::sim::shop::ShopSim, String) {
    in_own_runtime(|listener| ferry::sim::shop::ShopSim::start(config, listener))
}

/// A scripted simulator serving `routes` [in its own runtime](in_own_runtime).
pub fn start_scripted(routes: Vec<(&str, Vec<Reply>)>) -> (tokio::runtime::Runtime, ScriptedSim, String) {
    in_own_runtime(|listener| ScriptedSim::start(listener, routes))
}
