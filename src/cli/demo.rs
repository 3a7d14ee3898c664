//! `ferry demo`, `ferry simulate` and `ferry bench`: the built-in simulator put to work.

use crate::engine::{self, RunOptions, Summary};
use crate::error::exit;
use crate::http::HttpClient;
use crate::scheme;
use crate::sim::flows::{self, Flow};
use crate::sim::shop::{ShopConfig, ShopSim};
use crate::sim::Faults;
use crate::store::Store;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Instant;

/// The demo scheme, shipped inside the binary so `ferry demo` needs no files.
pub const DEMO_SCHEME: &str = include_str!("../../schemes/shop-orders-to-erp.yaml");
const DEMO_TOKEN: &str = "demo-token";

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum System {
    /// A shop order source plus an ERP-like batch target (the first demo flow).
    Shop,
    /// Guanyiyun C-ERP (`gy.erp.*`).
    Guanyi,
    /// Kingdee K3Cloud WebAPI.
    #[value(name = "kingdee-k3cloud")]
    K3cloud,
    /// Kingdee Jingdou Cloud Xingchen (jdy) gateway.
    #[value(name = "kingdee-jdy")]
    Jdy,
    /// Jackyun open API.
    Jackyun,
    /// Simply CRM (vtiger webservice.php).
    #[value(name = "simply-crm")]
    SimplyCrm,
    /// ShareCRM / Fxiaoke OpenAPI.
    Fxiaoke,
    /// The ERP data-sync platform's standard interface.
    #[value(name = "erp-standard")]
    ErpStandard,
}

#[derive(Args)]
pub struct SimulateArgs {
    /// Which system to serve.
    #[arg(value_enum)]
    system: System,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Records the source holds.
    #[arg(long, default_value_t = 2500)]
    records: u64,
    /// Delay before every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction of requests answered with HTTP 500.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Requests per second before throttling (429).
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Bearer token the source requires.
    #[arg(long, default_value = DEMO_TOKEN)]
    token: String,
    /// Keep only counts, not request bodies (for benchmarks).
    #[arg(long)]
    lean: bool,
    /// `shop` only: wide orders (14 scalar fields, two lines each), as `ferry bench
    /// --workload typical` reads.
    #[arg(long)]
    wide: bool,
}

/// What `ferry bench` syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// The demo scheme: orders of 8 fields and 1–3 lines, 7 target fields.
    Demo,
    /// Issue-15 shape: orders of 14 scalar fields (about 530 bytes) and two lines; ten
    /// target fields (renames, trim, upper, a negated flag, a concatenation, two RFC 3339
    /// dates, a default) and lines with a computed amount.
    Typical,
    /// Receive mode: standard-format pushes to `ferry serve` from concurrent clients;
    /// durable acknowledgements per second, their latency, and the drain into the target.
    Receive,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Records to sync (pushes to send with `--workload receive`).
    #[arg(long, default_value_t = 100_000)]
    pub(super) records: u64,
    /// Records per source page.
    #[arg(long, default_value_t = 100)]
    page_size: u64,
    /// Rows per target write.
    #[arg(long, default_value_t = 100)]
    pub(super) batch: u64,
    /// Source pages and target batches in flight at once (the scheme's `in_flight`).
    #[arg(long, default_value_t = 2)]
    in_flight: u32,
    /// Store to use instead of a fresh SQLite file (e.g. `memory`, or a Postgres URL).
    #[arg(long)]
    pub(super) store: Option<String>,
    /// Address of a running simulator (`ferry simulate shop --lean`, with `--wide` for the
    /// typical workload); by default one is started in a child process so its memory and
    /// CPU are not counted as Ferry's.
    #[arg(long)]
    sim_url: Option<String>,
    /// Records and transform to measure.
    #[arg(long, value_enum, default_value_t = Workload::Demo)]
    workload: Workload,
    /// Events kept per record for `ferry explain` (0 measures a run that keeps none).
    #[arg(long, default_value_t = engine::DEFAULT_KEEP_EVENTS)]
    keep_events: u32,
    /// `--workload receive`: concurrent clients pushing.
    #[arg(long, default_value_t = 16)]
    clients: usize,
}

