//! The conformance suite every backend must pass, plus SQLite file behaviour.
//!
//! Each behaviour is one `async fn case(store: &Store)`; `conformance_suite!`
//! runs every case against a fresh store of each backend. A new backend adds
//! one module to the macro. The Postgres cases need a server (`FERRY_TEST_PG_URL`,
//! default `postgres://postgres@127.0.0.1:5432/test`); without one they print
//! `SKIPPED: …` and pass, unless `CI=true`, where they fail.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use super::*;

// ---- fixtures ----------------------------------------------------------------------

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

fn mapping(scheme: &str, source_id: &str, target_id: Option<&str>) -> Mapping {
    Mapping {
        scheme: scheme.to_owned(),
        source_object: "customer".to_owned(),
        source_id: source_id.to_owned(),
        source_name: Some(format!("name of {source_id}")),
        target_object: "bd_customer".to_owned(),
        target_id: target_id.map(str::to_owned),
        target_name: target_id.map(|t| format!("target {t}")),
        status: MappingStatus::Created,
        payload_hash: Some("h1".to_owned()),
        attempts: 1,
        last_error: None,
        first_synced_at: Some(at(1_700_000_000_000)),
        last_synced_at: Some(at(1_700_000_000_000)),
        detail_ids: None,
    }
}

fn new_failure(scheme: &str, source_id: &str, stage: FailureStage, message: &str) -> NewFailure {
    NewFailure {
        scheme: scheme.to_owned(),
        source_id: source_id.to_owned(),
        stage,
        error_class: "target_rejected".to_owned(),
        message: message.to_owned(),
        payload: Some(json!({ "FNumber": source_id, "message": message })),
    }
}

/// A failure of `orders` in the write stage.
fn write_failure(source_id: &str, message: &str) -> NewFailure {
    new_failure("orders", source_id, FailureStage::Write, message)
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

async fn commit(store: &Store, batch: BatchCommit) {
    store.commit_batch(batch).await.unwrap();
}

/// Commits a batch of only these failures.
async fn commit_failures(store: &Store, failures: Vec<NewFailure>) {
    commit(
        store,
        BatchCommit {
            failures,
            ..BatchCommit::default()
        },
    )
    .await;
}

/// Commits a batch of only these mappings.
async fn commit_mappings(store: &Store, mappings: Vec<Mapping>) {
    commit(
        store,
        BatchCommit {
            mappings,
            ..BatchCommit::default()
        },
    )
    .await;
}

async fn open_sqlite(dir: &Path) -> Store {
    Store::open(&format!("sqlite://{}", dir.join("ferry.db").display()))
        .await
        .unwrap()
}

/// A SQLite store whose `table` refuses (by trigger) any row with this `source_id`.
async fn sqlite_refusing(dir: &Path, table: &str, source_id: &str) -> Store {
    let store = open_sqlite(dir).await;
    let Store::Sqlite(sqlite) = &store else {
        panic!("expected the SQLite backend");
    };
    sqlx::query(&format!(
        "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} WHEN NEW.source_id = '{source_id}' \
         BEGIN SELECT RAISE(ABORT, 'rejected by test trigger'); END"
    ))
    .execute(sqlite.writer_pool())
    .await
    .unwrap();
    store
}

// ---- the cases ---------------------------------------------------------------------

async fn upsert_then_get(store: &Store) {
    let first = mapping("customers", "C1", Some("T1"));
    store.upsert_mapping(&first).await.unwrap();
    let found = store
        .mappings_for("customers", "customer", &ids(&["C1"]))
        .await
        .unwrap();
    assert_eq!(found.get("C1"), Some(&first));

    // Updating replaces fields but keeps first_synced_at.
    let mut second = first.clone();
    second.target_id = Some("T2".to_owned());
    second.status = MappingStatus::Updated;
    second.attempts = 2;
    second.payload_hash = Some("h2".to_owned());
    second.first_synced_at = Some(at(1_800_000_000_000));
    second.last_synced_at = Some(at(1_800_000_000_000));
    store.upsert_mapping(&second).await.unwrap();
    let found = store
        .mappings_for("customers", "customer", &ids(&["C1"]))
        .await
        .unwrap();
    let got = &found["C1"];
    assert_eq!(got.target_id.as_deref(), Some("T2"));
    assert_eq!(got.status, MappingStatus::Updated);
    assert_eq!(got.attempts, 2);
    assert_eq!(got.first_synced_at, first.first_synced_at);
    assert_eq!(got.last_synced_at, second.last_synced_at);

    // A failed attempt without a target id does not forget the known one.
    let mut failed = second.clone();
    failed.target_id = None;
    failed.target_name = None;
    failed.status = MappingStatus::Failed;
    failed.last_error = Some("rejected".to_owned());
    store.upsert_mapping(&failed).await.unwrap();
    let got = store
        .mappings_for("customers", "customer", &ids(&["C1"]))
        .await
        .unwrap()
        .remove("C1")
        .unwrap();
    assert_eq!(got.status, MappingStatus::Failed);
    assert_eq!(got.target_id.as_deref(), Some("T2"));
    assert_eq!(got.target_name.as_deref(), Some("target T1"));
    assert_eq!(got.last_error.as_deref(), Some("rejected"));
}

async fn detail_ids_are_replaced_when_given_and_kept_when_not(store: &Store) {
    let get = |source_id: &'static str| async move {
        store
            .mappings_for("orders", "customer", &ids(&[source_id]))
            .await
            .unwrap()
            .remove(source_id)
            .unwrap()
    };
    let mut created = mapping("orders", "SO1", Some("300021"));
    let first = json!({"FSaleOrderEntry": {"0": 100_001, "1": 100_002}, "detailFieldVals.Lines": {"A-1": "L-9"}});
    created.detail_ids = Some(first.clone());
    store.upsert_mapping(&created).await.unwrap();
    assert_eq!(get("SO1").await, created, "single upsert round-trips the map");
    assert_eq!(
        store
            .query_mappings(&MappingQuery {
                scheme: Some("orders".into()),
                ..MappingQuery::default()
            })
            .await
            .unwrap()[0]
            .detail_ids,
        Some(first.clone()),
        "listing reads it too"
    );

    // An update that learned no ids (None) keeps them, in a batch as alone.
    let mut updated = created.clone();
    updated.status = MappingStatus::Updated;
    updated.detail_ids = None;
    commit_mappings(store, vec![updated.clone()]).await;
    assert_eq!(get("SO1").await.detail_ids, Some(first.clone()));
    store.upsert_mapping(&updated).await.unwrap();
    assert_eq!(get("SO1").await.detail_ids, Some(first));

    // One that learned ids replaces the whole map; a later entry of one batch wins.
    let second = json!({"FSaleOrderEntry": {"0": 100_001, "1": 100_002, "2": 100_007}});
    let mut learned = updated.clone();
    learned.detail_ids = Some(second.clone());
    let mut later = updated.clone();
    later.detail_ids = None;
    commit_mappings(store, vec![learned, later]).await;
    assert_eq!(get("SO1").await.detail_ids, Some(second));
    // An empty map is a map: it forgets the ids.
    let mut cleared = updated;
    cleared.detail_ids = Some(json!({}));
    store.upsert_mapping(&cleared).await.unwrap();
    assert_eq!(get("SO1").await.detail_ids, Some(json!({})));
    // Mappings without detail rows have none.
    store
        .upsert_mapping(&mapping("orders", "SO2", Some("T")))
        .await
        .unwrap();
    assert_eq!(get("SO2").await.detail_ids, None);
}

async fn timestamps_keep_milliseconds(store: &Store) {
    let mut m = mapping("customers", "C1", Some("T1"));
    let precise = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
    m.first_synced_at = Some(precise);
    m.last_synced_at = None;
    store.upsert_mapping(&m).await.unwrap();
    let got = store
        .mappings_for("customers", "customer", &ids(&["C1"]))
        .await
        .unwrap()
        .remove("C1")
        .unwrap();
    assert_eq!(got.first_synced_at, Some(at(1_700_000_000_123)));
    assert_eq!(got.last_synced_at, None);
}

