//! The table of built-in vendor connectors: one enum, one match per capability, each arm
//! calling that vendor folder's pure functions. Adding a vendor means adding a variant
//! here and in `scheme::raw::RawConnection`; the `every_vendor_is_wired` test walks the table.

use super::types::{DetailList, PagingStyle, RowOutcome, Verdict, WireRequest};
use super::{erp_standard, fxiaoke, guanyi, jackyun, jdy, k3cloud, simply};
use crate::error::{Error, ErrorKind};
use crate::paginate::PageRequest;
use crate::scheme::raw::{RawConnection, StopRule};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::sync::Arc;

/// A connection's protocol, with its vendor settings.
#[derive(Debug, Clone)]
pub enum Vendor {
    /// The generic connector: requests come from the scheme's templates.
    Http,
    Guanyi(Arc<guanyi::Settings>),
    K3Cloud(Arc<k3cloud::Settings>),
    Jdy(Arc<jdy::Settings>),
    Jackyun(Arc<jackyun::Settings>),
    Simply(Arc<simply::Settings>),
    Fxiaoke(Arc<fxiaoke::Settings>),
    ErpStandard(Arc<erp_standard::Settings>),
}

/// A logged-in session or token, for vendors that have one.
#[derive(Debug, Clone)]
pub enum Session {
    K3Cloud(k3cloud::request::Session),
    Jdy(jdy::request::Session),
    Simply(simply::request::Session),
    Fxiaoke(fxiaoke::sign::Token),
}

/// Paging a vendor applies to an api when the scheme does not describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagingDefaults {
    pub style: PagingStyle,
    pub start: i64,
    pub size: u64,
    pub max_size: Option<u64>,
    pub total_path: Option<&'static str>,
    pub number_param: &'static str,
    pub size_param: &'static str,
    /// When a numbered read stops; `None`: once `total_path`'s count has arrived when
    /// there is one, else at a short page. (Cursor styles stop on their `has_more` flag.)
    pub stop: Option<StopRule>,
}

macro_rules! paging_from {
    ($paging:expr) => {
        $paging.map(|p| PagingDefaults {
            style: p.style,
            start: p.start,
            size: p.size,
            max_size: p.max_size,
            total_path: p.total_path,
            number_param: p.number_param,
            size_param: p.size_param,
            stop: None,
        })
    };
}

fn setting_error(vendor: &str, e: impl std::fmt::Display) -> Error {
    Error::config(format!("{vendor}: {e}"))
}

impl Vendor {
    pub fn from_raw(raw: &RawConnection) -> Vendor {
        match raw {
            RawConnection::Http(_) => Vendor::Http,
            RawConnection::Guanyi(c) => Vendor::Guanyi(Arc::new(c.settings.clone())),
            RawConnection::K3Cloud(c) => Vendor::K3Cloud(Arc::new(c.settings.clone())),
            RawConnection::Jdy(c) => Vendor::Jdy(Arc::new(c.settings.clone())),
            RawConnection::Jackyun(c) => Vendor::Jackyun(Arc::new(c.settings.clone())),
            RawConnection::Simply(c) => Vendor::Simply(Arc::new(c.settings.clone())),
            RawConnection::Fxiaoke(c) => Vendor::Fxiaoke(Arc::new(c.settings.clone())),
            RawConnection::ErpStandard(c) => Vendor::ErpStandard(Arc::new(c.settings.clone())),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Vendor::Http => super::http::NAME,
            Vendor::Guanyi(_) => guanyi::NAME,
            Vendor::K3Cloud(_) => k3cloud::NAME,
            Vendor::Jdy(_) => jdy::NAME,
            Vendor::Jackyun(_) => jackyun::NAME,
            Vendor::Simply(_) => simply::NAME,
            Vendor::Fxiaoke(_) => fxiaoke::NAME,
            Vendor::ErpStandard(_) => erp_standard::NAME,
        }
    }

    pub fn is_http(&self) -> bool {
        matches!(self, Vendor::Http)
    }