/// The target fields of the typical workload (issue 15's transform).
const TYPICAL_FIELDS: &str = r#"  fields:
    FBillNo: "<< order_no >>"
    FDate: "<< created_at | iso >>"
    FModified: "<< modified_at | iso >>"
    FCustomerId: {FNumber: "<< customer_code | upper >>"}
    FCustomerName: "<< customer_name >>"
    FContact: "<< contact_first ~ ' ' ~ contact_last >>"
    FEmail: "<< email | default('none') >>"
    FRegion: "<< region | upper >>"
    FRemark: "<< remark | trim >>"
    FClosed: "<< not active >>"
    FEntity:
      for_each: $.lines[*]
      fields:
        FMaterialId: "<< sku >>"
        FQty: "<< qty | int >>"
        FAmount: "<< ((qty | float) * (price | float)) | round(2) >>"

"#;

/// The bench scheme: the demo scheme with the page size, batch, in-flight and workload asked for.
fn bench_scheme(args: &BenchArgs) -> String {
    let mut text = DEMO_SCHEME
        .replace(
            "size: 100, stop: total",
            &format!("size: {}, stop: total", args.page_size),
        )
        .replace("batch: 100", &format!("batch: {}", args.batch))
        .replace("in_flight: 2", &format!("in_flight: {}", args.in_flight));
    if args.workload == Workload::Typical {
        if let (Some(start), Some(end)) = (text.find("  fields:\n"), text.find("value_maps:")) {
            text.replace_range(start..end, TYPICAL_FIELDS);
        }
    }
    text
}

/// CPU time (user + system) this process has used, from /proc/self/stat (Linux).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may hold spaces: state is the first, utime the 12th.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux ABI.
    Some(ticks as f64 / 100.0)
}

fn demo_config(records: u64) -> ShopConfig {
    ShopConfig {
        records,
        token: Some(DEMO_TOKEN.to_string()),
        reject_every: Some(500),
        ..ShopConfig::default()
    }
}

fn demo_env(url: String) -> impl Fn(&str) -> Option<String> {
    move |name: &str| match name {
        "SHOP_URL" | "ERP_URL" => Some(url.clone()),
        "SHOP_TOKEN" => Some(DEMO_TOKEN.to_string()),
        _ => None,
    }
}

