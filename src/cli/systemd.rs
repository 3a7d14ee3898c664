//! `ferry systemd SCHEME --every 15m`: a hardened service and timer pair for a scheme.
//!
//! The service is `Type=oneshot` and runs `ferry --log-format journald run SCHEME --quiet`
//! against a fixed store (`%S/ferry/ferry.db`, the service's state directory, unless
//! `--store` says otherwise) from a fixed working directory. Secrets come through
//! `LoadCredential=` (one file per `${VAR}`, which Ferry reads from
//! `$CREDENTIALS_DIRECTORY`), never through `Environment=`; other variables are set with
//! `Environment=` from the values they have now. Exit codes map onto the unit (see
//! [`crate::error::exit`]): 130/143 (stopped by a signal: `systemctl stop`) are success;
//! 75 (unreachable, nothing written) restarts the service after a pause, a few times per
//! period; 1–4 fail it without a restart (the next timer run tries again).
//!
//! System units run as root stripped of every capability, in a read-only file system
//! except the store's directory (`ProtectSystem=strict`, `ReadWritePaths=`), with the usual
//! sandboxing. Rejected: `DynamicUser=`, because an operator's `ferry status` as root then
//! leaves root-owned SQLite side files (`-wal`, `-shm`) that the service cannot open.
//! User units (`--user`) keep only the settings that need no user namespace.
//!
//! The timer uses `OnCalendar=` when the period divides a minute, an hour or a day evenly
//! (so `Persistent=true` catches up a missed run after downtime), and otherwise
//! `OnUnitActiveSec=`. `RandomizedDelaySec=` spreads hosts over a tenth of the period (at
//! most 5 minutes), fixed per host (`FixedRandomDelay=`), with `AccuracySec=1s` so systemd's
//! default one-minute coalescing does not swallow the spread.

use super::{env, logging, EnvArg};
use crate::error::exit;
use clap::Args;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Args)]
#[command(after_help = "Examples:
  ferry systemd schemes/orders.yaml --every 15m
  ferry systemd schemes/orders.yaml --every 1h --write /etc/systemd/system
  ferry systemd schemes/orders.yaml --every 30m --user --write ~/.config/systemd/user
  ferry systemd schemes/orders.yaml --every 1d --store postgres://ferry@db/ferry --metrics-file /var/lib/node_exporter/textfile/ferry-orders.prom")]
pub struct SystemdArgs {
    /// The scheme file the service runs.
    scheme: PathBuf,
    /// How often to run, as a Ferry duration: 30s, 15m, 1h, 6h, 1d, 1h30m.
    #[arg(long)]
    every: String,
    /// Units for your own service manager (`systemctl --user`) instead of the system's.
    #[arg(long)]
    user: bool,
    /// Write `ferry-NAME.service` and `ferry-NAME.timer` into this directory instead of
    /// printing them.
    #[arg(long, value_name = "DIR")]
    write: Option<PathBuf>,
    /// The store the runs use (default: ferry.db in the service's state directory, i.e.
    /// /var/lib/ferry, or ~/.local/state/ferry with --user). A postgres:// URL with a
    /// password goes into a credential rather than the unit.
    #[arg(long)]
    store: Option<String>,
    /// The units' name, `ferry-NAME` (default: the scheme's `name`).
    #[arg(long)]
    name: Option<String>,
    /// Also write a Prometheus textfile after every run (`ferry run --metrics-file`).
    #[arg(long, value_name = "PATH")]
    metrics_file: Option<PathBuf>,
    /// The ferry binary the service runs (default: this one).
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    #[command(flatten)]
    env: EnvArg,
}

/// Where the runs keep their store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// `ferry.db` in the service's state directory.
    StateDirectory,
    /// A SQLite file elsewhere (absolute).
    File(PathBuf),
    /// A database URL without a password, written into the unit.
    Url(String),
    /// A database URL with a password: read from the `FERRY_STORE` credential.
    Credential,
}

/// Everything the units say.
#[derive(Debug, Clone)]
pub struct UnitSpec {
    /// `ferry-NAME`.
    pub unit: String,
    pub scheme_name: String,
    pub binary: PathBuf,
    /// Absolute.
    pub scheme_file: PathBuf,
    pub store: StoreSpec,
    pub every: chrono::Duration,
    pub every_text: String,
    pub user: bool,
    /// Variables read from credentials (secrets, and variables without a value now).
    pub credentials: Vec<String>,
    /// Variables set in the unit.
    pub environment: Vec<(String, String)>,
    pub metrics_file: Option<PathBuf>,
}

