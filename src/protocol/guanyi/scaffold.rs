//! What `ferry init` writes for this connector (see [`crate::protocol::scaffold`]).

/// This connector's `ferry init` parts.
pub static SCAFFOLD: crate::protocol::scaffold::Scaffold = crate::protocol::scaffold::Scaffold {
    connection: "guanyi",
    env: "GUANYI",
    connection_body: CONNECTION,
    source: crate::protocol::scaffold::SourcePart {
        what: "Guanyiyun shops",
        body: SOURCE,
        code: "<< code >>",
        name: "<< name >>",
        note: "Guanyi shop << code >>",
    },
    target: crate::protocol::scaffold::TargetPart {
        what: "Guanyiyun members",
        body: TARGET,
    },
};

// Guanyiyun (reference §1): one RPC URL per tenant login host; credentials from
// 控制面板 → 应用授权; shops have a modification window.
const CONNECTION: &str = r#"    # CHANGE: the API address of your tenant's login host (README: connector `guanyi`).
    base_url: "${@ENV@_URL:-http://v2.api.guanyierp.com/rest/erp_open}"
    settings:                      # ERP 控制面板 → 应用授权 → 云ERP授权
      appkey: "${@ENV@_APPKEY}"
      sessionkey: "${@ENV@_SESSIONKEY}"
      secret: "${@ENV@_SECRET}"
"#;

const SOURCE: &str = r#"  object: shop
  # Shops modified in each window. The connector pages with page_no/page_size and reads the
  # `shops` list. CHANGE for other data: gy.erp.trade.get (orders: start_date/end_date with
  # date_type: 3 for modified), gy.erp.items.get (start_date/end_date).
  request:
    api: gy.erp.shop.get
    body:
      modify_start_date: "<< window.start | datetime >>"
      modify_end_date: "<< window.end | datetime >>"
  incremental: {field: modify_date, start: "2024-01-01 00:00:00", window: 30d, lookback: 10m, lag: 1m}
  id: "<< code >>"
  name: "<< name >>"
"#;

const TARGET: &str = r#"  object: vip
  # One member per call (gy.erp.vip.add); a changed record updates its member by id.
  create:
    request: {api: gy.erp.vip.add, body: "<< row >>"}
  update:
    request: {api: gy.erp.vip.update, body: {id: "<< target_id >>", name: "<< row.name >>"}}
  fields:
    code: "@code@"
    name: "@name@"
    shop_code: "${@ENV@_SHOP_CODE}"      # CHANGE: the shop the members belong to
"#;