pub async fn demo(dir: Option<PathBuf>) -> i32 {
    // The directory is kept, so the commands printed at the end can inspect it.
    let dir = match dir {
        Some(dir) => dir,
        None => match tempfile::Builder::new().prefix("ferry-demo-").tempdir() {
            Ok(t) => t.keep(),
            Err(e) => {
                eprintln!("error: cannot create a temporary directory: {e}");
                return exit::ABORTED;
            }
        },
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: cannot create {}: {e}", dir.display());
        return exit::CONFIG;
    }
    // Each demo starts fresh simulators, so an earlier demo's store would describe records
    // they do not hold.
    if dir.join("ferry.db").exists() {
        eprintln!(
            "error: {} already holds an earlier demo's store (ferry.db)\n  hint: pass a new or empty directory to --dir, or leave --dir out for a temporary one",
            dir.display()
        );
        return exit::CONFIG;
    }
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot bind the simulator: {e}");
            return exit::ABORTED;
        }
    };
    let (sim, handle) = match ShopSim::start(demo_config(2500), listener).await {
        Ok(started) => started,
        Err(e) => {
            eprintln!("error: cannot start the simulator: {e}");
            return exit::ABORTED;
        }
    };
    let scheme_path = dir.join("shop-orders-to-erp.yaml");
    let _ = std::fs::write(&scheme_path, DEMO_SCHEME);
    let loaded = scheme::load_str(
        DEMO_SCHEME,
        &scheme_path.display().to_string(),
        &demo_env(handle.base_url()),
    );
    let Some(plan) = loaded.plan else {
        for d in &loaded.diagnostics {
            eprint!("{}", d.render(&loaded.text));
        }
        return exit::CONFIG;
    };
    let store_path = dir.join("ferry.db");
    let store = match Store::open(&store_path.display().to_string()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::CONFIG;
        }
    };
    let http = match HttpClient::new() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ABORTED;
        }
    };
    println!("Ferry demo: shop orders → ERP sales orders");
    println!("  simulator  {}", handle.base_url());
    println!("  workdir    {}", dir.display());
    println!("  scheme     {}\n", scheme_path.display());

    let options = RunOptions::default();
    let mut summaries: Vec<(&str, Summary)> = Vec::new();
    let first = match engine::run(&plan, &store, &http, &options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ABORTED;
        }
    };
    summaries.push(("1: first run", first));
    let second = match engine::run(&plan, &store, &http, &options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ABORTED;
        }
    };
    summaries.push(("2: nothing new", second));
    // Change three orders in the shop; the third run must update exactly those.
    let changed_at = (chrono::Utc::now() - chrono::Duration::seconds(90))
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .naive_local();
    for index in [7, 42, 1234] {
        sim.touch(index, changed_at);
    }
    let third = match engine::run(&plan, &store, &http, &options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ABORTED;
        }
    };
    summaries.push(("3: 3 orders changed", third));

    println!(
        "{:<22}{:>7}{:>9}{:>9}{:>11}{:>8}{:>7}{:>10}{:>10}",
        "run", "read", "created", "updated", "unchanged", "failed", "pages", "requests", "seconds"
    );
    for (label, s) in &summaries {
        println!(
            "{:<22}{:>7}{:>9}{:>9}{:>11}{:>8}{:>7}{:>10}{:>10.2}",
            label,
            s.read,
            s.created,
            s.updated,
            s.unchanged,
            s.failed,
            s.pages,
            s.requests,
            s.duration_ms as f64 / 1000.0
        );
    }
    println!();
    println!(
        "ERP now holds {} orders; it received {} create and {} update calls.",
        sim.target_count(),
        sim.create_calls(),
        sim.update_calls()
    );
    println!("The simulated ERP rejects every 500th order (FBillNo divisible by 500), so those rows");
    println!("wait in the failure ledger. Look around with:");
    let store_arg = store_path.display();
    println!("  ferry mappings list --scheme shop-orders-to-erp --store {store_arg}");
    println!("  ferry failures list --scheme shop-orders-to-erp --store {store_arg}");
    println!();
    handle.shutdown().await;
    let failed_once = summaries[0].1.failed;
    let mut ok = summaries.iter().all(|(_, s)| s.aborted.is_none())
        && summaries[1].1.created == 0
        && summaries[2].1.updated == 3
        && failed_once > 0;

    println!("The seed flows, each against its vendors' simulators (signatures, sessions and paging checked):\n");
    for flow in Flow::ALL {
        match demo_flow(flow, &dir, &store, &http).await {
            Ok(flow_ok) => ok &= flow_ok,
            Err(e) => {
                eprintln!("error: {}: {e}", flow.file());
                ok = false;
            }
        }
    }
    print_legend();
    println!("Store: {store_arg}   (ferry mappings list --scheme <name> --store {store_arg})");
    if ok {
        exit::OK
    } else {
        eprintln!("error: the demo did not behave as expected; see the table above");
        exit::ABORTED
    }
}

/// What the columns of the tables count, so that no non-zero number is a riddle.
fn print_legend() {
    println!("What the columns count:");
    for (column, meaning) in [
        ("read", "records the source returned (lookback re-reads included)"),
        ("created/updated", "records written to the target as new or as changes"),
        (
            "unchanged",
            "records read again with the same content as their last sync: not sent (a rerun, or the lookback)",
        ),
        (
            "duplicates",
            "the same source id read more than once in one run (e.g. one customer on many bills): sent once",
        ),
        (
            "skipped",
            "changed records the scheme cannot update (no target.update), or held back as uncertain",
        ),
        (
            "failed",
            "records in the failure ledger (the simulated ERP rejects some on purpose)",
        ),
        ("pages", "source pages read"),
        ("requests", "requests sent to the target (a batch is one request)"),
    ] {
        println!("  {column:<16}{meaning}");
    }
    println!();
}