async fn batch_lookup_mixes_present_and_absent(store: &Store) {
    commit_mappings(
        store,
        vec![
            mapping("customers", "A", Some("TA")),
            mapping("customers", "C", None),
            mapping("customers", "E", Some("TE")),
            mapping("suppliers", "B", Some("TB")),
        ],
    )
    .await;
    let mut other_object = mapping("customers", "D", Some("TD"));
    other_object.source_object = "contact".to_owned();
    store.upsert_mapping(&other_object).await.unwrap();

    let found = store
        .mappings_for("customers", "customer", &ids(&["A", "B", "C", "D", "E", "A"]))
        .await
        .unwrap();
    let keys: BTreeSet<&str> = found.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["A", "C", "E"]));
    assert_eq!(found["E"].target_id.as_deref(), Some("TE"));
    assert_eq!(found["C"].target_id, None);

    // Ids with quotes, separators and non-ASCII text survive the round trip.
    let odd = "Ünï \"q\", 'x'\n\t\\ 物料";
    store
        .upsert_mapping(&mapping("customers", odd, Some(odd)))
        .await
        .unwrap();
    let found = store.mappings_for("customers", "customer", &ids(&[odd])).await.unwrap();
    assert_eq!(found[odd].target_id.as_deref(), Some(odd));

    assert!(store
        .mappings_for("customers", "customer", &[])
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .mappings_for("nobody", "customer", &ids(&["A"]))
        .await
        .unwrap()
        .is_empty());
}

async fn batch_lookup_spans_many_chunks(store: &Store) {
    let mappings: Vec<Mapping> = (0..1_200)
        .map(|n| mapping("customers", &format!("S{n:05}"), Some(&format!("T{n}"))))
        .collect();
    commit(
        store,
        BatchCommit {
            mappings,
            ..BatchCommit::default()
        },
    )
    .await;
    let wanted: Vec<String> = (0..1_500).map(|n| format!("S{n:05}")).collect();
    let found = store.mappings_for("customers", "customer", &wanted).await.unwrap();
    assert_eq!(found.len(), 1_200);
    assert_eq!(found["S01199"].target_id.as_deref(), Some("T1199"));
    assert!(!found.contains_key("S01200"));
}

async fn later_entry_in_a_batch_wins(store: &Store) {
    let first = mapping("customers", "A", Some("T1"));
    let mut second = mapping("customers", "A", Some("T2"));
    second.status = MappingStatus::Updated;
    second.first_synced_at = Some(at(1_900_000_000_000));
    commit_mappings(store, vec![first.clone(), second]).await;
    let got = store
        .mappings_for("customers", "customer", &ids(&["A"]))
        .await
        .unwrap()
        .remove("A")
        .unwrap();
    assert_eq!(got.target_id.as_deref(), Some("T2"));
    assert_eq!(got.status, MappingStatus::Updated);
    assert_eq!(got.first_synced_at, first.first_synced_at);
}

async fn query_filters_and_pages(store: &Store) {
    let mut pending = mapping("customers", "C3", None);
    pending.status = MappingStatus::Pending;
    commit_mappings(
        store,
        vec![
            mapping("customers", "C2", Some("T2")),
            mapping("customers", "C1", Some("T1")),
            pending,
            mapping("suppliers", "S1", Some("T1")),
        ],
    )
    .await;
    let keys = |found: Vec<Mapping>| -> Vec<String> {
        found
            .into_iter()
            .map(|m| format!("{}/{}", m.scheme, m.source_id))
            .collect()
    };

    let all = store.query_mappings(&MappingQuery::default()).await.unwrap();
    assert_eq!(
        keys(all),
        ["customers/C1", "customers/C2", "customers/C3", "suppliers/S1"]
    );

    let by_target = MappingQuery {
        target_ids: ids(&["T1", "nope"]),
        ..MappingQuery::default()
    };
    assert_eq!(
        keys(store.query_mappings(&by_target).await.unwrap()),
        ["customers/C1", "suppliers/S1"]
    );

    let by_target_in_scheme = MappingQuery {
        scheme: Some("suppliers".to_owned()),
        ..by_target
    };
    assert_eq!(
        keys(store.query_mappings(&by_target_in_scheme).await.unwrap()),
        ["suppliers/S1"]
    );

    let by_source = MappingQuery {
        source_ids: ids(&["C3", "C2"]),
        ..MappingQuery::default()
    };
    assert_eq!(
        keys(store.query_mappings(&by_source).await.unwrap()),
        ["customers/C2", "customers/C3"]
    );

    let by_status = MappingQuery {
        status: Some(MappingStatus::Pending),
        ..MappingQuery::default()
    };
    assert_eq!(keys(store.query_mappings(&by_status).await.unwrap()), ["customers/C3"]);

    let page = MappingQuery {
        limit: Some(2),
        offset: 1,
        ..MappingQuery::default()
    };
    assert_eq!(
        keys(store.query_mappings(&page).await.unwrap()),
        ["customers/C2", "customers/C3"]
    );
    let skip_only = MappingQuery {
        offset: 3,
        ..MappingQuery::default()
    };
    assert_eq!(keys(store.query_mappings(&skip_only).await.unwrap()), ["suppliers/S1"]);

    let negative = MappingQuery {
        limit: Some(-5),
        ..MappingQuery::default()
    };
    assert!(matches!(
        store.query_mappings(&negative).await,
        Err(StoreError::InvalidRequest(_))
    ));
}

async fn delete_forgets_a_mapping(store: &Store) {
    store
        .upsert_mapping(&mapping("customers", "C1", Some("T1")))
        .await
        .unwrap();
    store
        .upsert_mapping(&mapping("customers", "C2", Some("T2")))
        .await
        .unwrap();
    assert!(store.delete_mapping("customers", "customer", "C1").await.unwrap());
    assert!(!store.delete_mapping("customers", "customer", "C1").await.unwrap());
    assert!(!store.delete_mapping("customers", "other", "C2").await.unwrap());
    let found = store
        .mappings_for("customers", "customer", &ids(&["C1", "C2"]))
        .await
        .unwrap();
    assert_eq!(found.keys().collect::<Vec<_>>(), ["C2"]);
    assert_eq!(store.target_id_for("customers", "C1").await.unwrap(), None);
}

