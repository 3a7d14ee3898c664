//! Pure builders of Simply CRM (`webservice.php`) requests, and the small pure helpers
//! around them: VTQL paging and quoting, record ids, sync parameters, full records for
//! `update`.
//!
//! Promise: [`build`] sends each operation with the verb vtiger registers for it
//! ([`http_verb`]): GET operations carry every parameter in the query string, POST
//! operations in an `application/x-www-form-urlencoded` body (the server reads a POST
//! operation's parameters from the body only). Objects and arrays (such as `element`)
//! are sent as JSON strings. Nothing here performs IO or reads a clock.

use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::{sign, Settings};
use crate::protocol::types::WireRequest;

/// `Content-Type` of POST bodies.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=UTF-8";
/// Operations vtiger registers as GET.
pub const GET_OPERATIONS: &[&str] = &["getchallenge", "retrieve", "query", "sync", "listtypes", "describe"];
/// Operations vtiger registers as POST.
pub const POST_OPERATIONS: &[&str] = &[
    "login",
    "create",
    "update",
    "revise",
    "delete",
    "logout",
    "extendsession",
    "convertlead",
];
/// Operations that need no session.
pub const PRELOGIN_OPERATIONS: &[&str] = &["getchallenge", "login", "extendsession"];
/// Format of datetime fields and VTQL datetime literals.
pub const DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The verb of `operation` (case-insensitive), `None` when it is not a known operation.
pub fn http_verb(operation: &str) -> Option<&'static str> {
    let operation = operation.to_ascii_lowercase();
    if GET_OPERATIONS.contains(&operation.as_str()) {
        Some("GET")
    } else if POST_OPERATIONS.contains(&operation.as_str()) {
        Some("POST")
    } else {
        None
    }
}

/// The answer to `getchallenge`. `server_time`/`expire_time` are the server's epoch
/// seconds.
#[derive(Clone, PartialEq, Eq)]
pub struct Challenge {
    pub token: String,
    pub server_time: i64,
    pub expire_time: i64,
}

impl fmt::Debug for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Challenge")
            .field("token", &"***")
            .field("server_time", &self.server_time)
            .field("expire_time", &self.expire_time)
            .finish()
    }
}

impl Challenge {
    /// Seconds the token stays valid, by the server's own clock.
    pub fn lifetime_secs(&self) -> i64 {
        self.expire_time - self.server_time
    }
}

/// A logged-in session: `sessionName` goes with every call.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    pub session_name: String,
    /// The user's id, e.g. `19x1`.
    pub user_id: String,
    /// The webservice API version, e.g. `0.22`.
    pub version: Option<String>,
    pub vtiger_version: Option<String>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("session_name", &"***")
            .field("user_id", &self.user_id)
            .field("version", &self.version)
            .field("vtiger_version", &self.vtiger_version)
            .finish()
    }
}

/// Step 1 of login: `GET ?operation=getchallenge&username=<u>`.
pub fn challenge_request(settings: &Settings, base_url: &str) -> WireRequest {
    let pairs = [
        ("operation".to_string(), "getchallenge".to_string()),
        ("username".to_string(), settings.username.clone()),
    ];
    WireRequest {
        method: "GET",
        url: format!("{}?{}", endpoint(settings, base_url), encode(&pairs)),
        headers: Vec::new(),
        body: None,
    }
}

/// Reads `result.token`, `serverTime` and `expireTime` from a `getchallenge` answer.
pub fn parse_challenge(body: &Value) -> Result<Challenge, String> {
    let result = success_result(body, "getchallenge")?;
    let token = result
        .get("token")
        .and_then(Value::as_str)
        .filter(|token| !token.is_empty())
        .ok_or("the getchallenge answer has no result.token")?;
    Ok(Challenge {
        token: token.to_string(),
        server_time: result.get("serverTime").and_then(as_i64).unwrap_or(0),
        expire_time: result.get("expireTime").and_then(as_i64).unwrap_or(0),
    })
}

