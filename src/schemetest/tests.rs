//! `ferry test` against the shipped test files, and the proofs that it bites: a broken
//! signer, a changed field mapping and a rerun that writes again each fail a test; scripted
//! faults change (or, when retried, do not change) the outcome.

use super::format::{self, FaultKind, FaultSpec, TestFile};
use super::runner::{run_test, TestReport};
use crate::protocol::prelude::*;
use crate::protocol::{Answer, Call, LoginStep, WireRequest};
use crate::scheme::Plan;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn shipped(scheme: &str) -> TestFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("schemes/tests/{scheme}.test.yaml"));
    format::load(&path).unwrap_or_else(|(_, d)| panic!("{d:?}"))
}

async fn run(test: &TestFile, tweak: &dyn Fn(&mut Plan)) -> TestReport {
    run_test(test, tweak)
        .await
        .unwrap_or_else(|bad| panic!("{:?}", bad.diagnostics))
}

fn problems(report: &TestReport) -> String {
    report.problems.join("\n")
}

/// A connector whose requests carry a wrong signature: everything is the real protocol's,
/// but one character of its `sign` (or `X-Api-Signature`) is changed after signing.
#[derive(Debug)]
struct BrokenSigner(Arc<dyn Protocol>);

fn flip(text: &mut String, after: &str) -> bool {
    let Some(at) = text.find(after).map(|at| at + after.len()) else {
        return false;
    };
    let Some(c) = text[at..].chars().next() else {
        return false;
    };
    let swapped = if c == 'A' {
        "B"
    } else if c.is_ascii_digit() || c.is_ascii_uppercase() {
        "A"
    } else {
        "a"
    };
    let swapped = if c == 'a' { "b" } else { swapped };
    text.replace_range(at..at + c.len_utf8(), swapped);
    true
}

impl Protocol for BrokenSigner {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn templated(&self) -> bool {
        self.0.templated()
    }
    fn check(&self) -> Result<(), crate::protocol::SettingsError> {
        self.0.check()
    }
    fn server_zone(&self) -> Option<chrono_tz::Tz> {
        self.0.server_zone()
    }
    fn build(&self, call: &Call<'_>) -> Result<WireRequest, String> {
        let mut wire = self.0.build(call)?;
        for (name, value) in wire.headers.iter_mut() {
            if name.eq_ignore_ascii_case("x-api-signature") {
                let mut text = value.clone();
                flip(&mut text, "");
                *value = text;
            }
        }
        if let Some(body) = wire.body.take() {
            let mut text = String::from_utf8_lossy(&body).into_owned();
            if !flip(&mut text, "\"sign\":\"") {
                flip(&mut text, "sign=");
            }
            wire.body = Some(text.into_bytes());
        }
        Ok(wire)
    }
    fn login(
        &self,
        base_url: &str,
        answers: &[Answer],
        now: DateTime<Utc>,
        nonce: u128,
    ) -> Result<Option<LoginStep>, String> {
        self.0.login(base_url, answers, now, nonce)
    }
    fn classify(&self, status: u16, body: &Value) -> Verdict {
        self.0.classify(status, body)
    }
    fn records_path(&self, api: &str) -> Option<&'static str> {
        self.0.records_path(api)
    }
    fn deleted_path(&self, api: &str) -> Option<&'static str> {
        self.0.deleted_path(api)
    }
    fn paging(&self, api: &str) -> Option<PagingDefaults> {
        self.0.paging(api)
    }
    fn apply_page(
        &self,
        api: &str,
        params: &mut Value,
        page: &PagePosition,
        paging: &PagingDefaults,
    ) -> Result<(), String> {
        self.0.apply_page(api, params, page, paging)
    }
    fn check_page(&self, api: &str, params: &Value, body: &Value) -> Result<(), String> {
        self.0.check_page(api, params, body)
    }
    fn shape_records(&self, api: &str, params: &Value, rows: Vec<Value>) -> Result<Vec<Value>, String> {
        self.0.shape_records(api, params, rows)
    }
    fn prepare_write(&self, api: &str, params: &mut Value, targets: &WriteTargets<'_>) -> Result<(), String> {
        self.0.prepare_write(api, params, targets)
    }
    fn row_outcomes(&self, api: &str, body: &Value, rows: usize) -> Option<Vec<RowOutcome>> {
        self.0.row_outcomes(api, body, rows)
    }
    fn written_id(&self, api: &str, body: &Value) -> Option<String> {
        self.0.written_id(api, body)
    }
    fn reports_detail_ids(&self) -> bool {
        self.0.reports_detail_ids()
    }
    fn attach_detail_ids(
        &self,
        api: &str,
        params: &Value,
        body: &Value,
        lists: &[DetailList],
        outcomes: &mut [RowOutcome],
    ) {
        self.0.attach_detail_ids(api, params, body, lists, outcomes)
    }
    fn row_locks(&self, api: &str, params: &Value) -> Option<crate::protocol::locks::Relock> {
        self.0.row_locks(api, params)
    }
}

fn break_signer_of(connection: &'static str) -> impl Fn(&mut Plan) {
    move |plan: &mut Plan| {
        let conn = plan.connections.get_mut(connection).expect("connection");
        conn.protocol = Arc::new(BrokenSigner(Arc::clone(&conn.protocol)));
    }
}

