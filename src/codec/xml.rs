//! XML bodies, mapped to and from the same `serde_json::Value` model as JSON.
//!
//! Built on quick-xml's event reader and writer rather than its serde support:
//! serde derive needs Rust types per vendor schema, and Ferry's records are
//! schemaless values.
//!
//! # Decoding rules
//! - The document is an object whose only key is the root element's name.
//! - An element with only text becomes a string. An empty element (`<a/>` or
//!   `<a></a>`) becomes `""`: XML cannot tell "empty" from "absent", vendors
//!   write empty fields as `<Remark/>`, and keeping every leaf a string means
//!   templates and filters never meet a surprise `null`.
//! - Attributes become keys prefixed with `@`, in document order, before the
//!   child elements.
//! - An element with attributes or child elements keeps its text under
//!   `#text` (last key). With child elements, each text run is trimmed and the
//!   runs are joined with one space (mixed content is lossy by design).
//! - Child elements become keys in order of first appearance. A name that
//!   repeats among siblings becomes an array in document order; a name seen once
//!   stays a single value. So a list with one item is not an array, and
//!   `$.Orders.Order[*]` only selects orders when there are two or more. A
//!   `records` path that works for both shapes filters descendants on a key
//!   every record has: `$.Orders..[?(@['@id'])]` (see `docs/xml-mapping.md`).
//! - Namespace prefixes stay part of names (`soap:Envelope`, `@xmlns:soap`).
//! - CDATA is text; the five predefined entities and character references are
//!   decoded; other entities are an error (no DTD expansion, so no entity bombs).
//! - Whitespace-only text is ignored, except as the whole content of an element
//!   with no attributes and no children (`<a> </a>` → `" "`).
//! - No type inference: every leaf is a string. Comments, processing
//!   instructions and the DOCTYPE are skipped.
//! - Nesting deeper than [`MAX_DEPTH`] elements is refused.
//!
//! # Encoding rules (the inverse)
//! - The value must be an object with exactly one key: the root element.
//! - Arrays become repeated elements; `@name` keys become attributes; `#text`
//!   becomes text (written before child elements); strings, numbers and booleans
//!   become text; `null` becomes an empty element `<a/>`.
//! - Output starts with `<?xml version="1.0" encoding="UTF-8"?>`, has no
//!   indentation, and follows object key order, so it is deterministic.
//!
//! ```text
//! <Order id="7"><Line>a</Line><Line>b</Line><Note/></Order>
//!   ⇄ {"Order": {"@id": "7", "Line": ["a", "b"], "Note": ""}}
//! ```
//!
//! Round trips are exact for values that follow the decoding rules (strings
//! only, attributes first, `#text` last, no `null`, no empty arrays).

use std::borrow::Cow;

use quick_xml::escape::EscapeError;
use quick_xml::events::{BytesDecl, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};
use serde_json::{Map, Value};

use super::{
    near, position_of, preview, reject_empty_or_html, significant, tail, utf8_text, Codec, CodecError, MAX_DEPTH,
};

const TEXT_KEY: &str = "#text";
const ATTRIBUTE_PREFIX: char = '@';

// ---------------------------------------------------------------------------
// Decoding

/// An element being read: its name, `@` attributes and children so far, and
/// the text runs seen directly inside it.
struct OpenElement {
    name: String,
    attributes: Map<String, Value>,
    children: Map<String, Value>,
    text: Vec<String>,
}

impl OpenElement {
    fn into_value(self) -> Value {
        let has_children = !self.children.is_empty();
        let text = if has_children {
            let runs: Vec<&str> = self
                .text
                .iter()
                .map(|run| run.trim())
                .filter(|run| !run.is_empty())
                .collect();
            runs.join(" ")
        } else {
            self.text.concat()
        };
        if self.attributes.is_empty() && !has_children {
            return Value::String(text);
        }
        let mut object = self.attributes;
        object.extend(self.children);
        if !text.trim().is_empty() {
            object.insert(TEXT_KEY.to_string(), Value::String(text));
        }
        Value::Object(object)
    }
}

