//! The Simply CRM simulator: a vtiger-style `webservice.php` with Accounts and Contacts,
//! for tests, `ferry demo` and `ferry simulate simply-crm`.
//!
//! **Protocol, as vtiger's `webservice.php` does it.** `operation` (case-insensitive)
//! and `sessionName` are read from the query string or the form body; every other
//! parameter is read only from where the operation is registered: the query string for
//! GET operations (getchallenge, retrieve, query, sync, listtypes, describe), the form
//! body for POST operations (login, create, update, revise, delete, logout). A call sent
//! with the wrong verb therefore sees no parameters, as on a real server. Every answer is
//! HTTP 200 with `{"success":true,"result":…}` or
//! `{"success":false,"error":{"code":…,"message":…}}`, using vtiger's codes and messages.
//!
//! **Login and sessions.** `getchallenge` issues a 13-hex-digit token valid for
//! [`SimplyConfig::challenge_ttl_secs`] (vtiger: 300 s); one token per user, replaced by
//! the next challenge and deleted once a login uses it. `login` checks
//! `accessKey == md5(token + userAccessKey)`. Sessions end after
//! [`SimplyConfig::session_life_secs`] (`SESSION_EXPIRED`) or when idle longer than
//! [`SimplyConfig::session_idle_secs`] (`SESSION_LEFT_IDLE`); a destroyed or unknown
//! session is `INVALID_SESSIONID`, a missing one `AUTHENTICATION_REQUIRED`.
//! [`SimplySim::expire_sessions`] ends every session now.
//!
//! **Data.** `records` accounts (crmid `i`, id `11x<i>`, `ACC<i>`) and as many contacts
//! (crmid `records + i`, id `12x…`, `CON<i>`, working at account `i`) are generated at
//! start from their index: Chinese company and person names, regions, phones. Record `i`
//! was modified at the instant `base_time + i * spacing_secs` (UTC). Every
//! [`SimplyConfig::other_owner_every`]-th record belongs to a second user (`19x5`), so a
//! plain `sync` by the admin skips it while `query` sees it, as in vtiger. Tests change
//! data with [`SimplySim::touch`], [`SimplySim::touch_many`] and
//! [`SimplySim::delete_record`].
//!
//! **Time (reference §5).** Records keep instants. `createdtime`/`modifiedtime` are shown,
//! and compared by VTQL, as `yyyy-MM-dd HH:mm:ss` text in the database zone
//! [`SimplyConfig::server_zone`] (UTC by default, as in a standard vtiger install), never in
//! the user's or China time. `getchallenge`'s `serverTime`/`expireTime` and `sync`'s
//! `modifiedTime`/`lastModifiedTime` are epoch seconds.
//!
//! **Operations.** `query` understands
//! `SELECT * | count(*) | f1, f2 FROM <Module> [WHERE <f> <op> '<v>' [AND|OR …]]
//! [ORDER BY <f> [ASC|DESC]] [LIMIT [o,] n];` (ops `= != <> < > <= >= LIKE IN`), must end
//! with `;` and returns at most [`QUERY_ROW_CAP`] rows (a larger LIMIT is cut silently);
//! text comparisons ignore case like MySQL. `sync` follows vtiger's `GetUpdates.php`:
//! changes after `modifiedTime` (epoch seconds), at most [`SYNC_BATCH`] timestamps'
//! worth, all records sharing the last timestamp together, `deleted` ids, `more`, and
//! `lastModifiedTime`; only the caller's records unless `syncType=application`. `create`
//! checks mandatory fields and references one row at a time and assigns the auto
//! number; `update` replaces the whole record (fields not sent are blanked); `revise`
//! changes only what is sent; `delete` answers `{"status":"successful"}`. `describe`
//! gives `idPrefix` (Accounts 11, Contacts 12, as in a standard install).
//!
//! **Chosen here, not documented by Simply:** the throttle answer (HTTP 429 with code
//! `TOO_MANY_REQUESTS`), and refusing a non-object `element` with
//! `MANDATORY_FIELDS_MISSING`. vtiger's `stripslashes` on every input is not imitated.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

use super::kit::{
    self, counters, json_reply, like, mix, naive_at, pick, simulator, start_sim, to_secs, too_many_requests,
    BRAND_FIRST, BRAND_SECOND, COMPANY_FORMS, SURNAMES,
};
use super::{
    instrument, lock, parse_query, FaultReplies, Faults, LogMode, RequestLog, SimControl, SimHandle, Simulator,
};

/// The endpoint path.
pub const ENDPOINT_PATH: &str = "/webservice.php";
/// Most rows one `query` returns.
pub const QUERY_ROW_CAP: usize = 100;
/// Most changed records `sync` looks at per call (vtiger's `numRecordsLimit`).
pub const SYNC_BATCH: usize = 100;
/// Format of every datetime field.
pub const DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
/// The API version `login` reports.
pub const API_VERSION: &str = "0.22";

/// How the simulator behaves. The default credentials are those of the reference's
/// login test vector.
#[derive(Clone, Debug)]
pub struct SimplyConfig {
    /// Accounts generated at start, and as many contacts (default 300).
    pub records: u64,
    /// Record `i` is modified at `base_time + i * spacing_secs` (an instant, read as UTC;
    /// default 2024-01-01 00:00:00).
    pub base_time: NaiveDateTime,
    /// The database time zone (vtiger's `$default_timezone`, reference §5): the zone of the
    /// `createdtime`/`modifiedtime` text records show and VTQL compares (default UTC).
    pub server_zone: Tz,
    /// Seconds between consecutive records (default 600).
    pub spacing_secs: i64,
    /// Faults at start; change them later with [`SimplySim::set_faults`].
    pub faults: Faults,
    /// The user that may log in (default `admin`, user id `19x1`, an admin).
    pub username: String,
    /// That user's access key (default `AbCdEfGhIjKlMnOp`).
    pub access_key: String,
    /// Seconds a challenge token stays valid (default 300).
    pub challenge_ttl_secs: i64,
    /// Seconds a session may stay unused (default 1800).
    pub session_idle_secs: u64,
    /// Seconds a session lives at most (default 86400).
    pub session_life_secs: u64,
    /// Every n-th generated record is owned by the second user `19x5` (default 10; 0
    /// means never).
    pub other_owner_every: u64,
}

impl Default for SimplyConfig {
    fn default() -> Self {
        SimplyConfig {
            records: 300,
            base_time: naive_at(2024, 1, 1, 0, 0, 0),
            spacing_secs: 600,
            server_zone: chrono_tz::UTC,
            faults: Faults::default(),
            username: "admin".to_owned(),
            access_key: "AbCdEfGhIjKlMnOp".to_owned(),
            challenge_ttl_secs: 300,
            session_idle_secs: 1800,
            session_life_secs: 86_400,
            other_owner_every: 10,
        }
    }
}

/// A Simply CRM simulator; clones share the same state.
#[derive(Clone)]
pub struct SimplySim {
    state: Arc<SimplyState>,
}

impl std::fmt::Debug for SimplySim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let crm = lock(&self.state.crm);
        f.debug_struct("SimplySim")
            .field("records", &crm.records.len())
            .field("written", &crm.written.len())
            .finish_non_exhaustive()
    }
}

struct SimplyState {
    zone: Tz,
    username: String,
    access_key: String,
    challenge_ttl_secs: i64,
    session_idle: Duration,
    session_life: Duration,
    records: u64,
    control: Arc<SimControl>,
    crm: Mutex<Crm>,
    auth: Mutex<Auth>,
    write_calls: AtomicU64,
}

// ---------------------------------------------------------------------------
// Modules and fields
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Module {
    Accounts,
    Contacts,
}

/// A field: name, label, mandatory, type name, what a reference refers to.
struct FieldDef {
    name: &'static str,
    label: &'static str,
    mandatory: bool,
    kind: &'static str,
    refers_to: Option<&'static str>,
}

const fn field(name: &'static str, label: &'static str, kind: &'static str) -> FieldDef {
    FieldDef {
        name,
        label,
        mandatory: false,
        kind,
        refers_to: None,
    }
}

const fn required(name: &'static str, label: &'static str, kind: &'static str) -> FieldDef {
    FieldDef {
        name,
        label,
        mandatory: true,
        kind,
        refers_to: None,
    }
}

const fn reference(name: &'static str, label: &'static str, module: &'static str) -> FieldDef {
    FieldDef {
        name,
        label,
        mandatory: false,
        kind: "reference",
        refers_to: Some(module),
    }
}

/// Fields the server fills, never the client.
const SYSTEM_FIELDS: &[&str] = &["id", "createdtime", "modifiedtime"];

const ACCOUNT_FIELDS: &[FieldDef] = &[
    required("accountname", "Account Name", "string"),
    field("account_no", "Account No", "autogenerated"),
    field("website", "Website", "url"),
    field("phone", "Phone", "phone"),
    field("otherphone", "Other Phone", "phone"),
    field("fax", "Fax", "phone"),
    field("email1", "Email", "email"),
    reference("account_id", "Member Of", "Accounts"),
    field("industry", "Industry", "picklist"),
    field("accounttype", "Type", "picklist"),
    field("employees", "Employees", "integer"),
    field("annual_revenue", "Annual Revenue", "currency"),
    field("bill_street", "Billing Address", "text"),
    field("bill_city", "Billing City", "string"),
    field("bill_state", "Billing State", "string"),
    field("bill_code", "Billing Code", "string"),
    field("bill_country", "Billing Country", "string"),
    field("ship_street", "Shipping Address", "text"),
    field("ship_city", "Shipping City", "string"),
    field("ship_state", "Shipping State", "string"),
    field("ship_code", "Shipping Code", "string"),
    field("ship_country", "Shipping Country", "string"),
    field("description", "Description", "text"),
    required("assigned_user_id", "Assigned To", "owner"),
    field("createdtime", "Created Time", "datetime"),
    field("modifiedtime", "Modified Time", "datetime"),
];

const CONTACT_FIELDS: &[FieldDef] = &[
    field("contact_no", "Contact Id", "autogenerated"),
    field("salutationtype", "Salutation", "picklist"),
    field("firstname", "First Name", "string"),
    required("lastname", "Last Name", "string"),
    reference("account_id", "Organization Name", "Accounts"),
    field("title", "Title", "string"),
    field("department", "Department", "string"),
    field("email", "Email", "email"),
    field("mobile", "Mobile", "phone"),
    field("phone", "Office Phone", "phone"),
    field("mailingstreet", "Mailing Street", "text"),
    field("mailingcity", "Mailing City", "string"),
    field("mailingstate", "Mailing State", "string"),
    field("mailingzip", "Mailing Zip", "string"),
    field("mailingcountry", "Mailing Country", "string"),
    field("description", "Description", "text"),
    required("assigned_user_id", "Assigned To", "owner"),
    field("createdtime", "Created Time", "datetime"),
    field("modifiedtime", "Modified Time", "datetime"),
];

const ALL_MODULES: &[Module] = &[Module::Accounts, Module::Contacts];

impl Module {
    fn parse(name: &str) -> Option<Module> {
        ALL_MODULES.iter().copied().find(|module| module.name() == name)
    }

    fn from_prefix(prefix: &str) -> Option<Module> {
        ALL_MODULES.iter().copied().find(|module| module.prefix() == prefix)
    }

