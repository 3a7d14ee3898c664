//! Pagination decisions (pure): given what a page returned, what to request next — or stop.
//!
//! Guards are always on: a cursor or next link seen before, a cursor missing while the page
//! says more follow, a non-empty page identical to the one before, more records than
//! `total` announced, or more pages than `max_pages` abort the read with a [`GuardError`]
//! instead of looping or silently truncating.
//!
//! A page is empty only when it has neither records nor deleted ids: a source that
//! reports deletions (Simply CRM's `sync`) may fill a page with deletions alone.

use crate::extract::JsonPath;
use crate::protocol::types::StopRule;
use serde_json::{json, Value};
use std::collections::HashSet;

/// Which cursor drives the pages.
#[derive(Clone)]
pub enum PageStyle {
    None,
    PageNumber { start: i64 },
    Offset { start: i64 },
    Cursor { cursor: JsonPath },
    NextLink { next: JsonPath },
}

#[derive(Clone)]
pub struct PaginationPlan {
    pub style: PageStyle,
    pub size: Option<u64>,
    pub stop: StopRule,
    pub total: Option<JsonPath>,
    pub has_more: Option<JsonPath>,
    pub max_pages: Option<u64>,
}

/// The page to request; request templates read it as `page`.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    /// 0-based count of pages requested so far in this window.
    pub index: u64,
    pub number: i64,
    pub offset: i64,
    pub size: Option<u64>,
    pub cursor: Option<String>,
    /// For next-link paging: the URL to fetch instead of the templated request.
    pub next_url: Option<String>,
}

impl PageRequest {
    /// Where this page starts, as a protocol writes it into its parameters.
    pub fn position(&self) -> crate::protocol::PagePosition {
        crate::protocol::PagePosition {
            number: self.number,
            offset: self.offset,
            size: self.size,
            cursor: self.cursor.clone(),
        }
    }

    /// The `page` variable seen by templates.
    pub fn to_value(&self) -> Value {
        json!({
            "index": self.index,
            "number": self.number,
            "offset": self.offset,
            "size": self.size,
            "cursor": self.cursor,
        })
    }
}

/// What the engine observed in a page.
pub struct PageSeen<'a> {
    pub body: &'a Value,
    pub records: usize,
    /// Ids the page reported deleted (`source.deleted`).
    pub deleted: usize,
    /// A fingerprint of the page's records, to catch a source that repeats itself.
    pub fingerprint: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GuardError(pub String);

/// Walks the pages of one window.
pub struct Pager {
    plan: PaginationPlan,
    current: PageRequest,
    fetched: u64,
    total: Option<u64>,
    seen_tokens: HashSet<String>,
    last_fingerprint: Option<u64>,
}