fn print_table(summaries: &[(&str, Summary)]) {
    println!(
        "{:<22}{:>7}{:>9}{:>9}{:>11}{:>11}{:>9}{:>8}{:>7}{:>10}{:>10}",
        "run",
        "read",
        "created",
        "updated",
        "unchanged",
        "duplicates",
        "skipped",
        "failed",
        "pages",
        "requests",
        "seconds"
    );
    for (label, s) in summaries {
        println!(
            "{:<22}{:>7}{:>9}{:>9}{:>11}{:>11}{:>9}{:>8}{:>7}{:>10}{:>10.2}",
            label,
            s.read,
            s.created,
            s.updated,
            s.unchanged,
            s.duplicates,
            s.skipped,
            s.failed,
            s.pages,
            s.requests,
            s.duration_ms as f64 / 1000.0
        );
    }
    println!();
}

/// Runs one seed flow three times (first, nothing new, one record changed) and prints it.
async fn demo_flow(flow: Flow, dir: &std::path::Path, store: &Store, http: &HttpClient) -> Result<bool, String> {
    let running = flows::start(flow)
        .await
        .map_err(|e| format!("cannot start the simulators: {e}"))?;
    let path = dir.join(flow.file());
    let _ = std::fs::write(&path, flow.scheme());
    let loaded = scheme::load_str(flow.scheme(), &path.display().to_string(), &running.env());
    let Some(plan) = loaded.plan else {
        let text: Vec<String> = loaded.diagnostics.iter().map(|d| d.render(&loaded.text)).collect();
        return Err(text.join("\n"));
    };
    println!(
        "── {}  ({})",
        plan.name,
        plan.raw.description.clone().unwrap_or_default()
    );
    let options = RunOptions::default();
    let mut summaries = Vec::new();
    for (label, change) in [
        ("1: first run", false),
        ("2: nothing new", false),
        ("3: 1 record changed", true),
    ] {
        if change {
            running.change_one();
        }
        let summary = engine::run(&plan, store, http, &options)
            .await
            .map_err(|e| e.to_string())?;
        summaries.push((label, summary));
    }
    print_table(&summaries);
    running.shutdown().await;
    let ok = summaries.iter().all(|(_, s)| s.aborted.is_none() && s.failed == 0)
        && summaries[0].1.created > 0
        && summaries[1].1.created + summaries[1].1.updated == 0
        && summaries[2].1.updated + summaries[2].1.skipped >= 1;
    Ok(ok)
}

