//! What `ferry init` writes for this connector (see [`crate::protocol::scaffold`]).

/// This connector's `ferry init` parts.
pub static SCAFFOLD: crate::protocol::scaffold::Scaffold = crate::protocol::scaffold::Scaffold {
    connection: "jdy",
    env: "JDY",
    connection_body: CONNECTION,
    source: crate::protocol::scaffold::SourcePart {
        what: "Kingdee Xingchen purchase inbound bills",
        body: SOURCE,
        code: "<< bill_no >>",
        name: "<< supplier_name >>",
        note: "Xingchen bill << bill_no >>",
    },
    target: crate::protocol::scaffold::TargetPart {
        what: "Kingdee Xingchen purchase inbound bills",
        body: TARGET,
    },
};

// Kingdee Xingchen (reference §3): v2 needs client_id, client_secret and the tenant's
// outer_instance_id; lists are GET with a modify-time window, saves POST one bill.
const CONNECTION: &str = r#"    base_url: "${@ENV@_URL:-https://api.kingdee.com}"
    settings:                      # the app in 开发者后台, and the tenant's outerInstanceId
      client_id: "${@ENV@_CLIENT_ID}"
      client_secret: "${@ENV@_CLIENT_SECRET}"
      outer_instance_id: "${@ENV@_OUTER_INSTANCE_ID}"
"#;

const SOURCE: &str = r#"  object: pur_inbound
  # Purchase inbound bills modified in each window (list rows are summaries; the connector
  # pages by 100 and checks the rows against `count`). For the bills' material_entity
  # rows add: detail: {request: {api: scm/pur_inbound_detail, body: {id: "<< id >>"}}}
  request:
    api: scm/pur_inbound
    body:
      modify_start_time: "<< window.start | datetime >>"
      modify_end_time: "<< window.end | datetime >>"
  incremental: {field: modify_time, start: "2024-01-01 00:00:00", window: 30d, lookback: 10m, lag: 1m}
  id: "<< bill_no >>"
  name: "<< supplier_name >>"
"#;

const TARGET: &str = r#"  object: pur_inbound
  key: "<< bill_no >>"
  # One purchase inbound bill per call (POST scm/pur_inbound); an update sends its id.
  create:
    request: {api: scm/pur_inbound, body: "<< row >>"}
  update:
    request:
      api: scm/pur_inbound
      body: {id: "<< target_id >>", bill_no: "<< row.bill_no >>", remark: "<< row.remark >>"}
  fields:
    bill_no: "@code@"
    remark: "@note@"
    supplier_number: "${@ENV@_SUPPLIER_NUMBER}"   # CHANGE: the supplier, from the record
    # CHANGE: the bill's lines: a JSONPath to the source record's lines and their fields.
    # A bill Xingchen refuses (no lines, an unknown material) lands in the failure ledger.
    material_entity:
      for_each: $.lines[*]
      fields:
        material_number: "<< sku >>"
        qty: "<< qty >>"
"#;