async fn a_deleted_mapping_keeps_its_target_id_but_answers_no_lookup(store: &Store) {
    commit_mappings(store, vec![mapping("customers", "C1", Some("T1"))]).await;
    let mut deleted = mapping("customers", "C1", Some("T1"));
    deleted.status = MappingStatus::Deleted;
    deleted.payload_hash = None;
    commit_mappings(store, vec![deleted]).await;
    let found = store
        .mappings_for("customers", "customer", &ids(&["C1"]))
        .await
        .unwrap();
    assert_eq!(found["C1"].status, MappingStatus::Deleted);
    assert_eq!(found["C1"].target_id.as_deref(), Some("T1"));
    assert_eq!(store.target_id_for("customers", "C1").await.unwrap(), None);
    let listed = store
        .query_mappings(&MappingQuery {
            status: Some(MappingStatus::Deleted),
            ..MappingQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    // Created again later: the new target id replaces the deleted one.
    commit_mappings(store, vec![mapping("customers", "C1", Some("T2"))]).await;
    assert_eq!(
        store.target_id_for("customers", "C1").await.unwrap().as_deref(),
        Some("T2")
    );
}

async fn target_id_by_object_or_scheme(store: &Store) {
    let mut material = mapping("materials", "M1", Some("KD-M1"));
    material.target_object = "BD_MATERIAL".to_owned();
    let mut failed = mapping("materials", "M2", Some("KD-M2"));
    failed.target_object = "BD_MATERIAL".to_owned();
    failed.status = MappingStatus::Failed;
    let mut pending = mapping("materials", "M3", None);
    pending.status = MappingStatus::Pending;
    commit_mappings(store, vec![material, failed, pending]).await;

    let by_object = store.target_id_for("BD_MATERIAL", "M1").await.unwrap();
    assert_eq!(by_object.as_deref(), Some("KD-M1"));
    let by_scheme = store.target_id_for("materials", "M1").await.unwrap();
    assert_eq!(by_scheme.as_deref(), Some("KD-M1"));
    assert_eq!(store.target_id_for("BD_MATERIAL", "M2").await.unwrap(), None);
    assert_eq!(store.target_id_for("materials", "M3").await.unwrap(), None);
    assert_eq!(store.target_id_for("BD_STOCK", "M1").await.unwrap(), None);
    assert_eq!(store.target_id_for("materials", "nope").await.unwrap(), None);

    // A scheme named like another scheme's target object wins over that object match,
    // however recent the other one is.
    let mut newer = mapping("other", "M1", Some("OTHER-M1"));
    newer.target_object = "BD_MATERIAL".to_owned();
    newer.last_synced_at = Some(at(1_900_000_000_000));
    let mut exact = mapping("BD_MATERIAL", "M1", Some("EXACT-M1"));
    exact.target_object = "something_else".to_owned();
    commit_mappings(store, vec![newer, exact]).await;
    let preferred = store.target_id_for("BD_MATERIAL", "M1").await.unwrap();
    assert_eq!(preferred.as_deref(), Some("EXACT-M1"));
}

async fn target_id_prefers_most_recent_object_match(store: &Store) {
    let mut old = mapping("a_scheme", "M1", Some("OLD"));
    old.target_object = "BD_MATERIAL".to_owned();
    let mut recent = mapping("b_scheme", "M1", Some("RECENT"));
    recent.target_object = "BD_MATERIAL".to_owned();
    recent.last_synced_at = Some(at(1_900_000_000_000));
    commit_mappings(store, vec![old, recent]).await;
    let got = store.target_id_for("BD_MATERIAL", "M1").await.unwrap();
    assert_eq!(got.as_deref(), Some("RECENT"));
}

async fn checkpoints_overwrite(store: &Store) {
    assert_eq!(store.checkpoint("orders", "window_end").await.unwrap(), None);
    store
        .set_checkpoint("orders", "window_end", "2024-01-01T00:00:00Z")
        .await
        .unwrap();
    store
        .set_checkpoint("orders", "window_end", "2024-02-01T00:00:00Z")
        .await
        .unwrap();
    store
        .set_checkpoint("invoices", "window_end", "2023-12-31T00:00:00Z")
        .await
        .unwrap();
    assert_eq!(
        store.checkpoint("orders", "window_end").await.unwrap().as_deref(),
        Some("2024-02-01T00:00:00Z")
    );
    assert_eq!(
        store.checkpoint("invoices", "window_end").await.unwrap().as_deref(),
        Some("2023-12-31T00:00:00Z")
    );
    assert_eq!(store.checkpoint("orders", "page").await.unwrap(), None);
}

async fn checkpoints_clear(store: &Store) {
    assert!(!store.clear_checkpoint("orders", "window_end").await.unwrap());
    store
        .set_checkpoint("orders", "window_end", "2024-01-01T00:00:00Z")
        .await
        .unwrap();
    store
        .set_checkpoint("invoices", "window_end", "2024-01-02T00:00:00Z")
        .await
        .unwrap();
    assert!(store.clear_checkpoint("orders", "window_end").await.unwrap());
    assert_eq!(store.checkpoint("orders", "window_end").await.unwrap(), None);
    assert_eq!(
        store.checkpoint("invoices", "window_end").await.unwrap().as_deref(),
        Some("2024-01-02T00:00:00Z"),
        "another scheme's checkpoint stays"
    );
    assert!(!store.clear_checkpoint("orders", "window_end").await.unwrap());
}

fn event(source_id: &str, run_id: i64, outcome: EventOutcome) -> RecordEvent {
    RecordEvent {
        scheme: "orders".to_owned(),
        source_id: source_id.to_owned(),
        run_id,
        at: at(1_700_000_000_000 + run_id),
        outcome,
        payload_hash: Some(format!("h{run_id}")),
        window: Some("2024-01-01T00:00:00+08:00 → 2024-01-31T00:00:00+08:00".to_owned()),
        row: Some(json!({ "FBillNo": source_id, "FAmount": run_id })),
        request: Some(format!("create POST /orders/batch (batch {run_id}-0, 2 rows)")),
        answer: Some(json!({ "target_id": format!("T{run_id}") })),
    }
}

async fn record_events_keep_the_newest_per_record(store: &Store) {
    assert!(store.record_events_for("orders", "O1", 10).await.unwrap().is_empty());
    for run in 1..=5 {
        let mut other = event("O2", run, EventOutcome::Failed);
        other.answer = Some(json!({ "class": "target_rejected", "message": "bad" }));
        other.window = None;
        other.row = None;
        store
            .record_events(vec![event("O1", run, EventOutcome::Updated), other], 3)
            .await
            .unwrap();
    }
    let o1 = store.record_events_for("orders", "O1", 10).await.unwrap();
    assert_eq!(
        o1.iter().map(|e| e.run_id).collect::<Vec<_>>(),
        vec![5, 4, 3],
        "newest 3, newest first"
    );
    assert_eq!(o1[0], event("O1", 5, EventOutcome::Updated), "read back whole");
    let o2 = store.record_events_for("orders", "O2", 1).await.unwrap();
    assert_eq!(o2.len(), 1);
    assert_eq!(o2[0].outcome, EventOutcome::Failed);
    assert_eq!(o2[0].row, None);
    assert_eq!(
        o2[0].answer,
        Some(json!({ "class": "target_rejected", "message": "bad" }))
    );
    // Another scheme's record of the same id is separate; keep 0 stores nothing.
    let mut elsewhere = event("O1", 9, EventOutcome::Created);
    elsewhere.scheme = "invoices".to_owned();
    store.record_events(vec![elsewhere.clone()], 0).await.unwrap();
    assert!(store.record_events_for("invoices", "O1", 10).await.unwrap().is_empty());
    store.record_events(vec![elsewhere], 20).await.unwrap();
    assert_eq!(store.record_events_for("invoices", "O1", 10).await.unwrap().len(), 1);
    assert_eq!(store.record_events_for("orders", "O1", 10).await.unwrap().len(), 3);
    assert!(store.record_events(Vec::new(), MAX_KEEP_EVENTS + 1).await.is_err());
}

async fn failures_of_one_record_in_every_status(store: &Store) {
    commit_failures(
        store,
        vec![
            write_failure("O1", "first"),
            write_failure("O2", "other record"),
            new_failure("invoices", "O1", FailureStage::Write, "other scheme"),
        ],
    )
    .await;
    commit(
        store,
        BatchCommit {
            resolved: vec![("orders".to_owned(), "O1".to_owned())],
            ..BatchCommit::default()
        },
    )
    .await;
    commit_failures(
        store,
        vec![new_failure("orders", "O1", FailureStage::Transform, "second")],
    )
    .await;
    let rows = store.failures_of("orders", "O1", 10).await.unwrap();
    let seen: BTreeSet<(String, &str)> = rows.iter().map(|f| (f.message.clone(), f.status.as_str())).collect();
    assert_eq!(
        seen,
        BTreeSet::from([("first".to_owned(), "resolved"), ("second".to_owned(), "open")])
    );
    assert_eq!(store.failures_of("orders", "O1", 1).await.unwrap().len(), 1);
    assert!(store.failures_of("orders", "O9", 10).await.unwrap().is_empty());
}

async fn failure_repeats_count_attempts(store: &Store) {
    commit_failures(store, vec![write_failure("O1", "first")]).await;
    let first = store.list_failures(Some("orders"), None, 10).await.unwrap().remove(0);
    assert_eq!(first.attempts, 1);
    assert_eq!(first.status, FailureStatus::Open);
    assert_eq!(first.first_seen, first.last_seen);

    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let mut again = write_failure("O1", "second");
    again.error_class = "timeout".to_owned();
    commit_failures(
        store,
        vec![
            again,
            new_failure("orders", "O1", FailureStage::Transform, "other stage"),
        ],
    )
    .await;

    let write = store.failure(first.id).await.unwrap().unwrap();
    assert_eq!(write.attempts, 2);
    assert_eq!(write.first_seen, first.first_seen);
    assert!(write.last_seen > first.last_seen);
    assert_eq!(write.message, "second");
    assert_eq!(write.error_class, "timeout");
    assert_eq!(write.payload, Some(json!({ "FNumber": "O1", "message": "second" })));
    assert_eq!(store.count_open_failures("orders").await.unwrap(), 2);
    assert_eq!(store.count_open_failures("other").await.unwrap(), 0);

    // The same failure twice in one batch counts twice.
    commit_failures(store, vec![write_failure("O1", "third"), write_failure("O1", "fourth")]).await;
    let write = store.failure(first.id).await.unwrap().unwrap();
    assert_eq!(write.attempts, 4);
    assert_eq!(write.message, "fourth");
    assert_eq!(store.failure(9_999).await.unwrap(), None);
}

async fn success_resolves_open_failures(store: &Store) {
    commit_failures(
        store,
        vec![
            write_failure("O1", "boom"),
            new_failure("orders", "O1", FailureStage::Fetch, "boom"),
            write_failure("O2", "boom"),
            new_failure("refunds", "O1", FailureStage::Write, "boom"),
        ],
    )
    .await;
    commit(
        store,
        BatchCommit {
            mappings: vec![mapping("orders", "O1", Some("T1"))],
            resolved: vec![("orders".to_owned(), "O1".to_owned())],
            ..BatchCommit::default()
        },
    )
    .await;
    assert_eq!(store.count_open_failures("orders").await.unwrap(), 1);
    assert_eq!(store.count_open_failures("refunds").await.unwrap(), 1);
    let resolved = store
        .list_failures(Some("orders"), Some(FailureStatus::Resolved), 10)
        .await
        .unwrap();
    assert_eq!(resolved.len(), 2);
    assert!(resolved.iter().all(|f| f.source_id == "O1"));

    // A new failure after resolution opens a fresh entry.
    commit_failures(store, vec![write_failure("O1", "again")]).await;
    let open = store
        .list_failures(Some("orders"), Some(FailureStatus::Open), 10)
        .await
        .unwrap();
    let fresh = open.iter().find(|f| f.source_id == "O1").unwrap();
    assert_eq!(fresh.attempts, 1);
    assert!(resolved.iter().all(|f| f.id != fresh.id));

    // Failures recorded in the same batch as a resolution stay open.
    commit(
        store,
        BatchCommit {
            failures: vec![write_failure("O2", "still")],
            resolved: vec![("orders".to_owned(), "O2".to_owned())],
            ..BatchCommit::default()
        },
    )
    .await;
    let o2 = store
        .list_failures(Some("orders"), Some(FailureStatus::Open), 10)
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.source_id == "O2")
        .unwrap();
    assert_eq!((o2.attempts, o2.message.as_str()), (1, "still"));
}

async fn failure_status_changes(store: &Store) {
    commit_failures(store, vec![write_failure("O1", "a"), write_failure("O2", "b")]).await;
    let listed = store.list_failures(None, None, 10).await.unwrap();
    let id_of = |source_id: &str| listed.iter().find(|f| f.source_id == source_id).unwrap().id;
    let (o1, o2) = (id_of("O1"), id_of("O2"));

    let changed = store
        .set_failure_status(&[o1, o2, 424_242], FailureStatus::Skipped)
        .await
        .unwrap();
    assert_eq!(changed, 2);
    assert_eq!(store.count_open_failures("orders").await.unwrap(), 0);
    assert_eq!(store.failure(o1).await.unwrap().unwrap().status, FailureStatus::Skipped);
    // Setting the status it already has changes nothing.
    assert_eq!(
        store.set_failure_status(&[o1], FailureStatus::Skipped).await.unwrap(),
        0
    );

    // Skipped entries stay history: a new failure opens a fresh row, and then the
    // old one cannot be reopened beside it.
    commit_failures(store, vec![write_failure("O1", "new")]).await;
    let reopened = store.set_failure_status(&[o1, o2], FailureStatus::Open).await.unwrap();
    assert_eq!(reopened, 1);
    assert_eq!(store.failure(o1).await.unwrap().unwrap().status, FailureStatus::Skipped);
    assert_eq!(store.failure(o2).await.unwrap().unwrap().status, FailureStatus::Open);
    assert_eq!(store.count_open_failures("orders").await.unwrap(), 2);

    // A reopened failure counts further attempts.
    commit_failures(store, vec![write_failure("O2", "b2")]).await;
    assert_eq!(store.failure(o2).await.unwrap().unwrap().attempts, 2);

    assert_eq!(
        store.set_failure_status(&[o2], FailureStatus::Resolved).await.unwrap(),
        1
    );
    assert_eq!(store.count_open_failures("orders").await.unwrap(), 1);
}

async fn failures_list_newest_first(store: &Store) {
    for source_id in ["O1", "O2", "O3"] {
        commit_failures(store, vec![write_failure(source_id, "x")]).await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    commit_failures(store, vec![new_failure("invoices", "I1", FailureStage::Fetch, "x")]).await;
    let order = |found: Vec<Failure>| -> Vec<String> { found.into_iter().map(|f| f.source_id).collect() };
    assert_eq!(
        order(store.list_failures(None, None, 10).await.unwrap()),
        ["I1", "O3", "O2", "O1"]
    );
    assert_eq!(
        order(store.list_failures(Some("orders"), None, 2).await.unwrap()),
        ["O3", "O2"]
    );
    assert!(store
        .list_failures(None, Some(FailureStatus::Skipped), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.list_failures(None, None, 0).await.unwrap().is_empty());
    assert!(matches!(
        store.list_failures(None, None, -1).await,
        Err(StoreError::InvalidRequest(_))
    ));
}

async fn mappings_list_in_natural_order(store: &Store) {
    let ids_in = ["10", "2", "1", "SO-10", "SO-9", "A10", "B2", "100"];
    commit_mappings(
        store,
        ids_in.iter().map(|id| mapping("natural", id, Some("T"))).collect(),
    )
    .await;
    let query = |offset: i64, limit: i64| MappingQuery {
        scheme: Some("natural".to_owned()),
        offset,
        limit: Some(limit),
        ..MappingQuery::default()
    };
    let listed = store.query_mappings(&query(0, 100)).await.unwrap();
    let order: Vec<&str> = listed.iter().map(|m| m.source_id.as_str()).collect();
    assert_eq!(order, ["1", "2", "10", "100", "A10", "B2", "SO-9", "SO-10"]);
    // Pages follow the same order.
    let page = store.query_mappings(&query(2, 2)).await.unwrap();
    let page: Vec<&str> = page.iter().map(|m| m.source_id.as_str()).collect();
    assert_eq!(page, ["10", "100"]);
}

async fn run_history(store: &Store) {
    let first = store.start_run("orders").await.unwrap();
    let second = store.start_run("invoices").await.unwrap();
    let third = store.start_run("orders").await.unwrap();
    assert!(first < second && second < third);

    let summary = json!({ "created": 10, "failed": 1 });
    store.finish_run(first, "partial", &summary).await.unwrap();

    let runs = store.recent_runs(None, 10).await.unwrap();
    let run_ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    assert_eq!(run_ids, [third, second, first]);
    let finished = &runs[2];
    assert_eq!(finished.status, "partial");
    assert_eq!(finished.summary.as_ref(), Some(&summary));
    let finished_at = finished.finished_at.unwrap();
    assert!(finished_at >= finished.started_at);
    assert_eq!(runs[0].status, "running");
    assert_eq!(runs[0].finished_at, None);
    assert_eq!(runs[0].summary, None);

    let orders = store.recent_runs(Some("orders"), 1).await.unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].id, third);

    assert_eq!(store.run(first).await.unwrap().unwrap().status, "partial");
    assert_eq!(store.run(987_654).await.unwrap(), None);
    // The newest run of each scheme, by scheme name; or only runs of one status.
    let latest = store.latest_runs(None, None).await.unwrap();
    let latest: Vec<(&str, i64)> = latest.iter().map(|r| (r.scheme.as_str(), r.id)).collect();
    assert_eq!(latest, [("invoices", second), ("orders", third)]);
    let partial = store.latest_runs(Some("orders"), Some("partial")).await.unwrap();
    assert_eq!(partial.iter().map(|r| r.id).collect::<Vec<_>>(), [first]);
    assert!(store
        .latest_runs(Some("invoices"), Some("partial"))
        .await
        .unwrap()
        .is_empty());

    let missing = store.finish_run(987_654, "ok", &json!({})).await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound { .. }));
    assert!(missing.to_string().contains("run 987654"), "{missing}");
}

