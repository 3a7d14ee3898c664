//! Pure K3Cloud request builders: URL, body shape, signed or session headers, legacy logins,
//! query paging parameters and safe partial updates.
//!
//! Every call is `POST {base}/{Service}.common.kdsvc` with a JSON body. Business operations
//! live under `Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.<Op>`; an `api` containing a
//! dot is taken as a full service name (e.g. the data-center list). The body bytes in the
//! returned [`WireRequest`] are exactly what is sent.
//!
//! Sessions: in `signed_headers` mode requests are stateless, but like the SDK we send back the
//! `kdservice-sessionid` cookie when an earlier answer set one. In the legacy modes the session
//! *is* that cookie; the server does not say when it expires, so the engine logs in again when
//! [`super::envelope::classify`] answers `SessionExpired`, then retries once.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::{sign, AuthMode, Settings, ValidateUserBody};
use crate::protocol::types::WireRequest;

/// Namespace of the business operations.
pub const FORM_SERVICE: &str = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService";
/// Legacy password login.
pub const VALIDATE_USER: &str = "Kingdee.BOS.WebApi.ServicesStub.AuthService.ValidateUser";
/// Legacy login with the third-party AppID and AppSecret.
pub const LOGIN_BY_APP_SECRET: &str = "Kingdee.BOS.WebApi.ServicesStub.AuthService.LoginByAppSecret";
/// Legacy signed login (community algorithm).
pub const LOGIN_BY_SIGN: &str = "Kingdee.BOS.WebApi.ServicesStub.AuthService.LoginBySign";
/// The data-center list (note the different namespace).
pub const DATA_CENTER_LIST: &str = "Kingdee.BOS.ServiceFacade.ServicesStub.Account.AccountService.GetDataCenterList";
/// The cookie (and header) that carries a session.
pub const SESSION_COOKIE: &str = "kdservice-sessionid";

/// Operations whose body is `{"formid","data"}`.
pub const FORM_OPERATIONS: &[&str] = &[
    "Save",
    "BatchSave",
    "Submit",
    "Audit",
    "UnAudit",
    "Delete",
    "View",
    "Draft",
    "Allocate",
    "Push",
    "GroupSave",
    "FlexSave",
    "CancelAllocate",
];
/// Operations whose body is `{"data"}`.
pub const DATA_OPERATIONS: &[&str] = &[
    "ExecuteBillQuery",
    "BillQuery",
    "QueryBusinessInfo",
    "WorkflowAudit",
    "SwitchOrg",
    "SendMsg",
    "GroupDelete",
    "AttachmentUpload",
    "AttachmentDownLoad",
];
/// `ExcuteOperation` (sic) takes `{"formid","opNumber","data"}`.
pub const EXECUTE_OPERATION: &str = "ExcuteOperation";

/// What went wrong while building a request or reading a login answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("setting `{field}` is required for auth mode {mode:?}; add it to the connection")]
    MissingSetting { field: &'static str, mode: AuthMode },
    #[error("`app_id` must look like <clientId>_<32 characters> (copy it from 第三方系统登录授权); this one gives no signing key")]
    BadAppId,
    #[error("`secpwd` must have at least 32 characters, like the SDK's x-kdapi-secpwd; remove it to use the default")]
    BadSecpwd,
    #[error("unknown K3Cloud operation `{0}`; use one of Save, BatchSave, Submit, Audit, UnAudit, Delete, View, ExecuteBillQuery, BillQuery, … or a full service name")]
    UnknownOperation(String),
    #[error("the {op} body is wrong: {problem}")]
    BadBody { op: String, problem: String },
    #[error("K3Cloud refused the login (LoginResultType {code}): {message}; check acct_id, username and the password or app credentials")]
    LoginRejected { code: String, message: String },
    #[error("the login answer is not a K3Cloud login result: {0}")]
    BadLoginAnswer(String),
}

/// The body shape an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyShape {
    /// `{"formid":"<FormId>","data":{...}}`.
    FormAndData,
    /// `{"formid":..,"opNumber":..,"data":{...}}`.
    FormOpNumberAndData,
    /// `{"data":{...}}`.
    DataOnly,
}

/// The body shape of a short operation name; `None` for unknown names.
pub fn body_shape(op: &str) -> Option<BodyShape> {
    if FORM_OPERATIONS.contains(&op) {
        Some(BodyShape::FormAndData)
    } else if DATA_OPERATIONS.contains(&op) {
        Some(BodyShape::DataOnly)
    } else if op == EXECUTE_OPERATION {
        Some(BodyShape::FormOpNumberAndData)
    } else {
        None
    }
}

