//! Detail rows matched to the target's rows across writes (a `for_each` with `target_id`).
//!
//! A record's mapping keeps, per detail list, the target's id of each detail row by the
//! row's identity in the source (its `key`, or its position):
//! `{"<list path>": {"<detail key>": <target row id>}}` ([`crate::store::Mapping::detail_ids`]).
//!
//! - **Before an update** ([`prepare`]) each rendered detail row whose key has a stored id
//!   gets that id in its `target_id` field, so the target changes that row; rows without one
//!   go without and the target appends them.
//! - **After a write** ([`learned`]) the ids the connector read from the answer (all rows of
//!   the list, in the target's order) are matched to the rows sent: by position when the
//!   answer lists exactly the rows sent (the ids sent where they were sent); otherwise rows
//!   sent with an id keep it and rows sent without one take the answer's ids that were not
//!   sent, from its end, since a target appends new rows after the ones it kept (the
//!   K3Cloud and ERP-standard simulators do; [INF] for the real servers). A row left
//!   without an id is logged: its next update appends it again.
//! - A create (or an update whose answer named ids) stores the complete map, replacing the
//!   stored one; an update whose answer named none keeps the stored map. Keys the source no
//!   longer has are dropped with their ids.

use super::context::RunContext;
use crate::error::Error;
use crate::protocol::{DetailIds, DetailList};
use crate::template::Scope;
use crate::transform::{detail_keys, value_to_text};
use serde_json::{Map, Value};

/// The detail rows of one rendered record, per list of the plan's `detail_lists`.
pub(crate) struct RowDetails {
    lists: Vec<ListRows>,
}

struct ListRows {
    /// Each row's identity in the source.
    keys: Vec<String>,
    /// The target id each row was sent with.
    sent: Vec<Option<Value>>,
}

/// Computes the detail keys of the record rendered as `row` and, for an update, writes the
/// stored ids (`stored`, the mapping's detail ids) into the rows they belong to.
pub(crate) fn prepare(
    lists: &[DetailList],
    fields: &crate::scheme::model::ValueTemplate,
    scope: &Scope,
    row: &mut Value,
    stored: Option<&Value>,
) -> Result<RowDetails, Error> {
    let keys = detail_keys(fields, scope)?;
    let mut out = Vec::with_capacity(lists.len());
    for list in lists {
        let path = list.key();
        let keys = keys
            .iter()
            .find(|(at, _)| *at == path)
            .map(|(_, keys)| keys.clone())
            .unwrap_or_default();
        let known = stored.and_then(|stored| stored.get(&path)).and_then(Value::as_object);
        let mut sent = vec![None; keys.len()];
        if let Some(Value::Array(rows)) = list_mut(row, &list.path) {
            for ((detail, key), sent) in rows.iter_mut().zip(&keys).zip(sent.iter_mut()) {
                let Some(id) = known.and_then(|known| known.get(key)).filter(|id| !id.is_null()) else {
                    continue;
                };
                if let Value::Object(detail) = detail {
                    detail.insert(list.id_field.clone(), id.clone());
                    *sent = Some(id.clone());
                }
            }
        }
        out.push(ListRows { keys, sent });
    }
    Ok(RowDetails { lists: out })
}

fn list_mut<'a>(row: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(row, |at, name| at.get_mut(name.as_str()))
}

/// The detail ids to store for a written row: `Some` (the complete map) for a create or for
/// an update whose answer named ids, `None` (keep the stored map) for an update whose
/// answer named none.
pub(crate) fn learned(
    ctx: &RunContext,
    rows: &RowDetails,
    answer: Option<DetailIds>,
    is_update: bool,
    source_id: &str,
) -> Option<Value> {
    stored_map(
        &ctx.plan.target.detail_lists,
        rows,
        answer,
        is_update,
        &ctx.plan.name,
        source_id,
    )
}