/// Step 2 of login: `POST operation=login&username=<u>&accessKey=md5(token+key)`.
pub fn login_request(settings: &Settings, base_url: &str, challenge: &Challenge) -> WireRequest {
    let pairs = vec![
        ("operation".to_string(), "login".to_string()),
        ("username".to_string(), settings.username.clone()),
        (
            "accessKey".to_string(),
            sign::access_key(&challenge.token, &settings.access_key),
        ),
    ];
    post_request(settings, base_url, pairs)
}

/// Reads `sessionName`, `userId` and the versions from a `login` answer.
pub fn parse_login(body: &Value) -> Result<Session, String> {
    let result = success_result(body, "login")?;
    let text = |key: &str| result.get(key).and_then(Value::as_str).map(str::to_string);
    let session_name = text("sessionName")
        .filter(|name| !name.is_empty())
        .ok_or("the login answer has no result.sessionName")?;
    Ok(Session {
        session_name,
        user_id: text("userId").unwrap_or_default(),
        version: text("version"),
        vtiger_version: text("vtigerVersion"),
    })
}

/// The request for `operation` with `params` (a JSON object; `null` values are left
/// out). Every operation except getchallenge, login and extendsession needs `session`.
pub fn build(
    settings: &Settings,
    base_url: &str,
    operation: &str,
    params: &Value,
    session: Option<&Session>,
) -> Result<WireRequest, String> {
    let operation = operation.to_ascii_lowercase();
    let verb = http_verb(&operation).ok_or_else(|| {
        format!(
            "'{operation}' is not a webservice operation; choose from {}",
            [GET_OPERATIONS, POST_OPERATIONS].concat().join(", ")
        )
    })?;
    let params = match params {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        other => return Err(format!("parameters of {operation} must be a JSON object, got {other}")),
    };
    let mut pairs = vec![("operation".to_string(), operation.clone())];
    match session {
        Some(session) => pairs.push(("sessionName".to_string(), session.session_name.clone())),
        None if PRELOGIN_OPERATIONS.contains(&operation.as_str()) => {}
        None => return Err(format!("{operation} needs a session; log in first")),
    }
    for (key, value) in params {
        let text = match value {
            Value::Null => continue,
            Value::String(text) => text,
            Value::Bool(_) | Value::Number(_) => value.to_string(),
            Value::Array(_) | Value::Object(_) => {
                serde_json::to_string(&value).map_err(|e| format!("{operation} parameter {key}: {e}"))?
            }
        };
        pairs.push((key, text));
    }
    if verb == "GET" {
        Ok(WireRequest {
            method: "GET",
            url: format!("{}?{}", endpoint(settings, base_url), encode(&pairs)),
            headers: Vec::new(),
            body: None,
        })
    } else {
        Ok(post_request(settings, base_url, pairs))
    }
}

fn post_request(settings: &Settings, base_url: &str, pairs: Vec<(String, String)>) -> WireRequest {
    let (in_query, in_body): (Vec<_>, Vec<_>) = if settings.post_params_in_query() {
        pairs
            .into_iter()
            .partition(|(key, _)| key == "operation" || key == "sessionName")
    } else {
        (Vec::new(), pairs)
    };
    let mut url = endpoint(settings, base_url);
    if !in_query.is_empty() {
        url.push('?');
        url.push_str(&encode(&in_query));
    }
    WireRequest {
        method: "POST",
        url,
        headers: vec![("content-type".to_string(), FORM_CONTENT_TYPE.to_string())],
        body: Some(encode(&in_body).into_bytes()),
    }
}

fn endpoint(settings: &Settings, base_url: &str) -> String {
    format!("{}{}", base_url.trim_end_matches('/'), settings.path())
}

fn encode(pairs: &[(String, String)]) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        form.append_pair(key, value);
    }
    form.finish()
}

/// `result` of a successful answer, or the error it carries.
fn success_result<'a>(body: &'a Value, operation: &str) -> Result<&'a Value, String> {
    if body.get("success").and_then(Value::as_bool) == Some(true) {
        return body
            .get("result")
            .ok_or_else(|| format!("the {operation} answer has no result"));
    }
    match super::envelope::error_of(body) {
        Some((code, message)) => Err(format!("{operation} failed: {code}: {message}")),
        None => Err(format!("the {operation} answer is not a webservice envelope")),
    }
}

fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// VTQL
// ---------------------------------------------------------------------------

/// `vtql` (without a `LIMIT`) with `LIMIT offset, count;` appended. The statement may end
/// with `;` or not.
pub fn query_page(vtql: &str, offset: u64, count: u64) -> Result<String, String> {
    let statement = vtql.trim().trim_end_matches(';').trim_end();
    if statement.is_empty() {
        return Err("the VTQL query is empty; write e.g. SELECT * FROM Accounts".into());
    }
    if has_keyword_outside_quotes(statement, "limit") {
        return Err(format!(
            "the VTQL query already has a LIMIT; remove it so pages can be added: {statement}"
        ));
    }
    if count == 0 {
        return Err("a VTQL page must ask for at least one row".into());
    }
    Ok(format!("{statement} LIMIT {offset}, {count};"))
}

/// `text` as a VTQL string literal: single quotes, with `\` and `'` escaped by `\`.
pub fn quote_literal(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('\'');
    for c in text.chars() {
        if c == '\'' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

/// `SELECT * FROM <module> WHERE <field> = '<value>';`, the lookup of a business key.
pub fn lookup_query(module: &str, field: &str, value: &str) -> Result<String, String> {
    check_identifier(module, "module")?;
    check_identifier(field, "field")?;
    Ok(format!(
        "SELECT * FROM {module} WHERE {field} = {};",
        quote_literal(value)
    ))
}

/// `SELECT * FROM <module> WHERE modifiedtime > '<since>' ORDER BY modifiedtime;` with
/// `since` written in the server's time zone `timezone`.
pub fn modified_since_query(module: &str, since: DateTime<Utc>, timezone: &str) -> Result<String, String> {
    check_identifier(module, "module")?;
    Ok(format!(
        "SELECT * FROM {module} WHERE modifiedtime > {} ORDER BY modifiedtime;",
        quote_literal(&server_time_text(since, timezone)?)
    ))
}

/// `time` as a server datetime text (`yyyy-MM-dd HH:mm:ss` in `timezone`).
pub fn server_time_text(time: DateTime<Utc>, timezone: &str) -> Result<String, String> {
    let zone: Tz = timezone.parse().map_err(|_| {
        format!("unknown server time zone '{timezone}'; use an IANA name such as UTC or Europe/Copenhagen")
    })?;
    Ok(time.with_timezone(&zone).format(DATETIME_FORMAT).to_string())
}

fn check_identifier(name: &str, what: &str) -> Result<(), String> {
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a valid VTQL {what} name (letters, digits and _ only)"
        ))
    }
}

/// Whether `keyword` appears as a whole word outside single-quoted literals.
fn has_keyword_outside_quotes(statement: &str, keyword: &str) -> bool {
    let mut outside = String::with_capacity(statement.len());
    let mut in_quote = false;
    let mut escaped = false;
    for c in statement.chars() {
        if in_quote {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '\'') => in_quote = false,
                _ => {}
            }
            outside.push(' ');
        } else if c == '\'' {
            in_quote = true;
            outside.push(' ');
        } else {
            outside.push(c);
        }
    }
    outside
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|word| word.eq_ignore_ascii_case(keyword))
}

// ---------------------------------------------------------------------------
// Sync, ids and full records
// ---------------------------------------------------------------------------

/// Parameters of `sync`: `modifiedTime` in epoch seconds, the optional `elementType` and
/// the configured `syncType`.
pub fn sync_params(settings: &Settings, element_type: Option<&str>, modified_time: i64) -> Value {
    let mut params = Map::new();
    params.insert("modifiedTime".into(), Value::from(modified_time));
    if let Some(element_type) = element_type {
        params.insert("elementType".into(), Value::from(element_type));
    }
    if let Some(sync_type) = &settings.sync_type {
        params.insert("syncType".into(), Value::from(sync_type.as_str()));
    }
    Value::Object(params)
}