/// The service name of `api`: a short operation maps into [`FORM_SERVICE`]; a name with a dot
/// is already a full service name.
pub fn service_name(api: &str) -> Result<String, RequestError> {
    if api.contains('.') {
        Ok(api.to_owned())
    } else if body_shape(api).is_some() {
        Ok(format!("{FORM_SERVICE}.{api}"))
    } else {
        Err(RequestError::UnknownOperation(api.to_owned()))
    }
}

/// `{base}/{service}.common.kdsvc`, adding the `/` the SDK adds when the base lacks one.
pub fn service_url(base_url: &str, service: &str) -> String {
    let slash = if base_url.ends_with('/') { "" } else { "/" };
    format!("{base_url}{slash}{service}.common.kdsvc")
}

/// Composes an operation body from its parts, in the shape the operation needs.
pub fn operation_body(op: &str, form_id: Option<&str>, data: Value) -> Result<Value, RequestError> {
    let bad = |problem: &str| RequestError::BadBody {
        op: op.to_owned(),
        problem: problem.to_owned(),
    };
    match body_shape(op) {
        Some(BodyShape::DataOnly) => Ok(json!({"data": data})),
        Some(BodyShape::FormAndData) => match form_id {
            Some(form) if !form.is_empty() => Ok(json!({"formid": form, "data": data})),
            _ => Err(bad("a form id (e.g. BD_Customer) is required")),
        },
        Some(BodyShape::FormOpNumberAndData) => Err(bad("build ExcuteOperation bodies by hand: it needs opNumber")),
        None => Err(RequestError::UnknownOperation(op.to_owned())),
    }
}

/// Checks a body against the operation's shape (full service names are not checked).
pub fn check_body(op: &str, body: &Value) -> Result<(), RequestError> {
    let bad = |problem: String| RequestError::BadBody {
        op: op.to_owned(),
        problem,
    };
    let Some(shape) = body_shape(op) else {
        return if op.contains('.') {
            Ok(())
        } else {
            Err(RequestError::UnknownOperation(op.to_owned()))
        };
    };
    let Some(object) = body.as_object() else {
        return Err(bad("it must be a JSON object".to_owned()));
    };
    match object.get("data") {
        Some(Value::Object(_)) | Some(Value::String(_)) => {}
        _ => {
            return Err(bad(
                "`data` must be an object, e.g. {\"data\": {\"Model\": {...}}}".to_owned()
            ))
        }
    }
    let has_text = |key: &str| matches!(object.get(key), Some(Value::String(text)) if !text.is_empty());
    match shape {
        BodyShape::DataOnly => {
            if object.contains_key("formid") {
                return Err(bad(
                    "`formid` belongs inside `data` as `FormId` for this operation".to_owned()
                ));
            }
        }
        BodyShape::FormAndData | BodyShape::FormOpNumberAndData => {
            if !has_text("formid") {
                return Err(bad(
                    "`formid` (e.g. \"BD_Customer\") is required next to `data`".to_owned()
                ));
            }
            if shape == BodyShape::FormOpNumberAndData && !has_text("opNumber") {
                return Err(bad("`opNumber` is required".to_owned()));
            }
        }
    }
    if op == "Save" && matches!(body.pointer("/data/Model"), Some(Value::Array(_))) {
        return Err(bad(
            "Save takes one `Model` object; use BatchSave for an array".to_owned()
        ));
    }
    if op == "BatchSave" && !matches!(body.pointer("/data/Model"), Some(Value::Array(_)) | None) {
        return Err(bad("BatchSave takes `Model` as an array of packages".to_owned()));
    }
    Ok(())
}

/// A K3Cloud session: the `kdservice-sessionid` value plus the other cookies the server set.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Session {
    pub session_id: String,
    /// `(name, value)` of every cookie set by the server, `kdservice-sessionid` included.
    pub cookies: Vec<(String, String)>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.cookies.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Session")
            .field("session_id", &"***")
            .field("cookies", &names)
            .finish()
    }
}

impl Session {
    /// A session from the `Set-Cookie` values of any answer, if one carries the session cookie.
    pub fn from_set_cookies(values: &[&str]) -> Option<Session> {
        let mut session = Session::default();
        for value in values {
            session.absorb_set_cookie(value);
        }
        (!session.session_id.is_empty()).then_some(session)
    }

