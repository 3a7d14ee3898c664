//! `ferry bench --workload receive`: durable acknowledgements per second of `ferry serve`.
//!
//! The bench is the load generator: it starts the shop simulator (the target) and `ferry
//! serve schemes/receive-orders-to-erp.yaml` as child processes, sends `--records`
//! standard-format pushes (seed 000) from `--clients` concurrent clients, and reports
//! acknowledged pushes per second, acknowledgement latency p50/p99 and how long the inbox
//! took to drain into the target. Each acknowledgement means the push was committed to the
//! store's inbox first; the durability of that commit is the store's (printed).

use super::demo::BenchArgs;
use crate::error::exit;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

const SCHEME: &str = include_str!("../../schemes/receive-orders-to-erp.yaml");
const PUSH_TOKEN: &str = "bench-push-token";

/// A child process killed when dropped.
struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

async fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Result<(Child, String), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the ferry binary: {e}"))?;
    let mut command = tokio::process::Command::new(exe);
    command
        .args(args)
        .env("FERRY_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start `ferry {}`: {e}", args[0]))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(url) = line.strip_prefix("listening on ") {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok((Child(child), url.trim().to_string()));
        }
    }
    Err(format!("`ferry {}` exited before it was listening", args[0]))
}

/// One standard-format push (seed 000 §4): the `id` header and the body.
fn push(n: u64) -> (String, String) {
    let id = format!("RB{n:08}");
    let body = serde_json::json!({
        "objAPIName": "SaleOrderObj",
        "masterFieldVal": {"no": id, "customer_code": format!("C-{}", n % 97), "customer": "Bench Buyer", "amount": "12.50"},
        "detailFieldVals": {"SaleOrderLines": [{"sku": "P-1", "qty": "2"}, {"sku": "P-2", "qty": "1"}]}
    });
    (id, body.to_string())
}

/// Pending pushes, from the server's `/metrics` (`ferry_inbox_pending`).
async fn pending(client: &reqwest::Client, base: &str) -> Option<f64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .filter(|line| line.starts_with("ferry_inbox_pending"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub async fn run(args: &BenchArgs, clients: usize) -> i32 {
    match measure(args, clients.max(1)).await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            exit::ABORTED
        }
    }
}

async fn measure(args: &BenchArgs, clients: usize) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let scheme = dir.path().join("receive.yaml");
    std::fs::write(&scheme, SCHEME.replace("batch: 50", &format!("batch: {}", args.batch)))
        .map_err(|e| e.to_string())?;
    let store = match &args.store {
        Some(store) => store.clone(),
        None => dir.path().join("ferry.db").display().to_string(),
    };
    let (_sim, target) = spawn(&["simulate", "shop", "--port", "0", "--lean", "--records", "0"], &[]).await?;
    let scheme_path = scheme.display().to_string();
    let serve_args = [
        "serve",
        scheme_path.as_str(),
        "--listen",
        "127.0.0.1:0",
        "--store",
        store.as_str(),
    ];
    let envs = [("ERP_URL", target.as_str()), ("PUSH_TOKEN", PUSH_TOKEN)];
    let (server, base) = spawn(&serve_args, &envs).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .map_err(|e| e.to_string())?;
    let total = args.records;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, next, url) = (client.clone(), next.clone(), format!("{base}/receive/orders"));
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut refused = 0u64;
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let (id, body) = push(n);
                let sent = Instant::now();
                let answer = client
                    .post(&url)
                    .header("token", PUSH_TOKEN)
                    .header("id", &id)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let acknowledged = match answer {
                    Ok(response) if response.status().is_success() => response
                        .json::<serde_json::Value>()
                        .await
                        .is_ok_and(|v| v["errCode"] == "s106240000"),
                    _ => false,
                };
                if acknowledged {
                    latencies.push(sent.elapsed());
                } else {
                    refused += 1;
                }
            }
            (latencies, refused)
        });
    }
    let mut latencies = Vec::with_capacity(total as usize);
    let mut refused = 0;
    while let Some(done) = tasks.join_next().await {
        let (mine, not) = done.map_err(|e| e.to_string())?;
        latencies.extend(mine);
        refused += not;
    }
    let acked_in = started.elapsed();
    // The inbox drains into the target while and after the pushes arrive.
    let deadline = Instant::now() + Duration::from_secs(600);
    let drained_in = loop {
        match pending(&client, &base).await {
            Some(0.0) => break Some(started.elapsed()),
            _ if Instant::now() > deadline => break None,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    drop(server);
    latencies.sort();
    let acked = latencies.len() as f64;
    println!(
        "pushes       {total} from {clients} clients, {} acknowledged, {refused} refused",
        latencies.len()
    );
    println!("acknowledged {:.0} pushes/s", acked / acked_in.as_secs_f64().max(1e-9));
    println!(
        "ack latency  p50 {:.1} ms, p99 {:.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0
    );
    match drained_in {
        Some(t) => println!(
            "drained      all pushes applied to the target {:.2} s after the first ({:.0} records/s)",
            t.as_secs_f64(),
            acked / t.as_secs_f64().max(1e-9)
        ),
        None => println!("drained      not within 10 minutes"),
    }
    let durability = if store.starts_with("postgres") {
        "Postgres: each acknowledgement is a committed transaction (the server's synchronous_commit decides power-loss safety)"
    } else if store == "memory" {
        "memory: nothing survives the process"
    } else if store.to_ascii_lowercase().contains("synchronous=full") {
        "SQLite WAL, synchronous=FULL: an acknowledged push was synced to disk; it survives a process kill and a power loss"
    } else {
        "SQLite WAL, synchronous=NORMAL: an acknowledged push survives a process kill, not a power loss \
         (add ?synchronous=full to a sqlite: --store to sync every commit)"
    };
    println!("durability   {durability}");
    Ok(())
}