async fn one_commit_writes_everything(store: &Store) {
    let batch = BatchCommit {
        mappings: vec![mapping("orders", "O1", Some("T1")), mapping("orders", "O2", None)],
        failures: vec![write_failure("O2", "rejected")],
        resolved: vec![("orders".to_owned(), "O1".to_owned())],
        settled: Vec::new(),
    };
    assert!(!batch.is_empty());
    commit(store, batch).await;
    let found = store
        .mappings_for("orders", "customer", &ids(&["O1", "O2"]))
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    let open = store
        .list_failures(Some("orders"), Some(FailureStatus::Open), 10)
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].source_id, "O2");
    commit(store, BatchCommit::default()).await;
}

async fn large_batches_are_chunked(store: &Store) {
    let batch = BatchCommit {
        mappings: (0..200)
            .map(|n| mapping("bulk", &format!("R{n}"), Some(&format!("T{n}"))))
            .collect(),
        failures: (0..300)
            .map(|n| new_failure("bulk", &format!("F{n}"), FailureStage::Transform, "bad"))
            .collect(),
        resolved: Vec::new(),
        settled: Vec::new(),
    };
    commit(store, batch).await;
    assert_eq!(store.count_open_failures("bulk").await.unwrap(), 300);
    let resolved = (0..600).map(|n| ("bulk".to_owned(), format!("F{n}"))).collect();
    commit(
        store,
        BatchCommit {
            resolved,
            ..BatchCommit::default()
        },
    )
    .await;
    assert_eq!(store.count_open_failures("bulk").await.unwrap(), 0);
    let all = store
        .query_mappings(&MappingQuery {
            scheme: Some("bulk".to_owned()),
            ..MappingQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 200);
}

async fn clones_share_data(store: &Store) {
    let clone = store.clone();
    clone.set_checkpoint("orders", "cursor", "42").await.unwrap();
    assert_eq!(
        store.checkpoint("orders", "cursor").await.unwrap().as_deref(),
        Some("42")
    );
}

fn intent(scheme: &str, source_id: &str, batch_id: &str, created_ms: i64) -> WriteIntent {
    WriteIntent {
        scheme: scheme.to_owned(),
        source_object: "order".to_owned(),
        source_id: source_id.to_owned(),
        source_name: Some(format!("name of {source_id}")),
        batch_id: batch_id.to_owned(),
        operation: WriteOperation::Create,
        business_key: Some(format!("BILL-{source_id}")),
        target_id: None,
        payload_hash: format!("hash-{source_id}"),
        payload: Some(json!({"order_no": source_id, "lines": [1, 2]})),
        sent: None,
        created_at: at(created_ms),
    }
}

/// Rows kept as sent (idempotent creates) come back with their intents, also when only
/// some intents of a batch keep one.
async fn sent_rows_survive_with_their_intents(store: &Store) {
    let mut kept = intent("orders", "A", "5-1", 1_700_000_000_000);
    kept.sent = Some(json!({"FBillNo": "A", "FQty": 2}));
    let plain = intent("orders", "B", "5-1", 1_700_000_000_000);
    store.record_intents(&[kept.clone(), plain.clone()]).await.unwrap();
    assert_eq!(store.pending_intents("orders").await.unwrap(), vec![kept, plain]);
}

async fn intents_survive_until_settled(store: &Store) {
    let mut update = intent("orders", "B", "7-1", 1_700_000_000_500);
    update.operation = WriteOperation::Update;
    update.target_id = Some("T-B".to_owned());
    update.payload = None;
    store
        .record_intents(&[
            intent("orders", "C", "7-2", 1_700_000_001_000),
            intent("orders", "A", "7-1", 1_700_000_000_500),
            update.clone(),
            intent("other", "A", "9-1", 1_700_000_000_000),
        ])
        .await
        .unwrap();
    let pending = store.pending_intents("orders").await.unwrap();
    let keys: Vec<(&str, &str)> = pending
        .iter()
        .map(|i| (i.batch_id.as_str(), i.source_id.as_str()))
        .collect();
    assert_eq!(keys, [("7-1", "A"), ("7-1", "B"), ("7-2", "C")]);
    assert_eq!(pending[0], intent("orders", "A", "7-1", 1_700_000_000_500));
    assert_eq!(pending[1], update);

    store
        .record_intents(&[intent("orders", "C", "8-1", 1_700_000_002_000)])
        .await
        .unwrap();
    commit(
        store,
        BatchCommit {
            settled: vec![("orders".to_owned(), "7-1".to_owned())],
            ..BatchCommit::default()
        },
    )
    .await;
    let left: Vec<String> = store
        .pending_intents("orders")
        .await
        .unwrap()
        .into_iter()
        .map(|i| format!("{}:{}", i.batch_id, i.source_id))
        .collect();
    assert_eq!(left, ["7-2:C", "8-1:C"]);
    assert_eq!(store.pending_intents("other").await.unwrap().len(), 1);
}

async fn rate_budget_is_a_token_bucket(store: &Store) {
    // A burst of 3 goes at once; after that every take owes one more token.
    let mut waits = Vec::new();
    for _ in 0..6 {
        waits.push(store.take_token("tenant-a", 2.0, 3).await.unwrap());
    }
    assert!(waits[..3].iter().all(|w| w.is_zero()), "{waits:?}");
    for (n, wait) in waits[3..].iter().enumerate() {
        // The k-th take past the burst waits about k/2 s (less the little time that passed).
        let owed = (n as f64 + 1.0) / 2.0;
        assert!(
            wait.as_secs_f64() <= owed && wait.as_secs_f64() > owed - 0.25,
            "take {} waits {wait:?}, expected about {owed}s",
            n + 4
        );
    }
    // Budgets are independent by name.
    assert!(store.take_token("tenant-b", 2.0, 3).await.unwrap().is_zero());
}

fn field_row(data_center: &str, data_type: &str, crm: &str, erp: &str) -> FieldMapping {
    FieldMapping {
        data_center: data_center.to_owned(),
        channel: "ERP_K3CLOUD".to_owned(),
        data_type: data_type.to_owned(),
        crm_value: crm.to_owned(),
        crm_name: Some(format!("crm {crm}")),
        erp_value: erp.to_owned(),
        erp_name: None,
    }
}

fn employee_table(data_center: &str) -> FieldTable {
    FieldTable {
        data_center: data_center.to_owned(),
        channel: "ERP_K3CLOUD".to_owned(),
        data_type: "employee".to_owned(),
    }
}

async fn field_mappings_are_added_found_both_ways_and_deleted(store: &Store) {
    let rows = vec![
        field_row("", "employee", "E10", "0010"),
        field_row("", "employee", "E2", "0002"),
        field_row("", "employee", "E9", "0009"),
    ];
    let changes = store.put_field_mappings(&rows).await.unwrap();
    assert_eq!((changes.added, changes.changed, changes.unchanged), (3, 0, 0));

    let table = employee_table("");
    let listed = store
        .list_field_mappings(&FieldMappingFilter::table(&table))
        .await
        .unwrap();
    let crm: Vec<&str> = listed.iter().map(|r| r.crm_value.as_str()).collect();
    assert_eq!(crm, ["E2", "E9", "E10"], "natural order of CRM values");
    assert_eq!(listed[0], rows[1]);

    let by_crm = store.find_field_mapping(&table, FieldSide::Crm, "E9").await.unwrap();
    assert_eq!(by_crm.map(|r| r.erp_value), Some("0009".to_owned()));
    let by_erp = store.find_field_mapping(&table, FieldSide::Erp, "0010").await.unwrap();
    assert_eq!(by_erp.map(|r| r.crm_value), Some("E10".to_owned()));
    assert_eq!(
        store.find_field_mapping(&table, FieldSide::Crm, "0009").await.unwrap(),
        None
    );
    assert_eq!(
        store.find_field_mapping(&table, FieldSide::Erp, "E9").await.unwrap(),
        None
    );

    // The same rows again change nothing; a new ERP value for a CRM value replaces it.
    let mut moved = rows[2].clone();
    moved.erp_value = "0099".to_owned();
    moved.erp_name = Some("Nine".to_owned());
    let changes = store
        .put_field_mappings(&[rows[0].clone(), rows[1].clone(), moved.clone()])
        .await
        .unwrap();
    assert_eq!((changes.added, changes.changed, changes.unchanged), (0, 1, 2));
    assert_eq!(
        store.find_field_mapping(&table, FieldSide::Crm, "E9").await.unwrap(),
        Some(moved)
    );
    assert_eq!(
        store.find_field_mapping(&table, FieldSide::Erp, "0009").await.unwrap(),
        None
    );

    assert!(store.delete_field_mapping(&table, "E9").await.unwrap());
    assert!(!store.delete_field_mapping(&table, "E9").await.unwrap());
    assert_eq!(
        store.find_field_mapping(&table, FieldSide::Erp, "0099").await.unwrap(),
        None
    );
    assert_eq!(
        store
            .list_field_mappings(&FieldMappingFilter::default())
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn an_erp_value_belongs_to_one_crm_value_and_a_conflict_writes_nothing(store: &Store) {
    store
        .put_field_mappings(&[field_row("", "employee", "E1", "0001")])
        .await
        .unwrap();
    let batch = [
        field_row("", "employee", "E3", "0003"),
        field_row("", "employee", "E2", "0001"),
    ];
    let err = store.put_field_mappings(&batch).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("\"0001\"") && text.contains("\"E1\""), "{text}");
    let all = store.list_field_mappings(&FieldMappingFilter::default()).await.unwrap();
    assert_eq!(all.len(), 1, "the whole put was rolled back: {all:?}");

    // Within one put, rows apply in order: moving E1 away first frees 0001 for E2.
    let mut e1_moved = field_row("", "employee", "E1", "0100");
    e1_moved.crm_name = None;
    let changes = store
        .put_field_mappings(&[e1_moved, field_row("", "employee", "E2", "0001")])
        .await
        .unwrap();
    assert_eq!((changes.added, changes.changed), (1, 1));
    let table = employee_table("");
    let owner = store.find_field_mapping(&table, FieldSide::Erp, "0001").await.unwrap();
    assert_eq!(owner.map(|r| r.crm_value), Some("E2".to_owned()));

    let empty = store.put_field_mappings(&[field_row("", "employee", "", "0005")]).await;
    assert!(matches!(empty, Err(StoreError::InvalidRequest(_))), "{empty:?}");
}

async fn field_mapping_tables_are_separate(store: &Store) {
    store
        .put_field_mappings(&[
            field_row("", "employee", "E1", "0001"),
            field_row("dc2", "employee", "E1", "0001"),
            field_row("", "department", "E1", "0001"),
        ])
        .await
        .unwrap();
    let dc2 = FieldMappingFilter {
        data_center: Some("dc2".to_owned()),
        ..FieldMappingFilter::default()
    };
    let rows = store.list_field_mappings(&dc2).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].data_center, "dc2");
    let employees = FieldMappingFilter {
        data_type: Some("employee".to_owned()),
        ..FieldMappingFilter::default()
    };
    let rows = store.list_field_mappings(&employees).await.unwrap();
    let centers: Vec<&str> = rows.iter().map(|r| r.data_center.as_str()).collect();
    assert_eq!(centers, ["", "dc2"]);
    assert!(store.delete_field_mapping(&employee_table("dc2"), "E1").await.unwrap());
    let left = store
        .find_field_mapping(&employee_table(""), FieldSide::Crm, "E1")
        .await
        .unwrap();
    assert!(left.is_some());
}

