//! What `ferry init` writes for this connector (see [`crate::protocol::scaffold`]).

/// This connector's `ferry init` parts.
pub static SCAFFOLD: crate::protocol::scaffold::Scaffold = crate::protocol::scaffold::Scaffold {
    connection: "shop",
    env: "SHOP",
    connection_body: CONNECTION,
    source: crate::protocol::scaffold::SourcePart {
        what: "shop orders over HTTP",
        body: SOURCE,
        code: "<< order_no >>",
        name: "<< customer_name >>",
        note: "Shop order << order_no >>",
    },
    target: crate::protocol::scaffold::TargetPart {
        what: "records over HTTP",
        body: TARGET,
    },
};

const CONNECTION: &str = r#"    base_url: "${@ENV@_URL}"          # CHANGE: the API's address
    headers: {Authorization: "Bearer ${@ENV@_TOKEN}"}    # CHANGE: credentials only as ${NAME}
"#;

const SOURCE: &str = r#"  # CHANGE: the list request (this one is `ferry simulate shop`'s). `window` is the
  # incremental window being read, `page` the page.
  request:
    method: GET
    path: /orders
    query:
      modified_from: "<< window.start | datetime >>"
      modified_to: "<< window.end | datetime >>"
      page: "<< page.number >>"
      size: "<< page.size >>"
  response: {success: "<< body.ok >>", error: "<< body.message >>"}
  records: $.data.orders[*]
  pagination: {style: page_number, start: 1, size: 100, total: $.data.total}
  incremental: {field: modified_at, start: "2024-01-01 00:00:00", window: 1d, lookback: 10m, lag: 1m}
  id: "<< order_no >>"
  name: "<< customer_name >>"
"#;

const TARGET: &str = r#"  batch: 100
  key: "<< number >>"
  # CHANGE: the write API. This one takes a batch of rows and answers the ids written and
  # the rows refused.
  create:
    request: {method: POST, path: /records/batch, body: {items: "<< rows >>"}}
    response:
      success: "<< body.code == 0 >>"
      error: "<< body.message >>"
      row_ids: $.data.results[*].id
      row_errors: $.data.errors[*]
  update:
    request: {method: PUT, path: "/records/<< target_id >>", body: "<< row >>"}
    response: {success: "<< body.code == 0 >>", error: "<< body.message >>"}
  # CHANGE: the row the target expects, built from the source record.
  fields:
    number: "@code@"
    name: "@name@"
    note: "@note@"
"#;
