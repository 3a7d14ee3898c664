//! The table of built-in vendor connectors: one enum, one match per capability, each arm
//! calling that vendor folder's pure functions. Adding a vendor means adding a variant
//! here and in `scheme::raw::RawConnection`; the `every_vendor_is_wired` test walks the table.

use super::types::{RowOutcome, Verdict, WireRequest};
use super::{guanyi, k3cloud};
use crate::error::{Error, ErrorKind};
use crate::paginate::PageRequest;
use crate::scheme::raw::RawConnection;
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
}

/// A logged-in session, for vendors that have one.
#[derive(Debug, Clone)]
pub enum Session {
    K3Cloud(k3cloud::request::Session),
}

/// Paging a vendor applies to an api when the scheme does not describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagingDefaults {
    pub style: &'static str,
    pub start: i64,
    pub size: u64,
    pub max_size: Option<u64>,
    pub total_path: Option<&'static str>,
    pub number_param: &'static str,
    pub size_param: &'static str,
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
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Vendor::Http => super::http::NAME,
            Vendor::Guanyi(_) => guanyi::NAME,
            Vendor::K3Cloud(_) => k3cloud::NAME,
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
        }
    }

    /// Builds the signed request for `api` with business parameters `params`.
    pub fn build(
        &self,
        base_url: &str,
        api: &str,
        params: &Value,
        session: Option<&Session>,
        now: DateTime<Utc>,
    ) -> Result<WireRequest, Error> {
        match self {
            Vendor::Http => Err(Error::config("the http connector builds requests from templates")),
            Vendor::Guanyi(s) => {
                guanyi::request::build(s, base_url, api, params).map_err(|e| setting_error(guanyi::NAME, e))
            }
            Vendor::K3Cloud(s) => {
                let session = session.map(|Session::K3Cloud(k)| k);
                k3cloud::request::build(s, base_url, api, params, session, now)
                    .map_err(|e| setting_error(k3cloud::NAME, e))
            }
        }
    }

    /// The login request, when this vendor (in its configured mode) needs a session.
    pub fn login_request(&self, base_url: &str, now: DateTime<Utc>) -> Result<Option<WireRequest>, Error> {
        match self {
            Vendor::Http | Vendor::Guanyi(_) => Ok(None),
            Vendor::K3Cloud(s) => {
                k3cloud::request::login_request(s, base_url, now).map_err(|e| setting_error(k3cloud::NAME, e))
            }
        }
    }

    /// Reads the session out of a login answer.
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

    /// Judges an answer by the vendor's envelope.
    pub fn classify(&self, status: u16, body: &Value) -> Verdict {
        match self {
            Vendor::Http => Verdict::Ok,
            Vendor::Guanyi(s) => guanyi::envelope::classify_with(&s.error_codes(), status, body),
            Vendor::K3Cloud(_) => k3cloud::envelope::classify(status, body),
        }
    }

    /// The default JSONPath of an api's rows.
    pub fn records_path(&self, api: &str) -> Option<&'static str> {
        match self {
            Vendor::Http => None,
            Vendor::Guanyi(_) => guanyi::envelope::records_path(api),
            Vendor::K3Cloud(_) => k3cloud::envelope::records_path(api),
        }
    }

    /// The default paging of an api.
    pub fn paging(&self, api: &str) -> Option<PagingDefaults> {
        match self {
            Vendor::Http => None,
            Vendor::Guanyi(s) => paging_from!(s.paging(api)),
            Vendor::K3Cloud(s) => paging_from!(k3cloud::envelope::paging_for(s, api)),
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
        let position = if paging.style == "offset" {
            page.offset
        } else {
            page.number
        };
        let size = page.size.unwrap_or(paging.size);
        match self {
            Vendor::K3Cloud(s) => k3cloud::request::set_query_page(s, params, position.max(0) as u64, size)
                .map_err(|e| setting_error(k3cloud::NAME, e)),
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
    /// NeedUpDateFields, IsDeleteEntry=false).
    pub fn prepare_write(
        &self,
        api: &str,
        params: &mut Value,
        target_ids: &[Option<&str>],
        is_update: bool,
    ) -> Result<(), Error> {
        match self {
            Vendor::K3Cloud(s) if is_update => {
                let form = params
                    .get("formid")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let key = k3cloud::request::default_key_field(&form);
                let Some(data) = params.get_mut("data") else {
                    return Err(Error::config(format!("{}: {api} needs a `data` object", k3cloud::NAME)));
                };
                if api == "BatchSave" {
                    k3cloud::request::prepare_batch_update(data, key, target_ids, None, s.update_is_delete_entry())
                } else {
                    let id = target_ids.first().copied().flatten().unwrap_or_default();
                    k3cloud::request::prepare_update(data, key, id, None, s.update_is_delete_entry())
                }
                .map_err(|e| setting_error(k3cloud::NAME, e))
            }
            _ => Ok(()),
        }
    }

    /// Per-row outcomes of a batch write, when the vendor reports them.
    pub fn row_outcomes(&self, api: &str, body: &Value, rows: usize) -> Option<Vec<RowOutcome>> {
        match self {
            Vendor::Http => None,
            Vendor::Guanyi(_) => guanyi::envelope::row_outcomes(api, body, rows),
            Vendor::K3Cloud(_) => k3cloud::envelope::row_outcomes(api, body, rows),
        }
    }

    /// The target id of a one-row write.
    pub fn written_id(&self, api: &str, body: &Value) -> Option<String> {
        match self {
            Vendor::Http => None,
            Vendor::Guanyi(_) => guanyi::envelope::written_id(api, body),
            Vendor::K3Cloud(_) => k3cloud::envelope::written_id(api, body),
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
    use crate::scheme::raw::RawConnection;

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