// ---- inbox ----------------------------------------------------------------------------

fn new_push(scheme: &str, key: &str, business_key: Option<&str>) -> NewPush {
    NewPush {
        scheme: scheme.to_owned(),
        dedupe_key: key.to_owned(),
        business_key: business_key.map(str::to_owned),
        cancel: false,
        received_as: "standard".to_owned(),
        payload: json!({"id": business_key, "masterFieldVal": {"key": key}}),
    }
}

fn in_seconds(seconds: i64) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::seconds(seconds)
}

async fn inbox_stores_a_push_once_per_dedupe_key(store: &Store) {
    let first = store.append_push(&new_push("s", "k1", Some("SO-1"))).await.unwrap();
    assert!(!first.duplicate);
    let again = store.append_push(&new_push("s", "k1", Some("SO-1"))).await.unwrap();
    assert_eq!(
        again,
        Appended {
            id: first.id,
            duplicate: true
        }
    );
    let other_scheme = store.append_push(&new_push("t", "k1", Some("SO-1"))).await.unwrap();
    assert!(!other_scheme.duplicate && other_scheme.id != first.id);
    let row = store.push(first.id).await.unwrap().unwrap();
    assert_eq!(row.status, PushStatus::Pending);
    assert_eq!(row.payload["masterFieldVal"]["key"], "k1");
    assert_eq!((row.attempts, row.claimed_by.clone()), (0, None));
    assert_eq!(store.inbox_depth(Some("s")).await.unwrap().pending, 1);
    assert_eq!(store.inbox_depth(None).await.unwrap().pending, 2);
    assert!(store.push(first.id + 100).await.unwrap().is_none());
}