/// How a timer expresses a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// An `OnCalendar=` expression.
    Calendar(String),
    /// `OnUnitActiveSec=`, in seconds.
    Monotonic(i64),
}

/// The timer schedule of a period (pure).
pub fn schedule(every: chrono::Duration) -> Result<Schedule, String> {
    let secs = every.num_seconds();
    if secs < 1 || every.subsec_nanos() != 0 {
        return Err(format!(
            "--every must be a whole number of seconds, at least 1s (got {})",
            crate::window::describe_duration(every)
        ));
    }
    let divides = |unit: i64, within: i64| secs % unit == 0 && within % (secs / unit) == 0;
    Ok(if secs < 60 && divides(1, 60) {
        Schedule::Calendar(format!("*-*-* *:*:00/{secs}"))
    } else if secs < 3600 && divides(60, 60) {
        Schedule::Calendar(format!("*-*-* *:00/{}:00", secs / 60))
    } else if secs < 86_400 && divides(3600, 24) {
        Schedule::Calendar(format!("*-*-* 00/{}:00:00", secs / 3600))
    } else if secs == 86_400 {
        Schedule::Calendar("*-*-* 00:00:00".to_string())
    } else {
        Schedule::Monotonic(secs)
    })
}

/// A systemd time span: `90s`, `5min`, `2h`.
fn timespan(secs: i64) -> String {
    if secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else if secs % 60 == 0 {
        format!("{}min", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// Quotes one word of a command line for systemd (`%` and `$` are special there).
fn quote_word(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    if escaped
        .chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\' || c == ';')
    {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

/// Quotes an `Environment=` assignment (there `%` is special, `$` is not).
fn quote_assignment(assignment: &str) -> String {
    let escaped = assignment.replace('%', "%%");
    if escaped.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'') || escaped.contains('\\') {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

/// A unit name made of the characters systemd allows.
pub fn unit_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("ferry-{}", cleaned.trim_matches('-'))
}

impl UnitSpec {
    /// Where credentials are kept: one file per variable.
    pub fn credentials_dir(&self) -> &'static str {
        if self.user {
            "%E/ferry/credentials"
        } else {
            "/etc/ferry/credentials"
        }
    }

    /// The store as the command line gives it (`None`: from the credential).
    fn store_argument(&self) -> Option<String> {
        match &self.store {
            StoreSpec::StateDirectory => Some("%S/ferry/ferry.db".to_string()),
            StoreSpec::File(path) => Some(quote_word(&path.display().to_string())),
            StoreSpec::Url(url) => Some(quote_word(url)),
            StoreSpec::Credential => None,
        }
    }

    /// The `.service` unit.
    pub fn service(&self) -> String {
        let mut out = String::new();
        let period = self.every.num_seconds();
        let _ = writeln!(
            out,
            "# Generated by `ferry systemd`; regenerate it rather than edit it."
        );
        let _ = writeln!(out, "[Unit]");
        let _ = writeln!(out, "Description=Ferry: run scheme {}", self.scheme_name);
        let _ = writeln!(out, "Wants=network-online.target");
        let _ = writeln!(out, "After=network-online.target");
        // A few restarts per period when the peers are unreachable, then the unit fails.
        let _ = writeln!(out, "StartLimitIntervalSec={}", timespan(period.max(60)));
        let _ = writeln!(out, "StartLimitBurst=3");
        let _ = writeln!(out);
        let _ = writeln!(out, "[Service]");
        let _ = writeln!(out, "Type=oneshot");
        let mut command = vec![
            quote_word(&self.binary.display().to_string()),
            "--log-format".into(),
            "journald".into(),
            "run".into(),
            quote_word(&self.scheme_file.display().to_string()),
        ];
        if let Some(store) = self.store_argument() {
            command.push("--store".into());
            command.push(store);
        }
        command.push("--quiet".into());
        if let Some(path) = &self.metrics_file {
            command.push("--metrics-file".into());
            command.push(quote_word(&path.display().to_string()));
        }
        let _ = writeln!(out, "ExecStart={}", command.join(" "));
        let _ = writeln!(out, "StateDirectory=ferry");
        let _ = writeln!(out, "StateDirectoryMode=0700");
        let _ = writeln!(out, "WorkingDirectory=%S/ferry");
        let needs_credential = self.store == StoreSpec::Credential;
        if !self.credentials.is_empty() || needs_credential {
            let _ = writeln!(
                out,
                "# Secrets: one file per variable in {}, readable by root only; ferry reads them\n# from $CREDENTIALS_DIRECTORY.",
                self.credentials_dir()
            );
        }
        let mut credentials = self.credentials.clone();
        if needs_credential {
            credentials.push("FERRY_STORE".into());
        }
        for name in &credentials {
            let _ = writeln!(out, "LoadCredential={name}:{}/{name}", self.credentials_dir());
        }
        for (name, value) in &self.environment {
            let _ = writeln!(out, "Environment={}", quote_assignment(&format!("{name}={value}")));
        }
        let _ = writeln!(
            out,
            "# Exit codes: 0 ok; 1 records failed (in the ledger); 2 configuration; 3 aborted;\n\
             # 4 another run holds the lock; 75 source or target unreachable, nothing written;\n\
             # 130/143 stopped by SIGINT/SIGTERM (systemctl stop), which is no failure."
        );
        let _ = writeln!(out, "SuccessExitStatus=130 143");
        let _ = writeln!(out, "Restart=on-failure");
        let _ = writeln!(out, "RestartSec={}", timespan((period / 3).clamp(10, 300)));
        let _ = writeln!(out, "RestartPreventExitStatus=1 2 3 4");
        // A graceful stop finishes the writes in flight; give it time before SIGKILL.
        let _ = writeln!(out, "TimeoutStopSec=5min");
        let _ = writeln!(out, "UMask=0077");
        let _ = writeln!(out, "NoNewPrivileges=yes");
        let _ = writeln!(out, "LockPersonality=yes");
        let _ = writeln!(out, "RestrictRealtime=yes");
        let _ = writeln!(out, "RestrictSUIDSGID=yes");
        let _ = writeln!(out, "SystemCallArchitectures=native");
        let _ = writeln!(out, "SystemCallFilter=@system-service");
        let _ = writeln!(out, "SystemCallFilter=~@privileged @resources");
        if !self.user {
            let _ = writeln!(out, "CapabilityBoundingSet=");
            let _ = writeln!(out, "AmbientCapabilities=");
            let _ = writeln!(out, "ProtectSystem=strict");
            let mut writable = vec!["%S/ferry".to_string()];
            if let StoreSpec::File(path) = &self.store {
                if let Some(dir) = path.parent() {
                    writable.push(quote_word(&dir.display().to_string()));
                }
            }
            if let Some(dir) = self.metrics_file.as_ref().and_then(|p| p.parent()) {
                writable.push(quote_word(&dir.display().to_string()));
            }
            let _ = writeln!(out, "ReadWritePaths={}", writable.join(" "));
            for setting in [
                "ProtectHome=read-only",
                "PrivateTmp=yes",
                "PrivateDevices=yes",
                "ProtectKernelTunables=yes",
                "ProtectKernelModules=yes",
                "ProtectKernelLogs=yes",
                "ProtectControlGroups=yes",
                "ProtectClock=yes",
                "ProtectHostname=yes",
                "ProtectProc=invisible",
                "RestrictNamespaces=yes",
                "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                "MemoryDenyWriteExecute=yes",
            ] {
                let _ = writeln!(out, "{setting}");
            }
        }
        out
    }

    /// The `.timer` unit.
    pub fn timer(&self) -> Result<String, String> {
        let mut out = String::new();
        let period = self.every.num_seconds();
        let _ = writeln!(
            out,
            "# Generated by `ferry systemd`; regenerate it rather than edit it."
        );
        let _ = writeln!(out, "[Unit]");
        let _ = writeln!(
            out,
            "Description=Ferry: run scheme {} every {}",
            self.scheme_name, self.every_text
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "[Timer]");
        match schedule(self.every)? {
            Schedule::Calendar(expression) => {
                let _ = writeln!(out, "OnCalendar={expression}");
                let _ = writeln!(out, "# A run missed while the machine was off runs at the next boot.");
                let _ = writeln!(out, "Persistent=true");
            }
            Schedule::Monotonic(secs) => {
                let _ = writeln!(
                    out,
                    "# {} does not divide a minute, an hour or a day evenly: every {} after the last\n\
                     # run, and a minute after boot (Persistent= applies to OnCalendar= only).",
                    self.every_text,
                    timespan(secs)
                );
                let _ = writeln!(out, "OnBootSec=1min");
                let _ = writeln!(out, "OnUnitActiveSec={}", timespan(secs));
            }
        }
        let _ = writeln!(out, "RandomizedDelaySec={}", timespan((period / 10).clamp(1, 300)));
        let _ = writeln!(out, "FixedRandomDelay=true");
        let _ = writeln!(out, "AccuracySec=1s");
        let _ = writeln!(out, "Unit={}.service", self.unit);
        let _ = writeln!(out);
        let _ = writeln!(out, "[Install]");
        let _ = writeln!(out, "WantedBy=timers.target");
        Ok(out)
    }

    /// What to do after installing the units.
    pub fn next_steps(&self, written_to: Option<&Path>) -> String {
        let mut out = String::new();
        let ctl = if self.user { "systemctl --user" } else { "systemctl" };
        let mut credentials = self.credentials.clone();
        if self.store == StoreSpec::Credential {
            credentials.push("FERRY_STORE".into());
        }
        let credentials_dir = if self.user {
            "~/.config/ferry/credentials"
        } else {
            "/etc/ferry/credentials"
        };
        let state = if self.user {
            "~/.local/state/ferry"
        } else {
            "/var/lib/ferry"
        };
        let _ = writeln!(out, "next steps:");
        let mut step = 1;
        if written_to.is_none() {
            let dir = if self.user {
                "~/.config/systemd/user"
            } else {
                "/etc/systemd/system"
            };
            let _ = writeln!(
                out,
                "  {step}. save the two units as {dir}/{0}.service and {0}.timer (or pass --write {dir})",
                self.unit
            );
            step += 1;
        }
        if !credentials.is_empty() {
            let _ = writeln!(
                out,
                "  {step}. put each secret in its own file (no other text; one trailing newline is ignored):"
            );
            let _ = writeln!(out, "       install -d -m 0700 {credentials_dir}");
            for name in &credentials {
                let _ = writeln!(
                    out,
                    "       (umask 077; printf '%s' \"${name}\" > {credentials_dir}/{name})"
                );
            }
            step += 1;
        }
        let _ = writeln!(
            out,
            "  {step}. {ctl} daemon-reload && {ctl} enable --now {}.timer",
            self.unit
        );
        step += 1;
        let store = match &self.store {
            StoreSpec::StateDirectory => format!("{state}/ferry.db"),
            StoreSpec::File(path) => path.display().to_string(),
            StoreSpec::Url(url) => url.clone(),
            StoreSpec::Credential => format!("the URL in {credentials_dir}/FERRY_STORE"),
        };
        let journal = if self.user { "journalctl --user" } else { "journalctl" };
        let _ = writeln!(out, "  {step}. watch it:");
        let _ = writeln!(out, "       {ctl} list-timers {}.timer", self.unit);
        let _ = writeln!(out, "       {journal} -u {}.service", self.unit);
        let _ = writeln!(out, "       ferry status --store {store}");
        let _ = writeln!(
            out,
            "       ferry runs list --scheme {} --store {store}",
            self.scheme_name
        );
        out
    }
}

/// `ferry systemd`.
pub fn systemd(args: SystemdArgs) -> i32 {
    match build(&args) {
        Ok(spec) => emit(&spec, args.write.as_deref()),
        Err(message) => {
            logging::error(message);
            exit::CONFIG
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("cannot make {} absolute: {e}", path.display()))
}

fn build(args: &SystemdArgs) -> Result<UnitSpec, String> {
    let every = crate::window::parse_duration(&args.every).map_err(|e| format!("--every: {e}"))?;
    schedule(every)?;
    let file_vars = super::read_env_file(&args.env).map_err(|problems| {
        problems
            .iter()
            .map(|(d, _)| d.message.clone())
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let scheme_file = absolute(&args.scheme)?;
    let text = std::fs::read_to_string(&scheme_file)
        .map_err(|e| format!("cannot read the scheme {}: {e}", scheme_file.display()))?;
    // The scheme must be valid; its variables need not be set here.
    let loaded = super::load_scheme(&scheme_file, &file_vars, crate::scheme::MissingEnv::Note);
    if loaded.has_errors() {
        for d in &loaded.diagnostics {
            logging::diagnostic(d, &loaded.text);
        }
        return Err(format!("{} is not valid; no units were made", scheme_file.display()));
    }
    let parsed = crate::scheme::yaml::load_with(&text, &|_| None, crate::scheme::MissingEnv::Note);
    let scheme_name = parsed
        .value
        .get("name")
        .and_then(|n| n.as_str())
        .ok_or_else(|| format!("{} has no `name`", scheme_file.display()))?
        .to_string();
    let mut credentials: Vec<String> = Vec::new();
    let mut environment: Vec<(String, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for reference in &parsed.references {
        if !seen.insert(reference.name.clone()) {
            continue;
        }
        let value = env::variable(&reference.name, &file_vars);
        match (reference.secret, value) {
            (true, None) if reference.has_default => {}
            (true, _) => credentials.push(reference.name.clone()),
            (false, Some(value)) => environment.push((reference.name.clone(), value)),
            (false, None) if reference.has_default => {}
            (false, None) => credentials.push(reference.name.clone()),
        }
    }
    let store = match args.store.as_deref().map(str::trim) {
        None | Some("") => StoreSpec::StateDirectory,
        Some("memory" | ":memory:") => {
            return Err("--store memory keeps nothing between runs; a scheduled run needs a file or a database".into())
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let has_password = url::Url::parse(url).is_ok_and(|u| u.password().is_some());
            if has_password {
                StoreSpec::Credential
            } else {
                StoreSpec::Url(url.to_string())
            }
        }
        Some(path) => {
            let path = path
                .strip_prefix("sqlite://")
                .or_else(|| path.strip_prefix("sqlite:"))
                .unwrap_or(path);
            StoreSpec::File(absolute(Path::new(path))?)
        }
    };
    let binary = match &args.binary {
        Some(path) => absolute(path)?,
        None => std::env::current_exe().map_err(|e| format!("cannot tell where this ferry binary is: {e}"))?,
    };
    let metrics_file = args.metrics_file.as_deref().map(absolute).transpose()?;
    Ok(UnitSpec {
        unit: unit_name(args.name.as_deref().unwrap_or(&scheme_name)),
        scheme_name,
        binary,
        scheme_file,
        store,
        every,
        every_text: args.every.trim().to_string(),
        user: args.user,
        credentials,
        environment,
        metrics_file,
    })
}

fn emit(spec: &UnitSpec, write: Option<&Path>) -> i32 {
    let timer = match spec.timer() {
        Ok(timer) => timer,
        Err(message) => {
            logging::error(message);
            return exit::CONFIG;
        }
    };
    let service = spec.service();
    let Some(dir) = write else {
        let dir = if spec.user {
            "~/.config/systemd/user"
        } else {
            "/etc/systemd/system"
        };
        println!("# {dir}/{}.service\n{service}", spec.unit);
        println!("# {dir}/{}.timer\n{timer}", spec.unit);
        eprint!("{}", spec.next_steps(None));
        return exit::OK;
    };
    if !dir.is_dir() {
        logging::error(format_args!(
            "--write {}: no such directory; create it first",
            dir.display()
        ));
        return exit::CONFIG;
    }
    for (extension, text) in [("service", &service), ("timer", &timer)] {
        let path = dir.join(format!("{}.{extension}", spec.unit));
        if let Err(e) = std::fs::write(&path, text) {
            logging::error(format_args!("cannot write {}: {e}", path.display()));
            return exit::CONFIG;
        }
        println!("wrote {}", path.display());
    }
    print!("{}", spec.next_steps(Some(dir)));
    exit::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minutes(m: i64) -> chrono::Duration {
        chrono::Duration::minutes(m)
    }

    #[test]
    fn periods_become_calendar_events_when_they_divide_evenly() {
        let calendar = |text: &str| Schedule::Calendar(text.to_string());
        assert_eq!(schedule(chrono::Duration::seconds(30)), Ok(calendar("*-*-* *:*:00/30")));
        assert_eq!(schedule(minutes(15)), Ok(calendar("*-*-* *:00/15:00")));
        assert_eq!(schedule(minutes(1)), Ok(calendar("*-*-* *:00/1:00")));
        assert_eq!(schedule(minutes(60)), Ok(calendar("*-*-* 00/1:00:00")));
        assert_eq!(schedule(minutes(6 * 60)), Ok(calendar("*-*-* 00/6:00:00")));
        assert_eq!(schedule(minutes(24 * 60)), Ok(calendar("*-*-* 00:00:00")));
        // Periods that do not divide their unit evenly count from the last run.
        assert_eq!(schedule(minutes(45)), Ok(Schedule::Monotonic(2700)));
        assert_eq!(schedule(minutes(90)), Ok(Schedule::Monotonic(5400)));
        assert_eq!(schedule(minutes(7 * 60)), Ok(Schedule::Monotonic(25_200)));
        assert_eq!(schedule(minutes(2 * 24 * 60)), Ok(Schedule::Monotonic(172_800)));
        assert_eq!(schedule(chrono::Duration::seconds(7)), Ok(Schedule::Monotonic(7)));
        assert!(schedule(chrono::Duration::zero()).is_err());
        assert!(schedule(chrono::Duration::milliseconds(1500)).is_err());
    }

    #[test]
    fn spans_and_words_are_written_as_systemd_reads_them() {
        assert_eq!(timespan(90), "90s");
        assert_eq!(timespan(300), "5min");
        assert_eq!(timespan(7200), "2h");
        assert_eq!(quote_word("/opt/ferry/bin/ferry"), "/opt/ferry/bin/ferry");
        assert_eq!(quote_word("/srv/my schemes/a.yaml"), "\"/srv/my schemes/a.yaml\"");
        assert_eq!(quote_word("100%$x"), "100%%$$x");
        assert_eq!(unit_name("shop orders/erp"), "ferry-shop-orders-erp");
        assert_eq!(quote_assignment("URL=https://a/b?x=1"), "URL=https://a/b?x=1");
        assert_eq!(quote_assignment("NOTE=50% off $5"), "\"NOTE=50%% off $5\"");
    }

    fn spec(store: StoreSpec, user: bool) -> UnitSpec {
        UnitSpec {
            unit: "ferry-orders".into(),
            scheme_name: "orders".into(),
            binary: "/usr/local/bin/ferry".into(),
            scheme_file: "/etc/ferry/orders.yaml".into(),
            store,
            every: minutes(15),
            every_text: "15m".into(),
            user,
            credentials: vec!["SHOP_TOKEN".into()],
            environment: vec![("SHOP_URL".into(), "https://shop.example".into())],
            metrics_file: Some("/var/lib/node_exporter/ferry.prom".into()),
        }
    }

    #[test]
    fn the_service_maps_the_exit_codes_and_keeps_secrets_in_credentials() {
        let service = spec(StoreSpec::StateDirectory, false).service();
        for line in [
            "Type=oneshot",
            "ExecStart=/usr/local/bin/ferry --log-format journald run /etc/ferry/orders.yaml --store %S/ferry/ferry.db --quiet --metrics-file /var/lib/node_exporter/ferry.prom",
            "WorkingDirectory=%S/ferry",
            "LoadCredential=SHOP_TOKEN:/etc/ferry/credentials/SHOP_TOKEN",
            "Environment=SHOP_URL=https://shop.example",
            "SuccessExitStatus=130 143",
            "RestartPreventExitStatus=1 2 3 4",
            "RestartSec=5min",
            "ProtectSystem=strict",
            "ReadWritePaths=%S/ferry /var/lib/node_exporter",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=",
        ] {
            assert!(service.lines().any(|l| l == line), "missing `{line}` in\n{service}");
        }
        let timer = spec(StoreSpec::StateDirectory, false).timer().unwrap();
        for line in [
            "OnCalendar=*-*-* *:00/15:00",
            "Persistent=true",
            "RandomizedDelaySec=90s",
            "AccuracySec=1s",
            "Unit=ferry-orders.service",
            "WantedBy=timers.target",
        ] {
            assert!(timer.lines().any(|l| l == line), "missing `{line}` in\n{timer}");
        }
    }

    #[test]
    fn a_password_in_a_store_url_goes_to_a_credential_and_user_units_skip_namespaces() {
        let service = spec(StoreSpec::Credential, true).service();
        assert!(!service.contains("--store"), "{service}");
        assert!(service.contains("LoadCredential=FERRY_STORE:%E/ferry/credentials/FERRY_STORE"));
        assert!(!service.contains("ProtectSystem"), "{service}");
        let steps = spec(StoreSpec::Credential, true).next_steps(None);
        assert!(steps.contains("systemctl --user daemon-reload"), "{steps}");
        assert!(steps.contains("FERRY_STORE"), "{steps}");
    }
}