/// Adds a child, turning a repeated name into an array. Element values are
/// never arrays themselves, so an existing array always means "repeated".
fn add_child(children: &mut Map<String, Value>, name: String, value: Value) {
    match children.get_mut(&name) {
        None => {
            children.insert(name, value);
        }
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
    }
}

pub(super) fn decode(bytes: &[u8]) -> Result<Value, CodecError> {
    reject_empty_or_html(Codec::Xml, bytes)?;
    if let Some(b'{' | b'[') = significant(bytes).first() {
        return Err(CodecError::WrongFormat {
            expected: Codec::Xml,
            found: Codec::Json,
            preview: preview(bytes),
        });
    }
    let text = utf8_text(Codec::Xml, bytes)?;
    Decoder { text, bytes }.run()
}

struct Decoder<'a> {
    text: &'a str,
    bytes: &'a [u8],
}

impl Decoder<'_> {
    fn run(&self) -> Result<Value, CodecError> {
        let mut reader = Reader::from_str(self.text);
        let mut open: Vec<OpenElement> = Vec::new();
        let mut root: Option<(String, Value)> = None;

        loop {
            let event_start = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
            let event = match reader.read_event() {
                Ok(event) => event,
                Err(error) => {
                    let offset = usize::try_from(reader.error_position()).unwrap_or(event_start);
                    return Err(self.reader_error(&error, offset));
                }
            };
            match event {
                Event::Start(start) => {
                    let element = self.open_element(&start, event_start, &open, &root)?;
                    open.push(element);
                }
                Event::Empty(start) => {
                    let element = self.open_element(&start, event_start, &open, &root)?;
                    self.close_element(element, &mut open, &mut root);
                }
                Event::End(_) => {
                    // quick-xml checks that end names match their start tags.
                    if let Some(element) = open.pop() {
                        self.close_element(element, &mut open, &mut root);
                    }
                }
                Event::Text(text) => {
                    let text = text
                        .unescape()
                        .map_err(|error| self.reader_error(&error, event_start))?;
                    self.add_text(text, event_start, &mut open)?;
                }
                Event::CData(cdata) => {
                    let text = cdata
                        .decode()
                        .map_err(|error| self.syntax(error.to_string(), event_start))?;
                    self.add_text(text, event_start, &mut open)?;
                }
                Event::DocType(doctype) => {
                    if starts_with_html(&doctype) {
                        return Err(CodecError::HtmlPage {
                            codec: Codec::Xml,
                            preview: preview(self.bytes),
                        });
                    }
                }
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
                Event::Eof => break,
            }
        }

        if !open.is_empty() {
            let missing: Vec<String> = open.iter().rev().map(|e| format!("</{}>", e.name)).collect();
            return Err(CodecError::Truncated {
                codec: Codec::Xml,
                detail: format!(
                    "the document stops before {} {} closed",
                    missing.concat(),
                    if open.len() == 1 { "is" } else { "are" }
                ),
                position: Some(position_of(self.text, self.text.len())),
                tail: tail(self.bytes),
            });
        }
        match root {
            Some((name, value)) => {
                let mut document = Map::new();
                document.insert(name, value);
                Ok(Value::Object(document))
            }
            None => Err(self.syntax(
                "the document has no root element (only a declaration, comments or text)".to_string(),
                self.text.len(),
            )),
        }
    }

    fn open_element(
        &self,
        start: &BytesStart<'_>,
        offset: usize,
        open: &[OpenElement],
        root: &Option<(String, Value)>,
    ) -> Result<OpenElement, CodecError> {
        let name = self.name_text(start.name().as_ref(), offset)?;
        if let Some((root_name, _)) = root {
            return Err(self.syntax(
                format!(
                    "a second top-level element <{name}> follows the root <{root_name}>; \
                     XML allows one root element"
                ),
                offset,
            ));
        }
        if open.is_empty() && name.eq_ignore_ascii_case("html") {
            return Err(CodecError::HtmlPage {
                codec: Codec::Xml,
                preview: preview(self.bytes),
            });
        }
        if open.len() >= MAX_DEPTH {
            return Err(CodecError::TooDeep {
                codec: Codec::Xml,
                limit: MAX_DEPTH,
                preview: preview(self.bytes),
            });
        }
        let mut attributes = Map::new();
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|error| self.syntax(format!("in <{name}>: {error}"), offset))?;
            let key = self.name_text(attribute.key.as_ref(), offset)?;
            let value = attribute
                .unescape_value()
                .map_err(|error| self.reader_error(&error, offset))?;
            attributes.insert(format!("{ATTRIBUTE_PREFIX}{key}"), Value::String(value.into()));
        }
        Ok(OpenElement {
            name,
            attributes,
            children: Map::new(),
            text: Vec::new(),
        })
    }

    fn close_element(&self, element: OpenElement, open: &mut [OpenElement], root: &mut Option<(String, Value)>) {
        let name = element.name.clone();
        let value = element.into_value();
        match open.last_mut() {
            Some(parent) => add_child(&mut parent.children, name, value),
            None => *root = Some((name, value)),
        }
    }

    fn add_text(&self, text: Cow<'_, str>, offset: usize, open: &mut [OpenElement]) -> Result<(), CodecError> {
        match open.last_mut() {
            Some(element) => element.text.push(text.into_owned()),
            None if text.trim().is_empty() => {}
            None => {
                return Err(self.syntax(
                    format!("text `{}` outside the root element", super::printable(text.trim(), 40)),
                    offset + (text.len() - text.trim_start().len()),
                ))
            }
        }
        Ok(())
    }

    fn name_text(&self, raw: &[u8], offset: usize) -> Result<String, CodecError> {
        std::str::from_utf8(raw)
            .map(str::to_string)
            .map_err(|error| self.syntax(format!("element or attribute name: {error}"), offset))
    }

    fn syntax(&self, message: String, offset: usize) -> CodecError {
        CodecError::Syntax {
            codec: Codec::Xml,
            message,
            position: Some(position_of(self.text, offset)),
            near: near(self.text, offset),
            preview: preview(self.bytes),
        }
    }

    fn reader_error(&self, error: &quick_xml::Error, offset: usize) -> CodecError {
        match error {
            quick_xml::Error::Syntax(syntax) => CodecError::Truncated {
                codec: Codec::Xml,
                detail: syntax.to_string(),
                position: Some(position_of(self.text, offset)),
                tail: tail(self.bytes),
            },
            quick_xml::Error::IllFormed(ill_formed) => self.syntax(ill_formed.to_string(), offset),
            quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(range, entity)) => self.syntax(
                format!(
                    "unknown entity `&{entity};`; XML only predefines &lt; &gt; &amp; \
                         &quot; &apos; and numeric references like &#38; (escape a literal \
                         `&` as &amp;)"
                ),
                offset + range.start,
            ),
            quick_xml::Error::Escape(EscapeError::UnterminatedEntity(range)) => self.syntax(
                "`&` starts an entity that never ends with `;` (escape a literal `&` as &amp;)".to_string(),
                offset + range.start,
            ),
            other => self.syntax(other.to_string(), offset),
        }
    }
}

