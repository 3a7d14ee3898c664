//! Body codecs: bytes on the wire ⇄ `serde_json::Value`.
//!
//! Owns the closed set of body formats Ferry speaks ([`Codec::Json`],
//! [`Codec::Xml`], [`Codec::Form`]) and their decoding errors. Every codec maps to
//! and from the same `serde_json::Value` model, so templates and JSONPath never
//! care which format a vendor uses.
//!
//! Promises:
//! - Pure: no IO, no global state; the same input gives the same output.
//! - Encoding is deterministic. Object keys keep their order (serde_json's
//!   `preserve_order`), JSON is written compact (no whitespace), form fields are
//!   written in object order. Vendors sign the exact bytes we send, so a payload
//!   encoded twice yields byte-identical bodies.
//! - Decoding errors are written for the operator: which codec, the parser's
//!   message with line and column when known, and a printable excerpt of the
//!   body. Common mistakes get their own variant: an empty body, an HTML error
//!   page, a body in another format than configured, a truncated document and
//!   bytes that are not UTF-8.
//! - Decoding bounds nesting at [`MAX_DEPTH`] levels so hostile input cannot
//!   overflow the stack.
//! - A leading UTF-8 byte-order mark is ignored (some .NET and Windows-hosted
//!   ERPs send one). Other text encodings (GBK, Latin-1) are rejected with a
//!   clear error rather than guessed.
//!
//! The XML mapping rules live in `xml.rs` and `docs/xml-mapping.md`.

mod form;
mod json;
mod xml;

use std::fmt;

use serde_json::Value;

/// The deepest nesting a decoded body may have (objects/arrays for JSON,
/// elements for XML). serde_json enforces the same limit on its own.
pub const MAX_DEPTH: usize = 128;

/// How many characters of a body an error message shows.
const PREVIEW_CHARS: usize = 120;

/// A body format. Serialized in schemes as `json`, `xml` or `form`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// `application/json`; the default.
    #[default]
    Json,
    /// `application/xml`, mapped as described in `docs/xml-mapping.md`.
    Xml,
    /// `application/x-www-form-urlencoded`: a flat object of strings.
    Form,
}

impl Codec {
    /// Every codec, in declaration order (for tables, help text and tests).
    pub const ALL: [Codec; 3] = [Codec::Json, Codec::Xml, Codec::Form];