pub async fn simulate(args: SimulateArgs) -> i32 {
    use crate::sim::{erp_standard, fxiaoke, guanyi, jackyun, jdy, k3cloud, simply};
    let faults = Faults {
        latency_ms: args.latency_ms,
        fail_rate: args.fail_rate,
        rate_limit_per_sec: args.rate_limit,
        ..Faults::default()
    };
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on 127.0.0.1:{}: {e}", args.port);
            return exit::CONFIG;
        }
    };
    let records = args.records;
    // Each simulator starts with fake credentials; they are printed so schemes can use them.
    let started = match args.system {
        System::Shop => ShopSim::start(
            ShopConfig {
                records,
                token: Some(args.token.clone()),
                record_bodies: !args.lean,
                faults,
                wide: args.wide,
                ..ShopConfig::default()
            },
            listener,
        )
        .await
        .map(|(_, h)| {
            (
                h,
                format!(
                    "source GET /orders, target POST /orders/batch and PUT /orders/{{id}}; token {}",
                    args.token
                ),
            )
        }),
        System::Guanyi => {
            let config = guanyi::GuanyiConfig {
                records,
                shops: records,
                faults,
                ..Default::default()
            };
            let about = format!(
                "appkey {} sessionkey {} secret {}",
                config.appkey, config.sessionkey, config.secret
            );
            guanyi::GuanyiSim::start(config, listener)
                .await
                .map(|(_, h)| (h, about))
        }
        System::K3cloud => {
            let config = k3cloud::K3CloudConfig {
                records,
                faults,
                ..Default::default()
            };
            let about = format!(
                "base_url …/k3cloud/, acct_id {} username {} app_id {} app_secret {} password {}",
                config.acct_id, config.username, config.app_id, config.app_secret, config.password
            );
            k3cloud::K3CloudSim::start(config, listener)
                .await
                .map(|(_, h)| (h, about))
        }
        System::Jdy => {
            let config = jdy::JdyConfig {
                records,
                faults,
                ..Default::default()
            };
            let about = format!(
                "client_id {} client_secret {} outer_instance_id {}",
                config.client_id, config.client_secret, config.outer_instance_id
            );
            jdy::JdySim::start(config, listener).await.map(|(_, h)| (h, about))
        }
        System::Jackyun => {
            let config = jackyun::JackyunConfig {
                records,
                faults,
                ..Default::default()
            };
            let about = format!("appkey {} secret {}", config.appkey, config.secret);
            jackyun::JackyunSim::start(config, listener)
                .await
                .map(|(_, h)| (h, about))
        }
        System::SimplyCrm => {
            let config = simply::SimplyConfig {
                records,
                faults,
                ..Default::default()
            };
            let about = format!("username {} access_key {}", config.username, config.access_key);
            simply::SimplySim::start(config, listener)
                .await
                .map(|(_, h)| (h, about))
        }
        System::Fxiaoke => {
            let config = fxiaoke::FxiaokeConfig {
                records,
                faults,
                ..Default::default()
            };
            let about = format!(
                "app_id {} app_secret {} permanent_code {} data_center_id {}",
                config.app_id, config.app_secret, config.permanent_code, config.data_center_id
            );
            fxiaoke::FxiaokeSim::start(config, listener)
                .await
                .map(|(_, h)| (h, about))
        }
        System::ErpStandard => {
            let config = erp_standard::ErpStandardConfig {
                records,
                faults,
                ..Default::default()
            };
            let about = format!("token {}", config.token);
            erp_standard::ErpStandardSim::start(config, listener)
                .await
                .map(|(_, h)| (h, about))
        }
    };
    let (handle, about) = match started {
        Ok(started) => started,
        Err(e) => {
            eprintln!("error: cannot start the simulator: {e}");
            return exit::ABORTED;
        }
    };
    // Writes may fail once a parent stops reading; that must not kill the server.
    {
        use std::io::Write as _;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on {}", handle.base_url());
        let _ = writeln!(out, "{about}");
        let _ = out.flush();
    }
    let _ = tokio::signal::ctrl_c().await;
    handle.shutdown().await;
    exit::OK
}

/// Peak resident set size of this process, in KiB (Linux), from /proc/self/status.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