fn starts_with_html(doctype: &[u8]) -> bool {
    let content = doctype.trim_ascii_start();
    content.len() >= 4 && content[..4].eq_ignore_ascii_case(b"html")
}

// ---------------------------------------------------------------------------
// Encoding

pub(super) fn encode(value: &Value) -> Result<Vec<u8>, CodecError> {
    let root = match value {
        Value::Object(map) if map.len() == 1 => map.iter().next(),
        _ => None,
    };
    let Some((name, root_value)) = root else {
        let found = match value {
            Value::Object(map) => format!("an object with {} keys", map.len()),
            _ => "not an object".to_string(),
        };
        return Err(encode_error(format!(
            "XML needs exactly one root element; wrap the body in an object with one key \
             (found {found})"
        )));
    };
    if root_value.is_array() {
        return Err(encode_error(format!(
            "the root element <{name}> cannot repeat (its value is an array); XML allows one \
             root, so wrap the list in another element"
        )));
    }

    let mut writer = Writer::new(Vec::with_capacity(256));
    write(&mut writer, Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let mut path = Vec::new();
    write_element(&mut writer, name, root_value, &mut path)?;
    Ok(writer.into_inner())
}

fn write_element<'v>(
    writer: &mut Writer<Vec<u8>>,
    name: &'v str,
    value: &'v Value,
    path: &mut Vec<&'v str>,
) -> Result<(), CodecError> {
    path.push(name);
    if path.len() > MAX_DEPTH {
        return Err(encode_error(format!(
            "the payload nests deeper than {MAX_DEPTH} elements (at {})",
            path_text(path)
        )));
    }
    check_name(name, path)?;
    let mut start = BytesStart::new(name);
    match value {
        Value::Null => write(writer, Event::Empty(start))?,
        Value::Array(_) => {
            return Err(encode_error(format!(
                "a list inside a list cannot be written as XML (at {})",
                path_text(path)
            )))
        }
        Value::String(_) | Value::Bool(_) | Value::Number(_) => {
            let text = scalar_text(value, path)?;
            write(writer, Event::Start(start.borrow()))?;
            write(writer, Event::Text(BytesText::new(&text)))?;
            write(writer, Event::End(start.to_end()))?;
        }
        Value::Object(fields) => {
            let mut text = None;
            let mut has_children = false;
            for (key, field) in fields {
                if let Some(attribute) = key.strip_prefix(ATTRIBUTE_PREFIX) {
                    check_name(attribute, path)?;
                    let field_text = scalar_text(field, path)?;
                    start.push_attribute((attribute, field_text.as_str()));
                } else if key == TEXT_KEY {
                    text = Some(scalar_text(field, path)?);
                } else {
                    has_children = true;
                }
            }
            if text.is_none() && !has_children {
                write(writer, Event::Empty(start))?;
            } else {
                write(writer, Event::Start(start.borrow()))?;
                if let Some(text) = &text {
                    write(writer, Event::Text(BytesText::new(text)))?;
                }
                for (key, field) in fields {
                    if key.starts_with(ATTRIBUTE_PREFIX) || key == TEXT_KEY {
                        continue;
                    }
                    match field {
                        Value::Array(items) => {
                            for item in items {
                                write_element(writer, key, item, path)?;
                            }
                        }
                        _ => write_element(writer, key, field, path)?,
                    }
                }
                write(writer, Event::End(start.to_end()))?;
            }
        }
    }
    path.pop();
    Ok(())
}