    /// The name used in schemes (`json`, `xml`, `form`); matches serde.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::Xml => "xml",
            Codec::Form => "form",
        }
    }

    /// The `Content-Type` header value for bodies this codec encodes.
    pub fn content_type(self) -> &'static str {
        match self {
            Codec::Json => "application/json; charset=utf-8",
            Codec::Xml => "application/xml; charset=utf-8",
            Codec::Form => "application/x-www-form-urlencoded",
        }
    }

    /// Parses a body into a value.
    ///
    /// Form bodies decode into an object of strings (`a=b&c=d` →
    /// `{"a":"b","c":"d"}`); an empty form body is an empty object.
    pub fn decode(self, bytes: &[u8]) -> Result<Value, CodecError> {
        match self {
            Codec::Json => json::decode(bytes),
            Codec::Xml => xml::decode(bytes),
            Codec::Form => form::decode(bytes),
        }
    }

    /// Writes a value as a body. Deterministic: equal values give equal bytes.
    pub fn encode(self, value: &Value) -> Result<Vec<u8>, CodecError> {
        match self {
            Codec::Json => json::encode(value),
            Codec::Xml => xml::encode(value),
            Codec::Form => form::encode(value),
        }
    }

    /// [`Codec::encode`] for anything serializable: JSON is written straight from it (no
    /// intermediate value tree); XML and forms go through a [`Value`] first.
    pub fn encode_serializable<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, CodecError> {
        match self {
            Codec::Json => json::encode(value),
            other => {
                let value = serde_json::to_value(value).map_err(|error| CodecError::Encode {
                    codec: other,
                    message: error.to_string(),
                })?;
                other.encode(&value)
            }
        }
    }

    /// The label with its indefinite article ("an XML"), for messages.
    fn with_article(self) -> &'static str {
        match self {
            Codec::Json => "a JSON",
            Codec::Xml => "an XML",
            Codec::Form => "a form-urlencoded",
        }
    }

    /// The name people use for the format, for messages.
    fn label(self) -> &'static str {
        match self {
            Codec::Json => "JSON",
            Codec::Xml => "XML",
            Codec::Form => "form-urlencoded",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A 1-based line and column inside a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why a body could not be decoded or a value could not be encoded.
///
/// `preview` fields hold the start of the body (leading whitespace skipped,
/// at most 120 characters, control characters escaped) so an operator can
/// see what the server actually sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error(
        "the response body is empty where {} document was expected; \
         check the HTTP status and the endpoint URL",
        .codec.with_article()
    )]
    Empty { codec: Codec },

    #[error(
        "expected {} body but received an HTML page, usually a gateway, proxy or \
         login error page; check the URL, the credentials and the service status \
         (body begins: {preview})",
        .codec.with_article()
    )]
    HtmlPage { codec: Codec, preview: String },

    #[error(
        "expected {} body but it looks like {}; if the API really answers in {}, \
         set `codec: {}` (body begins: {preview})",
        .expected.with_article(), .found.label(), .found.label(), .found.name()
    )]
    WrongFormat {
        expected: Codec,
        found: Codec,
        preview: String,
    },

    #[error(
        "the {} body is not valid UTF-8 ({detail}); Ferry reads bodies as UTF-8 only, \
         so ask the vendor for UTF-8 or convert the body first (body begins: {preview})",
        .codec.label()
    )]
    InvalidUtf8 {
        codec: Codec,
        detail: String,
        preview: String,
    },

    #[error(
        "the {} body ends unexpectedly{}: {detail}; the response was probably cut \
         short (dropped connection, proxy or size limit) (body ends with: {tail})",
        .codec.label(), at(.position)
    )]
    Truncated {
        codec: Codec,
        detail: String,
        position: Option<Position>,
        tail: String,
    },

    #[error(
        "invalid {}{}: {message}{} (body begins: {preview})",
        .codec.label(), at(.position), near_text(.near)
    )]
    Syntax {
        codec: Codec,
        message: String,
        position: Option<Position>,
        /// The text around the error when it lies beyond the preview.
        near: Option<String>,
        preview: String,
    },

    #[error(
        "the {} body nests deeper than {limit} levels; Ferry refuses such input to \
         protect itself (body begins: {preview})",
        .codec.label()
    )]
    TooDeep {
        codec: Codec,
        limit: usize,
        preview: String,
    },

    #[error("cannot encode the payload as {}: {message}", .codec.label())]
    Encode { codec: Codec, message: String },
}

impl From<CodecError> for crate::error::Error {
    fn from(e: CodecError) -> Self {
        crate::error::Error::decode(e.to_string())
    }
}

impl CodecError {
    /// The codec that failed.
    pub fn codec(&self) -> Codec {
        match self {
            CodecError::Empty { codec }
            | CodecError::HtmlPage { codec, .. }
            | CodecError::InvalidUtf8 { codec, .. }
            | CodecError::Truncated { codec, .. }
            | CodecError::Syntax { codec, .. }
            | CodecError::TooDeep { codec, .. }
            | CodecError::Encode { codec, .. } => *codec,
            CodecError::WrongFormat { expected, .. } => *expected,
        }
    }
}

fn at(position: &Option<Position>) -> String {
    match position {
        Some(position) => format!(" at {position}"),
        None => String::new(),
    }
}

fn near_text(near: &Option<String>) -> String {
    match near {
        Some(near) => format!(" (near: {near})"),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------
// Helpers shared by the codecs.

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The body without a leading UTF-8 byte-order mark.
fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes)
}