async fn inbox_claims_lease_rows_and_only_the_holder_finishes(store: &Store) {
    for n in 0..3 {
        store
            .append_push(&new_push("s", &format!("k{n}"), Some(&format!("SO-{n}"))))
            .await
            .unwrap();
    }
    let a = store.claim_pushes("s", "worker-a", 2, in_seconds(60)).await.unwrap();
    assert_eq!(
        a.iter().map(|r| r.dedupe_key.as_str()).collect::<Vec<_>>(),
        ["k0", "k1"]
    );
    assert!(a
        .iter()
        .all(|r| r.claimed_by.as_deref() == Some("worker-a") && r.attempts == 1));
    let b = store.claim_pushes("s", "worker-b", 10, in_seconds(60)).await.unwrap();
    assert_eq!(
        b.iter().map(|r| r.dedupe_key.as_str()).collect::<Vec<_>>(),
        ["k2"],
        "leased rows are not claimed twice"
    );
    // worker-b cannot settle worker-a's rows.
    let done = PushOutcome {
        id: a[0].id,
        error: None,
        retry_at: None,
    };
    assert_eq!(
        store
            .finish_pushes("worker-b", std::slice::from_ref(&done))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.finish_pushes("worker-a", &[done]).await.unwrap(), 1);
    let failed = PushOutcome {
        id: a[1].id,
        error: Some("rejected".into()),
        retry_at: None,
    };
    store.finish_pushes("worker-a", &[failed]).await.unwrap();
    let retry = PushOutcome {
        id: b[0].id,
        error: Some("busy".into()),
        retry_at: Some(in_seconds(3600)),
    };
    store.finish_pushes("worker-b", &[retry]).await.unwrap();
    let rows = store.list_pushes(Some("s"), None, 10).await.unwrap();
    let by_key = |k: &str| rows.iter().find(|r| r.dedupe_key == k).unwrap().clone();
    assert_eq!(by_key("k0").status, PushStatus::Done);
    assert!(by_key("k0").finished_at.is_some());
    assert_eq!(
        (by_key("k1").status, by_key("k1").last_error.as_deref()),
        (PushStatus::Failed, Some("rejected"))
    );
    assert_eq!(by_key("k2").status, PushStatus::Pending);
    assert!(
        store
            .claim_pushes("s", "worker-c", 10, in_seconds(60))
            .await
            .unwrap()
            .is_empty(),
        "a retry waits for its time"
    );
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        {
            let mut ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            ids.sort_by(|x, y| y.cmp(x));
            ids
        },
        "newest first"
    );
    assert_eq!(
        store
            .list_pushes(Some("s"), Some(PushStatus::Failed), 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn inbox_keeps_one_keys_pushes_in_order(store: &Store) {
    let first = store.append_push(&new_push("s", "v1", Some("SO-1"))).await.unwrap();
    let second = store.append_push(&new_push("s", "v2", Some("SO-1"))).await.unwrap();
    let other = store.append_push(&new_push("s", "w1", Some("SO-2"))).await.unwrap();
    let claimed = store.claim_pushes("s", "a", 1, in_seconds(60)).await.unwrap();
    assert_eq!(claimed[0].id, first.id);
    // While SO-1's first push is leased, its second waits; SO-2 goes ahead.
    let next = store.claim_pushes("s", "b", 10, in_seconds(60)).await.unwrap();
    assert_eq!(next.iter().map(|r| r.id).collect::<Vec<_>>(), [other.id]);
    store
        .finish_pushes(
            "a",
            &[PushOutcome {
                id: first.id,
                error: None,
                retry_at: None,
            }],
        )
        .await
        .unwrap();
    let last = store.claim_pushes("s", "b", 10, in_seconds(60)).await.unwrap();
    assert_eq!(last.iter().map(|r| r.id).collect::<Vec<_>>(), [second.id]);
}

async fn inbox_rows_of_an_expired_lease_are_claimed_again(store: &Store) {
    let pushed = store.append_push(&new_push("s", "k", Some("SO-1"))).await.unwrap();
    let crashed = store.claim_pushes("s", "crashed", 10, in_seconds(-1)).await.unwrap();
    assert_eq!(crashed.len(), 1);
    let taken = store.claim_pushes("s", "survivor", 10, in_seconds(60)).await.unwrap();
    assert_eq!((taken[0].id, taken[0].attempts), (pushed.id, 2));
    let late = PushOutcome {
        id: pushed.id,
        error: None,
        retry_at: None,
    };
    assert_eq!(
        store
            .finish_pushes("crashed", std::slice::from_ref(&late))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.finish_pushes("survivor", &[late]).await.unwrap(), 1);
}

async fn inbox_replays_and_purges_finished_rows(store: &Store) {
    let a = store.append_push(&new_push("s", "a", None)).await.unwrap();
    let b = store.append_push(&new_push("s", "b", None)).await.unwrap();
    let claimed = store.claim_pushes("s", "w", 10, in_seconds(60)).await.unwrap();
    assert_eq!(claimed.len(), 2, "rows without a business key are not held back");
    store
        .finish_pushes(
            "w",
            &[
                PushOutcome {
                    id: a.id,
                    error: None,
                    retry_at: None,
                },
                PushOutcome {
                    id: b.id,
                    error: Some("no".into()),
                    retry_at: None,
                },
            ],
        )
        .await
        .unwrap();
    assert!(store
        .purge_pushes(None, PushStatus::Pending, in_seconds(60))
        .await
        .is_err());
    assert_eq!(store.replay_pushes(&[b.id]).await.unwrap(), 1);
    let replayed = store.push(b.id).await.unwrap().unwrap();
    assert_eq!((replayed.status, replayed.claimed_by), (PushStatus::Pending, None));
    assert_eq!(
        store.claim_pushes("s", "w2", 10, in_seconds(60)).await.unwrap()[0].id,
        b.id
    );
    assert_eq!(
        store
            .purge_pushes(Some("s"), PushStatus::Done, in_seconds(-3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .purge_pushes(Some("s"), PushStatus::Done, in_seconds(60))
            .await
            .unwrap(),
        1
    );
    assert!(store.push(a.id).await.unwrap().is_none());
    assert!(store.push(b.id).await.unwrap().is_some());
}

macro_rules! conformance_suite {
    ($($case:ident),+ $(,)?) => {
        mod memory_backend {
            $(
                #[tokio::test]
                async fn $case() {
                    let store = super::Store::memory();
                    assert!(store.describe().contains("memory"));
                    super::$case(&store).await;
                }
            )+
        }

        mod sqlite_backend {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::open_sqlite(dir.path()).await;
                    assert!(store.describe().contains("ferry.db"));
                    super::$case(&store).await;
                    store.close().await;
                }
            )+
        }

        /// Each case in a fresh schema on `FERRY_TEST_PG_URL` (see `postgres::testing`).
        mod postgres_backend {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = super::postgres::testing::TestSchema::create().await else {
                        return;
                    };
                    assert!(db.store.describe().starts_with("PostgreSQL store at"));
                    db.run(|store| async move { super::$case(&store).await }).await;
                }
            )+
        }
    };
}

