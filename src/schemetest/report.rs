//! How `ferry test` prints its results: a readable summary with the differences of each
//! failed test, JSON for scripts, and JUnit XML for CI systems.

use super::runner::TestReport;
use std::fmt::Write as _;

/// The text summary: one line per test, the problems of failed ones indented below.
pub fn text(reports: &[TestReport]) -> String {
    let mut out = String::new();
    for report in reports {
        let mark = if report.passed { "ok  " } else { "FAIL" };
        let _ = writeln!(
            out,
            "{mark} {}  ({}, {:.2}s)",
            report.file,
            report.scheme,
            report.duration_ms as f64 / 1000.0
        );
        for problem in &report.problems {
            let mut lines = problem.lines();
            if let Some(first) = lines.next() {
                let _ = writeln!(out, "  - {first}");
            }
            for line in lines {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    let failed = reports.iter().filter(|r| !r.passed).count();
    let _ = writeln!(out, "\n{} passed, {failed} failed", reports.len() - failed);
    out
}

/// JUnit XML: one `<testsuite name="ferry test">`, one `<testcase>` per test file.
pub fn junit(reports: &[TestReport]) -> String {
    let failed = reports.iter().filter(|r| !r.passed).count();
    let seconds: f64 = reports.iter().map(|r| r.duration_ms as f64 / 1000.0).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuite name=\"ferry test\" tests=\"{}\" failures=\"{failed}\" time=\"{seconds:.3}\">",
        reports.len()
    );
    for report in reports {
        let _ = write!(
            out,
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            xml(&report.scheme),
            xml(&report.file),
            report.duration_ms as f64 / 1000.0
        );
        if report.passed {
            out.push_str("/>\n");
        } else {
            let first = report.problems.first().map(String::as_str).unwrap_or_default();
            let _ = writeln!(
                out,
                ">\n    <failure message=\"{}\">{}</failure>\n  </testcase>",
                xml(first.lines().next().unwrap_or_default()),
                xml(&report.problems.join("\n"))
            );
        }
    }
    out.push_str("</testsuite>\n");
    out
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(passed: bool, problems: &[&str]) -> TestReport {
        TestReport {
            file: "schemes/tests/a.test.yaml".into(),
            scheme: "a".into(),
            passed,
            problems: problems.iter().map(|p| p.to_string()).collect(),
            duration_ms: 1500,
        }
    }

    #[test]
    fn junit_counts_and_escapes() {
        let xml = junit(&[
            report(true, &[]),
            report(false, &["run 1: body.x: expected \"<a>\", got 1"]),
        ]);
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(xml.contains("expected &quot;&lt;a&gt;&quot;"), "{xml}");
        assert_eq!(xml.matches("<testcase").count(), 2);
    }

    #[test]
    fn text_shows_each_problem_under_its_test() {
        let text = text(&[report(false, &["run 2: a\n    b"])]);
        assert!(
            text.starts_with("FAIL schemes/tests/a.test.yaml  (a, 1.50s)\n  - run 2: a\n        b\n"),
            "{text}"
        );
        assert!(text.ends_with("0 passed, 1 failed\n"));
    }
}
