//! What `ferry init` writes for this connector (see [`crate::protocol::scaffold`]).

/// This connector's `ferry init` parts.
pub static SCAFFOLD: crate::protocol::scaffold::Scaffold = crate::protocol::scaffold::Scaffold {
    connection: "jackyun",
    env: "JACKYUN",
    connection_body: CONNECTION,
    source: crate::protocol::scaffold::SourcePart {
        what: "Jackyun customers",
        body: SOURCE,
        code: "<< customerCode >>",
        name: "<< nickname >>",
        note: "Jackyun customer << customerCode >>",
    },
    target: crate::protocol::scaffold::TargetPart {
        what: "Jackyun customers",
        body: TARGET,
    },
};

// Jackyun (reference §4): appkey and secret; list windows of at most a day.
const CONNECTION: &str = r#"    base_url: "${@ENV@_URL:-https://open.jackyun.com}"
    settings:
      appkey: "${@ENV@_APPKEY}"
      secret: "${@ENV@_SECRET}"
"#;

const SOURCE: &str = r#"  object: crm.customer
  # Customers modified in each window; the connector pages with pageIndex/pageSize and stops
  # on a short page. Some Jackyun lists refuse windows longer than a day, hence `window: 1d`.
  # CHANGE for other data: erp.storage.goodslist (startDateModifiedSku/endDateModifiedSku).
  request:
    api: crm.customer.list
    body:
      gmtModifiedBegin: "<< window.start | datetime >>"
      gmtModifiedEnd: "<< window.end | datetime >>"
  incremental: {field: gmtModified, start: "2024-01-01 00:00:00", window: 1d, lookback: 10m, lag: 1m}
  id: "<< customerCode >>"
  name: "<< nickname >>"
"#;

const TARGET: &str = r#"  object: crm.customer
  key: "<< customerCode >>"
  # One customer per call (crm.customer.add). Jackyun has no customer update here, so a
  # changed record that is already mapped is counted as skipped.
  create:
    request: {api: crm.customer.add, body: "<< row >>"}
  fields:
    customerCode: "@code@"
    nickname: "@name@"
    specialReminding: "@note@"
"#;
