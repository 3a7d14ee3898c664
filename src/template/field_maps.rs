//! The `field_map` filter: store-backed value tables (seed 000 §6), read in both directions.
//!
//! # What it owns and promises
//! - [`FieldMaps`] is plain data the caller puts into the [`Scope`](super::Scope): the engine
//!   loads every table the scheme declares under `field_mappings` once per run, so a render
//!   never does IO.
//! - `<< owner | field_map('employee') >>` turns a CRM value into its ERP value;
//!   `field_map('employee', reverse=true)` turns an ERP value into its CRM value. Numbers are
//!   looked up by their JSON text, like `map`; null and undefined stay null.
//! - A value with no row fails the render with [`unmapped_message`], which names the table,
//!   the direction and the value; [`parse_unmapped`] reads it back (the lint of
//!   `ferry field-mappings lint` finds unmapped values in the ledger with it).
//! - A table name the scheme does not declare is a compile-time error (see `check.rs`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use minijinja::value::{Kwargs, Value};
use minijinja::{Error, ErrorKind, State};
use serde_json::Value as Json;

use super::scope::{describe, with_input, FilterInput, ScopeContext, SCOPE_HANDLE};

/// One table's pairs, indexed both ways.
#[derive(Debug, Clone, Default)]
pub struct FieldMapTable {
    to_erp: HashMap<String, String>,
    to_crm: HashMap<String, String>,
}

impl FieldMapTable {
    /// A table of `(crm_value, erp_value)` pairs.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> FieldMapTable {
        let mut table = FieldMapTable::default();
        for (crm, erp) in pairs {
            table.to_crm.insert(erp.clone(), crm.clone());
            table.to_erp.insert(crm, erp);
        }
        table
    }

    /// How many pairs the table holds.
    pub fn len(&self) -> usize {
        self.to_erp.len()
    }

    /// True when the table holds no pair.
    pub fn is_empty(&self) -> bool {
        self.to_erp.is_empty()
    }

    /// The value `value` maps to, CRM → ERP (or ERP → CRM when `reverse`).
    pub fn get(&self, value: &str, reverse: bool) -> Option<&str> {
        let side = if reverse { &self.to_crm } else { &self.to_erp };
        side.get(value).map(String::as_str)
    }
}

/// The tables `field_map` reads, by the name templates use.
#[derive(Debug, Clone, Default)]
pub struct FieldMaps {
    tables: BTreeMap<String, FieldMapTable>,
    /// Answer every look-up with a stand-in (`<employee:E1>`), for checks without a store.
    placeholders: bool,
}

impl FieldMaps {
    /// Tables keyed by the name templates use.
    pub fn new(tables: BTreeMap<String, FieldMapTable>) -> FieldMaps {
        FieldMaps {
            tables,
            placeholders: false,
        }
    }

    /// Answers every look-up with `<table:value>`: for `ferry check` and
    /// `ferry validate --sample`, which render records without a store.
    pub fn placeholders() -> FieldMaps {
        FieldMaps {
            tables: BTreeMap::new(),
            placeholders: true,
        }
    }

    /// One table by its template name.
    pub fn table(&self, name: &str) -> Option<&FieldMapTable> {
        self.tables.get(name)
    }