    fn name(self) -> &'static str {
        match self {
            Module::Accounts => "Accounts",
            Module::Contacts => "Contacts",
        }
    }

    fn singular(self) -> &'static str {
        match self {
            Module::Accounts => "Account",
            Module::Contacts => "Contact",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Module::Accounts => "11",
            Module::Contacts => "12",
        }
    }

    fn fields(self) -> &'static [FieldDef] {
        match self {
            Module::Accounts => ACCOUNT_FIELDS,
            Module::Contacts => CONTACT_FIELDS,
        }
    }

    /// The auto-numbered field and its prefix.
    fn number_field(self) -> (&'static str, &'static str) {
        match self {
            Module::Accounts => ("account_no", "ACC"),
            Module::Contacts => ("contact_no", "CON"),
        }
    }

    fn label_fields(self) -> &'static str {
        match self {
            Module::Accounts => "accountname",
            Module::Contacts => "firstname,lastname",
        }
    }

    fn has_field(self, name: &str) -> bool {
        name == "id" || self.fields().iter().any(|field| field.name == name)
    }
}

/// The users: (id, user name, is admin). Only the configured user can log in; it is
/// user 1.
const USERS: &[(u64, &str, bool)] = &[(1, "admin", true), (5, "lina", false)];
const USER_PREFIX: &str = "19";

fn user_exists(id: u64) -> bool {
    USERS.iter().any(|(user, _, _)| *user == id)
}

// ---------------------------------------------------------------------------
// The record store
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Record {
    module: Module,
    /// Client-editable fields plus the auto number, all as strings.
    fields: Map<String, Value>,
    owner: u64,
    created: i64,
    modified: i64,
    deleted: bool,
}

impl Record {
    fn id(&self, crmid: u64) -> String {
        format!("{}x{crmid}", self.module.prefix())
    }

    /// The record as the API shows it: every field of its module, strings throughout,
    /// times as wall-clock text in the database zone `zone`.
    fn render(&self, crmid: u64, zone: Tz) -> Map<String, Value> {
        let mut out = Map::new();
        for field in self.module.fields() {
            let value = match field.name {
                "assigned_user_id" => json!(format!("{USER_PREFIX}x{}", self.owner)),
                "createdtime" => json!(format_time(self.created, zone)),
                "modifiedtime" => json!(format_time(self.modified, zone)),
                name => self.fields.get(name).cloned().unwrap_or_else(|| json!("")),
            };
            out.insert(field.name.to_owned(), value);
        }
        out.insert("id".to_owned(), json!(self.id(crmid)));
        out
    }
}

#[derive(Default)]
struct Crm {
    records: BTreeMap<u64, Record>,
    next_crmid: u64,
    next_number: HashMap<Module, u64>,
    /// crmids created or changed through the API, in first-write order.
    written: Vec<u64>,
}

impl Crm {
    fn remember_write(&mut self, crmid: u64) {
        if !self.written.contains(&crmid) {
            self.written.push(crmid);
        }
    }

    fn live(&self, crmid: u64, module: Module) -> Option<&Record> {
        self.records
            .get(&crmid)
            .filter(|record| record.module == module && !record.deleted)
    }
}

// ---------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------

struct LiveSession {
    user: u64,
    started: Instant,
    last_used: Instant,
    ended: bool,
}

#[derive(Default)]
struct Auth {
    /// One challenge per user: (token, expiry in epoch seconds).
    challenges: HashMap<u64, (String, i64)>,
    sessions: HashMap<String, LiveSession>,
    counter: u64,
}

impl Auth {
    fn next_token(&mut self, width: usize) -> String {
        self.counter += 1;
        let text = format!("{:016x}{:016x}", mix(self.counter ^ 0xC4A1), mix(self.counter));
        text[..width.min(text.len())].to_owned()
    }
}

// ---------------------------------------------------------------------------
// Public API of the simulator
// ---------------------------------------------------------------------------

simulator!(SimplySim);

impl SimplySim {
    /// Builds the state; nothing listens until [`SimplySim::start`] or until
    /// [`SimplySim::router`] is served.
    pub fn new(cfg: SimplyConfig) -> SimplySim {
        let base = to_secs(cfg.base_time);
        let spacing = cfg.spacing_secs.max(0);
        let mut crm = Crm {
            next_crmid: cfg.records * 2 + 1,
            ..Crm::default()
        };
        for index in 1..=cfg.records {
            let modified = base.saturating_add(i64::try_from(index).unwrap_or(i64::MAX).saturating_mul(spacing));
            let owner = if cfg.other_owner_every > 0 && index % cfg.other_owner_every == 0 {
                5
            } else {
                1
            };
            crm.records.insert(index, generated_account(index, owner, modified));
            crm.records
                .insert(cfg.records + index, generated_contact(index, owner, modified));
        }
        crm.next_number.insert(Module::Accounts, cfg.records + 1);
        crm.next_number.insert(Module::Contacts, cfg.records + 1);
        let control = SimControl::new(cfg.faults, RequestLog::new(LogMode::Full), SimplyReplies);
        SimplySim {
            state: Arc::new(SimplyState {
                zone: cfg.server_zone,
                username: cfg.username,
                access_key: cfg.access_key,
                challenge_ttl_secs: cfg.challenge_ttl_secs,
                session_idle: Duration::from_secs(cfg.session_idle_secs),
                session_life: Duration::from_secs(cfg.session_life_secs),
                records: cfg.records,
                control: Arc::new(control),
                crm: Mutex::new(crm),
                auth: Mutex::new(Auth::default()),
                write_calls: AtomicU64::new(0),
            }),
        }
    }

    /// The endpoint route (GET and POST), wrapped with the request log and fault layer.
    pub fn router(&self) -> Router {
        let routes = Router::new()
            .route(ENDPOINT_PATH, get(endpoint).post(endpoint))
            .with_state(Arc::clone(&self.state));
        instrument(routes, Arc::clone(&self.state.control))
    }

    /// Builds a simulator and serves it on `listener`.
    pub async fn start(cfg: SimplyConfig, listener: tokio::net::TcpListener) -> io::Result<(SimplySim, SimHandle)> {
        start_sim(SimplySim::new(cfg), SimplySim::router, listener).await
    }

    /// Changes account `index` (1-based; its phone and description) and moves its
    /// `modifiedtime` to the instant `at` (shown in the server zone). False when there is
    /// no such live account.
    pub fn touch(&self, index: u64, at: DateTime<Utc>) -> bool {
        let mut crm = lock(&self.state.crm);
        touch_record(&mut crm, index, Module::Accounts, at.timestamp())
    }

    /// Changes contact `index` (1-based; its title and description) and moves its
    /// `modifiedtime` to `at`.
    pub fn touch_contact(&self, index: u64, at: DateTime<Utc>) -> bool {
        if index == 0 || index > self.state.records {
            return false;
        }
        let mut crm = lock(&self.state.crm);
        touch_record(&mut crm, self.state.records + index, Module::Contacts, at.timestamp())
    }

    /// Touches many accounts at once: the `n`-th index of `indexes` (from 0) is modified
    /// at `first + n * spacing`, so distinct spacing gives each its own timestamp (as
    /// `sync` batches by timestamp). Returns how many live accounts were changed.
    pub fn touch_many(
        &self,
        indexes: impl IntoIterator<Item = u64>,
        first: DateTime<Utc>,
        spacing: chrono::Duration,
    ) -> usize {
        let mut crm = lock(&self.state.crm);
        let (start, step) = (first.timestamp(), spacing.num_seconds());
        let mut changed = 0;
        for (n, index) in (0i64..).zip(indexes) {
            let at = start.saturating_add(n.saturating_mul(step));
            if touch_record(&mut crm, index, Module::Accounts, at) {
                changed += 1;
            }
        }
        changed
    }

    /// Deletes the live record with webservice id `id` (e.g. `11x42`) as of `at`, as a
    /// user deleting it in the CRM would: `retrieve` and `query` no longer see it and
    /// `sync` lists the id under `deleted`. False when there is no such live record.
    pub fn delete_record(&self, id: &str, at: DateTime<Utc>) -> bool {
        let Ok((module, crmid)) = parse_record_id(id) else {
            return false;
        };
        let mut crm = lock(&self.state.crm);
        match crm.records.get_mut(&crmid) {
            Some(record) if record.module == module && !record.deleted => {
                record.deleted = true;
                record.modified = at.timestamp();
                true
            }
            _ => false,
        }
    }

    /// Account `index` (1-based) as `retrieve` shows it, deleted or not.
    pub fn account(&self, index: u64) -> Option<Value> {
        let crm = lock(&self.state.crm);
        crm.records
            .get(&index)
            .filter(|record| record.module == Module::Accounts)
            .map(|record| Value::Object(record.render(index, self.state.zone)))
    }

    /// Contact `index` (1-based).
    pub fn contact(&self, index: u64) -> Option<Value> {
        if index == 0 || index > self.state.records {
            return None;
        }
        let crmid = self.state.records + index;
        let crm = lock(&self.state.crm);
        crm.records
            .get(&crmid)
            .map(|record| Value::Object(record.render(crmid, self.state.zone)))
    }

    /// The live record with webservice id `id` (e.g. `11x42`).
    pub fn record(&self, id: &str) -> Option<Value> {
        let (module, crmid) = parse_record_id(id).ok()?;
        let crm = lock(&self.state.crm);
        crm.live(crmid, module)
            .map(|record| Value::Object(record.render(crmid, self.state.zone)))
    }

    /// Live records created or changed through the API, in first-write order.
    pub fn written(&self) -> Vec<Value> {
        let crm = lock(&self.state.crm);
        crm.written
            .iter()
            .filter_map(|crmid| {
                crm.records
                    .get(crmid)
                    .filter(|record| !record.deleted)
                    .map(|record| Value::Object(record.render(*crmid, self.state.zone)))
            })
            .collect()
    }

    /// The first live API-written record whose business key is `key`: an account's
    /// `accountname` or `account_no`, a contact's `contact_no` or `email`.
    pub fn written_by_key(&self, key: &str) -> Option<Value> {
        self.written().into_iter().find(|record| {
            ["accountname", "account_no", "contact_no", "email"]
                .iter()
                .any(|field| record.get(field).and_then(Value::as_str) == Some(key))
        })
    }

    counters! {
        /// create/update/revise/delete calls that reached the operation (refused rows
        /// included).
        write_calls,
    }

    /// Ends every session now: the next call with one gets `SESSION_EXPIRED`, later
    /// calls `INVALID_SESSIONID`.
    pub fn expire_sessions(&self) {
        for session in lock(&self.state.auth).sessions.values_mut() {
            session.ended = true;
        }
    }

    /// Makes every outstanding challenge token stale.
    pub fn expire_challenges(&self) {
        for (_, expiry) in lock(&self.state.auth).challenges.values_mut() {
            *expiry = i64::MIN;
        }
    }

    /// Sessions currently open (ended ones not yet noticed included).
    pub fn session_count(&self) -> usize {
        lock(&self.state.auth).sessions.len()
    }
}