    /// Takes in one `Set-Cookie` value (`name=value; path=/; HttpOnly`).
    pub fn absorb_set_cookie(&mut self, value: &str) {
        let first = value.split(';').next().unwrap_or_default().trim();
        let Some((name, cookie)) = first.split_once('=') else {
            return;
        };
        let (name, cookie) = (name.trim(), cookie.trim());
        if name.is_empty() {
            return;
        }
        if name.eq_ignore_ascii_case(SESSION_COOKIE) && !cookie.is_empty() {
            self.session_id = cookie.to_owned();
        }
        match self.cookies.iter_mut().find(|(known, _)| known == name) {
            Some(slot) => slot.1 = cookie.to_owned(),
            None => self.cookies.push((name.to_owned(), cookie.to_owned())),
        }
    }

    /// The headers the SDK sends back: `kdservice-sessionid` and `Cookie: Theme=standard;…`.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut cookie = String::from("Theme=standard");
        let listed = self
            .cookies
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(SESSION_COOKIE));
        if !listed && !self.session_id.is_empty() {
            cookie.push_str(&format!(";{SESSION_COOKIE}={}", self.session_id));
        }
        for (name, value) in &self.cookies {
            cookie.push_str(&format!(";{name}={value}"));
        }
        let mut headers = Vec::with_capacity(2);
        if !self.session_id.is_empty() {
            headers.push((SESSION_COOKIE.to_owned(), self.session_id.clone()));
        }
        headers.push(("Cookie".to_owned(), cookie));
        headers
    }
}

fn json_bytes(op: &str, body: &Value) -> Result<Vec<u8>, RequestError> {
    serde_json::to_vec(body).map_err(|err| RequestError::BadBody {
        op: op.to_owned(),
        problem: err.to_string(),
    })
}

fn plain_headers() -> Vec<(String, String)> {
    vec![
        ("Accept-Charset".to_owned(), "utf-8".to_owned()),
        ("Content-Type".to_owned(), "application/json".to_owned()),
    ]
}

/// Builds the request for `api` (a short operation such as `BatchSave` or a full service name)
/// with `body` already in the operation's shape (see [`operation_body`]).
///
/// In `signed_headers` mode the nine signed headers are added, with `now` in Unix seconds as
/// both timestamp and nonce, as the SDK does. `session` (when given) adds the session headers
/// in every mode; the legacy modes need it for everything but the login itself.
pub fn build(
    settings: &Settings,
    base_url: &str,
    api: &str,
    body: &Value,
    session: Option<&Session>,
    now: DateTime<Utc>,
) -> Result<WireRequest, RequestError> {
    check_body(api, body)?;
    let url = service_url(base_url, &service_name(api)?);
    let mut headers = Vec::with_capacity(14);
    if settings.auth_mode() == AuthMode::SignedHeaders {
        settings.check()?;
        let timestamp = now.timestamp().to_string();
        let xor_key = settings.xor_key();
        headers.extend(sign::signed_headers(&sign::SignInput {
            app_id: settings.app_id.as_deref().unwrap_or_default(),
            app_secret: settings.app_secret.as_deref().unwrap_or_default(),
            acct_id: &settings.acct_id,
            username: &settings.username,
            lcid: settings.lcid(),
            org_num: settings.org_num(),
            xor_key: &xor_key,
            url: &url,
            timestamp: &timestamp,
            nonce: &timestamp,
        }));
    }
    if let Some(session) = session {
        headers.extend(session.headers());
    }
    headers.extend(plain_headers());
    Ok(WireRequest {
        method: "POST",
        url,
        headers,
        body: Some(json_bytes(api, body)?),
    })
}

/// The login request of a legacy auth mode; `None` in `signed_headers` mode (no login).
/// `now` is used by `login_by_sign` only.
pub fn login_request(
    settings: &Settings,
    base_url: &str,
    now: DateTime<Utc>,
) -> Result<Option<WireRequest>, RequestError> {
    let mode = settings.auth_mode();
    if mode == AuthMode::SignedHeaders {
        return Ok(None);
    }
    settings.check()?;
    let acct = settings.acct_id.as_str();
    let user = settings.username.as_str();
    let lcid = settings.lcid();
    let app_id = settings.app_id.as_deref().unwrap_or_default();
    let app_secret = settings.app_secret.as_deref().unwrap_or_default();
    let (service, body) = match mode {
        AuthMode::ValidateUser => {
            let password = settings.password.as_deref().unwrap_or_default();
            let body = match settings.validate_user_body() {
                ValidateUserBody::Named => {
                    json!({"acctID": acct, "username": user, "password": password, "lcid": lcid})
                }
                ValidateUserBody::Parameters => json!({"parameters": [acct, user, password, lcid]}),
            };
            (VALIDATE_USER, body)
        }
        AuthMode::LoginByAppSecret => (
            LOGIN_BY_APP_SECRET,
            json!({"parameters": [acct, user, app_id, app_secret, lcid]}),
        ),
        AuthMode::LoginBySign | AuthMode::SignedHeaders => {
            let timestamp = now.timestamp();
            let sign = sign::login_by_sign_hash(acct, user, app_id, app_secret, &timestamp.to_string());
            (
                LOGIN_BY_SIGN,
                json!({"parameters": [acct, user, app_id, timestamp, sign, lcid]}),
            )
        }
    };
    Ok(Some(WireRequest {
        method: "POST",
        url: service_url(base_url, service),
        headers: plain_headers(),
        body: Some(json_bytes(service, &body)?),
    }))
}

