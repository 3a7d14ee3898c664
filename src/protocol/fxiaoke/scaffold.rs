//! What `ferry init` writes for this connector (see [`crate::protocol::scaffold`]).

/// This connector's `ferry init` parts.
pub static SCAFFOLD: crate::protocol::scaffold::Scaffold = crate::protocol::scaffold::Scaffold {
    connection: "fxiaoke",
    env: "FXIAOKE",
    connection_body: CONNECTION,
    source: crate::protocol::scaffold::SourcePart {
        what: "Fxiaoke CRM accounts",
        body: SOURCE,
        code: "<< account_no >>",
        name: "<< name >>",
        note: "Fxiaoke account << account_no >>",
    },
    target: crate::protocol::scaffold::TargetPart {
        what: "the Fxiaoke ERP integration platform (data push)",
        body: TARGET,
    },
};

// Fxiaoke (reference §6): the custom app's credentials, the permanent code and the
// operator's openUserId (a CRM administrator).
const CONNECTION: &str = r#"    base_url: "${@ENV@_URL:-https://open.fxiaoke.com}"
    settings:
      app_id: "${@ENV@_APP_ID}"
      app_secret: "${@ENV@_APP_SECRET}"
      permanent_code: "${@ENV@_PERMANENT_CODE}"
      current_open_user_id: "${@ENV@_OPEN_USER_ID}"     # a CRM administrator (FSUID_…)
"#;

const SOURCE: &str = r#"  object: AccountObj
  # CRM accounts modified in each window (times are milliseconds); the connector pages with
  # offset/limit (100 a page). Fxiaoke stops offsets at 10000, so keep windows small
  # enough to hold fewer records than that. CHANGE dataObjectApiName for other objects.
  request:
    api: /cgi/crm/v2/data/query
    body:                          # the connector sends it as the call's `data`
      dataObjectApiName: AccountObj
      search_query_info:
        filters:
          - {field_name: last_modified_time, operator: GTE, field_values: ["<< window.start | timestamp_ms >>"]}
          - {field_name: last_modified_time, operator: LT, field_values: ["<< window.end | timestamp_ms >>"]}
        orders: [{fieldName: last_modified_time, isAsc: true}]
  incremental: {field: last_modified_time, start: "2024-01-01 00:00:00", window: 1d, lookback: 10m, lag: 1m}
  id: "<< _id >>"
  name: "<< name >>"
"#;

const TARGET: &str = r#"  object: erpCustomerObj
  key: "<< id >>"                  # the push answer has no id; the pushed `id` names the record
  create:
    request: {api: /cgi/crm/erp/syncdata/objdata/push, body: "<< row >>"}
  update:
    request: {api: /cgi/crm/erp/syncdata/objdata/push, body: "<< row >>"}
  fields:
    objAPIName: erpCustomerObj                 # CHANGE: the ERP object set up on the platform
    dataCenterId: "${@ENV@_DATA_CENTER_ID}"    # CRM admin → 连接器 → 连接对象 → push API
    id: "@code@"
    directSync: false
    masterFieldVal:
      id: "@code@"
      name: "@name@"
      remark: "@note@"
"#;