    /// The mapped value of `value` in table `name`; the error is for a person (and for the
    /// ledger): an unknown table or a value with no row.
    pub fn lookup(&self, name: &str, value: &str, reverse: bool) -> Result<String, String> {
        if self.placeholders {
            return Ok(format!("<{name}:{value}>"));
        }
        let Some(table) = self.tables.get(name) else {
            let known: Vec<&str> = self.tables.keys().map(String::as_str).collect();
            return Err(format!(
                "field mapping table {name:?} is not loaded (loaded: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        };
        table
            .get(value, reverse)
            .map(str::to_owned)
            .ok_or_else(|| unmapped_message(name, reverse, value))
    }
}

const UNMAPPED_PREFIX: &str = "no field mapping for ";

/// `no field mapping for "E9" in table "employee" (CRM → ERP); add it with …`.
pub fn unmapped_message(table: &str, reverse: bool, value: &str) -> String {
    let (direction, flag) = if reverse {
        ("ERP → CRM", "--erp")
    } else {
        ("CRM → ERP", "--crm")
    };
    let mut message = format!("{UNMAPPED_PREFIX}{value:?} in table {table:?} ({direction})");
    let _ = write!(
        message,
        "; add it with `ferry field-mappings add --scheme SCHEME --table {table} {flag} {value:?} …`, then `ferry failures retry`"
    );
    message
}

/// A value [`unmapped_message`] reported: its table, direction and value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Unmapped {
    pub table: String,
    pub reverse: bool,
    pub value: String,
}

/// Finds an [`unmapped_message`] anywhere in `text` (a ledger message wraps it).
pub fn parse_unmapped(text: &str) -> Option<Unmapped> {
    let start = text.find(UNMAPPED_PREFIX)? + UNMAPPED_PREFIX.len();
    let rest = &text[start..];
    let (value, rest) = leading_quoted(rest)?;
    let rest = rest.strip_prefix(" in table ")?;
    let (table, rest) = leading_quoted(rest)?;
    let reverse = if rest.starts_with(" (ERP → CRM)") {
        true
    } else if rest.starts_with(" (CRM → ERP)") {
        false
    } else {
        return None;
    };
    Some(Unmapped { table, reverse, value })
}

/// The Rust-`Debug`-quoted string `text` starts with, unquoted, and what follows it.
fn leading_quoted(text: &str) -> Option<(String, &str)> {
    let mut chars = text.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    let mut escaped = false;
    for (index, c) in chars {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => {
                let quoted = &text[..=index];
                // `{:?}` of a str is a JSON-compatible string for everything but rare
                // escapes (`\u{…}`); those values are skipped.
                let value: String = serde_json::from_str(quoted).ok()?;
                return Some((value, &text[index + 1..]));
            }
            _ => {}
        }
    }
    None
}

/// The text a value is looked up by: strings as they are, numbers and bools as JSON text.
fn lookup_key(input: &FilterInput<'_>) -> Result<Option<String>, String> {
    match input {
        FilterInput::Undefined | FilterInput::Json(Json::Null) => Ok(None),
        FilterInput::Json(Json::String(text)) => Ok(Some(text.clone())),
        FilterInput::Json(json @ (Json::Number(_) | Json::Bool(_))) => Ok(Some(json.to_string())),
        FilterInput::Json(other) => Err(format!(
            "field_map needs a text or a number, got {}",
            if other.is_array() { "a list" } else { "an object" }
        )),
        FilterInput::Foreign(foreign) => Err(foreign.reason.clone()),
    }
}

/// The `field_map(table, reverse=false)` filter.
pub(crate) fn field_map(state: &State, value: Value, table: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let invalid = |message: String| Error::new(ErrorKind::InvalidOperation, message);
    let reverse: Option<bool> = kwargs.get("reverse")?;
    kwargs.assert_all_used()?;
    let reverse = reverse.unwrap_or(false);
    let Some(name) = table.as_str() else {
        return Err(invalid(format!(
            "field_map needs the name of a field mapping table, e.g. field_map('employee'); got {}",
            describe(&table)
        )));
    };
    let Some(key) = with_input(&value, lookup_key).map_err(invalid)? else {
        return Ok(Value::from(()));
    };
    let context = state
        .lookup(SCOPE_HANDLE)
        .and_then(|handle| handle.downcast_object::<ScopeContext>());
    let Some(maps) = context.as_ref().and_then(|context| context.scope.field_maps.as_ref()) else {
        return Err(invalid(format!(
            "field_map({name:?}) needs the field mapping tables, which are not available here"
        )));
    };
    maps.lookup(name, &key, reverse).map(Value::from).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmapped_messages_read_back() {
        for (table, reverse, value) in [
            ("employee", false, "E9"),
            ("dept", true, "a \"quoted\" value"),
            ("员工", false, "张三"),
        ] {
            let message = format!(
                "transform failed: {} (in template `x`)",
                unmapped_message(table, reverse, value)
            );
            assert_eq!(
                parse_unmapped(&message),
                Some(Unmapped {
                    table: table.to_owned(),
                    reverse,
                    value: value.to_owned()
                }),
                "{message}"
            );
        }
        assert_eq!(parse_unmapped("no mapping yet for customer source id 7"), None);
    }

    fn env() -> crate::template::TemplateEnv {
        crate::template::TemplateEnv::new(crate::template::TemplateOptions {
            field_tables: ["employee".to_owned()].into(),
            ..crate::template::TemplateOptions::default()
        })
    }

    fn scope(record: Json) -> crate::template::Scope {
        let table = FieldMapTable::new([
            ("E1".to_owned(), "0001".to_owned()),
            ("7".to_owned(), "0007".to_owned()),
        ]);
        crate::template::Scope {
            field_maps: Some(std::sync::Arc::new(FieldMaps::new(BTreeMap::from([(
                "employee".to_owned(),
                table,
            )])))),
            ..crate::template::Scope::for_record(std::sync::Arc::new(record))
        }
    }

    #[test]
    fn the_filter_maps_both_ways_and_names_table_and_value_when_it_cannot() {
        let env = env();
        let render = |source: &str, record: Json| env.compile(source).unwrap().render(&scope(record));
        let record = serde_json::json!({"owner": "E1", "erp": "0001", "num": 7, "none": null});
        assert_eq!(
            render("<< owner | field_map('employee') >>", record.clone()).unwrap(),
            "0001"
        );
        assert_eq!(
            render("<< erp | field_map('employee', reverse=true) >>", record.clone()).unwrap(),
            "E1"
        );
        assert_eq!(
            render("<< num | field_map('employee') >>", record.clone()).unwrap(),
            "0007"
        );
        assert_eq!(
            render("<< none | field_map('employee') >>", record.clone()).unwrap(),
            Json::Null
        );
        assert_eq!(
            render("owner=<< owner | field_map('employee') >>", record.clone()).unwrap(),
            "owner=0001"
        );
        let err = render("<< erp | field_map('employee') >>", record.clone()).unwrap_err();
        let unmapped = parse_unmapped(&err.message).expect("the message names table and value");
        assert_eq!(unmapped.table, "employee");
        assert_eq!(unmapped.value, "0001");
        assert!(!unmapped.reverse);
        let no_tables = env
            .compile("<< owner | field_map('employee') >>")
            .unwrap()
            .render(&crate::template::Scope::for_record(std::sync::Arc::new(record)));
        assert!(no_tables.unwrap_err().message.contains("not available here"));
    }

    #[test]
    fn an_undeclared_table_is_a_compile_error_with_a_suggestion() {
        let err = env().compile("<< owner | field_map('employe') >>").unwrap_err();
        assert!(
            err.message.contains("unknown field mapping table \"employe\""),
            "{}",
            err.message
        );
        assert!(err.hint.unwrap_or_default().contains("employee"));
        assert_eq!(err.offset, Some(21));
        let none = crate::template::TemplateEnv::default()
            .compile("<< owner | field_map('employee') >>")
            .unwrap_err();
        assert!(none.message.contains("declares none"), "{}", none.message);
        assert!(none.hint.unwrap_or_default().contains("field_mappings"));
    }

    #[test]
    fn tables_answer_both_ways() {
        let table = FieldMapTable::new([("E1".to_owned(), "0001".to_owned())]);
        let maps = FieldMaps::new(BTreeMap::from([("employee".to_owned(), table)]));
        assert_eq!(maps.lookup("employee", "E1", false).unwrap(), "0001");
        assert_eq!(maps.lookup("employee", "0001", true).unwrap(), "E1");
        let missing = maps.lookup("employee", "0001", false).unwrap_err();
        assert!(
            missing.contains("\"0001\"") && missing.contains("\"employee\""),
            "{missing}"
        );
        assert!(maps.lookup("dept", "E1", false).unwrap_err().contains("not loaded"));
        assert_eq!(
            FieldMaps::placeholders().lookup("employee", "E1", true).unwrap(),
            "<employee:E1>"
        );
    }
}