/// The text of a leaf: strings as-is, numbers and booleans as JSON text,
/// null as empty. Characters XML 1.0 cannot carry are refused.
fn scalar_text(value: &Value, path: &[&str]) -> Result<String, CodecError> {
    let text = match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Bool(_) | Value::Number(_) => value.to_string(),
        Value::Array(_) | Value::Object(_) => {
            return Err(encode_error(format!(
                "attributes and `#text` must be plain values, not a list or object (at {})",
                path_text(path)
            )))
        }
    };
    if let Some(bad) = text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(encode_error(format!(
            "the text at {} contains control character U+{:04X}, which XML 1.0 cannot carry",
            path_text(path),
            u32::from(bad)
        )));
    }
    Ok(text)
}

/// Accepts XML names: a letter, `_` or `:` first, then letters, digits, `-`,
/// `.`, `_` or `:`. Non-ASCII letters (e.g. Chinese field names) are allowed.
fn check_name(name: &str, path: &[&str]) -> Result<(), CodecError> {
    let mut chars = name.chars();
    let valid_start = chars.next().is_some_and(|c| c.is_alphabetic() || c == '_' || c == ':');
    let valid_rest = chars.all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'));
    if valid_start && valid_rest {
        return Ok(());
    }
    Err(encode_error(format!(
        "`{name}` is not a valid XML name (at {}); names start with a letter, `_` or `:` and \
         contain only letters, digits, `-`, `.`, `_` and `:`",
        path_text(path)
    )))
}