/// Reads a login answer body; success is `LoginResultType == 1`. The session id comes from
/// `KDSVCSessionId`; add the answer's cookies with [`Session::absorb_set_cookie`] (or use
/// [`session_from_login`]).
pub fn parse_login(body: &Value) -> Result<Session, RequestError> {
    session_from_login(body, &[])
}

/// [`parse_login`] plus the answer's `Set-Cookie` values.
pub fn session_from_login(body: &Value, set_cookies: &[&str]) -> Result<Session, RequestError> {
    let Some(result_type) = body.get("LoginResultType") else {
        let preview: String = body.to_string().chars().take(160).collect();
        return Err(RequestError::BadLoginAnswer(format!("no LoginResultType in {preview}")));
    };
    if result_type.as_i64() != Some(1) {
        let message = body
            .get("Message")
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
            .unwrap_or("no message")
            .to_owned();
        return Err(RequestError::LoginRejected {
            code: result_type.to_string(),
            message,
        });
    }
    let mut session = Session::default();
    for value in set_cookies {
        session.absorb_set_cookie(value);
    }
    if let Some(id) = body
        .get("KDSVCSessionId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
    {
        session.session_id = id.to_owned();
    }
    if session.session_id.is_empty() {
        return Err(RequestError::BadLoginAnswer(
            "the login succeeded but neither KDSVCSessionId nor a kdservice-sessionid cookie came back".to_owned(),
        ));
    }
    Ok(session)
}

/// Sets `data.StartRow` and `data.Limit` of an ExecuteBillQuery/BillQuery body, capping the
/// limit at the configured maximum. Paging is offset style: repeat with
/// `StartRow += Limit` until fewer than `Limit` rows come back.
pub fn set_query_page(settings: &Settings, body: &mut Value, start_row: u64, limit: u64) -> Result<(), RequestError> {
    let Some(data) = body.get_mut("data").and_then(Value::as_object_mut) else {
        return Err(RequestError::BadBody {
            op: "ExecuteBillQuery".to_owned(),
            problem: "`data` must be an object holding FormId and FieldKeys".to_owned(),
        });
    };
    data.insert("StartRow".to_owned(), Value::from(start_row));
    data.insert(
        "Limit".to_owned(),
        Value::from(limit.clamp(1, settings.query_max_limit())),
    );
    Ok(())
}

/// The primary-key field of a form's `Model` when it is not `FID` (a small table of common
/// base-data forms; bills use `FID`). Check the form's Save template when in doubt.
pub fn default_key_field(form_id: &str) -> &'static str {
    const KEYS: &[(&str, &str)] = &[
        ("BD_Customer", "FCUSTID"),
        ("BD_MATERIAL", "FMATERIALID"),
        ("BD_Supplier", "FSupplierId"),
        ("BD_Empinfo", "FID"),
        ("BD_Department", "FDEPTID"),
        ("BD_STOCK", "FStockId"),
    ];
    KEYS.iter()
        .find(|(form, _)| form.eq_ignore_ascii_case(form_id))
        .map_or("FID", |(_, key)| key)
}

fn id_value(target_id: &str) -> Value {
    target_id
        .trim()
        .parse::<i64>()
        .map_or_else(|_| Value::String(target_id.to_owned()), Value::from)
}

/// Field keys a model changes: its top-level keys except the key field, and for entries
/// (arrays of objects) the entry key followed by the keys used inside its rows.
fn model_field_keys(model: &Map<String, Value>, fid_field: &str, into: &mut Vec<String>) {
    let mut push = |key: &str| {
        if !into.iter().any(|known| known == key) {
            into.push(key.to_owned());
        }
    };
    for (key, value) in model {
        if key.eq_ignore_ascii_case(fid_field) {
            continue;
        }
        push(key);
        if let Value::Array(rows) = value {
            for row in rows.iter().filter_map(Value::as_object) {
                for inner in row.keys() {
                    push(inner);
                }
            }
        }
    }
}