conformance_suite!(
    upsert_then_get,
    detail_ids_are_replaced_when_given_and_kept_when_not,
    timestamps_keep_milliseconds,
    batch_lookup_mixes_present_and_absent,
    batch_lookup_spans_many_chunks,
    later_entry_in_a_batch_wins,
    query_filters_and_pages,
    mappings_list_in_natural_order,
    delete_forgets_a_mapping,
    a_deleted_mapping_keeps_its_target_id_but_answers_no_lookup,
    target_id_by_object_or_scheme,
    target_id_prefers_most_recent_object_match,
    checkpoints_overwrite,
    checkpoints_clear,
    record_events_keep_the_newest_per_record,
    failures_of_one_record_in_every_status,
    failure_repeats_count_attempts,
    success_resolves_open_failures,
    failure_status_changes,
    failures_list_newest_first,
    run_history,
    one_commit_writes_everything,
    large_batches_are_chunked,
    clones_share_data,
    intents_survive_until_settled,
    sent_rows_survive_with_their_intents,
    rate_budget_is_a_token_bucket,
    field_mappings_are_added_found_both_ways_and_deleted,
    an_erp_value_belongs_to_one_crm_value_and_a_conflict_writes_nothing,
    field_mapping_tables_are_separate,
    inbox_stores_a_push_once_per_dedupe_key,
    inbox_claims_lease_rows_and_only_the_holder_finishes,
    inbox_keeps_one_keys_pushes_in_order,
    inbox_rows_of_an_expired_lease_are_claimed_again,
    inbox_replays_and_purges_finished_rows,
);

// ---- SQLite files --------------------------------------------------------------------

#[tokio::test]
async fn reopening_a_file_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/ferry.db");
    let location = path.display().to_string();
    let store = Store::open(&location).await.unwrap();
    commit(
        &store,
        BatchCommit {
            mappings: vec![mapping("orders", "O1", Some("T1"))],
            failures: vec![new_failure("orders", "O2", FailureStage::Fetch, "x")],
            ..BatchCommit::default()
        },
    )
    .await;
    store.set_checkpoint("orders", "cursor", "7").await.unwrap();
    let run = store.start_run("orders").await.unwrap();
    store.close().await;

    let reopened = Store::open(&location).await.unwrap();
    assert_eq!(
        reopened.target_id_for("orders", "O1").await.unwrap().as_deref(),
        Some("T1")
    );
    assert_eq!(reopened.count_open_failures("orders").await.unwrap(), 1);
    assert_eq!(
        reopened.checkpoint("orders", "cursor").await.unwrap().as_deref(),
        Some("7")
    );
    assert_eq!(reopened.recent_runs(None, 5).await.unwrap()[0].id, run);
    reopened.close().await;
}

#[tokio::test]
async fn unwritable_path_names_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "plain file").unwrap();
    let location = blocker.join("ferry.db").display().to_string();

    let err = Store::open(&location).await.unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot open store at {location}: ")),
        "{text}"
    );
    assert!(text.contains("is a file, not a directory"), "{text}");
    assert!(text.contains("FERRY_STORE"), "{text}");
    assert!(!err.is_retryable());

    // A directory where the file should be.
    let err = Store::open(&dir.path().display().to_string()).await.unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("it is a directory, not a file"), "{text}");
    assert!(text.contains("--store"), "{text}");
}

#[tokio::test]
async fn a_file_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are my notes, not a database ".repeat(200)).unwrap();
    let location = path.display().to_string();
    let err = Store::open(&location).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&location), "{text}");
    assert!(text.contains("not a ferry store"), "{text}");
}

/// Commits a batch whose failure for `boom` the store refuses (a test trigger), checks that
/// none of the batch was kept and that the store still works, and returns the error text.
pub(super) async fn a_refused_batch_leaves_nothing_behind(store: &Store) -> String {
    let err = store
        .commit_batch(BatchCommit {
            mappings: vec![mapping("orders", "O1", Some("T1"))],
            failures: vec![write_failure("boom", "x")],
            resolved: vec![("orders".to_owned(), "O1".to_owned())],
            settled: Vec::new(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Query { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("saving a batch"), "{text}");
    assert!(!text.contains("FNumber"), "payloads never appear in errors: {text}");

    assert!(store
        .mappings_for("orders", "customer", &ids(&["O1"]))
        .await
        .unwrap()
        .is_empty());
    // The store is still usable afterwards.
    commit_mappings(store, vec![mapping("orders", "O1", Some("T1"))]).await;
    assert_eq!(
        store.target_id_for("orders", "O1").await.unwrap().as_deref(),
        Some("T1")
    );
    text
}

#[tokio::test]
async fn a_failed_commit_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_refusing(dir.path(), "failures", "boom").await;

    let text = a_refused_batch_leaves_nothing_behind(&store).await;
    assert!(text.contains("ferry.db"), "{text}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_transactions_but_not_failures() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_refusing(dir.path(), "mappings", "BAD").await;

    // 40 writers at once (commits and intents), so the group writer merges many of them;
    // batch 13 carries the row the trigger refuses.
    let writes = (0..40).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            if n % 4 == 3 {
                let intents = [intent("orders", &format!("I{n}"), &format!("1-{n}"), 1_700_000_000_000)];
                return store.record_intents(&intents).await.map(|()| n);
            }
            let mut mappings = vec![mapping("orders", &format!("M{n}"), Some(&format!("T{n}")))];
            if n == 13 {
                mappings.push(mapping("orders", "BAD", Some("T-BAD")));
            }
            store
                .commit_batch(BatchCommit {
                    mappings,
                    ..BatchCommit::default()
                })
                .await
                .map(|()| n)
        })
    });
    let results = futures::future::join_all(writes).await;
    for (n, result) in results.into_iter().enumerate() {
        match result.unwrap() {
            Ok(done) => assert_ne!(done, 13, "the refused batch reported success"),
            Err(err) => {
                assert_eq!(n, 13, "batch {n} failed with someone else's error: {err}");
                assert!(err.to_string().contains("rejected by test trigger"), "{err}");
            }
        }
    }
    for n in (0..40).filter(|n| n % 4 != 3) {
        let expected = (n != 13).then(|| format!("T{n}"));
        assert_eq!(
            store.target_id_for("orders", &format!("M{n}")).await.unwrap(),
            expected,
            "batch {n}"
        );
    }
    assert_eq!(store.target_id_for("orders", "BAD").await.unwrap(), None);
    let pending = store.pending_intents("orders").await.unwrap();
    assert_eq!(pending.len(), 10, "every intent write landed: {pending:?}");
    store.close().await;
}

