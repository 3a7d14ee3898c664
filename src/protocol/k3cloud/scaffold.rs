//! What `ferry init` writes for this connector (see [`crate::protocol::scaffold`]).

/// This connector's `ferry init` parts.
pub static SCAFFOLD: crate::protocol::scaffold::Scaffold = crate::protocol::scaffold::Scaffold {
    connection: "k3cloud",
    env: "K3CLOUD",
    connection_body: CONNECTION,
    source: crate::protocol::scaffold::SourcePart {
        what: "Kingdee K3Cloud customers",
        body: SOURCE,
        code: "<< FNumber >>",
        name: "<< FName >>",
        note: "K3Cloud customer << FNumber >>",
    },
    target: crate::protocol::scaffold::TargetPart {
        what: "Kingdee K3Cloud customers",
        body: TARGET,
    },
};

// Kingdee K3Cloud (reference §2): signed headers (the default auth) need app_id and
// app_secret next to acct_id and username.
const CONNECTION: &str = r#"    base_url: "${@ENV@_URL}"           # e.g. https://<tenant>.ik3cloud.com/k3cloud/
    settings:                      # 第三方系统登录授权
      acct_id: "${@ENV@_ACCT_ID}"
      username: "${@ENV@_USERNAME}"
      app_id: "${@ENV@_APP_ID}"
      app_secret: "${@ENV@_APP_SECRET}"
"#;

const SOURCE: &str = r#"  object: BD_Customer
  # Customers modified in each window. The connector pages with StartRow/Limit and names
  # each row's cells by FieldKeys. CHANGE: FormId and FieldKeys for other forms.
  request:
    api: ExecuteBillQuery
    body:
      data:
        FormId: BD_Customer
        FieldKeys: FCUSTID,FNumber,FName,FModifyDate
        FilterString: "FModifyDate >= '<< window.start | datetime >>' AND FModifyDate < '<< window.end | datetime >>'"
        OrderString: FCUSTID
  incremental: {field: FModifyDate, start: "2024-01-01 00:00:00", window: 30d, lookback: 10m, lag: 1m}
  id: "<< FNumber >>"
  name: "<< FName >>"
"#;

const TARGET: &str = r#"  object: BD_Customer
  batch: 100
  key: "<< FNumber >>"
  # A create whose answer was lost (a crash, a timeout) is looked up by FNumber before it is
  # sent again, so a customer is never created twice.
  lookup:
    request:
      api: ExecuteBillQuery
      body: {data: {FormId: BD_Customer, FieldKeys: "FCUSTID,FNumber", FilterString: "FNumber IN (<< keys | sql_list >>)"}}
    rows: "$[*]"
    key: "$[1]"
    id: "$[0]"
  create:
    request:
      api: BatchSave
      body: {formid: BD_Customer, data: {Model: "<< rows >>", IsAutoSubmitAndAudit: true}}
  update:
    request:
      api: BatchSave
      body: {formid: BD_Customer, data: {Model: "<< rows >>", IsAutoSubmitAndAudit: true}}
  fields:
    FNumber: "@code@"
    FName: "@name@"
    FCreateOrgId: {FNumber: "100"}   # CHANGE: your organisation's number
    FUseOrgId: {FNumber: "100"}      # CHANGE: likewise
    FDescription: "@note@"
"#;