/// The body without a byte-order mark and leading ASCII whitespace.
fn significant(bytes: &[u8]) -> &[u8] {
    let bytes = strip_bom(bytes);
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

fn is_blank(bytes: &[u8]) -> bool {
    significant(bytes).is_empty()
}

fn starts_with_ignore_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// True when the body opens like an HTML page rather than data.
fn looks_like_html(bytes: &[u8]) -> bool {
    let start = significant(bytes);
    [b"<!doctype html".as_slice(), b"<html", b"<head", b"<body"]
        .iter()
        .any(|prefix| starts_with_ignore_case(start, prefix))
}

/// Checks shared by JSON and XML: empty body, HTML page.
fn reject_empty_or_html(codec: Codec, bytes: &[u8]) -> Result<(), CodecError> {
    if is_blank(bytes) {
        return Err(CodecError::Empty { codec });
    }
    if looks_like_html(bytes) {
        return Err(CodecError::HtmlPage {
            codec,
            preview: preview(bytes),
        });
    }
    Ok(())
}

/// The body as UTF-8 text (byte-order mark removed), or a clear error.
fn utf8_text(codec: Codec, bytes: &[u8]) -> Result<&str, CodecError> {
    let body = strip_bom(bytes);
    std::str::from_utf8(body).map_err(|error| {
        let offset = error.valid_up_to() + (bytes.len() - body.len());
        let bad = bytes.get(offset).copied().unwrap_or_default();
        let mut detail = format!("byte 0x{bad:02X} at offset {offset} is not UTF-8");
        if let Some(declared) = declared_xml_encoding(body) {
            if !declared.eq_ignore_ascii_case("utf-8") {
                detail.push_str(&format!("; the XML declaration says encoding=\"{declared}\""));
            }
        }
        CodecError::InvalidUtf8 {
            codec,
            detail,
            preview: preview(bytes),
        }
    })
}

/// The `encoding="…"` of an XML declaration at the start of the body, if any.
fn declared_xml_encoding(body: &[u8]) -> Option<String> {
    let start = significant(body);
    if !start.starts_with(b"<?xml") {
        return None;
    }
    let end = start.iter().position(|&b| b == b'>')?;
    let declaration = String::from_utf8_lossy(&start[..end]);
    let after = &declaration[declaration.find("encoding")? + "encoding".len()..];
    let after = after.trim_start().strip_prefix('=')?.trim_start();
    let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &after[1..];
    Some(value[..value.find(quote)?].to_string())
}

/// Escapes control characters so a snippet prints on one line.
fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    for c in chars.by_ref().take(max_chars) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// The first characters of the body, printable, for error messages.
fn preview(bytes: &[u8]) -> String {
    // 4 bytes per char is the UTF-8 maximum, so this slice always holds enough.
    let start = significant(bytes);
    let head = &start[..start.len().min(PREVIEW_CHARS * 4 + 4)];
    printable(&String::from_utf8_lossy(head), PREVIEW_CHARS)
}

/// The last characters of the body, printable, for truncation errors.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(PREVIEW_CHARS * 4)..]);
    let text = text.trim_end();
    let count = text.chars().count();
    let skipped = count.saturating_sub(PREVIEW_CHARS);
    let start = text.char_indices().nth(skipped).map_or(0, |(i, _)| i);
    let prefix = if skipped > 0 || bytes.len() > PREVIEW_CHARS * 4 {
        "…"
    } else {
        ""
    };
    format!("{prefix}{}", printable(&text[start..], PREVIEW_CHARS))
}

/// The text around `offset`, when it lies beyond what the preview shows.
fn near(text: &str, offset: usize) -> Option<String> {
    const SPAN: usize = 40;
    let lead = text.len() - text.trim_start().len();
    if offset < lead + PREVIEW_CHARS / 2 {
        return None;
    }
    let mut from = offset.saturating_sub(SPAN).min(text.len());
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    let mut to = (offset + SPAN).min(text.len());
    while !text.is_char_boundary(to) {
        to += 1;
    }
    Some(format!("…{}", printable(&text[from..to], SPAN * 2)))
}