/// Changes record `crmid` of `module` (a new phone or title, a revision note) and stamps
/// it modified at epoch second `at`. False when there is no such live record.
fn touch_record(crm: &mut Crm, crmid: u64, module: Module, at: i64) -> bool {
    let Some(record) = crm.records.get_mut(&crmid).filter(|r| r.module == module && !r.deleted) else {
        return false;
    };
    let revision = record
        .fields
        .get("description")
        .and_then(Value::as_str)
        .and_then(|text| text.strip_prefix("资料更新第"))
        .and_then(|rest| rest.trim_end_matches('次').parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    record
        .fields
        .insert("description".into(), json!(format!("资料更新第{revision}次")));
    let changed = match module {
        Module::Accounts => (
            "phone",
            json!(format!("0571-8{:07}", mix(crmid + revision) % 10_000_000)),
        ),
        Module::Contacts => ("title", json!(pick(TITLES, mix(crmid) + revision))),
    };
    record.fields.insert(changed.0.into(), changed.1);
    record.modified = at;
    true
}

/// Simply's answers to throttled and failed requests.
struct SimplyReplies;

impl FaultReplies for SimplyReplies {
    fn throttled(&self) -> Response {
        let body = json!({"success": false, "error": {"code": "TOO_MANY_REQUESTS", "message": "Too many requests, retry later"}});
        too_many_requests(body)
    }

    fn server_error(&self) -> Response {
        let body = json!({"success": false, "error": {"code": "INTERNAL_SERVER_ERROR", "message": "Unknown Error while processing request"}});
        json_reply(StatusCode::INTERNAL_SERVER_ERROR, body)
    }
}

// ---------------------------------------------------------------------------
// Time and generated data
// ---------------------------------------------------------------------------

/// Epoch second `secs` as wall-clock text in `zone`, the way vtiger's database stores it.
fn format_time(secs: i64, zone: Tz) -> String {
    DateTime::from_timestamp(secs, 0)
        .map(|time| time.with_timezone(&zone).format(DATETIME_FORMAT).to_string())
        .unwrap_or_default()
}

/// The server clock in epoch seconds (`serverTime`, `sync` times; zone-free).
fn now_secs() -> i64 {
    Utc::now().timestamp()
}

/// The login proof the server expects (reference §5 "Login", step 2): PHP's
/// `md5($token . $userAccessKey)`, i.e. the lowercase hex MD5 of the challenge token
/// followed by the user's access key. Written here from the reference, not borrowed from
/// the connector, so a client-side mistake cannot be mirrored.
fn expected_access_key(token: &str, user_access_key: &str) -> String {
    let digest = Md5::digest(format!("{token}{user_access_key}").as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The first ten of the kit's regions.
const REGIONS: &[(&str, &str, &str, &str, &str)] = kit::REGIONS.split_at(10).0;
/// (trade in the name, vtiger industry).
const TRADES: &[(&str, &str)] = &[
    ("贸易", "Retail"),
    ("科技", "Technology"),
    ("电子", "Electronics"),
    ("食品", "Food & Beverage"),
    ("实业", "Manufacturing"),
    ("物流", "Transportation"),
    ("网络", "Communications"),
    ("建设", "Construction"),
    ("咨询", "Consulting"),
    ("服饰", "Apparel"),
];
const ACCOUNT_TYPES: &[&str] = &["Customer", "Customer", "Partner", "Reseller", "Prospect"];
const GIVEN_NAMES: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "涛",
];
const ROADS: &[&str] = &[
    "文三路",
    "学院路",
    "人民路",
    "中山路",
    "建设路",
    "解放路",
    "长江路",
    "科技园路",
];
const TITLES: &[&str] = &["总经理", "采购经理", "财务主管", "销售总监", "行政专员", "技术负责人"];
const DEPARTMENTS: &[&str] = &["总经办", "采购部", "财务部", "销售部", "行政部", "技术部"];

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn generated_account(index: u64, owner: u64, modified: i64) -> Record {
    let hash = mix(index);
    let (state, city, district, zip, area) = pick(REGIONS, hash);
    let (trade, industry) = pick(TRADES, hash >> 24);
    let name = [
        city.trim_end_matches('市'),
        pick(BRAND_FIRST, hash >> 8),
        pick(BRAND_SECOND, hash >> 16),
        trade,
        pick(COMPANY_FORMS, hash >> 32),
    ]
    .concat();
    let street = format!("{district}{}{}号", pick(ROADS, hash >> 40), 1 + (hash >> 44) % 300);
    let fields = object(json!({
        "accountname": name,
        "account_no": format!("ACC{index}"),
        "website": format!("www.acc{index:04}.example.cn"),
        "phone": format!("{area}-{:08}", (hash >> 6) % 100_000_000),
        "email1": format!("info{index:04}@example.cn"),
        "industry": industry,
        "accounttype": pick(ACCOUNT_TYPES, hash >> 36),
        "employees": (10 + (hash >> 12) % 990).to_string(),
        "annual_revenue": format!("{}.00", (1 + (hash >> 20) % 500) * 100_000),
        "bill_street": street,
        "bill_city": city,
        "bill_state": state,
        "bill_code": zip,
        "bill_country": "中国",
        "ship_street": street,
        "ship_city": city,
        "ship_state": state,
        "ship_code": zip,
        "ship_country": "中国",
    }));
    Record {
        module: Module::Accounts,
        fields,
        owner,
        created: modified - i64::try_from((hash >> 28) % 86_400).unwrap_or(0),
        modified,
        deleted: false,
    }
}

fn generated_contact(index: u64, owner: u64, modified: i64) -> Record {
    let hash = mix(index ^ 0xC0_47AC7);
    let (state, city, district, zip, area) = pick(REGIONS, mix(index));
    let mut firstname = String::from(pick(GIVEN_NAMES, hash >> 8));
    if (hash >> 16).is_multiple_of(2) {
        firstname.push_str(pick(GIVEN_NAMES, hash >> 20));
    }
    let fields = object(json!({
        "contact_no": format!("CON{index}"),
        "salutationtype": if (hash >> 4).is_multiple_of(2) { "Mr." } else { "Ms." },
        "firstname": firstname,
        "lastname": pick(SURNAMES, hash),
        "account_id": format!("11x{index}"),
        "title": pick(TITLES, hash >> 28),
        "department": pick(DEPARTMENTS, hash >> 28),
        "email": format!("contact{index:04}@example.cn"),
        "mobile": format!("1{}{:09}", pick(&["3", "5", "8"], hash >> 2), (hash >> 10) % 1_000_000_000),
        "phone": format!("{area}-{:08}", (hash >> 30) % 100_000_000),
        "mailingstreet": format!("{district}{}{}号", pick(ROADS, hash >> 40), 1 + (hash >> 44) % 300),
        "mailingcity": city,
        "mailingstate": state,
        "mailingzip": zip,
        "mailingcountry": "中国",
    }));
    Record {
        module: Module::Contacts,
        fields,
        owner,
        created: modified - 3600,
        modified,
        deleted: false,
    }
}

// ---------------------------------------------------------------------------
// The endpoint
// ---------------------------------------------------------------------------

/// A webservice error: code and message as vtiger sends them.
#[derive(Debug)]
struct WsError {
    code: &'static str,
    message: String,
}

impl WsError {
    fn new(code: &'static str, message: impl Into<String>) -> WsError {
        WsError {
            code,
            message: message.into(),
        }
    }

    fn invalid_id() -> WsError {
        WsError::new("INVALID_ID_ATTRIBUTE", "Id specified is incorrect")
    }

    fn not_found() -> WsError {
        WsError::new("RECORD_NOT_FOUND", "Record you are trying to access is not found")
    }

    fn denied() -> WsError {
        WsError::new("ACCESS_DENIED", "Permission to perform the operation is denied")
    }

    fn syntax(message: impl Into<String>) -> WsError {
        WsError::new("QUERY_SYNTAX_ERROR", message)
    }
}

type WsResult = Result<Value, WsError>;

const GET_OPERATIONS: &[&str] = &["getchallenge", "retrieve", "query", "sync", "listtypes", "describe"];
const POST_OPERATIONS: &[&str] = &["login", "create", "update", "revise", "delete", "logout"];

/// The parameters of one call, split the way PHP sees them.
struct Call {
    get: HashMap<String, String>,
    post: HashMap<String, String>,
}

impl Call {
    /// `$_REQUEST`: the body wins over the query string.
    fn request(&self, name: &str) -> Option<&str> {
        self.post.get(name).or_else(|| self.get.get(name)).map(String::as_str)
    }
}

async fn endpoint(
    State(state): State<Arc<SimplyState>>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let get: HashMap<String, String> = query
        .as_deref()
        .map(parse_query)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_none_or(|value| value.to_ascii_lowercase().contains("x-www-form-urlencoded"));
    let post: HashMap<String, String> = if method == Method::POST && is_form {
        parse_query(&String::from_utf8_lossy(&body)).into_iter().collect()
    } else {
        HashMap::new()
    };
    let answer = state.dispatch(&Call { get, post });
    let body = match answer {
        Ok(result) => json!({"success": true, "result": result}),
        Err(error) => json!({"success": false, "error": {"code": error.code, "message": error.message}}),
    };
    Json(body).into_response()
}

impl SimplyState {
    fn dispatch(&self, call: &Call) -> WsResult {
        let operation = call.request("operation").unwrap_or_default().to_ascii_lowercase();
        let input = if GET_OPERATIONS.contains(&operation.as_str()) {
            &call.get
        } else if POST_OPERATIONS.contains(&operation.as_str()) {
            &call.post
        } else {
            return Err(WsError::new("UNKNOWN_OPERATION", "Unknown operation requested"));
        };
        let param = |name: &str| input.get(name).map(String::as_str).unwrap_or_default();
        let session_name = call
            .request("sessionName")
            .filter(|name| !name.is_empty() && *name != "null");
        match operation.as_str() {
            "getchallenge" => return Ok(self.challenge(param("username"))),
            "login" => return self.login(param("username"), param("accessKey")),
            _ => {}
        }
        let Some(session_name) = session_name else {
            return Err(WsError::new("AUTHENTICATION_REQUIRED", "Authencation required"));
        };
        let user = self.session_user(session_name)?;
        match operation.as_str() {
            "logout" => {
                lock(&self.auth).sessions.remove(session_name);
                Ok(json!({"message": "successfull"}))
            }
            "listtypes" => Ok(list_types()),
            "describe" => describe(param("elementType")),
            "retrieve" => self.retrieve(param("id")),
            "query" => self.query(param("query")),
            "sync" => self.sync(user, param("modifiedTime"), param("elementType"), param("syncType")),
            write => {
                self.write_calls.fetch_add(1, Ordering::Relaxed);
                match write {
                    "create" => self.create(param("elementType"), param("element")),
                    "update" => self.update(param("element"), false),
                    "revise" => self.update(param("element"), true),
                    _ => self.delete(param("id")),
                }
            }
        }
    }

    // -- login and sessions -------------------------------------------------

    fn user_id(&self, username: &str) -> Option<u64> {
        (username == self.username).then_some(1)
    }

    fn challenge(&self, username: &str) -> Value {
        let now = now_secs();
        let expire = now + self.challenge_ttl_secs;
        let mut auth = lock(&self.auth);
        let token = auth.next_token(13);
        // Like vtiger, a token is issued even for an unknown user; login then fails.
        let user = self.user_id(username).unwrap_or(0);
        auth.challenges.insert(user, (token.clone(), expire));
        json!({"token": token, "serverTime": now, "expireTime": expire})
    }

    fn login(&self, username: &str, access_key: &str) -> WsResult {
        let invalid = || WsError::new("INVALID_USER_CREDENTIALS", "Invalid username or password");
        let user = self.user_id(username).ok_or_else(invalid)?;
        let mut auth = lock(&self.auth);
        let token = match auth.challenges.get(&user) {
            Some((token, expiry)) if *expiry >= now_secs() => token.clone(),
            _ => {
                return Err(WsError::new(
                    "INVALID_AUTH_TOKEN",
                    "Specified token is invalid or expired",
                ))
            }
        };
        if expected_access_key(&token, &self.access_key) != access_key {
            return Err(invalid());
        }
        auth.challenges.remove(&user);
        let session_name = auth.next_token(26);
        let now = Instant::now();
        auth.sessions.insert(
            session_name.clone(),
            LiveSession {
                user,
                started: now,
                last_used: now,
                ended: false,
            },
        );
        Ok(json!({
            "sessionName": session_name,
            "userId": format!("{USER_PREFIX}x{user}"),
            "version": API_VERSION,
            "vtigerVersion": "7.5.0",
        }))
    }

    /// The user of a live session, refreshing its idle clock; dead sessions are
    /// destroyed with the matching vtiger error.
    fn session_user(&self, session_name: &str) -> Result<u64, WsError> {
        let mut auth = lock(&self.auth);
        let Some(session) = auth.sessions.get_mut(session_name) else {
            return Err(WsError::new(
                "INVALID_SESSIONID",
                "Session Identifier provided is Invalid",
            ));
        };
        let now = Instant::now();
        let error = if session.ended || now.duration_since(session.started) > self.session_life {
            Some(WsError::new(
                "SESSION_EXPIRED",
                "Session has life span over please login again",
            ))
        } else if now.duration_since(session.last_used) > self.session_idle {
            Some(WsError::new(
                "SESSION_LEFT_IDLE",
                "Session has been invalidated to due lack activity",
            ))
        } else {
            session.last_used = now;
            None
        };
        let user = session.user;
        match error {
            Some(error) => {
                auth.sessions.remove(session_name);
                Err(error)
            }
            None => Ok(user),
        }
    }

    // -- reads ----------------------------------------------------------------

    fn retrieve(&self, id: &str) -> WsResult {
        let (module, crmid) = parse_record_id(id)?;
        let crm = lock(&self.crm);
        let record = crm.live(crmid, module).ok_or_else(WsError::not_found)?;
        Ok(Value::Object(record.render(crmid, self.zone)))
    }

    fn query(&self, text: &str) -> WsResult {
        let query = parse_vtql(text)?;
        let crm = lock(&self.crm);
        let mut rows: Vec<Map<String, Value>> = crm
            .records
            .iter()
            .filter(|(_, record)| record.module == query.module && !record.deleted)
            .map(|(crmid, record)| record.render(*crmid, self.zone))
            .filter(|row| query.matches(row))
            .collect();
        drop(crm);
        if query.count {
            return Ok(json!([{"count": rows.len().to_string()}]));
        }
        for (field, descending) in query.order.iter().rev() {
            rows.sort_by(|a, b| {
                let ordering = compare_values(text_of(a, field), text_of(b, field));
                if *descending {
                    ordering.reverse()
                } else {
                    ordering
                }
            });
        }
        let offset = usize::try_from(query.offset).unwrap_or(usize::MAX);
        let count = usize::try_from(query.limit).unwrap_or(usize::MAX).min(QUERY_ROW_CAP);
        let page = rows
            .into_iter()
            .skip(offset)
            .take(count)
            .map(|row| Value::Object(query.project(row)))
            .collect();
        Ok(Value::Array(page))
    }

    fn sync(&self, user: u64, modified_time: &str, element_type: &str, sync_type: &str) -> WsResult {
        let Ok(since) = modified_time.trim().parse::<i64>() else {
            // PHP's date() refuses a non-numeric timestamp; vtiger reports it like this.
            return Err(WsError::new(
                "INTERNAL_SERVER_ERROR",
                "Unknown Error while processing request",
            ));
        };
        let application = sync_type == "application";
        if application && !USERS.iter().any(|(id, _, admin)| *id == user && *admin) {
            return Err(WsError::new(
                "ACCESS_DENIED",
                "Only admin users can perform application sync",
            ));
        }
        let modules: Vec<Module> = if element_type.is_empty() {
            ALL_MODULES.to_vec()
        } else if element_type == "Users" {
            Vec::new()
        } else {
            vec![Module::parse(element_type).ok_or_else(WsError::denied)?]
        };
        if modules.is_empty() {
            return Ok(json!({"updated": [], "deleted": [], "lastModifiedTime": since, "more": false}));
        }
        let crm = lock(&self.crm);
        let mut changed: Vec<(i64, u64, &Record)> = crm
            .records
            .iter()
            .filter(|(_, record)| modules.contains(&record.module) && record.modified > since)
            .filter(|(_, record)| application || record.owner == user)
            .map(|(crmid, record)| (record.modified, *crmid, record))
            .collect();
        changed.sort_by_key(|(modified, crmid, _)| (*modified, *crmid));
        let last = changed
            .iter()
            .take(SYNC_BATCH)
            .map(|(modified, _, _)| *modified)
            .max()
            .unwrap_or(since);
        let mut updated = Vec::new();
        let mut deleted = Vec::new();
        for (_, crmid, record) in changed.iter().filter(|(modified, _, _)| *modified <= last) {
            if record.deleted {
                deleted.push(json!(record.id(*crmid)));
            } else {
                updated.push(Value::Object(record.render(*crmid, self.zone)));
            }
        }
        let more = changed.iter().any(|(modified, _, _)| *modified > last);
        Ok(json!({"updated": updated, "deleted": deleted, "lastModifiedTime": last, "more": more}))
    }

    // -- writes ---------------------------------------------------------------

    fn create(&self, element_type: &str, element: &str) -> WsResult {
        let module = Module::parse(element_type).ok_or_else(WsError::denied)?;
        let element = parse_element(element)?;
        let mut crm = lock(&self.crm);
        let (fields, owner) = checked_fields(&crm, module, &element, &Map::new())?;
        let crmid = crm.next_crmid;
        crm.next_crmid += 1;
        let number = crm.next_number.entry(module).or_insert(1);
        let (number_field, number_prefix) = module.number_field();
        let mut fields = fields;
        fields.insert(number_field.into(), json!(format!("{number_prefix}{number}")));
        *number += 1;
        let now = now_secs();
        let record = Record {
            module,
            fields,
            owner,
            created: now,
            modified: now,
            deleted: false,
        };
        let rendered = record.render(crmid, self.zone);
        crm.records.insert(crmid, record);
        crm.remember_write(crmid);
        Ok(Value::Object(rendered))
    }

    /// `update` (whole record; unsent fields are blanked) or `revise` (only sent fields).
    fn update(&self, element: &str, partial: bool) -> WsResult {
        let element = parse_element(element)?;
        let id = element
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(WsError::invalid_id)?;
        let (module, crmid) = parse_record_id(id)?;
        let mut crm = lock(&self.crm);
        let current = crm.live(crmid, module).ok_or_else(WsError::not_found)?;
        let base = if partial {
            current.render(crmid, self.zone)
        } else {
            Map::new()
        };
        let (mut fields, owner) = checked_fields(&crm, module, &element, &base)?;
        let (number_field, _) = module.number_field();
        if let Some(number) = current.fields.get(number_field) {
            fields.insert(number_field.into(), number.clone());
        }
        let created = current.created;
        let record = Record {
            module,
            fields,
            owner,
            created,
            modified: now_secs(),
            deleted: false,
        };
        let rendered = record.render(crmid, self.zone);
        crm.records.insert(crmid, record);
        crm.remember_write(crmid);
        Ok(Value::Object(rendered))
    }

    fn delete(&self, id: &str) -> WsResult {
        let (module, crmid) = parse_record_id(id)?;
        let mut crm = lock(&self.crm);
        let record = crm
            .records
            .get_mut(&crmid)
            .filter(|record| record.module == module && !record.deleted)
            .ok_or_else(WsError::not_found)?;
        record.deleted = true;
        record.modified = now_secs();
        Ok(json!({"status": "successful"}))
    }
}

/// `11x42` → (Accounts, 42); anything else is `INVALID_ID_ATTRIBUTE`.
fn parse_record_id(id: &str) -> Result<(Module, u64), WsError> {
    let (prefix, crmid) = id.trim().split_once('x').ok_or_else(WsError::invalid_id)?;
    let module = Module::from_prefix(prefix).ok_or_else(WsError::invalid_id)?;
    let crmid = crmid.parse::<u64>().map_err(|_| WsError::invalid_id())?;
    Ok((module, crmid))
}

fn parse_element(element: &str) -> Result<Map<String, Value>, WsError> {
    match serde_json::from_str::<Value>(element) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(WsError::new(
            "MANDATORY_FIELDS_MISSING",
            "element is not a JSON object; send the record as a JSON-encoded string",
        )),
    }
}

/// The editable fields of `module` from `element` laid over `base`, checked like vtiger
/// does: mandatory fields present, the owner a user, references to live records.
fn checked_fields(
    crm: &Crm,
    module: Module,
    element: &Map<String, Value>,
    base: &Map<String, Value>,
) -> Result<(Map<String, Value>, u64), WsError> {
    let mut fields = Map::new();
    let mut owner = None;
    for field in module.fields() {
        if SYSTEM_FIELDS.contains(&field.name) || field.kind == "autogenerated" {
            continue;
        }
        let value = element.get(field.name).or_else(|| base.get(field.name));
        let text = match value {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(text)) => text.trim().to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => if *b { "1" } else { "0" }.to_owned(),
            Some(_) => {
                return Err(WsError::new(
                    "INVALID_ID_ATTRIBUTE",
                    format!("{} must be a text value", field.name),
                ))
            }
        };
        if field.mandatory && text.is_empty() {
            return Err(WsError::new(
                "MANDATORY_FIELDS_MISSING",
                format!("{} does not have a value", field.name),
            ));
        }
        if field.kind == "owner" {
            let user = text
                .split_once('x')
                .filter(|(prefix, _)| *prefix == USER_PREFIX)
                .and_then(|(_, id)| id.parse::<u64>().ok())
                .filter(|id| user_exists(*id))
                .ok_or_else(|| {
                    WsError::new(
                        "REFERENCE_INVALID",
                        format!("Invalid reference specified for {}", field.name),
                    )
                })?;
            owner = Some(user);
            continue;
        }
        if let (Some(target), false) = (field.refers_to, text.is_empty()) {
            let valid = parse_record_id(&text)
                .ok()
                .filter(|(referred, _)| referred.name() == target)
                .is_some_and(|(referred, crmid)| crm.live(crmid, referred).is_some());
            if !valid {
                return Err(WsError::new(
                    "REFERENCE_INVALID",
                    format!("Invalid reference specified for {}", field.name),
                ));
            }
        }
        fields.insert(field.name.to_owned(), json!(text));
    }
    let owner =
        owner.ok_or_else(|| WsError::new("MANDATORY_FIELDS_MISSING", "assigned_user_id does not have a value"))?;
    Ok((fields, owner))
}