fn read_u64(path: &JsonPath, body: &Value) -> Option<u64> {
    match path.first(body)? {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn read_bool(path: &JsonPath, body: &Value) -> Option<bool> {
    match path.first(body)? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => Some(n.as_f64() != Some(0.0)),
        Value::String(s) => Some(matches!(s.trim(), "true" | "1" | "yes" | "True" | "TRUE")),
        Value::Null => Some(false),
        _ => None,
    }
}

fn read_token(path: &JsonPath, body: &Value) -> Option<String> {
    match path.first(body)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Pager {
    pub fn new(plan: &PaginationPlan) -> Pager {
        let (number, offset) = match plan.style {
            PageStyle::PageNumber { start } => (start, 0),
            PageStyle::Offset { start } => (1, start),
            _ => (1, 0),
        };
        Pager {
            plan: plan.clone(),
            current: PageRequest {
                index: 0,
                number,
                offset,
                size: plan.size,
                cursor: None,
                next_url: None,
            },
            fetched: 0,
            total: None,
            seen_tokens: HashSet::new(),
            last_fingerprint: None,
        }
    }

    /// The first page of the window.
    pub fn first(&self) -> PageRequest {
        self.current.clone()
    }

    /// Whether pages can be requested ahead of the answer (numbered styles only).
    pub fn can_prefetch(&self) -> bool {
        matches!(self.plan.style, PageStyle::PageNumber { .. } | PageStyle::Offset { .. })
    }

    /// The page `ahead` steps after the current one (for prefetching numbered styles).
    pub fn peek(&self, ahead: u64) -> PageRequest {
        let mut page = self.current.clone();
        let step = ahead as i64;
        page.index += ahead;
        page.number += step;
        page.offset += step * self.plan.size.unwrap_or(0) as i64;
        page
    }

    /// The page with 0-based `index` in the window (at or after the current one), for
    /// requesting numbered pages ahead.
    pub fn page_at(&self, index: u64) -> PageRequest {
        self.peek(index.saturating_sub(self.current.index))
    }

    /// The index of the window's last page, once an announced `total` and a known page
    /// size fix it; `None` while unknown.
    pub fn last_index(&self) -> Option<u64> {
        let (total, size) = (self.total?, self.plan.size?);
        Some(total.div_ceil(size.max(1)).saturating_sub(1))
    }

    /// Records fetched so far.
    pub fn fetched(&self) -> u64 {
        self.fetched
    }

    /// Decides what follows the current page, given what it returned.
    pub fn advance(&mut self, seen: &PageSeen) -> Result<Option<PageRequest>, GuardError> {
        let records = seen.records as u64;
        self.fetched += records;
        let page_no = self.current.index + 1;

        if records > 0 && self.last_fingerprint == Some(seen.fingerprint) {
            return Err(GuardError(format!(
                "page {page_no} returned exactly the same records as the page before; the source is ignoring the paging parameters (check the names in source.request.query)"
            )));
        }
        self.last_fingerprint = Some(seen.fingerprint);

        if let Some(path) = &self.plan.total {
            if let Some(total) = read_u64(path, seen.body) {
                self.total = Some(total);
            }
        }
        if let Some(total) = self.total {
            if self.fetched > total {
                return Err(GuardError(format!(
                    "the source announced total={total} but {} records have arrived after {page_no} pages; the total or the paging is wrong",
                    self.fetched
                )));
            }
        }
        let more = self.plan.has_more.as_ref().and_then(|p| read_bool(p, seen.body));
        let empty = records == 0 && seen.deleted == 0;

        let stop = match self.plan.style {
            PageStyle::None => true,
            PageStyle::PageNumber { .. } | PageStyle::Offset { .. } => {
                empty
                    || match self.plan.stop {
                        StopRule::EmptyPage => false,
                        StopRule::ShortPage => self.plan.size.is_some_and(|size| records < size),
                        StopRule::Total => self.total.is_some_and(|t| self.fetched >= t),
                        StopRule::HasMore => more == Some(false),
                    }
            }
            PageStyle::Cursor { .. } | PageStyle::NextLink { .. } => empty || more == Some(false),
        };
        if stop {
            // A source that announced a total must deliver it (jdy's silent page cap, or
            // a paging parameter the server ignores, would otherwise lose rows quietly).
            if let (StopRule::Total, Some(total)) = (self.plan.stop, self.total) {
                if records == 0 && self.fetched < total {
                    return Err(GuardError(format!(
                        "the source announced total={total} but the pages ran out after {} records; rows are missing (check the page size cap and the paging parameters)",
                        self.fetched
                    )));
                }
            }
            return Ok(None);
        }
        if let Some(max) = self.plan.max_pages {
            if page_no >= max {
                return Err(GuardError(format!(
                    "stopped after max_pages={max} pages while the source still had more; raise source.pagination.max_pages or shorten the incremental window"
                )));
            }
        }

        let mut next = self.current.clone();
        next.index += 1;
        match &self.plan.style {
            PageStyle::PageNumber { .. } | PageStyle::Offset { .. } => {
                next.number += 1;
                next.offset += self.plan.size.unwrap_or(records) as i64;
                if let (Some(total), Some(size)) = (self.total, self.plan.size) {
                    let pages_needed = total.div_ceil(size.max(1));
                    if next.index >= pages_needed
                        && self.fetched < total
                        && records > 0
                        && self.plan.stop == StopRule::Total
                    {
                        return Err(GuardError(format!(
                            "total={total} with page size {size} means {pages_needed} pages, but after {page_no} pages only {} records arrived; the source's total or page size disagrees with the scheme",
                            self.fetched
                        )));
                    }
                }
            }
            PageStyle::Cursor { cursor } => match read_token(cursor, seen.body) {
                None if more == Some(true) => {
                    return Err(GuardError(format!(
                        "page {page_no} says more records follow but has no cursor at `{}`; the rest cannot be read",
                        cursor.as_str()
                    )))
                }
                None => return Ok(None),
                Some(token) => {
                    if !self.seen_tokens.insert(token.clone()) {
                        return Err(GuardError(format!(
                            "the source returned cursor `{token}` a second time; paging would loop forever"
                        )));
                    }
                    next.cursor = Some(token);
                }
            },
            PageStyle::NextLink { next: link } => match read_token(link, seen.body) {
                None => return Ok(None),
                Some(url) => {
                    if !self.seen_tokens.insert(url.clone()) {
                        return Err(GuardError(format!(
                            "the source returned next link `{url}` a second time; paging would loop forever"
                        )));
                    }
                    next.next_url = Some(url);
                }
            },
            PageStyle::None => return Ok(None),
        }
        self.current = next.clone();
        Ok(Some(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(
        style: PageStyle,
        stop: StopRule,
        total: Option<&str>,
        has_more: Option<&str>,
        max_pages: Option<u64>,
    ) -> PaginationPlan {
        PaginationPlan {
            style,
            size: Some(2),
            stop,
            total: total.map(|p| JsonPath::parse(p).unwrap()),
            has_more: has_more.map(|p| JsonPath::parse(p).unwrap()),
            max_pages,
        }
    }

    fn seen(body: &Value, records: usize, fingerprint: u64) -> PageSeen<'_> {
        PageSeen {
            body,
            records,
            deleted: 0,
            fingerprint,
        }
    }

    fn cursor_plan(has_more: Option<&str>) -> PaginationPlan {
        let mut plan = plan(
            PageStyle::Cursor {
                cursor: JsonPath::parse("$.next").unwrap(),
            },
            StopRule::HasMore,
            None,
            has_more,
            None,
        );
        plan.size = None;
        plan
    }

    #[test]
    fn a_page_of_deletions_alone_is_not_the_end() {
        let mut pager = Pager::new(&cursor_plan(Some("$.more")));
        let body = json!({"next": 7, "more": true});
        let only_deleted = PageSeen {
            body: &body,
            records: 0,
            deleted: 3,
            fingerprint: 0,
        };
        let next = pager.advance(&only_deleted).unwrap().unwrap();
        assert_eq!(next.cursor.as_deref(), Some("7"));
        let body = json!({"next": 9, "more": true});
        assert_eq!(
            pager.advance(&seen(&body, 0, 0)).unwrap(),
            None,
            "nothing at all ends it"
        );
    }

    #[test]
    fn more_without_a_cursor_is_a_guard_error() {
        let mut pager = Pager::new(&cursor_plan(Some("$.more")));
        let err = pager.advance(&seen(&json!({"more": true}), 2, 1)).unwrap_err();
        assert!(err.0.contains("no cursor at `$.next`"), "{err}");
        let mut pager = Pager::new(&cursor_plan(Some("$.more")));
        assert_eq!(pager.advance(&seen(&json!({"more": false}), 2, 1)).unwrap(), None);
    }

    #[test]
    fn the_last_page_is_known_once_a_total_arrives() {
        let plan = PaginationPlan {
            style: PageStyle::PageNumber { start: 1 },
            size: Some(2),
            stop: StopRule::Total,
            total: Some(JsonPath::parse("$.total").unwrap()),
            has_more: None,
            max_pages: None,
        };
        let mut pager = Pager::new(&plan);
        assert_eq!(pager.last_index(), None, "nothing is known before the first answer");
        let body = json!({"total": 5});
        pager.advance(&seen(&body, 2, 1)).unwrap();
        assert_eq!(pager.last_index(), Some(2), "5 records in pages of 2: pages 0, 1 and 2");
        assert_eq!(pager.page_at(2).number, 3);
        assert_eq!(pager.page_at(0).index, 1, "never behind the current page");
    }

    #[test]
    fn page_numbers_stop_on_total() {
        let mut pager = Pager::new(&plan(
            PageStyle::PageNumber { start: 1 },
            StopRule::Total,
            Some("$.total"),
            None,
            None,
        ));
        assert_eq!(pager.first().number, 1);
        let body = json!({"total": 3});
        let next = pager.advance(&seen(&body, 2, 1)).unwrap().unwrap();
        assert_eq!((next.number, next.offset, next.index), (2, 2, 1));
        assert_eq!(pager.advance(&seen(&body, 1, 2)).unwrap(), None);
    }

    #[test]
    fn pages_that_run_out_before_total_are_a_guard_error() {
        let mut pager = Pager::new(&plan(
            PageStyle::PageNumber { start: 1 },
            StopRule::Total,
            Some("$.count"),
            None,
            None,
        ));
        let body = json!({"count": "5"});
        pager.advance(&seen(&body, 2, 1)).unwrap();
        let err = pager.advance(&seen(&body, 0, 2)).unwrap_err();
        assert!(err.0.contains("total=5"), "{err}");
    }

    #[test]
    fn short_page_and_empty_page() {
        let mut pager = Pager::new(&plan(
            PageStyle::Offset { start: 0 },
            StopRule::ShortPage,
            None,
            None,
            None,
        ));
        let body = json!({});
        assert!(pager.advance(&seen(&body, 2, 1)).unwrap().is_some());
        assert_eq!(pager.advance(&seen(&body, 1, 2)).unwrap(), None);
        let mut pager = Pager::new(&plan(
            PageStyle::Offset { start: 0 },
            StopRule::EmptyPage,
            None,
            None,
            None,
        ));
        assert!(pager.advance(&seen(&body, 1, 1)).unwrap().is_some());
        assert_eq!(pager.advance(&seen(&body, 0, 2)).unwrap(), None);
    }

    #[test]
    fn has_more_flag() {
        let mut pager = Pager::new(&plan(
            PageStyle::PageNumber { start: 0 },
            StopRule::HasMore,
            None,
            Some("$.more"),
            None,
        ));
        assert!(pager.advance(&seen(&json!({"more": true}), 2, 1)).unwrap().is_some());
        assert_eq!(pager.advance(&seen(&json!({"more": "false"}), 2, 2)).unwrap(), None);
    }

    #[test]
    fn identical_page_is_a_guard_error() {
        let mut pager = Pager::new(&plan(
            PageStyle::PageNumber { start: 1 },
            StopRule::EmptyPage,
            None,
            None,
            None,
        ));
        let body = json!({});
        pager.advance(&seen(&body, 2, 7)).unwrap();
        let err = pager.advance(&seen(&body, 2, 7)).unwrap_err();
        assert!(err.0.contains("same records"), "{err}");
    }

    #[test]
    fn more_records_than_total_is_a_guard_error() {
        let mut pager = Pager::new(&plan(
            PageStyle::PageNumber { start: 1 },
            StopRule::EmptyPage,
            Some("$.total"),
            None,
            None,
        ));
        let body = json!({"total": 3});
        pager.advance(&seen(&body, 2, 1)).unwrap();
        assert!(pager.advance(&seen(&body, 2, 2)).unwrap_err().0.contains("total=3"));
    }

    #[test]
    fn repeated_cursor_is_a_guard_error() {
        let mut pager = Pager::new(&plan(
            PageStyle::Cursor {
                cursor: JsonPath::parse("$.next").unwrap(),
            },
            StopRule::EmptyPage,
            None,
            None,
            None,
        ));
        let next = pager.advance(&seen(&json!({"next": "a"}), 2, 1)).unwrap().unwrap();
        assert_eq!(next.cursor.as_deref(), Some("a"));
        pager.advance(&seen(&json!({"next": "b"}), 2, 2)).unwrap();
        assert!(pager
            .advance(&seen(&json!({"next": "a"}), 2, 3))
            .unwrap_err()
            .0
            .contains("cursor `a`"));
        let mut pager = Pager::new(&plan(
            PageStyle::Cursor {
                cursor: JsonPath::parse("$.next").unwrap(),
            },
            StopRule::EmptyPage,
            None,
            None,
            None,
        ));
        assert_eq!(pager.advance(&seen(&json!({"next": null}), 2, 1)).unwrap(), None);
    }

    #[test]
    fn next_link_and_max_pages() {
        let mut pager = Pager::new(&plan(
            PageStyle::NextLink {
                next: JsonPath::parse("$.next").unwrap(),
            },
            StopRule::EmptyPage,
            None,
            None,
            Some(2),
        ));
        let next = pager.advance(&seen(&json!({"next": "/p2"}), 2, 1)).unwrap().unwrap();
        assert_eq!(next.next_url.as_deref(), Some("/p2"));
        assert!(pager
            .advance(&seen(&json!({"next": "/p3"}), 2, 2))
            .unwrap_err()
            .0
            .contains("max_pages=2"));
    }

    #[test]
    fn peek_for_prefetch() {
        let pager = Pager::new(&plan(
            PageStyle::Offset { start: 10 },
            StopRule::EmptyPage,
            None,
            None,
            None,
        ));
        assert!(pager.can_prefetch());
        let ahead = pager.peek(2);
        assert_eq!((ahead.offset, ahead.index), (14, 2));
    }
}