/// Wraps a bare model into `{"Model": model}`; leaves a `data` object alone.
fn as_data_object<'a>(data: &'a mut Value, op: &str) -> Result<&'a mut Map<String, Value>, RequestError> {
    if data.is_object() && data.get("Model").is_none() {
        let model = std::mem::take(data);
        *data = json!({ "Model": model });
    }
    data.as_object_mut().ok_or_else(|| RequestError::BadBody {
        op: op.to_owned(),
        problem: "expected the Save `data` object or a model object".to_owned(),
    })
}

fn finish_update(data: &mut Map<String, Value>, fields: Vec<String>, is_delete_entry: bool) {
    if !data.contains_key("NeedUpDateFields") {
        data.insert(
            "NeedUpDateFields".to_owned(),
            Value::Array(fields.into_iter().map(Value::String).collect()),
        );
    }
    if !data.contains_key("IsDeleteEntry") {
        // Strings, as the official templates send booleans.
        data.insert("IsDeleteEntry".to_owned(), Value::String(is_delete_entry.to_string()));
    }
}

/// Turns a Save `data` object into a safe partial update of record `target_id`.
///
/// `data` is `{"Model": {...}, ...}`; a bare model object is accepted and wrapped into one.
/// The function:
/// 1. sets `Model[fid_field]` to `target_id` (a number when it is one);
/// 2. sets `NeedUpDateFields` to `need_update_fields`, or when `None` to the model's keys
///    (without the key field; entry keys followed by the keys used in their rows), so only
///    the fields the scheme sends are overwritten;
/// 3. sets `IsDeleteEntry` to `is_delete_entry` (pass [`Settings::update_is_delete_entry`],
///    false by default). The server's own default is true, which deletes every entry row the
///    update does not repeat; false keeps them.
///
/// A `NeedUpDateFields` or `IsDeleteEntry` already present in `data` was chosen explicitly by
/// the scheme and is kept.
pub fn prepare_update(
    data: &mut Value,
    fid_field: &str,
    target_id: &str,
    need_update_fields: Option<&[String]>,
    is_delete_entry: bool,
) -> Result<(), RequestError> {
    let data = as_data_object(data, "Save")?;
    let Some(model) = data.get_mut("Model").and_then(Value::as_object_mut) else {
        return Err(RequestError::BadBody {
            op: "Save".to_owned(),
            problem: "`Model` must be one object here; use prepare_batch_update for BatchSave".to_owned(),
        });
    };
    model.insert(fid_field.to_owned(), id_value(target_id));
    let fields = match need_update_fields {
        Some(fields) => fields.to_vec(),
        None => {
            let mut fields = Vec::new();
            model_field_keys(model, fid_field, &mut fields);
            fields
        }
    };
    finish_update(data, fields, is_delete_entry);
    Ok(())
}

/// [`prepare_update`] for a BatchSave `data` object: `target_ids[i]` is the target id of
/// package `i` (`None` creates it). `NeedUpDateFields` applies to the whole batch, so it is the
/// union of the updated packages' keys. Nothing changes when no package is an update.
pub fn prepare_batch_update(
    data: &mut Value,
    fid_field: &str,
    target_ids: &[Option<&str>],
    need_update_fields: Option<&[String]>,
    is_delete_entry: bool,
) -> Result<(), RequestError> {
    let bad = |problem: String| RequestError::BadBody {
        op: "BatchSave".to_owned(),
        problem,
    };
    let data = data
        .as_object_mut()
        .ok_or_else(|| bad("expected the BatchSave `data` object".to_owned()))?;
    let Some(Value::Array(models)) = data.get_mut("Model") else {
        return Err(bad("`Model` must be an array of packages".to_owned()));
    };
    if models.len() != target_ids.len() {
        return Err(bad(format!(
            "{} packages but {} target ids",
            models.len(),
            target_ids.len()
        )));
    }
    let mut fields = Vec::new();
    let mut any_update = false;
    for (model, target_id) in models.iter_mut().zip(target_ids) {
        let Some(target_id) = target_id else { continue };
        let model = model
            .as_object_mut()
            .ok_or_else(|| bad("every package must be an object".to_owned()))?;
        model.insert(fid_field.to_owned(), id_value(target_id));
        model_field_keys(model, fid_field, &mut fields);
        any_update = true;
    }
    if any_update {
        let fields = need_update_fields.map_or(fields, <[String]>::to_vec);
        finish_update(data, fields, is_delete_entry);
    }
    Ok(())
}