#[tokio::test]
async fn every_shipped_test_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemes");
    let files = super::collect(&[dir]).unwrap();
    assert!(files.len() >= 6, "{files:?}");
    for file in files {
        let test = format::load(&file).unwrap_or_else(|(_, d)| panic!("{d:?}"));
        let report = run(&test, &|_| {}).await;
        assert!(report.passed, "{}:\n{}", file.display(), problems(&report));
    }
}

#[tokio::test]
async fn a_broken_signer_fails_the_test_through_the_simulators_own_check() {
    for (scheme, connection, what) in [
        ("guanyi-shops-to-kingdee-customers", "guanyi", "guanyi `sign`"),
        ("jdy-purchase-inbound-to-jackyun-customers", "jackyun", "jackyun `sign`"),
        (
            "jdy-purchase-inbound-to-jackyun-customers",
            "jdy",
            "jdy X-Api-Signature",
        ),
        (
            "guanyi-shops-to-kingdee-customers",
            "k3cloud",
            "kingdee-k3cloud signed headers",
        ),
    ] {
        let test = shipped(scheme);
        let report = run(&test, &break_signer_of(connection)).await;
        assert!(!report.passed, "{scheme}: a broken {connection} signer passed");
        let text = problems(&report);
        assert!(text.contains("signature:") && text.contains(what), "{scheme}:\n{text}");
        // Only the signature differs: the sign field itself is volatile, the rest matches.
        assert!(!text.contains("differs from the recording"), "{text}");
    }
}

/// Copies a shipped scheme next to a copy of its test, with `edit` applied to the scheme.
fn with_scheme_edit(scheme: &str, edit: impl Fn(&str) -> String) -> (tempfile::TempDir, TestFile) {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemes");
    let text = std::fs::read_to_string(root.join(format!("{scheme}.yaml"))).unwrap();
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit changed nothing");
    let scheme_path: PathBuf = dir.path().join(format!("{scheme}.yaml"));
    std::fs::write(&scheme_path, edited).unwrap();
    let mut test = shipped(scheme);
    test.scheme_path = scheme_path;
    (dir, test)
}

#[tokio::test]
async fn a_changed_field_mapping_fails_with_a_diff_naming_the_field() {
    let (_dir, test) = with_scheme_edit("jdy-purchase-inbound-to-jackyun-customers", |text| {
        text.replace(
            "nickname: \"<< supplier_name >>\"",
            "nickname: \"<< supplier_number >>\"",
        )
    });
    let report = run(&test, &|_| {}).await;
    assert!(!report.passed);
    let text = problems(&report);
    assert!(
        text.contains("differs from the recording") && text.contains("body.bizcontent.nickname: expected"),
        "{text}"
    );
    // The signature is still right: only the mapping is reported.
    assert!(!text.contains("signature:"), "{text}");
}

#[tokio::test]
async fn a_rerun_that_writes_again_fails() {
    // Run two's source answers one order again with a new amount, although the test says
    // nothing changed between runs: Ferry updates it, and the test must say so.
    let mut test = shipped("shop-orders-to-erp");
    let first_page = test.spec.runs[0]
        .exchanges
        .iter()
        .find(|e| e.connection == "shop" && e.response.body.as_ref().is_some_and(|b| b["data"]["total"] != 0))
        .expect("a page with orders")
        .response
        .clone();
    let mut changed = first_page.clone();
    let body = changed.body.as_mut().unwrap();
    let mut order = body["data"]["orders"][0].clone();
    order["amount"] = Value::String("1.00".into());
    // Inside run two's window, as the source would stamp a changed order.
    let stamp = (test.spec.runs[1].now - chrono::Duration::minutes(3)).with_timezone(&chrono_tz::Asia::Shanghai);
    order["modified_at"] = Value::String(stamp.format("%Y-%m-%d %H:%M:%S").to_string());
    body["data"]["orders"] = Value::Array(vec![order]);
    body["data"]["total"] = Value::from(1);
    let second = &mut test.spec.runs[1];
    let rerun_page = second.exchanges.iter_mut().find(|e| e.connection == "shop").unwrap();
    rerun_page.response = changed;
    let report = run(&test, &|_| {}).await;
    assert!(!report.passed);
    let text = problems(&report);
    assert!(text.contains("run 2: sent 1 write request(s) to the target"), "{text}");
    assert!(text.contains("not in the recording"), "{text}");
}

#[tokio::test]
async fn retried_faults_leave_the_outcome_alone_and_a_lost_answer_changes_it() {
    // A read is safe to retry: a 5xx, a throttle or a timeout on the source's first page
    // is retried and the run ends as recorded.
    for kind in [FaultKind::ServerError, FaultKind::Throttle, FaultKind::Timeout] {
        let mut test = shipped("shop-orders-to-erp");
        test.spec.runs[0].faults = vec![FaultSpec {
            connection: "shop".into(),
            request: 1,
            kind,
        }];
        let report = run(&test, &|_| {}).await;
        assert!(report.passed, "{kind:?}: {}", problems(&report));
    }
    // A write whose answer is lost is uncertain: Ferry looks the orders up before it
    // believes anything, which the recording (of a clean run) does not hold.
    let mut test = shipped("shop-orders-to-erp");
    test.spec.runs[0].faults = vec![FaultSpec {
        connection: "erp".into(),
        request: 1,
        kind: FaultKind::CrashAfterWrite,
    }];
    let report = run(&test, &|_| {}).await;
    assert!(!report.passed, "a write whose answer was lost cannot end as recorded");
    assert!(
        problems(&report).contains("run 1: exit code: expected 0"),
        "{}",
        problems(&report)
    );
}