fn list_types() -> Value {
    let mut information = Map::new();
    for module in ALL_MODULES {
        information.insert(
            module.name().to_owned(),
            json!({"isEntity": true, "label": module.name(), "singular": module.singular()}),
        );
    }
    json!({
        "types": ALL_MODULES.iter().map(|module| module.name()).collect::<Vec<_>>(),
        "information": information,
    })
}

fn describe(element_type: &str) -> WsResult {
    let module = Module::parse(element_type).ok_or_else(|| {
        WsError::new(
            "ACCESS_DENIED",
            "Permission to perform the operation is denied for name",
        )
    })?;
    let mut fields: Vec<Value> = module
        .fields()
        .iter()
        .map(|field| {
            let mut kind = json!({"name": field.kind});
            if let Some(target) = field.refers_to {
                kind["refersTo"] = json!([target]);
            }
            if field.kind == "owner" {
                kind["name"] = json!("owner");
            }
            json!({
                "name": field.name,
                "label": field.label,
                "mandatory": field.mandatory,
                "type": kind,
                "nullable": !field.mandatory,
                "editable": !SYSTEM_FIELDS.contains(&field.name) && field.kind != "autogenerated",
                "default": "",
            })
        })
        .collect();
    fields.push(json!({
        "name": "id", "label": format!("{}ID", module.singular()), "mandatory": false,
        "type": {"name": "autogenerated"}, "nullable": false, "editable": false, "default": "",
    }));
    Ok(json!({
        "label": module.name(),
        "name": module.name(),
        "createable": true,
        "updateable": true,
        "deleteable": true,
        "retrieveable": true,
        "fields": fields,
        "idPrefix": module.prefix(),
        "isEntity": true,
        "allowsActivities": true,
        "labelFields": module.label_fields(),
    }))
}

