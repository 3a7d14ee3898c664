//! `ferry inbox list|show|replay|purge`: the data-maintenance view of receive mode's
//! inbox (what was pushed, what became of it, and pushing it through again).

use super::{logging, stores, FormatArg, StoreArg};
use crate::error::exit;
use crate::store::{InboxRow, InboxStore, PushStatus};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum InboxAction {
    /// List stored pushes, newest first.
    #[command(after_help = "Examples:
  ferry inbox list --scheme receive-orders-to-erp --status failed
  ferry inbox list --limit 20 --json")]
    List {
        /// Only this scheme's pushes: its `name` or its scheme file.
        #[arg(long)]
        scheme: Option<String>,
        /// pending, done or failed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[command(flatten)]
        output: FormatArg,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Show one push with its payload.
    Show {
        id: i64,
        #[command(flatten)]
        output: FormatArg,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Make pushes pending again, so `ferry serve` applies them once more.
    Replay {
        #[arg(required = true)]
        ids: Vec<i64>,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Delete finished pushes (done or failed) received longer ago than --older-than.
    #[command(after_help = "Examples:
  ferry inbox purge --status done --older-than 7d")]
    Purge {
        /// done or failed (pending pushes are never purged).
        #[arg(long)]
        status: String,
        #[arg(long)]
        scheme: Option<String>,
        /// e.g. 7d, 12h (default 0s: all of them).
        #[arg(long, default_value = "0s")]
        older_than: String,
        #[command(flatten)]
        store: StoreArg,
    },
}

fn parse_status(text: &str) -> Result<PushStatus, i32> {
    text.parse().map_err(|e| {
        logging::error(e);
        exit::CONFIG
    })
}

fn line(row: &InboxRow) -> String {
    let error = row.last_error.as_deref().map(|e| format!("  {e}")).unwrap_or_default();
    format!(
        "{:>6}  {:<8} {:<24} {:<20} {:<10} attempts {}  {}{}",
        row.id,
        row.status,
        row.scheme,
        row.business_key.as_deref().unwrap_or("-"),
        if row.cancel { "cancel" } else { row.received_as.as_str() },
        row.attempts,
        row.received_at.format("%Y-%m-%d %H:%M:%S%.3f"),
        error
    )
}

pub async fn inbox(action: InboxAction) -> i32 {
    match run(action).await {
        Ok(code) | Err(code) => code,
    }
}

async fn run(action: InboxAction) -> Result<i32, i32> {
    let failed = |e: crate::store::StoreError| {
        logging::error(e);
        exit::ABORTED
    };
    match action {
        InboxAction::List {
            scheme,
            status,
            limit,
            output,
            store,
        } => {
            let status = status.as_deref().map(parse_status).transpose()?;
            let scheme = scheme.as_deref().map(stores::scheme_name).transpose()?;
            let store = stores::open_existing(&store.store).await?;
            let rows = store
                .list_pushes(scheme.as_deref(), status, limit)
                .await
                .map_err(failed)?;
            if output.is_json() {
                println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
            } else if rows.is_empty() {
                println!("no pushes");
            } else {
                for row in &rows {
                    println!("{}", line(row));
                }
            }
        }
        InboxAction::Show { id, output, store } => {
            let store = stores::open_existing(&store.store).await?;
            let Some(row) = store.push(id).await.map_err(failed)? else {
                logging::error(format_args!("there is no push {id} — see `ferry inbox list`"));
                return Err(exit::CONFIG);
            };
            if output.is_json() {
                println!("{}", serde_json::to_string_pretty(&row).unwrap_or_default());
            } else {
                println!("{}", line(&row));
                if let Some(lease) = row.lease_until {
                    println!("claimed by {} until {lease}", row.claimed_by.as_deref().unwrap_or("?"));
                }
                println!("{}", serde_json::to_string_pretty(&row.payload).unwrap_or_default());
            }
        }
        InboxAction::Replay { ids, store } => {
            let store = stores::open_existing(&store.store).await?;
            let changed = store.replay_pushes(&ids).await.map_err(failed)?;
            println!("{changed} push(es) pending again; a running `ferry serve` applies them");
            if (changed as usize) < ids.len() {
                logging::error(format_args!("{} id(s) not found", ids.len() - changed as usize));
                return Err(exit::CONFIG);
            }
        }
        InboxAction::Purge {
            status,
            scheme,
            older_than,
            store,
        } => {
            let status = parse_status(&status)?;
            let age = crate::window::parse_duration(&older_than).map_err(|e| {
                logging::error(format_args!("--older-than: {e}"));
                exit::CONFIG
            })?;
            let scheme = scheme.as_deref().map(stores::scheme_name).transpose()?;
            let store = stores::open_existing(&store.store).await?;
            let removed = store
                .purge_pushes(scheme.as_deref(), status, chrono::Utc::now() - age)
                .await
                .map_err(|e| {
                    logging::error(e);
                    exit::CONFIG
                })?;
            println!("{removed} push(es) purged");
        }
    }
    Ok(exit::OK)
}