#[tokio::test]
async fn a_store_from_before_deleted_mappings_keeps_its_mappings_when_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("ferry.db"))
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let mut before = sqlx::migrate::Migrator::new(Path::new("./migrations/sqlite"))
        .await
        .unwrap();
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 4)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO mappings (scheme, source_object, source_id, source_name, target_object, target_id, \
         status, payload_hash, attempts) VALUES ('customers', 'customer', 'C1', 'one', 'bd_customer', 'T1', \
         'updated', 'h1', 2)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let refused = sqlx::query("UPDATE mappings SET status = 'deleted'")
        .execute(&pool)
        .await;
    assert!(refused.is_err(), "version 3 has no `deleted` status");
    pool.close().await;

    let store = open_sqlite(dir.path()).await;
    let found = store
        .mappings_for("customers", "customer", &ids(&["C1"]))
        .await
        .unwrap();
    let kept = &found["C1"];
    assert_eq!(
        (
            kept.target_id.as_deref(),
            kept.status,
            kept.attempts,
            kept.source_name.as_deref()
        ),
        (Some("T1"), MappingStatus::Updated, 2, Some("one"))
    );
    let mut deleted = kept.clone();
    deleted.status = MappingStatus::Deleted;
    commit(
        &store,
        BatchCommit {
            mappings: vec![deleted],
            ..BatchCommit::default()
        },
    )
    .await;
    assert_eq!(store.target_id_for("customers", "C1").await.unwrap(), None);
    store.close().await;
}

#[tokio::test]
async fn intents_stored_by_earlier_versions_are_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sqlite(dir.path()).await;
    let Store::Sqlite(sqlite) = &store else {
        panic!("expected the SQLite backend");
    };
    // Format 1: an array of whole intents, as 0.x releases stored them.
    let old = vec![intent("orders", "A", "3-1", 1_700_000_000_000)];
    sqlx::query("INSERT INTO write_intents (scheme, batch_id, created_at, intents) VALUES (?, ?, ?, ?)")
        .bind("orders")
        .bind("3-1")
        .bind(1_700_000_000_000_i64)
        .bind(serde_json::to_string(&old).unwrap())
        .execute(sqlite.writer_pool())
        .await
        .unwrap();
    let new = intent("orders", "B", "4-1", 1_700_000_000_001);
    store.record_intents(std::slice::from_ref(&new)).await.unwrap();
    assert_eq!(
        store.pending_intents("orders").await.unwrap(),
        vec![old[0].clone(), new]
    );
    store.close().await;
}

#[tokio::test]
async fn a_locked_file_is_reported_as_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    let holder = SqliteStore::open(&path).await.unwrap();
    let waiter = SqliteStore::open_with_busy_timeout(&path, std::time::Duration::from_millis(50))
        .await
        .unwrap();

    let mut lock = holder.writer_pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    let err = waiter.set_checkpoint("orders", "cursor", "1").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("busy"), "{err}");
    sqlx::query("SELECT 1").execute(&mut *lock).await.unwrap();
    lock.rollback().await.unwrap();

    waiter.set_checkpoint("orders", "cursor", "1").await.unwrap();
    holder.close().await;
    waiter.close().await;
}

/// Processes opening a new store together (two timers, a run and `ferry mappings`, runs of
/// two schemes) all find it migrated: none fails on a table another one just created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_opened_together_on_a_new_file_all_migrate_it() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..10 {
        let path = dir.path().join(format!("new-{round}.db"));
        let opening: Vec<_> = (0..6).map(|_| tokio::spawn(SqliteStore::open(path.clone()))).collect();
        for (n, opened) in opening.into_iter().enumerate() {
            let store = opened
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}, store {n}: {e}"));
            store.set_checkpoint("orders", "cursor", "1").await.unwrap();
            store.close().await;
        }
    }
}

/// Every spelling of one database file resolves to the same path, also before the file
/// exists and through a symlink whose target does not exist yet.
#[cfg(unix)]
#[tokio::test]
async fn every_spelling_of_a_store_path_resolves_to_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = sqlite::resolve_file(dir.path()).await.unwrap();
    let data = root.join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::symlink(&data, root.join("linked-dir")).unwrap();
    std::os::unix::fs::symlink("data/ferry.db", root.join("link.db")).unwrap();
    std::os::unix::fs::symlink("link.db", root.join("link-to-link.db")).unwrap();
    let real = data.join("ferry.db");
    for exists in [false, true] {
        for spelling in [
            real.clone(),
            root.join("link.db"),
            root.join("link-to-link.db"),
            root.join("linked-dir/ferry.db"),
            root.join("data/../linked-dir/./ferry.db"),
        ] {
            assert_eq!(
                sqlite::resolve_file(&spelling).await.unwrap(),
                real,
                "{} (file exists: {exists})",
                spelling.display()
            );
        }
        std::fs::write(&real, b"").unwrap();
    }
    let looped = root.join("loop.db");
    std::os::unix::fs::symlink("loop.db", &looped).unwrap();
    assert!(
        sqlite::resolve_file(&looped).await.is_err(),
        "a symlink loop is an error"
    );
}

/// Manual measurement: `cargo test --release store::tests::sqlite_batch_throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run by hand"]
async fn sqlite_batch_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sqlite(dir.path()).await;
    batch_throughput(&store).await;
    store.close().await;
}

/// Look-up and commit rounds as a run makes them, timed and printed (for the manual
/// throughput measurements of each backend).
pub(super) async fn batch_throughput(store: &Store) {
    const BATCHES: usize = 1_000;
    const BATCH: usize = 100;
    for pass in ["insert", "update"] {
        let started = std::time::Instant::now();
        let mut lookup = std::time::Duration::ZERO;
        for b in 0..BATCHES {
            let source_ids: Vec<String> = (0..BATCH).map(|i| format!("SRC-{b:05}-{i:03}")).collect();
            let t = std::time::Instant::now();
            let known = store.mappings_for("bench", "customer", &source_ids).await.unwrap();
            lookup += t.elapsed();
            let at = Utc::now();
            let mut batch = BatchCommit::default();
            for (i, id) in source_ids.iter().enumerate() {
                let previous = known.get(id);
                let mut m = mapping("bench", id, Some(&format!("TGT-{b}-{i}")));
                m.status = if previous.is_some() {
                    MappingStatus::Updated
                } else {
                    MappingStatus::Created
                };
                m.attempts = previous.map_or(1, |p| p.attempts + 1);
                m.last_synced_at = Some(at);
                m.first_synced_at = previous.and_then(|p| p.first_synced_at).or(Some(at));
                if i % 50 == 7 {
                    batch
                        .failures
                        .push(new_failure("bench", id, FailureStage::Write, "rejected"));
                } else {
                    batch.resolved.push(("bench".to_owned(), id.clone()));
                }
                batch.mappings.push(m);
            }
            store.commit_batch(batch).await.unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "{pass}: {BATCHES} batches of {BATCH} in {elapsed:.3}s = {:.0} batches/s = {:.0} records/s (look-ups {:.3}s)",
            BATCHES as f64 / elapsed,
            (BATCHES * BATCH) as f64 / elapsed,
            lookup.as_secs_f64()
        );
    }
}

#[test]
fn a_busy_store_stays_retryable_as_a_run_error() {
    let busy = StoreError::Busy {
        location: "ferry.db".into(),
        action: "committing a batch",
        reason: "database is locked".into(),
    };
    assert!(busy.is_retryable());
    let error = crate::error::Error::from(busy);
    assert!(error.is_retryable(), "{error:?}");
    assert_eq!(error.class(), "store_busy");
    let failed = crate::error::Error::from(StoreError::Query {
        location: "ferry.db".into(),
        action: "committing a batch",
        reason: "disk I/O error".into(),
    });
    assert!(!failed.is_retryable());
}
