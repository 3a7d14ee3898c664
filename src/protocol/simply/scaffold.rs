//! What `ferry init` writes for this connector (see [`crate::protocol::scaffold`]).

/// This connector's `ferry init` parts.
pub static SCAFFOLD: crate::protocol::scaffold::Scaffold = crate::protocol::scaffold::Scaffold {
    connection: "simply",
    env: "SIMPLY",
    connection_body: CONNECTION,
    source: crate::protocol::scaffold::SourcePart {
        what: "Simply CRM accounts",
        body: SOURCE,
        code: "<< account_no >>",
        name: "<< accountname >>",
        note: "Simply CRM account << account_no >>",
    },
    target: crate::protocol::scaffold::TargetPart {
        what: "Simply CRM accounts",
        body: TARGET,
    },
};

// Simply CRM (reference §5): the user's access key, never the password; VTQL `query`
// reads every record the user may see.
const CONNECTION: &str = r#"    base_url: "${@ENV@_URL}"           # e.g. https://<tenant>.simply-crm.com
    settings:                      # My Preferences → Access Key
      username: "${@ENV@_USERNAME}"
      access_key: "${@ENV@_ACCESS_KEY}"
"#;

const SOURCE: &str = r#"  object: Accounts
  # Accounts modified in each window, with VTQL; the connector appends `LIMIT offset, 100;`
  # per page. CHANGE the module (Accounts, Contacts, …) and the columns you need.
  request:
    api: query
    body:
      query: "SELECT * FROM Accounts WHERE modifiedtime >= '<< window.start | datetime >>' AND modifiedtime < '<< window.end | datetime >>' ORDER BY modifiedtime;"
  incremental: {field: modifiedtime, start: "2024-01-01 00:00:00", window: 30d, lookback: 10m, lag: 1m}
  id: "<< id >>"
  name: "<< accountname >>"
"#;

const TARGET: &str = r#"  object: Accounts
  batch: 20
  create:
    request: {api: create, body: {elementType: Accounts, element: "<< row >>"}}
  update:                          # `revise` changes only the fields sent
    request:
      api: revise
      body: {element: {id: "<< target_id >>", accountname: "<< row.accountname >>", description: "<< row.description >>"}}
  fields:
    accountname: "@name@"
    description: "@note@"
    assigned_user_id: "${@ENV@_ASSIGNED_USER_ID:-19x1}"   # CHANGE: the owner (vtiger requires one)
"#;