// ---------------------------------------------------------------------------
// VTQL
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(String),
    Symbol(char),
    Op(&'static str),
}

fn tokenize(text: &str) -> Result<Vec<Token>, WsError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            tokens.push(Token::Number(chars[start..i].iter().collect()));
        } else if c == '\'' || c == '"' {
            let quote = c;
            let mut value = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(WsError::syntax("Syntax Error on line 1: unterminated string literal")),
                    Some('\\') => {
                        if let Some(next) = chars.get(i + 1) {
                            value.push(*next);
                        }
                        i += 2;
                    }
                    Some(ch) if *ch == quote && chars.get(i + 1) == Some(&quote) => {
                        value.push(quote);
                        i += 2;
                    }
                    Some(ch) if *ch == quote => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        value.push(*ch);
                        i += 1;
                    }
                }
            }
            tokens.push(Token::Text(value));
        } else {
            let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let op = match two.as_str() {
                "!=" => Some("!="),
                "<>" => Some("!="),
                "<=" => Some("<="),
                ">=" => Some(">="),
                _ => None,
            };
            if let Some(op) = op {
                tokens.push(Token::Op(op));
                i += 2;
                continue;
            }
            match c {
                '=' => tokens.push(Token::Op("=")),
                '<' => tokens.push(Token::Op("<")),
                '>' => tokens.push(Token::Op(">")),
                '*' | ',' | '(' | ')' | ';' => tokens.push(Token::Symbol(c)),
                other => {
                    return Err(WsError::syntax(format!(
                        "Syntax Error on line 1: unexpected character '{other}'"
                    )))
                }
            }
            i += 1;
        }
    }
    Ok(tokens)
}

#[derive(Clone, Debug)]
enum Condition {
    Compare {
        field: String,
        op: &'static str,
        value: String,
    },
    Like {
        field: String,
        pattern: String,
        negated: bool,
    },
    In {
        field: String,
        values: Vec<String>,
    },
}

#[derive(Debug)]
struct Vtql {
    module: Module,
    /// `None` is `*`.
    columns: Option<Vec<String>>,
    count: bool,
    /// OR of ANDs.
    filter: Vec<Vec<Condition>>,
    order: Vec<(String, bool)>,
    offset: u64,
    limit: u64,
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(word)) if word.eq_ignore_ascii_case(keyword))
    }

    fn keyword(&mut self, keyword: &str) -> Result<(), WsError> {
        if self.is_keyword(keyword) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.unexpected(&keyword.to_ascii_uppercase()))
        }
    }

    fn symbol(&mut self, symbol: char) -> Result<(), WsError> {
        if self.peek() == Some(&Token::Symbol(symbol)) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.unexpected(&symbol.to_string()))
        }
    }

    fn unexpected(&self, expected: &str) -> WsError {
        let found = match self.peek() {
            None => "end of query".to_owned(),
            Some(Token::Word(word)) => format!("'{word}'"),
            Some(Token::Text(text)) => format!("'{text}'"),
            Some(Token::Number(number)) => number.clone(),
            Some(Token::Symbol(symbol)) => format!("'{symbol}'"),
            Some(Token::Op(op)) => format!("'{op}'"),
        };
        WsError::syntax(format!(
            "Syntax Error on line 1: token {expected} expected, found {found}"
        ))
    }

    fn identifier(&mut self) -> Result<String, WsError> {
        match self.next() {
            Some(Token::Word(word)) => Ok(word),
            _ => {
                self.at -= 1;
                Err(self.unexpected("a field name"))
            }
        }
    }

    fn literal(&mut self) -> Result<String, WsError> {
        match self.next() {
            Some(Token::Text(text)) | Some(Token::Number(text)) => Ok(text),
            _ => {
                self.at -= 1;
                Err(self.unexpected("a quoted value"))
            }
        }
    }

    fn number(&mut self) -> Result<u64, WsError> {
        match self.next() {
            Some(Token::Number(text)) => text
                .parse()
                .map_err(|_| WsError::syntax(format!("Syntax Error on line 1: '{text}' is not a whole number"))),
            _ => {
                self.at -= 1;
                Err(self.unexpected("a number"))
            }
        }
    }

    fn condition(&mut self) -> Result<Condition, WsError> {
        let field = self.identifier()?;
        if self.is_keyword("not") || self.is_keyword("like") {
            let negated = self.is_keyword("not");
            if negated {
                self.at += 1;
            }
            self.keyword("like")?;
            return Ok(Condition::Like {
                field,
                pattern: self.literal()?,
                negated,
            });
        }
        if self.is_keyword("in") {
            self.at += 1;
            self.symbol('(')?;
            let mut values = vec![self.literal()?];
            while self.peek() == Some(&Token::Symbol(',')) {
                self.at += 1;
                values.push(self.literal()?);
            }
            self.symbol(')')?;
            return Ok(Condition::In { field, values });
        }
        match self.next() {
            Some(Token::Op(op)) => Ok(Condition::Compare {
                field,
                op,
                value: self.literal()?,
            }),
            _ => {
                self.at -= 1;
                Err(self.unexpected("an operator"))
            }
        }
    }
}

fn parse_vtql(text: &str) -> Result<Vtql, WsError> {
    let mut parser = Parser {
        tokens: tokenize(text)?,
        at: 0,
    };
    parser.keyword("select")?;
    let mut count = false;
    let columns = if parser.peek() == Some(&Token::Symbol('*')) {
        parser.at += 1;
        None
    } else if parser.is_keyword("count") {
        parser.at += 1;
        parser.symbol('(')?;
        parser.symbol('*')?;
        parser.symbol(')')?;
        count = true;
        None
    } else {
        let mut columns = vec![parser.identifier()?];
        while parser.peek() == Some(&Token::Symbol(',')) {
            parser.at += 1;
            columns.push(parser.identifier()?);
        }
        Some(columns)
    };
    parser.keyword("from")?;
    let module_name = parser.identifier()?;
    let module = Module::parse(&module_name).ok_or_else(|| {
        WsError::new(
            "ACCESS_DENIED",
            "Permission to perform the operation is denied for name",
        )
    })?;
    let mut filter = Vec::new();
    if parser.is_keyword("where") {
        parser.at += 1;
        let mut group = vec![parser.condition()?];
        loop {
            if parser.is_keyword("and") {
                parser.at += 1;
                group.push(parser.condition()?);
            } else if parser.is_keyword("or") {
                parser.at += 1;
                filter.push(std::mem::take(&mut group));
                group.push(parser.condition()?);
            } else {
                break;
            }
        }
        filter.push(group);
    }
    let mut order = Vec::new();
    if parser.is_keyword("order") {
        parser.at += 1;
        parser.keyword("by")?;
        loop {
            let field = parser.identifier()?;
            let descending = if parser.is_keyword("desc") {
                parser.at += 1;
                true
            } else {
                if parser.is_keyword("asc") {
                    parser.at += 1;
                }
                false
            };
            order.push((field, descending));
            if parser.peek() == Some(&Token::Symbol(',')) {
                parser.at += 1;
            } else {
                break;
            }
        }
    }
    let (mut offset, mut limit) = (0, QUERY_ROW_CAP as u64);
    if parser.is_keyword("limit") {
        parser.at += 1;
        let first = parser.number()?;
        if parser.peek() == Some(&Token::Symbol(',')) {
            parser.at += 1;
            offset = first;
            limit = parser.number()?;
        } else {
            limit = first;
        }
    }
    parser.symbol(';')?;
    if parser.peek().is_some() {
        return Err(parser.unexpected("end of query after ;"));
    }
    let query = Vtql {
        module,
        columns,
        count,
        filter,
        order,
        offset,
        limit,
    };
    query.check_fields()?;
    Ok(query)
}

impl Vtql {
    fn check_fields(&self) -> Result<(), WsError> {
        let conditions = self.filter.iter().flatten().map(|condition| match condition {
            Condition::Compare { field, .. } | Condition::Like { field, .. } | Condition::In { field, .. } => field,
        });
        let named = self
            .columns
            .iter()
            .flatten()
            .chain(conditions)
            .chain(self.order.iter().map(|(field, _)| field));
        for field in named {
            if !self.module.has_field(field) {
                return Err(WsError::syntax(format!(
                    "Unknown field {field} for module {}",
                    self.module.name()
                )));
            }
        }
        Ok(())
    }

    fn matches(&self, row: &Map<String, Value>) -> bool {
        self.filter.is_empty()
            || self
                .filter
                .iter()
                .any(|group| group.iter().all(|condition| condition_holds(condition, row)))
    }

    /// The selected columns of `row`; `id` always comes along.
    fn project(&self, row: Map<String, Value>) -> Map<String, Value> {
        let Some(columns) = &self.columns else {
            return row;
        };
        let mut out = Map::new();
        for column in columns.iter().map(String::as_str).chain(["id"]) {
            if let Some(value) = row.get(column) {
                out.insert(column.to_owned(), value.clone());
            }
        }
        out
    }
}

fn text_of<'a>(row: &'a Map<String, Value>, field: &str) -> &'a str {
    row.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// MySQL-like comparison: numerically when both sides are numbers, else text ignoring
/// case.
fn compare_values(left: &str, right: &str) -> CmpOrdering {
    if let (Ok(a), Ok(b)) = (left.trim().parse::<f64>(), right.trim().parse::<f64>()) {
        return a.partial_cmp(&b).unwrap_or(CmpOrdering::Equal);
    }
    left.to_lowercase().cmp(&right.to_lowercase())
}