/// Points the parameters of a `sync` call at the next page: `modifiedTime` becomes the
/// previous answer's `lastModifiedTime` (`cursor`, epoch seconds).
pub fn continue_sync(params: &mut Value, cursor: &str) -> Result<(), String> {
    let seconds: i64 = cursor
        .trim()
        .parse()
        .map_err(|_| format!("sync answered lastModifiedTime '{cursor}', which is not epoch seconds"))?;
    let Some(map) = params.as_object_mut() else {
        return Err("the parameters of sync must be a mapping".into());
    };
    map.insert("modifiedTime".into(), Value::from(seconds));
    Ok(())
}

/// A webservice record id, `<prefix>x<crmid>` (e.g. `11x42`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordId {
    /// The module's id prefix, from `describe(...).idPrefix`.
    pub prefix: String,
    /// The record's number in the CRM database.
    pub crmid: u64,
}

impl RecordId {
    /// Parses `11x42`.
    pub fn parse(text: &str) -> Result<RecordId, String> {
        let (prefix, crmid) = text
            .trim()
            .split_once('x')
            .ok_or_else(|| format!("'{text}' is not a webservice id; ids look like 11x42"))?;
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("'{text}' has no numeric module prefix; ids look like 11x42"));
        }
        let crmid = crmid
            .parse::<u64>()
            .map_err(|_| format!("'{text}' has no numeric record number; ids look like 11x42"))?;
        Ok(RecordId {
            prefix: prefix.to_string(),
            crmid,
        })
    }

    /// The id with `prefix` and `crmid`.
    pub fn new(prefix: impl Into<String>, crmid: u64) -> RecordId {
        RecordId {
            prefix: prefix.into(),
            crmid,
        }
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.prefix, self.crmid)
    }
}