pub async fn bench(args: BenchArgs) -> i32 {
    if args.workload == Workload::Receive {
        return super::bench_receive::run(&args, args.clients).await;
    }
    let mut child = None;
    let url = match args.sim_url.clone() {
        Some(url) => url,
        None => match spawn_simulator(args.records, args.workload == Workload::Typical).await {
            Ok((c, url)) => {
                child = Some(c);
                url
            }
            Err(e) => {
                eprintln!("error: {e}");
                return exit::ABORTED;
            }
        },
    };
    let text = bench_scheme(&args);
    let loaded = scheme::load_str(&text, "bench.yaml", &demo_env(url));
    let Some(plan) = loaded.plan else {
        for d in &loaded.diagnostics {
            eprint!("{}", d.render(&loaded.text));
        }
        return exit::CONFIG;
    };
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ABORTED;
        }
    };
    let location = args
        .store
        .clone()
        .unwrap_or_else(|| dir.path().join("bench.db").display().to_string());
    let store = match Store::open(&location).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ABORTED;
        }
    };
    let http = match HttpClient::new() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ABORTED;
        }
    };
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let options = RunOptions {
        keep_events: Some(args.keep_events),
        ..RunOptions::default()
    };
    let result = engine::run(&plan, &store, &http, &options).await;
    let seconds = started.elapsed().as_secs_f64();
    store.close().await;
    let store_bytes: u64 = ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{location}{suffix}")).ok())
        .map(|m| m.len())
        .sum();
    let cpu = cpu_before.zip(cpu_seconds()).map(|(before, after)| after - before);
    if let Some(mut c) = child {
        let _ = c.kill().await;
    }
    match result {
        Ok(summary) => {
            let rate = summary.read as f64 / seconds.max(1e-9);
            println!("records      {}", summary.read);
            println!("written      {} created, {} failed", summary.created, summary.failed);
            println!("pages        {}   requests {}", summary.pages, summary.requests);
            println!("seconds      {seconds:.2}");
            println!("throughput   {rate:.0} records/s");
            if let Some(cpu) = cpu.filter(|_| summary.read > 0) {
                println!(
                    "CPU          {:.1} µs per record (user+sys of the ferry process, {cpu:.2} s)",
                    cpu * 1e6 / summary.read as f64
                );
            }
            if store_bytes > 0 {
                println!(
                    "store        {:.1} MiB ({} bytes per record, keeping {} events per record)",
                    store_bytes as f64 / 1_048_576.0,
                    store_bytes / summary.read.max(1),
                    args.keep_events
                );
            }
            println!(
                "peak RSS     {:.1} MiB (ferry process, simulator excluded)",
                peak_rss_kib().unwrap_or(0) as f64 / 1024.0
            );
            if let Some(reason) = &summary.aborted {
                eprintln!("error: the run aborted: {reason}");
                exit::ABORTED
            } else {
                exit::OK
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::ABORTED
        }
    }
}

async fn spawn_simulator(records: u64, wide: bool) -> Result<(tokio::process::Child, String), String> {
    use tokio::io::AsyncBufReadExt;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the ferry binary: {e}"))?;
    let records = records.to_string();
    let mut args = vec!["simulate", "shop", "--port", "0", "--lean", "--records", &records];
    if wide {
        args.push("--wide");
    }
    let mut child = tokio::process::Command::new(exe)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the simulator: {e}"))?;
    let stdout = child.stdout.take().ok_or("the simulator has no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(url) = line.strip_prefix("listening on ") {
            // Keep draining its output so the child never blocks or fails on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok((child, url.trim().to_string()));
        }
    }
    Err("the simulator exited before it was listening".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Bench {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn bench_args(flags: &[&str]) -> BenchArgs {
        Bench::parse_from(std::iter::once("bench").chain(flags.iter().copied())).args
    }

    #[test]
    fn the_typical_workload_is_a_valid_scheme_with_its_ten_fields_and_computed_lines() {
        let args = bench_args(&["--workload", "typical", "--in-flight", "8", "--batch", "50"]);
        let text = bench_scheme(&args);
        let loaded = scheme::load_str(&text, "bench.yaml", &demo_env("http://127.0.0.1:9".into()));
        assert!(loaded.plan.is_some(), "{:?}", loaded.diagnostics);
        for field in [
            "FContact:",
            "FClosed:",
            "FRemark:",
            "FAmount:",
            "in_flight: 8",
            "batch: 50",
        ] {
            assert!(text.contains(field), "{field} missing from:\n{text}");
        }
        assert!(!text.contains("FShop:"), "the demo's fields were replaced:\n{text}");
        assert_eq!(bench_scheme(&bench_args(&[])), DEMO_SCHEME);
    }

    #[test]
    fn cpu_time_is_read_and_grows() {
        let before = cpu_seconds().expect("/proc/self/stat is readable on Linux");
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let mut after = before;
        while after < before + 0.02 && Instant::now() < deadline {
            after = cpu_seconds().expect("readable");
        }
        assert!(after >= before + 0.02, "{before} → {after}");
    }
}