fn condition_holds(condition: &Condition, row: &Map<String, Value>) -> bool {
    match condition {
        Condition::Compare { field, op, value } => {
            let ordering = compare_values(text_of(row, field), value);
            match *op {
                "=" => ordering == CmpOrdering::Equal,
                "!=" => ordering != CmpOrdering::Equal,
                "<" => ordering == CmpOrdering::Less,
                ">" => ordering == CmpOrdering::Greater,
                "<=" => ordering != CmpOrdering::Greater,
                _ => ordering != CmpOrdering::Less,
            }
        }
        Condition::Like {
            field,
            pattern,
            negated,
        } => {
            let text: Vec<char> = text_of(row, field).to_lowercase().chars().collect();
            let pattern: Vec<char> = pattern.to_lowercase().chars().collect();
            like(&text, &pattern) != *negated
        }
        Condition::In { field, values } => values
            .iter()
            .any(|value| compare_values(text_of(row, field), value) == CmpOrdering::Equal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::simply::{envelope, request, Settings};
    use crate::connector::types::{RowOutcome, Verdict, WireRequest};
    use tokio::net::TcpListener;

    fn settings() -> Settings {
        Settings::new("admin", "AbCdEfGhIjKlMnOp")
    }

    /// The instant whose UTC wall-clock time is `text`.
    fn utc(text: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(text, DATETIME_FORMAT).unwrap().and_utc()
    }

    async fn start(cfg: SimplyConfig) -> (SimplySim, SimHandle) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        SimplySim::start(cfg, listener).await.unwrap()
    }

    /// A tiny client made of the connector's pure parts plus reqwest.
    struct Client {
        http: reqwest::Client,
        base: String,
        settings: Settings,
        session: Option<request::Session>,
    }

    impl Client {
        fn new(base: &str, settings: Settings) -> Client {
            Client {
                http: reqwest::Client::new(),
                base: base.to_owned(),
                settings,
                session: None,
            }
        }

        async fn send(&self, wire: WireRequest) -> (u16, Value) {
            assert!(matches!(wire.method, "GET" | "POST"), "{}", wire.method);
            crate::sim::kit::send_wire(&self.http, wire).await
        }

        async fn challenge(&self) -> request::Challenge {
            let (_, body) = self.send(request::challenge_request(&self.settings, &self.base)).await;
            request::parse_challenge(&body).unwrap()
        }

        async fn login(&mut self) -> Result<(), String> {
            let challenge = self.challenge().await;
            let (_, body) = self
                .send(request::login_request(&self.settings, &self.base, &challenge))
                .await;
            self.session = Some(request::parse_login(&body)?);
            Ok(())
        }

        async fn call(&self, operation: &str, params: Value) -> (Verdict, Value) {
            let wire = request::build(&self.settings, &self.base, operation, &params, self.session.as_ref()).unwrap();
            let (status, body) = self.send(wire).await;
            (envelope::classify_with(&self.settings.rules(), status, &body), body)
        }

        /// Like `call`, but logs in again once when the session is gone.
        async fn call_relogin(&mut self, operation: &str, params: Value) -> (Verdict, Value) {
            let (verdict, body) = self.call(operation, params.clone()).await;
            if let Verdict::SessionExpired(_) = verdict {
                self.login().await.unwrap();
                return self.call(operation, params).await;
            }
            (verdict, body)
        }

        async fn query_all(&self, vtql: &str) -> Vec<Value> {
            let size = self.settings.query_page_size();
            let mut offset = 0;
            let mut rows = Vec::new();
            loop {
                let page = request::query_page(vtql, offset, size).unwrap();
                let (verdict, body) = self.call("query", json!({ "query": page })).await;
                assert_eq!(verdict, Verdict::Ok, "{body}");
                let found = body["result"].as_array().unwrap().clone();
                if envelope::is_last_query_page(found.len()) {
                    return rows;
                }
                rows.extend(found);
                offset += size;
            }
        }

        async fn sync_all(&self, element_type: Option<&str>, since: i64) -> (Vec<Value>, Vec<String>, usize) {
            let mut cursor = since;
            let (mut updated, mut deleted, mut calls) = (Vec::new(), Vec::new(), 0);
            loop {
                let params = request::sync_params(&self.settings, element_type, cursor);
                let (verdict, body) = self.call("sync", params).await;
                assert_eq!(verdict, Verdict::Ok, "{body}");
                calls += 1;
                updated.extend(body["result"]["updated"].as_array().unwrap().iter().cloned());
                deleted.extend(envelope::sync_step(&body).unwrap().deleted);
                match envelope::next_modified_time(cursor, &body).unwrap() {
                    Some(next) => cursor = next,
                    None => return (updated, deleted, calls),
                }
            }
        }
    }

    async fn logged_in(cfg: SimplyConfig) -> (SimplySim, SimHandle, Client) {
        let (sim, handle) = start(cfg).await;
        let mut client = Client::new(&handle.base_url(), settings());
        client.login().await.unwrap();
        (sim, handle, client)
    }

    fn failed_code(verdict: &Verdict) -> &str {
        match verdict {
            Verdict::Failed { code, .. } => code,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn login_follows_the_challenge_protocol() {
        let (sim, handle) = start(SimplyConfig::default()).await;
        let mut client = Client::new(&handle.base_url(), settings());
        let challenge = client.challenge().await;
        assert_eq!(challenge.token.len(), 13);
        assert_eq!(challenge.lifetime_secs(), 300);
        let (_, body) = client
            .send(request::login_request(&client.settings, &client.base, &challenge))
            .await;
        let session = request::parse_login(&body).unwrap();
        assert_eq!(session.user_id, "19x1");
        assert_eq!(session.version.as_deref(), Some("0.22"));
        // The token is spent: logging in with it again fails.
        let (_, body) = client
            .send(request::login_request(&client.settings, &client.base, &challenge))
            .await;
        assert_eq!(envelope::error_of(&body).unwrap().0, "INVALID_AUTH_TOKEN");

        let mut wrong = Client::new(&handle.base_url(), Settings::new("admin", "WrongKey"));
        let error = wrong.login().await.unwrap_err();
        assert!(error.contains("INVALID_USER_CREDENTIALS"), "{error}");
        let mut stranger = Client::new(&handle.base_url(), Settings::new("nobody", "AbCdEfGhIjKlMnOp"));
        assert!(stranger.login().await.unwrap_err().contains("INVALID_USER_CREDENTIALS"));

        let stale = client.challenge().await;
        sim.expire_challenges();
        let (_, body) = client
            .send(request::login_request(&client.settings, &client.base, &stale))
            .await;
        assert_eq!(
            envelope::error_of(&body).unwrap(),
            (
                "INVALID_AUTH_TOKEN".into(),
                "Specified token is invalid or expired".into()
            )
        );
        client.login().await.unwrap();
        assert_eq!(sim.session_count(), 2);
    }

    #[tokio::test]
    async fn calls_without_a_live_session_ask_for_a_new_login() {
        let (sim, handle, mut client) = logged_in(SimplyConfig::default()).await;
        let anonymous = Client::new(&handle.base_url(), settings());
        let wire = request::build(
            &settings(),
            &handle.base_url(),
            "getchallenge",
            &json!({"username": "admin"}),
            None,
        )
        .unwrap();
        assert_eq!(anonymous.send(wire).await.1["success"], true);
        let raw = anonymous
            .http
            .get(format!("{}{ENDPOINT_PATH}?operation=listtypes", handle.base_url()))
            .send()
            .await
            .unwrap();
        let body: Value = raw.json().await.unwrap();
        assert_eq!(
            envelope::classify(200, &body),
            Verdict::SessionExpired("AUTHENTICATION_REQUIRED: Authencation required".into())
        );

        assert_eq!(client.call("listtypes", json!({})).await.0, Verdict::Ok);
        sim.expire_sessions();
        let (verdict, _) = client.call("listtypes", json!({})).await;
        assert!(
            matches!(verdict, Verdict::SessionExpired(ref m) if m.starts_with("SESSION_EXPIRED")),
            "{verdict:?}"
        );
        let (verdict, _) = client.call("listtypes", json!({})).await;
        assert!(
            matches!(verdict, Verdict::SessionExpired(ref m) if m.starts_with("INVALID_SESSIONID")),
            "{verdict:?}"
        );
        let (verdict, body) = client
            .call_relogin("describe", json!({"elementType": "Accounts"}))
            .await;
        assert_eq!(verdict, Verdict::Ok);
        assert_eq!(envelope::id_prefix(&body).unwrap(), "11");
        assert_eq!(body["result"]["labelFields"], "accountname");
    }

    #[tokio::test]
    async fn idle_sessions_are_dropped() {
        let (_sim, _handle, client) = logged_in(SimplyConfig {
            session_idle_secs: 0,
            ..SimplyConfig::default()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (verdict, _) = client.call("listtypes", json!({})).await;
        assert_eq!(
            verdict,
            Verdict::SessionExpired("SESSION_LEFT_IDLE: Session has been invalidated to due lack activity".into())
        );
    }

    #[tokio::test]
    async fn types_and_descriptions_give_id_prefixes() {
        let (_sim, _handle, client) = logged_in(SimplyConfig::default()).await;
        let (_, types) = client.call("listtypes", json!({})).await;
        assert_eq!(types["result"]["types"], json!(["Accounts", "Contacts"]));
        let (_, contacts) = client.call("describe", json!({"elementType": "Contacts"})).await;
        let prefix = envelope::id_prefix(&contacts).unwrap();
        assert_eq!(prefix, "12");
        let lastname = contacts["result"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|field| field["name"] == "lastname")
            .unwrap();
        assert_eq!(lastname["mandatory"], true);
        let (_, record) = client
            .call(
                "retrieve",
                json!({"id": request::RecordId::new(prefix, 305).to_string()}),
            )
            .await;
        assert_eq!(record["result"]["contact_no"], "CON5");
        assert_eq!(record["result"]["account_id"], "11x5");
        let (verdict, _) = client.call("describe", json!({"elementType": "Potentials"})).await;
        assert_eq!(failed_code(&verdict), "ACCESS_DENIED");
        let (verdict, _) = client.call("retrieve", json!({"id": "11x99999"})).await;
        assert_eq!(failed_code(&verdict), "RECORD_NOT_FOUND");
        let (verdict, _) = client.call("retrieve", json!({"id": "banana"})).await;
        assert_eq!(failed_code(&verdict), "INVALID_ID_ATTRIBUTE");
    }

    #[tokio::test]
    async fn queries_page_to_an_empty_page_under_the_row_cap() {
        let (_sim, _handle, client) = logged_in(SimplyConfig {
            records: 250,
            ..SimplyConfig::default()
        })
        .await;
        let rows = client.query_all("SELECT * FROM Accounts ORDER BY modifiedtime;").await;
        let numbers: Vec<&str> = rows.iter().map(|row| row["account_no"].as_str().unwrap()).collect();
        let expected: Vec<String> = (1..=250).map(|i| format!("ACC{i}")).collect();
        assert_eq!(numbers, expected);

        let (_, big) = client
            .call("query", json!({"query": "SELECT * FROM Contacts LIMIT 0, 500;"}))
            .await;
        assert_eq!(big["result"].as_array().unwrap().len(), 100, "the row cap applies");
        let (verdict, body) = client.call("query", json!({"query": "SELECT * FROM Contacts"})).await;
        assert_eq!(failed_code(&verdict), "QUERY_SYNTAX_ERROR", "{body}");
        let (verdict, _) = client
            .call("query", json!({"query": "SELECT nosuch FROM Contacts;"}))
            .await;
        assert_eq!(failed_code(&verdict), "QUERY_SYNTAX_ERROR");
        let (verdict, _) = client.call("query", json!({"query": "SELECT * FROM Leads;"})).await;
        assert_eq!(failed_code(&verdict), "ACCESS_DENIED");
        let (_, count) = client
            .call("query", json!({"query": "SELECT count(*) FROM Contacts;"}))
            .await;
        assert_eq!(count["result"], json!([{"count": "250"}]));
    }

    #[tokio::test]
    async fn where_clauses_filter_like_vtiger() {
        let (sim, _handle, client) = logged_in(SimplyConfig::default()).await;
        let vtql = "SELECT account_no, modifiedtime FROM Accounts WHERE modifiedtime > '2024-01-01 01:00:00' \
                    AND modifiedtime <= '2024-01-01 02:00:00' ORDER BY modifiedtime DESC LIMIT 0, 10;";
        let (verdict, body) = client.call("query", json!({"query": vtql})).await;
        assert_eq!(verdict, Verdict::Ok, "{body}");
        let numbers: Vec<&str> = body["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["account_no"].as_str().unwrap())
            .collect();
        assert_eq!(numbers, ["ACC12", "ACC11", "ACC10", "ACC9", "ACC8", "ACC7"]);
        assert_eq!(
            body["result"][0].as_object().unwrap().len(),
            3,
            "selected columns plus id"
        );

        let name = sim.account(42).unwrap()["accountname"].as_str().unwrap().to_owned();
        let lookup = request::lookup_query("Accounts", "accountname", &name).unwrap();
        let (_, found) = client.call("query", json!({"query": lookup})).await;
        let ids: Vec<&str> = found["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&"11x42"), "{ids:?}");
        let (_, by_number) = client
            .call(
                "query",
                json!({"query": request::lookup_query("Accounts", "account_no", "acc42").unwrap()}),
            )
            .await;
        assert_eq!(by_number["result"][0]["id"], "11x42", "text comparison ignores case");
        let either =
            "SELECT id FROM Contacts WHERE contact_no = 'CON3' OR contact_no IN ('CON5', 'CON7') ORDER BY contact_no;";
        let (_, body) = client.call("query", json!({"query": either})).await;
        assert_eq!(
            body["result"],
            json!([{"id": "12x303"}, {"id": "12x305"}, {"id": "12x307"}])
        );
        let like = "SELECT id FROM Contacts WHERE email LIKE 'contact000_@example.cn' AND id != '12x301';";
        let (_, body) = client.call("query", json!({"query": like})).await;
        assert_eq!(body["result"].as_array().unwrap().len(), 8);
    }

    #[tokio::test]
    async fn sync_pages_by_modified_time_for_the_owner_only() {
        let (sim, _handle, client) = logged_in(SimplyConfig {
            records: 250,
            ..SimplyConfig::default()
        })
        .await;
        let (updated, deleted, calls) = client.sync_all(Some("Accounts"), 0).await;
        assert_eq!(updated.len(), 225, "every 10th account belongs to another user");
        assert!(deleted.is_empty());
        assert_eq!(calls, 3);
        assert!(updated.iter().all(|r| r["assigned_user_id"] == "19x1"));

        let mut admin = settings();
        admin.sync_type = Some("application".into());
        let mut application = Client::new(&client.base, admin);
        application.session = client.session.clone();
        let (everything, _, _) = application.sync_all(None, 0).await;
        assert_eq!(everything.len(), 500, "accounts and contacts of every owner");

        // A touched account and a deleted contact show up after the last cursor.
        let cursor = to_secs(NaiveDateTime::parse_from_str("2024-03-01 00:00:00", DATETIME_FORMAT).unwrap());
        assert!(sim.touch(7, utc("2024-05-01 10:00:00")));
        let (verdict, _) = client.call("delete", json!({"id": "12x253"})).await;
        assert_eq!(verdict, Verdict::Ok);
        let (updated, deleted, _) = client.sync_all(None, cursor).await;
        assert_eq!(updated.len(), 1);
        assert_eq!(updated[0]["id"], "11x7");
        assert_eq!(updated[0]["modifiedtime"], "2024-05-01 10:00:00");
        assert_eq!(deleted, ["12x253"]);

        let (verdict, _) = client
            .call(
                "sync",
                json!({"modifiedTime": "2024-03-01 00:00:00", "elementType": "Accounts"}),
            )
            .await;
        assert_eq!(
            failed_code(&verdict),
            "INTERNAL_SERVER_ERROR",
            "a date string is not epoch seconds"
        );
    }

    /// A call straight to the endpoint, without the connector: GET with `params` in the
    /// query string, or POST with them as a form, plus the client's session.
    async fn raw(client: &Client, method: Method, params: &[(&str, &str)]) -> Value {
        let session = client.session.as_ref().unwrap().session_name.clone();
        let mut fields: Vec<(&str, &str)> = vec![("sessionName", session.as_str())];
        fields.extend_from_slice(params);
        let url = format!("{}{ENDPOINT_PATH}", client.base);
        let builder = if method == Method::POST {
            client.http.post(url).form(&fields)
        } else {
            client.http.get(url).query(&fields)
        };
        builder.send().await.unwrap().json().await.unwrap()
    }

    fn error_code(body: &Value) -> &str {
        body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {body}"))
    }

    fn ids(rows: &Value) -> Vec<String> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|row| row["id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn the_login_proof_is_the_reference_vector() {
        // Reference §9 "vtiger".
        assert_eq!(
            expected_access_key("5e9f4b2a1c3d7", "AbCdEfGhIjKlMnOp"),
            "169e887eac9fa70350afb7c5abfe06cb"
        );
        assert_ne!(
            expected_access_key("AbCdEfGhIjKlMnOp", "5e9f4b2a1c3d7"),
            "169e887eac9fa70350afb7c5abfe06cb"
        );
    }

    #[tokio::test]
    async fn times_are_utc_text_in_records_and_vtql_and_epoch_seconds_on_the_wire() {
        let (sim, _handle, client) = logged_in(SimplyConfig {
            records: 20,
            ..SimplyConfig::default()
        })
        .await;
        let before = Utc::now().timestamp();
        let body = raw(
            &client,
            Method::GET,
            &[("operation", "getchallenge"), ("username", "admin")],
        )
        .await;
        let server_time = body["result"]["serverTime"].as_i64().unwrap();
        assert!((before..=Utc::now().timestamp()).contains(&server_time), "{body}");

        // A change at 10:00 UTC (18:00 in China) is stored and compared as UTC text.
        let instant = utc("2024-05-01 10:00:00");
        assert!(sim.touch(7, instant));
        assert_eq!(sim.account(7).unwrap()["modifiedtime"], "2024-05-01 10:00:00");
        let since = |start: &str| format!("SELECT id FROM Accounts WHERE modifiedtime >= '{start}';");
        let body = raw(
            &client,
            Method::GET,
            &[("operation", "query"), ("query", &since("2024-05-01 10:00:00"))],
        )
        .await;
        assert_eq!(ids(&body["result"]), ["11x7"]);
        let body = raw(
            &client,
            Method::GET,
            &[("operation", "query"), ("query", &since("2024-05-01 18:00:00"))],
        )
        .await;
        assert_eq!(
            ids(&body["result"]),
            Vec::<String>::new(),
            "China wall-clock text is 8 h late"
        );

        // sync reads and answers epoch seconds.
        let cursor = (instant.timestamp() - 1).to_string();
        let body = raw(
            &client,
            Method::GET,
            &[
                ("operation", "sync"),
                ("modifiedTime", &cursor),
                ("elementType", "Accounts"),
            ],
        )
        .await;
        assert_eq!(ids(&body["result"]["updated"]), ["11x7"]);
        assert_eq!(body["result"]["lastModifiedTime"], instant.timestamp());
        assert_eq!(body["result"]["more"], false);
    }

    #[tokio::test]
    async fn the_server_zone_is_a_setting() {
        let (sim, _handle, client) = logged_in(SimplyConfig {
            records: 20,
            server_zone: chrono_tz::Asia::Shanghai,
            ..SimplyConfig::default()
        })
        .await;
        // Account 17 was modified at 02:50 UTC: 10:50 on a Shanghai database's clock.
        assert_eq!(sim.account(17).unwrap()["modifiedtime"], "2024-01-01 10:50:00");
        let query = "SELECT id FROM Accounts WHERE modifiedtime >= '2024-01-01 10:50:00';";
        let body = raw(&client, Method::GET, &[("operation", "query"), ("query", query)]).await;
        assert_eq!(ids(&body["result"]), ["11x17", "11x18", "11x19", "11x20"]);
        // Epoch seconds do not depend on the zone (account 20 belongs to another user).
        let cursor = utc("2024-01-01 02:40:00").timestamp().to_string();
        let body = raw(
            &client,
            Method::GET,
            &[
                ("operation", "sync"),
                ("modifiedTime", &cursor),
                ("elementType", "Accounts"),
            ],
        )
        .await;
        assert_eq!(ids(&body["result"]["updated"]), ["11x17", "11x18", "11x19"]);
        assert_eq!(
            body["result"]["lastModifiedTime"],
            utc("2024-01-01 03:10:00").timestamp()
        );
        assert!(sim.touch(3, utc("2024-05-01 10:00:00")));
        assert_eq!(sim.account(3).unwrap()["modifiedtime"], "2024-05-01 18:00:00");
    }

    #[tokio::test]
    async fn sync_pages_many_changes_by_100_and_reports_deletions() {
        let (sim, _handle, client) = logged_in(SimplyConfig {
            records: 300,
            other_owner_every: 0,
            ..SimplyConfig::default()
        })
        .await;
        let first = utc("2024-06-01 00:00:00");
        assert_eq!(sim.touch_many(1..=250, first, chrono::Duration::seconds(1)), 250);
        assert_eq!(sim.touch_many([0, 301], first, chrono::Duration::seconds(1)), 0);
        let sync = |cursor: i64| {
            let client = &client;
            async move {
                let cursor = cursor.to_string();
                let params = [
                    ("operation", "sync"),
                    ("modifiedTime", cursor.as_str()),
                    ("elementType", "Accounts"),
                ];
                raw(client, Method::GET, &params).await["result"].clone()
            }
        };
        let (mut cursor, mut seen, mut mores) = (first.timestamp() - 1, Vec::new(), Vec::new());
        loop {
            let result = sync(cursor).await;
            let updated = ids(&result["updated"]);
            assert!(updated.len() <= SYNC_BATCH, "{}", updated.len());
            seen.extend(updated);
            mores.push(result["more"].as_bool().unwrap());
            cursor = result["lastModifiedTime"].as_i64().unwrap();
            if mores.last() == Some(&false) {
                break;
            }
        }
        assert_eq!(mores, [true, true, false]);
        let expected: Vec<String> = (1..=250).map(|i| format!("11x{i}")).collect();
        assert_eq!(seen, expected);
        assert_eq!(cursor, first.timestamp() + 249);

        // A record deleted in the CRM: sync names it, retrieve and query no longer see it.
        let gone = first + chrono::Duration::seconds(600);
        assert!(sim.delete_record("11x5", gone));
        assert!(!sim.delete_record("11x5", gone), "already deleted");
        assert!(!sim.delete_record("12x5", gone), "contact 5 is crmid 305");
        assert!(!sim.delete_record("5", gone));
        let result = sync(cursor).await;
        assert_eq!(result["deleted"], json!(["11x5"]));
        assert_eq!(result["updated"], json!([]));
        assert_eq!(result["lastModifiedTime"], gone.timestamp());
        assert_eq!(result["more"], false);
        let body = raw(&client, Method::GET, &[("operation", "retrieve"), ("id", "11x5")]).await;
        assert_eq!(error_code(&body), "RECORD_NOT_FOUND");
        let query = "SELECT id FROM Accounts WHERE id IN ('11x4', '11x5', '11x6');";
        let body = raw(&client, Method::GET, &[("operation", "query"), ("query", query)]).await;
        assert_eq!(ids(&body["result"]), ["11x4", "11x6"]);
        assert!(sim.record("11x5").is_none());
    }

    #[tokio::test]
    async fn delete_is_a_post_operation_answering_successful() {
        let (sim, _handle, client) = logged_in(SimplyConfig {
            records: 20,
            ..SimplyConfig::default()
        })
        .await;
        // Sent as GET the id is not read: POST operations take parameters from the body.
        let body = raw(&client, Method::GET, &[("operation", "delete"), ("id", "11x3")]).await;
        assert_eq!(error_code(&body), "INVALID_ID_ATTRIBUTE");
        assert!(sim.record("11x3").is_some());
        let body = raw(&client, Method::POST, &[("operation", "delete"), ("id", "11x3")]).await;
        assert_eq!(body, json!({"success": true, "result": {"status": "successful"}}));
        assert!(sim.record("11x3").is_none());
        let body = raw(&client, Method::POST, &[("operation", "delete"), ("id", "11x3")]).await;
        assert_eq!(error_code(&body), "RECORD_NOT_FOUND");
        let body = raw(&client, Method::POST, &[("operation", "delete"), ("id", "3")]).await;
        assert_eq!(error_code(&body), "INVALID_ID_ATTRIBUTE");
        // The deletion is dated now, so a sync from just before reports it.
        let since = (Utc::now().timestamp() - 5).to_string();
        let body = raw(&client, Method::GET, &[("operation", "sync"), ("modifiedTime", &since)]).await;
        assert_eq!(body["result"]["deleted"], json!(["11x3"]));
        assert_eq!(sim.write_calls(), 4);
    }

    #[tokio::test]
    async fn sync_keeps_records_of_one_timestamp_together() {
        let (_sim, _handle, client) = logged_in(SimplyConfig {
            records: 150,
            spacing_secs: 0,
            other_owner_every: 0,
            ..SimplyConfig::default()
        })
        .await;
        let (verdict, body) = client
            .call("sync", request::sync_params(&settings(), Some("Contacts"), 0))
            .await;
        assert_eq!(verdict, Verdict::Ok);
        let step = envelope::sync_step(&body).unwrap();
        assert_eq!(step.updated, 150, "all 150 share one timestamp, over the 100 limit");
        assert!(!step.more);
        assert_eq!(step.last_modified_time, to_secs(SimplyConfig::default().base_time));
    }

    #[tokio::test]
    async fn writes_are_checked_one_row_at_a_time_and_remembered() {
        let (sim, _handle, client) = logged_in(SimplyConfig {
            records: 20,
            ..SimplyConfig::default()
        })
        .await;
        let rows = [
            json!({"accountname": "杭州云帆贸易有限公司", "phone": "0571-88886666", "bill_city": "杭州市", "assigned_user_id": "19x1"}),
            json!({"phone": "0571-1", "assigned_user_id": "19x1"}),
            json!({"accountname": "无主公司", "assigned_user_id": "19x99"}),
            json!({"accountname": "子公司", "account_id": "11x9999", "assigned_user_id": "19x1"}),
            json!({"accountname": "深圳瑞通科技有限公司", "account_id": "11x3", "assigned_user_id": "19x5", "id": "11x1"}),
        ];
        let mut outcomes = Vec::new();
        for row in rows {
            let (verdict, body) = client
                .call("create", json!({"elementType": "Accounts", "element": row}))
                .await;
            outcomes.push(envelope::row_outcome("create", &verdict, &body).unwrap());
        }
        let ids: Vec<Option<String>> = outcomes
            .iter()
            .map(|o| match o {
                RowOutcome::Written { target_id, .. } => target_id.clone(),
                RowOutcome::Failed { .. } => None,
            })
            .collect();
        assert_eq!(ids, [Some("11x41".into()), None, None, None, Some("11x42".into())]);
        let messages: Vec<&str> = outcomes
            .iter()
            .filter_map(|o| match o {
                RowOutcome::Failed { message, .. } => Some(message.as_str()),
                RowOutcome::Written { .. } => None,
            })
            .collect();
        assert!(messages[0].contains("MANDATORY_FIELDS_MISSING") && messages[0].contains("accountname"));
        assert!(messages[1].contains("REFERENCE_INVALID") && messages[1].contains("assigned_user_id"));
        assert!(messages[2].contains("REFERENCE_INVALID") && messages[2].contains("account_id"));
        assert_eq!(sim.write_calls(), 5);

        let created = sim.written_by_key("杭州云帆贸易有限公司").unwrap();
        assert_eq!(created["account_no"], "ACC21");
        assert_eq!(created["phone"], "0571-88886666");
        assert_eq!(sim.written_by_key("ACC22").unwrap()["id"], "11x42");

        // The new account is found through the vendor's own query.
        let lookup = request::lookup_query("Accounts", "accountname", "杭州云帆贸易有限公司").unwrap();
        let (_, found) = client.call("query", json!({"query": lookup})).await;
        let ids: Vec<&str> = found["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&"11x41"), "{ids:?}");

        // revise changes only what is sent; update replaces the whole record.
        let (verdict, revised) = client
            .call(
                "revise",
                json!({"element": {"id": "11x41", "website": "www.yunfan.example.cn"}}),
            )
            .await;
        assert_eq!(verdict, Verdict::Ok, "{revised}");
        assert_eq!(revised["result"]["phone"], "0571-88886666");
        assert_eq!(revised["result"]["website"], "www.yunfan.example.cn");
        let (_, current) = client.call("retrieve", json!({"id": "11x41"})).await;
        let full = request::full_record(&current["result"], &json!({"phone": "0571-12345678"})).unwrap();
        let (verdict, updated) = client.call("update", json!({"element": full})).await;
        assert_eq!(verdict, Verdict::Ok);
        assert_eq!(envelope::written_id("update", &updated).as_deref(), Some("11x41"));
        assert_eq!(updated["result"]["website"], "www.yunfan.example.cn");
        assert_eq!(updated["result"]["account_no"], "ACC21");
        let (_, blanked) = client
            .call(
                "update",
                json!({"element": {"id": "11x41", "accountname": "杭州云帆贸易有限公司", "assigned_user_id": "19x1"}}),
            )
            .await;
        assert_eq!(blanked["result"]["phone"], "", "update blanks fields it is not sent");
        let (verdict, _) = client
            .call("update", json!({"element": {"id": "11x41", "phone": "1"}}))
            .await;
        assert_eq!(failed_code(&verdict), "MANDATORY_FIELDS_MISSING");

        let (verdict, deleted) = client.call("delete", json!({"id": "11x42"})).await;
        assert_eq!(verdict, Verdict::Ok);
        assert_eq!(deleted["result"], json!({"status": "successful"}));
        let (verdict, _) = client.call("retrieve", json!({"id": "11x42"})).await;
        assert_eq!(failed_code(&verdict), "RECORD_NOT_FOUND");
        assert!(sim.written_by_key("深圳瑞通科技有限公司").is_none());
        assert_eq!(sim.written().len(), 1);

        let (verdict, _) = client
            .call("create", json!({"elementType": "Contacts", "element": "not json"}))
            .await;
        assert_eq!(failed_code(&verdict), "MANDATORY_FIELDS_MISSING");
        let contact = json!({"lastname": "李", "firstname": "娜", "account_id": "11x41", "email": "lina@example.cn", "assigned_user_id": "19x1"});
        let (verdict, body) = client
            .call("create", json!({"elementType": "Contacts", "element": contact}))
            .await;
        assert_eq!(verdict, Verdict::Ok, "{body}");
        assert_eq!(body["result"]["contact_no"], "CON21");
        assert_eq!(
            sim.written_by_key("lina@example.cn").unwrap()["id"],
            body["result"]["id"]
        );
    }

    #[tokio::test]
    async fn the_server_reads_parameters_where_the_verb_puts_them() {
        let (_sim, handle, client) = logged_in(SimplyConfig::default()).await;
        let session = client.session.clone().unwrap();
        // A query sent as POST: vtiger reads GET operations' parameters from the query
        // string only, so the statement is missing.
        let response = client
            .http
            .post(format!("{}{ENDPOINT_PATH}", handle.base_url()))
            .form(&[
                ("operation", "query"),
                ("sessionName", session.session_name.as_str()),
                ("query", "SELECT * FROM Accounts;"),
            ])
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        assert_eq!(envelope::error_of(&body).unwrap().0, "QUERY_SYNTAX_ERROR");

        // operation and sessionName may travel in the query string of a POST.
        let mut split = settings();
        split.post_params_in_query = Some(true);
        let split_client = Client {
            session: Some(session),
            ..Client::new(&handle.base_url(), split)
        };
        let element = json!({"lastname": "赵", "assigned_user_id": "19x1"});
        let (verdict, body) = split_client
            .call("create", json!({"elementType": "Contacts", "element": element}))
            .await;
        assert_eq!(verdict, Verdict::Ok, "{body}");
        let (verdict, _) = client.call("logout", json!({})).await;
        assert_eq!(verdict, Verdict::Ok);
        let (verdict, _) = client.call("listtypes", json!({})).await;
        assert!(matches!(verdict, Verdict::SessionExpired(_)));
    }

    #[tokio::test]
    async fn throttling_and_failures_use_webservice_envelopes() {
        let (sim, _handle, client) = logged_in(SimplyConfig::default()).await;
        sim.set_faults(Faults {
            rate_limit_per_sec: Some(1),
            ..Faults::default()
        });
        assert_eq!(client.call("listtypes", json!({})).await.0, Verdict::Ok);
        assert_eq!(
            client.call("listtypes", json!({})).await.0,
            Verdict::Throttled("TOO_MANY_REQUESTS: Too many requests, retry later".into())
        );
        sim.set_faults(Faults {
            fail_rate: 1.0,
            ..Faults::default()
        });
        let (verdict, _) = client.call("listtypes", json!({})).await;
        assert_eq!(failed_code(&verdict), "INTERNAL_SERVER_ERROR");
        let faults: Vec<_> = sim.requests().iter().map(|r| r.fault).collect();
        assert_eq!(faults[faults.len() - 2], Some(crate::sim::InjectedFault::Throttled));
    }

    #[test]
    fn generated_data_is_deterministic_and_realistic() {
        let one = SimplySim::new(SimplyConfig::default());
        let two = SimplySim::new(SimplyConfig::default());
        assert_eq!(one.account(17), two.account(17));
        let account = one.account(17).unwrap();
        assert_eq!(account["id"], "11x17");
        assert!(account["accountname"].as_str().unwrap().ends_with("公司"));
        assert_eq!(account["modifiedtime"], "2024-01-01 02:50:00");
        assert_eq!(one.account(10).unwrap()["assigned_user_id"], "19x5");
        let contact = one.contact(17).unwrap();
        assert_eq!(contact["id"], "12x317");
        assert_eq!(contact["account_id"], "11x17");
        assert!(one.account(301).is_none());
        assert!(one.touch_contact(1, DateTime::<Utc>::default()));
        assert!(!one.touch(0, DateTime::<Utc>::default()));
    }

    #[test]
    fn vtql_parsing_edge_cases() {
        let ok = |text: &str| parse_vtql(text).unwrap();
        let query = ok("select * from Accounts where accountname = 'O\\'Brien' and phone != '' limit 5;");
        assert_eq!(query.limit, 5);
        assert_eq!(query.filter[0].len(), 2);
        assert_eq!(
            ok("SELECT * FROM Accounts WHERE accountname = 'It''s';").filter.len(),
            1
        );
        for bad in [
            "SELECT * FROM Accounts",
            "SELECT * FROM Accounts; DROP",
            "SELECT * Accounts;",
            "SELECT * FROM Accounts WHERE accountname = ;",
            "SELECT * FROM Accounts WHERE accountname = 'open;",
            "SELECT * FROM Accounts LIMIT x;",
        ] {
            assert_eq!(parse_vtql(bad).unwrap_err().code, "QUERY_SYNTAX_ERROR", "{bad}");
        }
        assert!(like(
            &"abc".chars().collect::<Vec<_>>(),
            &"a%".chars().collect::<Vec<_>>()
        ));
        assert!(!like(
            &"abc".chars().collect::<Vec<_>>(),
            &"a_".chars().collect::<Vec<_>>()
        ));
        assert_eq!(compare_values("10", "9"), CmpOrdering::Greater);
        assert_eq!(compare_values("ACC10", "acc10"), CmpOrdering::Equal);
    }
}