/// The full record `update` needs: `current` (as `retrieve` returned it) with `changes`
/// applied. `update` blanks every field it is not sent, so partial changes go through
/// here (or through `revise`). The `id` must be present and may not change.
pub fn full_record(current: &Value, changes: &Value) -> Result<Value, String> {
    let (Value::Object(current), Value::Object(changes)) = (current, changes) else {
        return Err("both the current record and the changes must be JSON objects".into());
    };
    let id = current
        .get("id")
        .and_then(Value::as_str)
        .ok_or("the current record has no id; retrieve it first")?;
    if let Some(other) = changes.get("id").and_then(Value::as_str) {
        if other != id {
            return Err(format!("the changes name id {other} but the record is {id}"));
        }
    }
    let mut merged = current.clone();
    for (key, value) in changes {
        merged.insert(key.clone(), value.clone());
    }
    Ok(Value::Object(merged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn settings() -> Settings {
        Settings::new("admin", "AbCdEfGhIjKlMnOp")
    }

    fn session() -> Session {
        Session {
            session_name: "4f1c2a9d8e7b6".into(),
            user_id: "19x1".into(),
            version: Some("0.22".into()),
            vtiger_version: None,
        }
    }

    fn pairs(text: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(text.as_bytes()).into_owned().collect()
    }

    fn query_of(url: &str) -> Vec<(String, String)> {
        pairs(url.split_once('?').map(|(_, query)| query).unwrap_or_default())
    }

    #[test]
    fn verbs_follow_the_registration_table() {
        for op in [
            "getchallenge",
            "retrieve",
            "query",
            "sync",
            "listtypes",
            "describe",
            "QUERY",
        ] {
            assert_eq!(http_verb(op), Some("GET"), "{op}");
        }
        for op in [
            "login",
            "create",
            "update",
            "revise",
            "delete",
            "logout",
            "extendsession",
        ] {
            assert_eq!(http_verb(op), Some("POST"), "{op}");
        }
        assert_eq!(http_verb("select"), None);
    }

    #[test]
    fn login_is_a_challenge_then_a_signed_post() {
        let wire = challenge_request(&settings(), "https://crm.example.com/");
        assert_eq!(wire.method, "GET");
        assert_eq!(
            wire.url,
            "https://crm.example.com/webservice.php?operation=getchallenge&username=admin"
        );
        let answer = json!({"success": true, "result": {"token": "5e9f4b2a1c3d7", "serverTime": 1709280000, "expireTime": 1709280300}});
        let challenge = parse_challenge(&answer).unwrap();
        assert_eq!(challenge.lifetime_secs(), 300);
        assert!(!format!("{challenge:?}").contains("5e9f4b2a1c3d7"));
        let login = login_request(&settings(), "https://crm.example.com", &challenge);
        assert_eq!(login.method, "POST");
        assert_eq!(login.url, "https://crm.example.com/webservice.php");
        assert_eq!(login.headers[0].1, FORM_CONTENT_TYPE);
        let body = String::from_utf8(login.body.unwrap()).unwrap();
        assert_eq!(
            body,
            "operation=login&username=admin&accessKey=169e887eac9fa70350afb7c5abfe06cb"
        );
        let logged_in = json!({"success": true, "result": {"sessionName": "4f1c2a9d8e7b6", "userId": "19x1", "version": "0.22", "vtigerVersion": "7.5.0"}});
        let parsed = parse_login(&logged_in).unwrap();
        assert_eq!(parsed.user_id, "19x1");
        assert_eq!(parsed.vtiger_version.as_deref(), Some("7.5.0"));
        assert!(!format!("{parsed:?}").contains("4f1c2a9d8e7b6"));
    }

    #[test]
    fn failed_logins_are_explained_in_every_spelling() {
        for error in [
            json!({"code": "INVALID_USER_CREDENTIALS", "message": "Invalid username or password"}),
            json!({"errorCode": "INVALID_USER_CREDENTIALS", "errorMessage": "Invalid username or password"}),
            json!({"errorType": "INVALID_USER_CREDENTIALS", "errorMsg": "Invalid username or password"}),
        ] {
            let message = parse_login(&json!({"success": false, "error": error})).unwrap_err();
            assert_eq!(
                message,
                "login failed: INVALID_USER_CREDENTIALS: Invalid username or password"
            );
        }
        assert!(parse_challenge(&json!({"success": true, "result": {}})).is_err());
        assert!(parse_login(&json!("<html>"))
            .unwrap_err()
            .contains("not a webservice envelope"));
    }

    #[test]
    fn get_operations_put_everything_in_the_query_string() {
        let wire = build(
            &settings(),
            "http://crm",
            "query",
            &json!({"query": "SELECT * FROM Accounts LIMIT 0, 100;"}),
            Some(&session()),
        )
        .unwrap();
        assert_eq!(wire.method, "GET");
        assert!(wire.body.is_none());
        assert_eq!(
            query_of(&wire.url),
            [
                ("operation".to_string(), "query".to_string()),
                ("sessionName".to_string(), "4f1c2a9d8e7b6".to_string()),
                ("query".to_string(), "SELECT * FROM Accounts LIMIT 0, 100;".to_string()),
            ]
        );
        let sync = build(
            &settings(),
            "http://crm",
            "sync",
            &sync_params(&settings(), Some("Contacts"), 1709280000),
            Some(&session()),
        )
        .unwrap();
        assert!(
            sync.url.ends_with("&modifiedTime=1709280000&elementType=Contacts"),
            "{}",
            sync.url
        );
    }

    #[test]
    fn post_operations_send_element_as_a_json_string_in_the_body() {
        let element = json!({"lastname": "李", "assigned_user_id": "19x1"});
        let wire = build(
            &settings(),
            "http://crm",
            "create",
            &json!({"elementType": "Contacts", "element": element}),
            Some(&session()),
        )
        .unwrap();
        assert_eq!(wire.method, "POST");
        assert_eq!(wire.url, "http://crm/webservice.php");
        let sent = pairs(&String::from_utf8(wire.body.unwrap()).unwrap());
        assert_eq!(sent[0], ("operation".into(), "create".into()));
        assert_eq!(sent[1], ("sessionName".into(), "4f1c2a9d8e7b6".into()));
        assert_eq!(sent[2], ("elementType".into(), "Contacts".into()));
        assert_eq!(sent[3].0, "element");
        assert_eq!(serde_json::from_str::<Value>(&sent[3].1).unwrap(), element);

        let mut split = settings();
        split.post_params_in_query = Some(true);
        let wire = build(&split, "http://crm", "delete", &json!({"id": "11x5"}), Some(&session())).unwrap();
        assert_eq!(
            wire.url,
            "http://crm/webservice.php?operation=delete&sessionName=4f1c2a9d8e7b6"
        );
        assert_eq!(wire.body.unwrap(), b"id=11x5");
    }

    #[test]
    fn build_refuses_what_the_server_would() {
        assert!(build(&settings(), "http://crm", "select", &json!({}), Some(&session()))
            .unwrap_err()
            .contains("not a webservice operation"));
        assert!(build(&settings(), "http://crm", "query", &json!({"query": "x"}), None)
            .unwrap_err()
            .contains("log in first"));
        assert!(build(&settings(), "http://crm", "query", &json!([1]), Some(&session())).is_err());
        assert!(build(
            &settings(),
            "http://crm",
            "getchallenge",
            &json!({"username": "admin"}),
            None
        )
        .is_ok());
    }

    #[test]
    fn vtql_pages_quote_and_lookups() {
        assert_eq!(
            query_page("SELECT * FROM Accounts ORDER BY modifiedtime;", 200, 100).unwrap(),
            "SELECT * FROM Accounts ORDER BY modifiedtime LIMIT 200, 100;"
        );
        assert_eq!(
            query_page("select * from Contacts", 0, 100).unwrap(),
            "select * from Contacts LIMIT 0, 100;"
        );
        assert!(query_page("SELECT * FROM Accounts LIMIT 5;", 0, 100).is_err());
        assert!(query_page("SELECT * FROM Accounts WHERE accountname = 'No limit here';", 0, 100).is_ok());
        assert!(query_page("SELECT * FROM Accounts WHERE accountname = 'it\\'s limit';", 0, 100).is_ok());
        assert!(query_page(" ; ", 0, 100).is_err());
        assert_eq!(quote_literal("O'Brien \\ 李"), "'O\\'Brien \\\\ 李'");
        assert_eq!(
            lookup_query("Accounts", "account_no", "ACC12").unwrap(),
            "SELECT * FROM Accounts WHERE account_no = 'ACC12';"
        );
        assert!(lookup_query("Accounts; DROP", "x", "y").is_err());
        let since = Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap();
        assert_eq!(
            modified_since_query("Contacts", since, "Asia/Shanghai").unwrap(),
            "SELECT * FROM Contacts WHERE modifiedtime > '2024-03-01 08:00:00' ORDER BY modifiedtime;"
        );
        assert!(modified_since_query("Contacts", since, "Nowhere/Town").is_err());
    }

    #[test]
    fn a_sync_page_continues_from_the_last_modified_time() {
        let mut params = json!({"modifiedTime": "1709280000", "elementType": "Accounts"});
        continue_sync(&mut params, "1709280600").unwrap();
        assert_eq!(params, json!({"modifiedTime": 1709280600, "elementType": "Accounts"}));
        assert!(continue_sync(&mut params, "soon").is_err());
        assert!(continue_sync(&mut json!([]), "1").is_err());
    }

    #[test]
    fn ids_parse_and_format() {
        let id = RecordId::parse("11x42").unwrap();
        assert_eq!(id, RecordId::new("11", 42));
        assert_eq!(id.to_string(), "11x42");
        for bad in ["1142", "x42", "11x", "ax42", "11x4a", ""] {
            assert!(RecordId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn full_records_keep_unchanged_fields() {
        let current =
            json!({"id": "11x7", "accountname": "杭州云帆贸易有限公司", "phone": "0571-88886666", "website": ""});
        let merged = full_record(&current, &json!({"phone": "0571-12345678"})).unwrap();
        assert_eq!(
            merged,
            json!({"id": "11x7", "accountname": "杭州云帆贸易有限公司", "phone": "0571-12345678", "website": ""})
        );
        assert!(full_record(&current, &json!({"id": "11x8"})).is_err());
        assert!(full_record(&json!({"accountname": "x"}), &json!({})).is_err());
    }
}