fn stored_map(
    lists: &[DetailList],
    rows: &RowDetails,
    answer: Option<DetailIds>,
    is_update: bool,
    scheme: &str,
    source_id: &str,
) -> Option<Value> {
    if is_update && answer.is_none() {
        return None;
    }
    let mut map = Map::new();
    for (list, rows) in lists.iter().zip(&rows.lists) {
        let path = list.key();
        let ids = match answer.as_ref().and_then(|answer| answer.get(&path)) {
            Some(answered) => match_ids(&rows.sent, answered),
            None => rows.sent.clone(),
        };
        let missing = ids.iter().filter(|id| id.is_none()).count();
        if missing > 0 {
            tracing::warn!(
                scheme,
                source_id,
                list = %path,
                "the target's answer gave no id for {missing} of {} detail rows; their next update will send them \
                 as new rows, which the target appends",
                ids.len()
            );
        }
        let known: Map<String, Value> = rows
            .keys
            .iter()
            .zip(ids)
            .filter_map(|(key, id)| Some((key.clone(), id?)))
            .collect();
        map.insert(path, Value::Object(known));
    }
    Some(Value::Object(map))
}

fn id_text(id: &Value) -> Option<String> {
    value_to_text(id)
}

/// Matches the ids a target reports for one list after a write (`answered`, its order) to
/// the rows sent (`sent`: the id each was sent with). See the module doc.
pub(crate) fn match_ids(sent: &[Option<Value>], answered: &[Value]) -> Vec<Option<Value>> {
    let known = |id: &Value| (!id.is_null()).then(|| id.clone());
    let in_place = answered.len() == sent.len()
        && sent
            .iter()
            .zip(answered)
            .all(|(sent, answered)| sent.as_ref().is_none_or(|sent| id_text(sent) == id_text(answered)));
    if in_place {
        return answered.iter().map(known).collect();
    }
    let sent_texts: Vec<String> = sent.iter().flatten().filter_map(id_text).collect();
    let fresh: Vec<&Value> = answered
        .iter()
        .filter(|id| id_text(id).is_some_and(|text| !sent_texts.contains(&text)))
        .collect();
    let new_rows = sent.iter().filter(|id| id.is_none()).count();
    let mut fresh = if fresh.len() >= new_rows {
        fresh[fresh.len() - new_rows..].iter()
    } else {
        [].iter()
    };
    sent.iter()
        .map(|id| match id {
            Some(id) => Some(id.clone()),
            None => fresh.next().map(|id| (*id).clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids(values: &[Value]) -> Vec<Option<Value>> {
        values.iter().map(|v| (!v.is_null()).then(|| v.clone())).collect()
    }

    #[test]
    fn a_create_takes_the_answers_ids_in_order() {
        assert_eq!(
            match_ids(&[None, None], &[json!(11), json!(12)]),
            ids(&[json!(11), json!(12)])
        );
    }

    #[test]
    fn rows_sent_with_ids_keep_them_and_new_rows_take_the_appended_ids() {
        // Kept in place (IsDeleteEntry true: the answer lists the rows as sent).
        let sent = ids(&[Value::Null, json!(7), Value::Null]);
        assert_eq!(
            match_ids(&sent, &[json!(20), json!(7), json!(21)]),
            ids(&[json!(20), json!(7), json!(21)])
        );
        // A row the source no longer has stays in the target (IsDeleteEntry false): the
        // answer lists stored rows first and appended ones after them.
        let sent = ids(&[Value::Null, json!(7)]);
        assert_eq!(
            match_ids(&sent, &[json!(7), json!(8), json!(30)]),
            ids(&[json!(30), json!(7)])
        );
        // Numbers and their text are the same id.
        assert_eq!(match_ids(&ids(&[json!("7")]), &[json!(7)]), ids(&[json!(7)]));
    }

    #[test]
    fn ids_the_answer_lacks_are_not_guessed() {
        // Two new rows, one fresh id: neither new row is given one.
        let sent = ids(&[json!(7), Value::Null, Value::Null]);
        assert_eq!(
            match_ids(&sent, &[json!(7), json!(9)]),
            ids(&[json!(7), Value::Null, Value::Null])
        );
        // An answer without entries: rows sent with ids keep them.
        assert_eq!(
            match_ids(&ids(&[json!(7), Value::Null]), &[]),
            ids(&[json!(7), Value::Null])
        );
        // A null in place stays unknown.
        assert_eq!(
            match_ids(&[None, None], &[json!(1), Value::Null]),
            ids(&[json!(1), Value::Null])
        );
    }

    #[test]
    fn updates_learn_new_rows_and_forget_rows_the_source_dropped() {
        let lists = [DetailList {
            path: vec!["FEntity".into()],
            id_field: "FEntryID".into(),
        }];
        // Stored {A: 101, B: 102, gone: 103}; the update sends B (102) and a new row C.
        let rows = RowDetails {
            lists: vec![ListRows {
                keys: vec!["B".into(), "C".into()],
                sent: ids(&[json!(102), Value::Null]),
            }],
        };
        let answer: DetailIds = [(
            "FEntity".to_string(),
            vec![json!(101), json!(102), json!(103), json!(104)],
        )]
        .into();
        assert_eq!(
            stored_map(&lists, &rows, Some(answer), true, "s", "SO1"),
            Some(json!({"FEntity": {"B": 102, "C": 104}}))
        );
        // An update whose answer named no ids keeps the stored map.
        assert_eq!(stored_map(&lists, &rows, None, true, "s", "SO1"), None);
        // A create that learned none stores an empty map, replacing ids of an earlier record.
        let fresh = RowDetails {
            lists: vec![ListRows {
                keys: vec!["0".into()],
                sent: vec![None],
            }],
        };
        assert_eq!(
            stored_map(&lists, &fresh, None, false, "s", "SO1"),
            Some(json!({"FEntity": {}}))
        );
    }

    #[test]
    fn stored_ids_go_into_the_rows_they_belong_to() {
        use crate::extract::JsonPath;
        use crate::scheme::model::{DetailIdentity, ValueTemplate};
        use crate::template::{TemplateEnv, TemplateOptions};
        use std::sync::Arc;
        let env = TemplateEnv::new(TemplateOptions::default());
        let fields = ValueTemplate::Object(vec![(
            "FEntity".into(),
            ValueTemplate::ForEach {
                rows: JsonPath::parse("$.lines[*]").unwrap(),
                fields: Box::new(ValueTemplate::Object(vec![(
                    "FQty".into(),
                    ValueTemplate::Template(env.compile("<< qty >>").unwrap()),
                )])),
                identity: Some(Box::new(DetailIdentity {
                    key: Some(env.compile("<< sku >>").unwrap()),
                    target_id: "FEntryID".into(),
                })),
            },
        )]);
        let lists = [DetailList {
            path: vec!["FEntity".into()],
            id_field: "FEntryID".into(),
        }];
        let record = json!({"lines": [{"sku": "B", "qty": 2}, {"sku": "A", "qty": 1}, {"sku": "C", "qty": 5}]});
        let scope = Scope {
            record: Some(Arc::new(record)),
            ..Scope::default()
        };
        let mut row = crate::transform::render(&fields, &scope, "").unwrap();
        let stored = json!({"FEntity": {"A": 101, "B": 102, "gone": 103}});
        let details = prepare(&lists, &fields, &scope, &mut row, Some(&stored)).unwrap();
        assert_eq!(
            row,
            json!({"FEntity": [{"FQty": 2, "FEntryID": 102}, {"FQty": 1, "FEntryID": 101}, {"FQty": 5}]})
        );
        assert_eq!(details.lists[0].keys, ["B", "A", "C"]);
        assert_eq!(details.lists[0].sent, ids(&[json!(102), json!(101), Value::Null]));

        // Two rows with one key cannot be told apart: the record fails, nothing is sent.
        let twice = Scope {
            record: Some(Arc::new(
                json!({"lines": [{"sku": "A", "qty": 1}, {"sku": "A", "qty": 2}]}),
            )),
            ..Scope::default()
        };
        let mut row = crate::transform::render(&fields, &twice, "").unwrap();
        let err = prepare(&lists, &fields, &twice, &mut row, None).err().unwrap();
        assert!(err.message.contains("same key `A`"), "{}", err.message);
    }
}