/// Asks a Save/BatchSave for the ids of the packages' detail rows: adds `key_field` (to
/// match each `NeedReturnData` object to its package) and `<EntryKey>.<id field>` of every
/// list to `NeedReturnFields`, keeping the fields the scheme asked for (reference §2:
/// "NeedReturnFields: entry fields as `Entity.Key`"; "Entry IDs (`FEntryID`) are needed to
/// update rows"). The entry key is the list's own name, as entries sit under the model.
/// A `data` without `Model` is left alone (it is no Save `data` this can extend).
pub fn ask_for_detail_ids(
    data: &mut Value,
    key_field: &str,
    lists: &[crate::protocol::DetailList],
) -> Result<(), RequestError> {
    if lists.is_empty() {
        return Ok(());
    }
    let Some(data) = data.as_object_mut().filter(|data| data.contains_key("Model")) else {
        return Ok(());
    };
    let wanted = std::iter::once(key_field.to_owned())
        .chain(lists.iter().map(|list| format!("{}.{}", list.name(), list.id_field)));
    let fields = data
        .entry("NeedReturnFields")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(fields) = fields else {
        return Err(RequestError::BadBody {
            op: "Save".to_owned(),
            problem: "`NeedReturnFields` must be an array of field keys".to_owned(),
        });
    };
    for field in wanted {
        let known = fields
            .iter()
            .filter_map(Value::as_str)
            .any(|known| known.eq_ignore_ascii_case(&field));
        if !known {
            fields.push(Value::String(field));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn detail_row_ids_are_asked_for_next_to_the_schemes_fields() {
        let lists = [crate::protocol::DetailList {
            path: vec!["FSaleOrderEntry".into()],
            id_field: "FEntryID".into(),
        }];
        let mut data = json!({"Model": [{"FBillNo": "SO1"}], "NeedReturnFields": ["FBillNo", "fid"]});
        ask_for_detail_ids(&mut data, "FID", &lists).unwrap();
        assert_eq!(
            data["NeedReturnFields"],
            json!(["FBillNo", "fid", "FSaleOrderEntry.FEntryID"])
        );
        let mut bare = json!({"Model": {"FBillNo": "SO1"}});
        ask_for_detail_ids(&mut bare, "FID", &lists).unwrap();
        assert_eq!(bare["NeedReturnFields"], json!(["FID", "FSaleOrderEntry.FEntryID"]));
        let mut untouched = json!({"Model": {}});
        ask_for_detail_ids(&mut untouched, "FID", &[]).unwrap();
        assert_eq!(untouched, json!({"Model": {}}));
        let mut odd = json!({"Model": {}, "NeedReturnFields": "FID"});
        assert!(ask_for_detail_ids(&mut odd, "FID", &lists).is_err());
    }

    fn settings() -> Settings {
        serde_json::from_value(json!({
            "acct_id": "65a0b1c2d3e4f5",
            "username": "apiuser",
            "app_id": "123456_YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4",
            "app_secret": "0123456789abcdef0123456789abcdef",
            "password": "pw"
        }))
        .unwrap()
    }

    fn at_vector_time() -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000, 0).unwrap()
    }

    fn header<'a>(request: &'a WireRequest, name: &str) -> Option<&'a str> {
        request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn signed_query_reproduces_the_reference_vector() {
        let body = operation_body(
            "ExecuteBillQuery",
            None,
            json!({"FormId": "BD_MATERIAL", "FieldKeys": "FNumber"}),
        )
        .unwrap();
        let request = build(
            &settings(),
            "https://erp.example.com/k3cloud/",
            "ExecuteBillQuery",
            &body,
            None,
            at_vector_time(),
        )
        .unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.url,
            "https://erp.example.com/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.ExecuteBillQuery.common.kdsvc"
        );
        assert_eq!(
            header(&request, "X-Api-Signature"),
            Some("YTVmYjk2NDNhZDNhOTM2ZTk5M2E1YzhiYWIzOWE2YzFjYzNhMDczZDM5NzRiZmUxZGI4YmJkNjM0Nzk5NzE0Ng==")
        );
        assert_eq!(header(&request, "x-api-timestamp"), Some("1700000000"));
        assert_eq!(header(&request, "x-api-nonce"), Some("1700000000"));
        assert_eq!(
            header(&request, "X-Kd-Appdata"),
            Some("NjVhMGIxYzJkM2U0ZjUsYXBpdXNlciwyMDUyLDA=")
        );
        assert_eq!(header(&request, "Content-Type"), Some("application/json"));
        assert_eq!(header(&request, "Cookie"), None);
        let sent: Value = serde_json::from_slice(request.body.as_deref().unwrap()).unwrap();
        assert_eq!(sent, json!({"data": {"FormId": "BD_MATERIAL", "FieldKeys": "FNumber"}}));
    }

    #[test]
    fn base_without_slash_gets_one() {
        assert_eq!(service_url("http://h/k3cloud", "S"), "http://h/k3cloud/S.common.kdsvc");
        assert_eq!(service_name("Save").unwrap(), format!("{FORM_SERVICE}.Save"));
        assert_eq!(service_name(DATA_CENTER_LIST).unwrap(), DATA_CENTER_LIST);
        assert!(service_name("Saev").is_err());
    }

    #[test]
    fn body_shapes_are_checked() {
        let save = operation_body("BatchSave", Some("BD_Customer"), json!({"Model": []})).unwrap();
        assert_eq!(save["formid"], "BD_Customer");
        check_body("BatchSave", &save).unwrap();
        assert!(operation_body("Save", None, json!({})).is_err());
        assert!(
            check_body("Save", &json!({"data": {"Model": {}}})).is_err(),
            "formid missing"
        );
        assert!(check_body("Save", &json!({"formid": "F", "data": {"Model": []}})).is_err());
        assert!(check_body("BatchSave", &json!({"formid": "F", "data": {"Model": {}}})).is_err());
        assert!(check_body("ExecuteBillQuery", &json!({"formid": "F", "data": {}})).is_err());
        assert!(check_body("ExecuteBillQuery", &json!({"data": 5})).is_err());
        check_body(
            "ExcuteOperation",
            &json!({"formid": "F", "opNumber": "Forbid", "data": {}}),
        )
        .unwrap();
        assert!(check_body("ExcuteOperation", &json!({"formid": "F", "data": {}})).is_err());
    }

    #[test]
    fn validate_user_has_both_body_shapes() {
        let mut settings = settings();
        settings.auth = Some(AuthMode::ValidateUser);
        let named = login_request(&settings, "http://h/k3cloud/", at_vector_time())
            .unwrap()
            .unwrap();
        assert!(named.url.ends_with("AuthService.ValidateUser.common.kdsvc"));
        let body: Value = serde_json::from_slice(named.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"acctID": "65a0b1c2d3e4f5", "username": "apiuser", "password": "pw", "lcid": 2052})
        );
        assert_eq!(header(&named, "X-Api-Signature"), None);
        settings.validate_user_body = Some(ValidateUserBody::Parameters);
        let positional = login_request(&settings, "http://h/k3cloud/", at_vector_time())
            .unwrap()
            .unwrap();
        let body: Value = serde_json::from_slice(positional.body.as_deref().unwrap()).unwrap();
        assert_eq!(body, json!({"parameters": ["65a0b1c2d3e4f5", "apiuser", "pw", 2052]}));
    }

    #[test]
    fn app_secret_and_sign_logins() {
        let mut settings = settings();
        assert!(login_request(&settings, "http://h/", at_vector_time())
            .unwrap()
            .is_none());
        settings.auth = Some(AuthMode::LoginByAppSecret);
        let request = login_request(&settings, "http://h/", at_vector_time())
            .unwrap()
            .unwrap();
        let body: Value = serde_json::from_slice(request.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["parameters"][2], "123456_YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4");
        assert_eq!(body["parameters"][4], 2052);
        settings.auth = Some(AuthMode::LoginBySign);
        let request = login_request(&settings, "http://h/", at_vector_time())
            .unwrap()
            .unwrap();
        let body: Value = serde_json::from_slice(request.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["parameters"][3], 1_700_000_000);
        assert_eq!(
            body["parameters"][4],
            "d04dfc4ba0c8b0d97639217ef06a2b7cdc9e4e6c42e81ed2b38aa8be0917618a"
        );
        assert!(request.url.ends_with("AuthService.LoginBySign.common.kdsvc"));
    }

    #[test]
    fn login_answers_become_sessions_or_errors() {
        let ok = json!({"Message": null, "MessageCode": "CheckPasswordPolicy", "LoginResultType": 1, "KDSVCSessionId": "sid-1", "Context": {"UserName": "apiuser"}});
        let session = session_from_login(&ok, &["ASP.NET_SessionId=abc; path=/; HttpOnly"]).unwrap();
        assert_eq!(session.session_id, "sid-1");
        assert_eq!(session.cookies, [("ASP.NET_SessionId".to_owned(), "abc".to_owned())]);
        let headers = session.headers();
        assert_eq!(headers[0], ("kdservice-sessionid".to_owned(), "sid-1".to_owned()));
        assert_eq!(
            headers[1].1,
            "Theme=standard;kdservice-sessionid=sid-1;ASP.NET_SessionId=abc"
        );
        assert!(!format!("{session:?}").contains("sid-1"));
        let refused = json!({"Message": "用户名或密码错误！", "LoginResultType": 0});
        let err = parse_login(&refused).unwrap_err();
        assert!(err.to_string().contains("用户名或密码错误"), "{err}");
        assert!(matches!(
            parse_login(&json!({"x": 1})),
            Err(RequestError::BadLoginAnswer(_))
        ));
        let from_cookie =
            session_from_login(&json!({"LoginResultType": 1}), &["kdservice-sessionid=c9; path=/"]).unwrap();
        assert_eq!(from_cookie.session_id, "c9");
    }

    #[test]
    fn sessions_ride_along_in_every_mode() {
        let session = Session::from_set_cookies(&["kdservice-sessionid=s2; path=/"]).unwrap();
        let body = operation_body("View", Some("BD_Customer"), json!({"Number": "CUST0001"})).unwrap();
        let request = build(
            &settings(),
            "http://h/k3cloud/",
            "View",
            &body,
            Some(&session),
            at_vector_time(),
        )
        .unwrap();
        assert_eq!(header(&request, "kdservice-sessionid"), Some("s2"));
        assert_eq!(
            header(&request, "Cookie"),
            Some("Theme=standard;kdservice-sessionid=s2")
        );
        assert!(header(&request, "X-Api-Signature").is_some());
        assert!(Session::from_set_cookies(&["other=1"]).is_none());
    }

    #[test]
    fn query_pages_are_capped() {
        let mut settings = settings();
        settings.query_max_limit = Some(2000);
        let mut body = json!({"data": {"FormId": "BD_Customer", "FieldKeys": "FNumber"}});
        set_query_page(&settings, &mut body, 4000, 5000).unwrap();
        assert_eq!(body["data"]["StartRow"], 4000);
        assert_eq!(body["data"]["Limit"], 2000);
        assert!(set_query_page(&settings, &mut json!({}), 0, 1).is_err());
    }

    #[test]
    fn prepare_update_keeps_entry_rows_by_default() {
        let mut model = json!({"FNumber": "CUST0001", "FName": "新名", "FCreateOrgId": {"FNumber": "100"},
                               "FEntity": [{"FEntryID": 7, "FQty": 2}]});
        prepare_update(&mut model, "FCUSTID", "100001", None, false).unwrap();
        assert_eq!(model["Model"]["FCUSTID"], 100001);
        assert_eq!(
            model["NeedUpDateFields"],
            json!(["FNumber", "FName", "FCreateOrgId", "FEntity", "FEntryID", "FQty"])
        );
        assert_eq!(model["IsDeleteEntry"], "false");

        let mut explicit = json!({"Model": {"FName": "x"}, "IsDeleteEntry": "true", "NeedUpDateFields": ["FName"]});
        prepare_update(&mut explicit, "FID", "abc", Some(&["FOther".to_owned()]), false).unwrap();
        assert_eq!(explicit["IsDeleteEntry"], "true", "the scheme's choice wins");
        assert_eq!(explicit["NeedUpDateFields"], json!(["FName"]));
        assert_eq!(explicit["Model"]["FID"], "abc");

        let mut chosen = json!({"Model": {"FName": "x", "FNote": "y"}});
        prepare_update(&mut chosen, "FID", "5", Some(&["FNote".to_owned()]), true).unwrap();
        assert_eq!(chosen["NeedUpDateFields"], json!(["FNote"]));
        assert_eq!(chosen["IsDeleteEntry"], "true");
        assert!(prepare_update(&mut json!({"Model": []}), "FID", "1", None, false).is_err());
    }

    #[test]
    fn batch_updates_set_ids_per_package() {
        let mut data = json!({"Model": [{"FName": "a"}, {"FName": "b", "FShortName": "bb"}]});
        prepare_batch_update(&mut data, "FCUSTID", &[None, Some("100002")], None, false).unwrap();
        assert!(data["Model"][0].get("FCUSTID").is_none());
        assert_eq!(data["Model"][1]["FCUSTID"], 100002);
        assert_eq!(data["NeedUpDateFields"], json!(["FName", "FShortName"]));
        let mut creates = json!({"Model": [{"FName": "a"}]});
        prepare_batch_update(&mut creates, "FID", &[None], None, false).unwrap();
        assert_eq!(creates, json!({"Model": [{"FName": "a"}]}));
        assert!(prepare_batch_update(&mut creates, "FID", &[], None, false).is_err());
        assert_eq!(default_key_field("bd_customer"), "FCUSTID");
        assert_eq!(default_key_field("SAL_SaleOrder"), "FID");
    }
}