fn path_text(path: &[&str]) -> String {
    format!("/{}", path.join("/"))
}

fn write(writer: &mut Writer<Vec<u8>>, event: Event<'_>) -> Result<(), CodecError> {
    writer
        .write_event(event)
        .map_err(|error| encode_error(error.to_string()))
}

fn encode_error(message: String) -> CodecError {
    CodecError::Encode {
        codec: Codec::Xml,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode_str(text: &str) -> Value {
        decode(text.as_bytes()).unwrap()
    }

    fn encode_str(value: &Value) -> String {
        String::from_utf8(encode(value).unwrap()).unwrap()
    }

    #[test]
    fn text_only_elements_become_strings_and_order_is_kept() {
        assert_eq!(
            decode_str("<r><z>1</z><a>x</a><m>true</m></r>"),
            json!({"r": {"z": "1", "a": "x", "m": "true"}})
        );
        let value = decode_str("<r><z>1</z><a>x</a></r>");
        let keys: Vec<_> = value["r"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["z", "a"]);
    }

    #[test]
    fn empty_elements_become_empty_strings() {
        assert_eq!(
            decode_str("<r><a/><b></b><c> </c></r>"),
            json!({"r": {"a": "", "b": "", "c": " "}})
        );
        assert_eq!(decode_str("<r/>"), json!({"r": ""}));
    }

    #[test]
    fn attributes_and_text() {
        assert_eq!(
            decode_str(r#"<r><price currency="CNY" tax='13%'>9.90</price><flag on="1"/></r>"#),
            json!({"r": {
                "price": {"@currency": "CNY", "@tax": "13%", "#text": "9.90"},
                "flag": {"@on": "1"}
            }})
        );
    }

    #[test]
    fn repeated_siblings_become_arrays_and_single_stays_scalar() {
        let value = decode_str("<list><item>a</item><other>x</other><item>b</item><item>c</item><one>z</one></list>");
        assert_eq!(
            value,
            json!({"list": {"item": ["a", "b", "c"], "other": "x", "one": "z"}})
        );
        let single = decode_str("<list><item><id>1</id></item></list>");
        assert_eq!(single, json!({"list": {"item": {"id": "1"}}}));
    }

    #[test]
    fn namespaces_cdata_entities_and_whitespace() {
        let value = decode_str(
            "<?xml version=\"1.0\"?>\n<!-- reply -->\n\
             <soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">\n  \
               <soap:Body>\n    <m:Note xmlns:m=\"urn:x\"><![CDATA[<b>bold</b> & more]]></m:Note>\n    \
               <Esc>a &lt; b &amp;&amp; c &#x4E2D;&#25991; &quot;q&quot;</Esc>\n  </soap:Body>\n\
             </soap:Envelope>\n",
        );
        assert_eq!(
            value,
            json!({"soap:Envelope": {
                "@xmlns:soap": "http://schemas.xmlsoap.org/soap/envelope/",
                "soap:Body": {
                    "m:Note": {"@xmlns:m": "urn:x", "#text": "<b>bold</b> & more"},
                    "Esc": "a < b && c 中文 \"q\""
                }
            }})
        );
    }

    #[test]
    fn mixed_content_keeps_trimmed_text_runs() {
        assert_eq!(
            decode_str("<p>\n  Hello\n  <b>world</b>\n  again\n</p>"),
            json!({"p": {"b": "world", "#text": "Hello again"}})
        );
    }

    #[test]
    fn realistic_vendor_reply() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Result code="0">success</Result>
  <Total>3</Total>
  <Orders>
    <Order id="SO-1001">
      <Customer>上海某某贸易有限公司</Customer>
      <Lines>
        <Line><Sku>A-1</Sku><Qty>2</Qty><Price>10.50</Price></Line>
        <Line><Sku>B-7</Sku><Qty>1</Qty><Price>99</Price></Line>
      </Lines>
      <Remark/>
    </Order>
    <Order id="SO-1002">
      <Customer>Acme &amp; Sons</Customer>
      <Lines>
        <Line><Sku>C-3</Sku><Qty>5</Qty><Price>1.00</Price></Line>
      </Lines>
      <Remark>urgent</Remark>
    </Order>
  </Orders>
</Response>"#;
        let value = decode_str(body);
        assert_eq!(
            value,
            json!({"Response": {
                "Result": {"@code": "0", "#text": "success"},
                "Total": "3",
                "Orders": {"Order": [
                    {
                        "@id": "SO-1001",
                        "Customer": "上海某某贸易有限公司",
                        "Lines": {"Line": [
                            {"Sku": "A-1", "Qty": "2", "Price": "10.50"},
                            {"Sku": "B-7", "Qty": "1", "Price": "99"}
                        ]},
                        "Remark": ""
                    },
                    {
                        "@id": "SO-1002",
                        "Customer": "Acme & Sons",
                        "Lines": {"Line": {"Sku": "C-3", "Qty": "5", "Price": "1.00"}},
                        "Remark": "urgent"
                    }
                ]}
            }})
        );
        assert_eq!(decode(&encode(&value).unwrap()).unwrap(), value);
    }

    #[test]
    fn encodes_with_declaration_attributes_arrays_and_escaping() {
        let value = json!({"Request": {
            "@version": 2,
            "Head": {"AppKey": "k1", "Sign": "AB&<>\"'"},
            "Item": [{"@no": "1", "#text": "first"}, {"Qty": 3.5, "Ok": true}],
            "Empty": null,
            "Blank": ""
        }});
        assert_eq!(
            encode_str(&value),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <Request version=\"2\"><Head><AppKey>k1</AppKey>\
             <Sign>AB&amp;&lt;&gt;&quot;&apos;</Sign></Head>\
             <Item no=\"1\">first</Item><Item><Qty>3.5</Qty><Ok>true</Ok></Item>\
             <Empty/><Blank></Blank></Request>"
        );
    }

    #[test]
    fn round_trips_representative_values() {
        let values = [
            json!({"a": ""}),
            json!({"a": "text with spaces  "}),
            json!({"a": {"b": "1", "c": ["x", "y", "z"], "d": {"e": "deep"}}}),
            json!({"a": {"@id": "7", "@kind": "x\"y", "b": ["1", "2"], "#text": "tail"}}),
            json!({"a": {"@only": "attr"}}),
            json!({"a": {"item": [{"@n": "1"}, {"@n": "2", "v": "ok"}]}}),
            json!({"订单": {"物料": "螺丝 M3", "数量": "10"}}),
            json!({"ns:a": {"@xmlns:ns": "urn:test", "ns:b": "<&>"}}),
        ];
        for value in values {
            let bytes = encode(&value).unwrap();
            assert_eq!(decode(&bytes).unwrap(), value, "{}", String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn encoding_needs_exactly_one_root() {
        for value in [json!({"a": "1", "b": "2"}), json!({}), json!(["a"]), json!("x")] {
            let error = encode(&value).unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("XML needs exactly one root element; wrap the body in an object with one key"),
                "{error}"
            );
        }
        let error = encode(&json!({"a": ["1", "2"]})).unwrap_err();
        assert!(error.to_string().contains("cannot repeat"), "{error}");
    }

    #[test]
    fn encoding_rejects_what_xml_cannot_hold() {
        let cases = [
            (
                json!({"a": {"1bad": "x"}}),
                "`1bad` is not a valid XML name (at /a/1bad)",
            ),
            (json!({"a": {"b": [["x"]]}}), "a list inside a list"),
            (json!({"a": {"@x": {"y": 1}}}), "must be plain values"),
            (json!({"a": {"b": "bell\u{7}"}}), "control character U+0007"),
            (json!({"a b": "x"}), "not a valid XML name"),
        ];
        for (value, expected) in cases {
            let error = encode(&value).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[test]
    fn numbers_and_booleans_become_text() {
        let value = json!({"r": {"n": 1, "f": 2.5, "b": false}});
        assert_eq!(
            decode(&encode(&value).unwrap()).unwrap(),
            json!({"r": {"n": "1", "f": "2.5", "b": "false"}})
        );
    }

    #[test]
    fn truncated_document_names_open_elements() {
        let error = decode(b"<Response><Orders><Order id=\"1\"><Sku>A</Sku>").unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, CodecError::Truncated { .. }), "{error:?}");
        assert!(text.contains("</Order></Orders></Response>"), "{text}");
        assert!(text.contains("<Sku>A</Sku>"), "{text}");

        let error = decode(b"<Response><Orders><Ord").unwrap_err();
        assert!(matches!(error, CodecError::Truncated { .. }), "{error:?}");
        assert!(error.to_string().contains("tag not closed"), "{error}");
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let error = decode(b"<r>\n  <a>1</b>\n</r>").unwrap_err();
        match &error {
            CodecError::Syntax {
                position: Some(position),
                ..
            } => assert_eq!((position.line, position.column), (2, 7)),
            other => panic!("unexpected {other:?}"),
        }
        assert!(error.to_string().contains("expected `</a>`"), "{error}");

        let error = decode(b"<r>\n<a>AT&T</a></r>").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("line 2, column 6"), "{text}");
        assert!(
            text.contains("unknown entity `&T;`") || text.contains("never ends"),
            "{text}"
        );

        let error = decode(b"<r>&bogus;</r>").unwrap_err();
        assert!(error.to_string().contains("unknown entity `&bogus;`"), "{error}");
    }

    #[test]
    fn document_level_mistakes() {
        let error = decode(b"<a>1</a><b>2</b>").unwrap_err();
        assert!(error.to_string().contains("second top-level element <b>"), "{error}");
        let error = decode(b"<a>1</a> trailing").unwrap_err();
        assert!(
            error.to_string().contains("text `trailing` outside the root"),
            "{error}"
        );
        let error = decode(b"<?xml version=\"1.0\"?><!-- nothing -->").unwrap_err();
        assert!(error.to_string().contains("no root element"), "{error}");
        let error = decode(br#"<a x="1" x="2"/>"#).unwrap_err();
        assert!(matches!(error, CodecError::Syntax { .. }), "{error:?}");
    }

    #[test]
    fn json_and_html_where_xml_expected() {
        let error = decode(br#"{"code": 0}"#).unwrap_err();
        assert!(
            matches!(
                error,
                CodecError::WrongFormat {
                    expected: Codec::Xml,
                    found: Codec::Json,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("set `codec: json`"), "{error}");
        for page in [
            "<?xml version=\"1.0\"?><html><body>Bad gateway</body></html>".as_bytes(),
            b"<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\"><HTML></HTML>",
        ] {
            let error = decode(page).unwrap_err();
            assert!(matches!(error, CodecError::HtmlPage { .. }), "{error:?}");
        }
    }

    #[test]
    fn hostile_nesting_is_refused() {
        let body = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
        let error = decode(body.as_bytes()).unwrap_err();
        assert!(matches!(error, CodecError::TooDeep { limit: 128, .. }), "{error:?}");
        let fine = format!("{}x{}", "<a>".repeat(100), "</a>".repeat(100));
        assert!(decode(fine.as_bytes()).is_ok());

        let mut deep = json!("x");
        for _ in 0..200 {
            deep = json!({"a": deep});
        }
        let error = encode(&deep).unwrap_err();
        assert!(error.to_string().contains("deeper than 128"), "{error}");
    }
}