/// The 1-based line and column (in characters) of a byte offset.
fn position_of(text: &str, offset: usize) -> Position {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_match_serde_and_cover_every_codec() {
        for codec in Codec::ALL {
            let serialized = serde_json::to_value(codec).unwrap();
            assert_eq!(serialized, json!(codec.name()));
            let back: Codec = serde_json::from_value(serialized).unwrap();
            assert_eq!(back, codec);
            assert_eq!(codec.to_string(), codec.name());
        }
        assert_eq!(Codec::default(), Codec::Json);
    }

    #[test]
    fn content_types() {
        assert_eq!(Codec::Json.content_type(), "application/json; charset=utf-8");
        assert_eq!(Codec::Xml.content_type(), "application/xml; charset=utf-8");
        assert_eq!(Codec::Form.content_type(), "application/x-www-form-urlencoded");
    }

    #[test]
    fn every_codec_round_trips_a_flat_object_of_strings() {
        let value = json!({"root": "a & b <c>", "n": "1"});
        for codec in Codec::ALL {
            let value = if codec == Codec::Xml {
                json!({"doc": value.clone()})
            } else {
                value.clone()
            };
            let bytes = codec.encode(&value).unwrap();
            assert_eq!(codec.decode(&bytes).unwrap(), value, "codec {codec}");
        }
    }

    #[test]
    fn html_gateway_page_is_named_for_every_codec() {
        let page = b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head></html>";
        for codec in Codec::ALL {
            let error = codec.decode(page).unwrap_err();
            assert!(matches!(error, CodecError::HtmlPage { .. }), "{codec}: {error:?}");
            let message = error.to_string();
            assert!(message.contains("HTML page"), "{message}");
            assert!(message.contains("502 Bad Gateway"), "{message}");
        }
    }

    #[test]
    fn empty_body_is_named_for_json_and_xml() {
        for codec in [Codec::Json, Codec::Xml] {
            let error = codec.decode(b"  \r\n ").unwrap_err();
            assert_eq!(error, CodecError::Empty { codec });
            assert!(error.to_string().contains("empty"));
        }
    }

    #[test]
    fn invalid_utf8_is_reported_with_offset() {
        for codec in Codec::ALL {
            let error = codec.decode(b"name=\xC0\xFF").unwrap_err();
            assert!(matches!(error, CodecError::InvalidUtf8 { .. }), "{codec}: {error:?}");
            assert!(error.to_string().contains("UTF-8"), "{error}");
        }
        let error = Codec::Xml
            .decode(b"<?xml version=\"1.0\" encoding=\"GBK\"?><a>\xD6\xD0</a>")
            .unwrap_err();
        assert!(error.to_string().contains("encoding=\"GBK\""), "{error}");
        assert!(error.to_string().contains("offset 39"), "{error}");
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        assert_eq!(Codec::Json.decode(b"\xEF\xBB\xBF{\"a\":1}").unwrap(), json!({"a": 1}));
        assert_eq!(Codec::Xml.decode(b"\xEF\xBB\xBF<a>1</a>").unwrap(), json!({"a": "1"}));
    }

    #[test]
    fn preview_escapes_control_characters_and_is_bounded() {
        assert_eq!(preview(b"  \n<a>\tb\x07</a>"), "<a>\\tb\\u{7}</a>");
        let long = "x".repeat(500);
        let shown = preview(long.as_bytes());
        assert_eq!(shown.chars().count(), PREVIEW_CHARS + 1);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn tail_shows_the_end() {
        let body = format!("{}END", "y".repeat(400));
        let shown = tail(body.as_bytes());
        assert!(shown.starts_with('…') && shown.ends_with("END"), "{shown}");
        assert_eq!(tail(b"{\"a\":"), "{\"a\":");
    }

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "ab\n数据x";
        assert_eq!(position_of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(position_of(text, 3), Position { line: 2, column: 1 });
        assert_eq!(position_of(text, 9), Position { line: 2, column: 3 });
    }
}
