//! What `ferry init` writes for this connector (see [`crate::protocol::scaffold`]).

/// This connector's `ferry init` parts.
pub static SCAFFOLD: crate::protocol::scaffold::Scaffold = crate::protocol::scaffold::Scaffold {
    connection: "erp",
    env: "ERP_STD",
    connection_body: CONNECTION,
    source: crate::protocol::scaffold::SourcePart {
        what: "sales orders of an ERP with the standard interface",
        body: SOURCE,
        code: "<< masterFieldVal.billNo >>",
        name: "<< masterFieldVal.customerName >>",
        note: "ERP order << masterFieldVal.billNo >>",
    },
    target: crate::protocol::scaffold::TargetPart {
        what: "sales orders of an ERP with the standard interface",
        body: TARGET,
    },
};

// The ERP data-sync platform's standard interface (seed 000): a token header.
const CONNECTION: &str = r#"    base_url: "${@ENV@_URL}"           # the ERP's standard interface
    settings:
      token: "${@ENV@_TOKEN}"
"#;

const SOURCE: &str = r#"  object: SaleOrderObj
  # Sales orders modified in each window (times in ms), with their detail rows; the
  # connector pages with offset/limit. CHANGE objAPIName for other objects.
  request:
    api: queryMasterBatch
    body:
      objAPIName: SaleOrderObj
      startTime: "<< window.start | timestamp_ms >>"
      endTime: "<< window.end | timestamp_ms >>"
      includeDetail: true
  incremental: {field: masterFieldVal.lastModifyTime, start: "2024-01-01 00:00:00", window: 30d, lookback: 10m, lag: 1m}
  id: "<< masterFieldVal.id >>"
  name: "<< masterFieldVal.billNo >>"
"#;

const TARGET: &str = r#"  object: SaleOrderObj
  key: "<< billNo >>"
  # One record per call; an update names the record by the id `create` returned.
  create:
    request: {api: create, body: {objAPIName: SaleOrderObj, masterFieldVal: "<< row >>"}}
  update:
    request:
      api: update
      body:
        objAPIName: SaleOrderObj
        masterFieldVal: {id: "<< target_id >>", customerName: "<< row.customerName >>", remark: "<< row.remark >>"}
  fields:                          # CHANGE: the master fields your ERP object expects
    billNo: "@code@"
    customerName: "@name@"
    remark: "@note@"
"#;