    /// Names of the settings fields that hold credentials.
    pub fn secret_fields(&self) -> &'static [&'static str] {
        match self {
            Vendor::Http => &[],
            Vendor::Guanyi(_) => guanyi::SECRET_FIELDS,
            Vendor::K3Cloud(_) => k3cloud::SECRET_FIELDS,
            Vendor::Jdy(_) => jdy::SECRET_FIELDS,
            Vendor::Jackyun(_) => jackyun::SECRET_FIELDS,
            Vendor::Simply(_) => simply::SECRET_FIELDS,
            Vendor::Fxiaoke(_) => fxiaoke::SECRET_FIELDS,
            Vendor::ErpStandard(_) => erp_standard::SECRET_FIELDS,
        }
    }

    /// Builds the signed request for `api` with business parameters `params`; `write`
    /// tells vendors whose reads and writes share a path (jdy) which one this is.
    pub fn build(
        &self,
        base_url: &str,
        api: &str,
        params: &Value,
        session: Option<&Session>,
        now: DateTime<Utc>,
        write: bool,
    ) -> Result<WireRequest, Error> {
        let nonce = u64::from(rand::random::<u32>()) + 1;
        match self {
            Vendor::Http => Err(Error::config("the http connector builds requests from templates")),
            Vendor::Guanyi(s) => {
                guanyi::request::build(s, base_url, api, params).map_err(|e| setting_error(guanyi::NAME, e))
            }
            Vendor::K3Cloud(s) => {
                let session = match session {
                    Some(Session::K3Cloud(k)) => Some(k),
                    _ => None,
                };
                k3cloud::request::build(s, base_url, api, params, session, now)
                    .map_err(|e| setting_error(k3cloud::NAME, e))
            }
            Vendor::Jdy(s) => {
                let session = match session {
                    Some(Session::Jdy(j)) => Some(j),
                    _ => None,
                };
                let built = if write {
                    jdy::request::build_save(s, base_url, api, params, session, now, nonce)
                } else {
                    jdy::request::build(s, base_url, api, params, session, now, nonce)
                };
                built.map_err(|e| setting_error(jdy::NAME, e))
            }
            Vendor::Jackyun(s) => {
                jackyun::request::build(s, base_url, api, params, now).map_err(|e| setting_error(jackyun::NAME, e))
            }
            Vendor::Simply(s) => {
                let session = match session {
                    Some(Session::Simply(v)) => Some(v),
                    _ => None,
                };
                simply::request::build(s, base_url, api, params, session).map_err(|e| setting_error(simply::NAME, e))
            }
            Vendor::Fxiaoke(s) => match session {
                Some(Session::Fxiaoke(token)) => {
                    fxiaoke::request::build(s, base_url, api, params, token, rand::random::<u128>())
                        .map_err(|e| setting_error(fxiaoke::NAME, e))
                }
                _ => Err(Error::new(ErrorKind::SessionExpired, "fxiaoke: no corpAccessToken yet")),
            },
            Vendor::ErpStandard(s) => {
                erp_standard::request::build(s, base_url, api, params).map_err(|e| setting_error(erp_standard::NAME, e))
            }
        }
    }

    /// The login request of vendors that log in with one call (K3Cloud's legacy modes).
    /// Multi-step logins (jdy, Simply CRM, Fxiaoke) are driven by the engine.
    pub fn login_request(&self, base_url: &str, now: DateTime<Utc>) -> Result<Option<WireRequest>, Error> {
        match self {
            Vendor::K3Cloud(s) => {
                k3cloud::request::login_request(s, base_url, now).map_err(|e| setting_error(k3cloud::NAME, e))
            }
            _ => Ok(None),
        }
    }

    /// Reads the session out of a (single-step) login answer.
    pub fn session_from_login(&self, body: &Value, set_cookies: &[&str]) -> Result<Session, Error> {
        match self {
            Vendor::K3Cloud(_) => k3cloud::request::session_from_login(body, set_cookies)
                .map(Session::K3Cloud)
                .map_err(|e| {
                    Error::new(
                        ErrorKind::SessionExpired,
                        format!("{}: login failed: {e}", k3cloud::NAME),
                    )
                }),
            _ => Err(Error::config(format!("{} has no login", self.name()))),
        }
    }

    /// The zone the vendor's server keeps its times in, where the vendor fixes one
    /// (`None`: the scheme's zone). Vendor settings that name a zone win.
    pub fn server_zone(&self) -> Result<Option<chrono_tz::Tz>, String> {
        let named = |name: &str| {
            name.parse::<chrono_tz::Tz>()
                .map(Some)
                .map_err(|_| format!("`{name}` is not an IANA time zone; use e.g. UTC or Asia/Shanghai"))
        };
        match self {
            Vendor::Http | Vendor::ErpStandard(_) => Ok(None),
            // China-local `yyyy-MM-dd HH:mm:ss` (reference §1 "Incremental windows") [INF: the zone].
            Vendor::Guanyi(_) => Ok(Some(chrono_tz::Asia::Shanghai)),
            // Server-local FModifyDate (reference §2 "ExecuteBillQuery"); China servers [INF].
            Vendor::K3Cloud(_) => Ok(Some(chrono_tz::Asia::Shanghai)),
            Vendor::Jdy(s) => s.time_zone().map(Some),
            Vendor::Jackyun(s) => named(s.timezone()),
            // The database zone, UTC in a default install (reference §5 "Sync").
            Vendor::Simply(s) => named(s.server_timezone()),
            // Times are epoch milliseconds (reference §6); text is China-local [INF].
            Vendor::Fxiaoke(_) => Ok(Some(chrono_tz::Asia::Shanghai)),
        }
    }

    /// Judges an answer by the vendor's envelope.
    pub fn classify(&self, status: u16, body: &Value) -> Verdict {
        match self {
            Vendor::Http => Verdict::Ok,
            Vendor::Guanyi(s) => guanyi::envelope::classify_with(&s.error_codes(), status, body),
            Vendor::K3Cloud(_) => k3cloud::envelope::classify(status, body),
            Vendor::Jdy(s) => jdy::envelope::classify_with(s, status, body),
            Vendor::Jackyun(s) => jackyun::envelope::classify_with(&s.rules(), status, body),
            Vendor::Simply(s) => simply::envelope::classify_with(&s.rules(), status, body),
            Vendor::Fxiaoke(_) => fxiaoke::envelope::classify(status, body),
            Vendor::ErpStandard(s) => erp_standard::envelope::classify_with(s, status, body),
        }
    }

    /// The default JSONPath of an api's rows.
    pub fn records_path(&self, api: &str) -> Option<&'static str> {
        match self {
            Vendor::Http => None,
            Vendor::Guanyi(_) => guanyi::envelope::records_path(api),
            Vendor::K3Cloud(_) => k3cloud::envelope::records_path(api),
            Vendor::Jdy(_) => jdy::envelope::records_path(api),
            Vendor::Jackyun(_) => jackyun::envelope::records_path(api),
            Vendor::Simply(_) => simply::envelope::records_path(api),
            Vendor::Fxiaoke(_) => fxiaoke::envelope::records_path(api),
            Vendor::ErpStandard(_) => erp_standard::envelope::records_path(api),
        }
    }

    /// The default paging of an api.
    pub fn paging(&self, api: &str) -> Option<PagingDefaults> {
        match self {
            Vendor::Http => None,
            Vendor::Guanyi(s) => paging_from!(s.paging(api)),
            Vendor::K3Cloud(s) => paging_from!(k3cloud::envelope::paging_for(s, api)),
            Vendor::Jdy(_) => paging_from!(jdy::envelope::default_paging(api)),
            Vendor::Jackyun(s) => paging_from!(s.paging(api)),
            Vendor::Simply(s) => paging_from!(s.paging(api)).map(|mut paging| {
                // Rows the user may not see are dropped from a page, so a short page comes
                // mid-way: only an empty page ends a query (reference §5 "Query").
                if paging.style == PagingStyle::Offset {
                    paging.stop = Some(StopRule::EmptyPage);
                }
                paging
            }),
            Vendor::Fxiaoke(_) => paging_from!(fxiaoke::envelope::default_paging(api)),
            Vendor::ErpStandard(_) => paging_from!(erp_standard::envelope::default_paging(api)),
        }
    }

    /// The default JSONPath of the ids of records an api reports deleted (Simply CRM's
    /// `sync`); `None` when the api reports no deletions.
    pub fn deleted_path(&self, api: &str) -> Option<&'static str> {
        match self {
            Vendor::Simply(_) => simply::envelope::deleted_path(api),
            _ => None,
        }
    }

    /// Checks a page's answer against the call that got it, beyond what the pager can
    /// see: Simply CRM's `sync` must move its cursor past the `modifiedTime` it was sent.
    /// The error says why reading must stop.
    pub fn check_page(&self, api: &str, params: &Value, body: &Value) -> Result<(), String> {
        match self {
            Vendor::Simply(_) if api.eq_ignore_ascii_case("sync") => {
                simply::envelope::check_sync_page(params, body).map_err(|e| format!("{}: {e}", simply::NAME))
            }
            _ => Ok(()),
        }
    }

    /// Puts the page into the business parameters, the way this vendor expects it.
    pub fn apply_page(
        &self,
        api: &str,
        params: &mut Value,
        page: &PageRequest,
        paging: &PagingDefaults,
    ) -> Result<(), Error> {
        let position = match paging.style {
            PagingStyle::Offset => page.offset,
            PagingStyle::PageNumber => page.number,
            PagingStyle::Cursor { .. } => return self.apply_cursor(api, params, page, paging),
        };
        let size = page.size.unwrap_or(paging.size);
        match self {
            Vendor::K3Cloud(s) => k3cloud::request::set_query_page(s, params, position.max(0) as u64, size)
                .map_err(|e| setting_error(k3cloud::NAME, e)),
            Vendor::Jackyun(_) => {
                *params = jackyun::request::with_page(params, position.max(0) as u64, size)
                    .map_err(|e| setting_error(jackyun::NAME, e))?;
                Ok(())
            }
            Vendor::Fxiaoke(_) => {
                fxiaoke::request::set_query_page(params, position, size).map_err(|e| setting_error(fxiaoke::NAME, e))
            }
            Vendor::Simply(_) if api.eq_ignore_ascii_case("query") => {
                let vtql = params
                    .get("query")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let paged = simply::request::query_page(&vtql, position.max(0) as u64, size)
                    .map_err(|e| setting_error(simply::NAME, e))?;
                if let Some(map) = params.as_object_mut() {
                    map.insert("query".into(), Value::String(paged));
                }
                Ok(())
            }
            _ => {
                let Some(map) = params.as_object_mut() else {
                    return Err(Error::config(format!(
                        "{}: the parameters of {api} must be a mapping",
                        self.name()
                    )));
                };
                map.insert(paging.number_param.to_string(), Value::from(position));
                map.insert(paging.size_param.to_string(), Value::from(size));
                Ok(())
            }
        }
    }

    /// Puts a cursor page into the parameters. The first page keeps what the scheme's
    /// template gave (e.g. `sync`'s `modifiedTime` from the window); each later one sends
    /// the cursor the previous answer named.
    fn apply_cursor(
        &self,
        api: &str,
        params: &mut Value,
        page: &PageRequest,
        paging: &PagingDefaults,
    ) -> Result<(), Error> {
        let Some(cursor) = &page.cursor else {
            return Ok(());
        };
        match self {
            Vendor::Simply(_) if api.eq_ignore_ascii_case("sync") => {
                simply::request::continue_sync(params, cursor).map_err(|e| setting_error(simply::NAME, e))
            }
            _ => {
                let Some(map) = params.as_object_mut() else {
                    return Err(Error::config(format!(
                        "{}: the parameters of {api} must be a mapping",
                        self.name()
                    )));
                };
                map.insert(paging.number_param.to_string(), Value::String(cursor.clone()));
                Ok(())
            }
        }
    }

    /// Turns an api's raw rows into records (e.g. K3Cloud's arrays named by FieldKeys).
    pub fn shape_records(&self, api: &str, params: &Value, rows: Vec<Value>) -> Result<Vec<Value>, Error> {
        match self {
            Vendor::K3Cloud(_) if api == "ExecuteBillQuery" => {
                let keys = params
                    .pointer("/data/FieldKeys")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                k3cloud::envelope::name_rows(keys, &Value::Array(rows)).map_err(Error::decode)
            }
            _ => Ok(rows),
        }
    }

    /// Prepares a write's parameters: for updates, puts the target ids in (K3Cloud FID,
    /// NeedUpDateFields, IsDeleteEntry=false); for creates and updates with detail `lists`,
    /// asks for their row ids where the vendor must be asked (K3Cloud NeedReturnFields).
    pub fn prepare_write(
        &self,
        api: &str,
        params: &mut Value,
        target_ids: &[Option<&str>],
        is_update: bool,
        lists: &[DetailList],
    ) -> Result<(), Error> {
        match self {
            Vendor::K3Cloud(s) => {
                let form = params
                    .get("formid")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let key = k3cloud::request::default_key_field(&form);
                let Some(data) = params.get_mut("data") else {
                    if is_update {
                        return Err(Error::config(format!("{}: {api} needs a `data` object", k3cloud::NAME)));
                    }
                    return Ok(());
                };
                if is_update {
                    if api == "BatchSave" {
                        k3cloud::request::prepare_batch_update(data, key, target_ids, None, s.update_is_delete_entry())
                    } else {
                        let id = target_ids.first().copied().flatten().unwrap_or_default();
                        k3cloud::request::prepare_update(data, key, id, None, s.update_is_delete_entry())
                    }
                    .map_err(|e| setting_error(k3cloud::NAME, e))?;
                }
                if matches!(api, "Save" | "BatchSave") {
                    k3cloud::request::ask_for_detail_ids(data, key, lists)
                        .map_err(|e| setting_error(k3cloud::NAME, e))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Puts the target's ids of detail rows from a write answer on the written rows
    /// (`details` of [`RowOutcome::Written`]), for vendors whose answers carry them.
    pub fn attach_detail_ids(
        &self,
        api: &str,
        params: &Value,
        body: &Value,
        lists: &[DetailList],
        outcomes: &mut [RowOutcome],
    ) {
        match self {
            Vendor::K3Cloud(_) if matches!(api, "Save" | "BatchSave") => {
                let form = params.get("formid").and_then(Value::as_str).unwrap_or_default();
                let key = k3cloud::request::default_key_field(form);
                k3cloud::envelope::attach_detail_ids(body, key, lists, outcomes);
            }
            Vendor::ErpStandard(_) => erp_standard::envelope::attach_detail_ids(api, body, lists, outcomes),
            _ => {}
        }
    }

    /// How an update through `api` deals with rows the vendor locks (K3Cloud's submitted
    /// and audited rows); `None` for vendors and operations without locks.
    pub fn relock(&self, api: &str, params: &Value) -> Option<k3cloud::locks::Relock> {
        match self {
            Vendor::K3Cloud(s) => k3cloud::locks::relock_for(s.locked_rows(), api, params),
            _ => None,
        }
    }

    /// Whether write answers name the target's ids of detail rows (see
    /// [`Vendor::attach_detail_ids`]), so a `for_each` may declare `target_id`.
    pub fn reports_detail_ids(&self) -> bool {
        matches!(self, Vendor::K3Cloud(_) | Vendor::ErpStandard(_))
    }

    /// Per-row outcomes of a batch write, when the vendor reports them.
    pub fn row_outcomes(&self, api: &str, body: &Value, rows: usize) -> Option<Vec<RowOutcome>> {
        match self {
            Vendor::Http => None,
            Vendor::Guanyi(_) => guanyi::envelope::row_outcomes(api, body, rows),
            Vendor::K3Cloud(_) => k3cloud::envelope::row_outcomes(api, body, rows),
            Vendor::Jdy(_) => jdy::envelope::row_outcomes(api, body, rows),
            Vendor::Jackyun(_) => jackyun::envelope::row_outcomes(api, body, rows),
            Vendor::Simply(_) => simply::envelope::row_outcomes(api, body, rows),
            Vendor::Fxiaoke(_) => fxiaoke::envelope::row_outcomes(api, body, rows),
            Vendor::ErpStandard(_) => erp_standard::envelope::row_outcomes(api, body, rows),
        }
    }

    /// The target id of a one-row write.
    pub fn written_id(&self, api: &str, body: &Value) -> Option<String> {
        match self {
            Vendor::Http => None,
            Vendor::Guanyi(_) => guanyi::envelope::written_id(api, body),
            Vendor::K3Cloud(_) => k3cloud::envelope::written_id(api, body),
            Vendor::Jdy(_) => jdy::envelope::written_id(api, body),
            Vendor::Jackyun(_) => jackyun::envelope::written_id(api, body),
            Vendor::Simply(_) => simply::envelope::written_id(api, body),
            Vendor::Fxiaoke(_) => fxiaoke::envelope::written_id(api, body),
            Vendor::ErpStandard(_) => erp_standard::envelope::written_id(api, body),
        }
    }
}

/// Turns a verdict into an error the engine understands (`Ok` → `None`).
pub fn verdict_error(vendor: &Vendor, api: &str, verdict: Verdict) -> Option<Error> {
    let name = vendor.name();
    match verdict {
        Verdict::Ok => None,
        Verdict::Throttled(m) => Some(Error::new(
            ErrorKind::Throttled,
            format!("{name} {api}: throttled: {m}"),
        )),
        Verdict::SessionExpired(m) => Some(Error::new(
            ErrorKind::SessionExpired,
            format!("{name} {api}: session expired: {m}"),
        )),
        Verdict::Failed { code, message } => Some(Error::envelope(format!("{name} {api} failed ({code}): {message}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::raw::RawConnection;

    fn simply() -> Vendor {
        Vendor::Simply(Arc::new(simply::Settings::new("admin", "k")))
    }

    fn page(index: u64, cursor: Option<&str>) -> PageRequest {
        PageRequest {
            index,
            number: index as i64 + 1,
            offset: index as i64 * 100,
            size: None,
            cursor: cursor.map(str::to_string),
            next_url: None,
        }
    }

    #[test]
    fn simply_query_pages_by_offset_until_empty_and_sync_by_its_cursor() {
        let query = simply().paging("query").unwrap();
        assert_eq!(
            (query.style, query.stop),
            (PagingStyle::Offset, Some(StopRule::EmptyPage))
        );
        let sync = simply().paging("sync").unwrap();
        assert!(matches!(sync.style, PagingStyle::Cursor { .. }), "{sync:?}");
        assert_eq!(simply().deleted_path("sync"), Some("$.result.deleted[*]"));

        let mut params = serde_json::json!({"modifiedTime": 1709280000, "elementType": "Accounts"});
        simply().apply_page("sync", &mut params, &page(0, None), &sync).unwrap();
        assert_eq!(
            params["modifiedTime"], 1709280000,
            "the first page keeps the template's value"
        );
        simply()
            .apply_page("sync", &mut params, &page(1, Some("1709280600")), &sync)
            .unwrap();
        assert_eq!(params["modifiedTime"], 1709280600);

        let stalled = serde_json::json!({"success": true, "result": {"updated": [], "deleted": ["11x1"], "lastModifiedTime": 1709280600, "more": true}});
        let message = simply().check_page("sync", &params, &stalled).unwrap_err();
        assert!(
            message.starts_with("simply-crm: ") && message.contains("did not advance"),
            "{message}"
        );
        assert!(simply().check_page("query", &params, &stalled).is_ok());
    }

    #[test]
    fn every_listed_connector_is_a_scheme_variant() {
        for (name, about) in super::super::CONNECTORS {
            assert!(!about.is_empty());
            let probe = serde_json::json!({"connector": name, "base_url": "http://127.0.0.1:1"});
            let error = serde_json::from_value::<RawConnection>(probe)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                !error.contains("unknown variant"),
                "{name} is listed but not a connector variant: {error}"
            );
        }
    }
}
