//! Behaviour tests for the template module (compile checks, shapes, filters, scope).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Map, Value as Json};

use super::*;

fn options() -> TemplateOptions {
    let mut value_maps = BTreeMap::new();
    value_maps.insert(
        "status".to_owned(),
        object(json!({"1": "open", "2": "closed", "default": "other"})),
    );
    value_maps.insert("strict".to_owned(), object(json!({"a": 1, "true": "yes"})));
    // Most tests here describe rendering itself, so they run lenient (a missing name is
    // null); `strict_env` and the tests named `strict_*` cover missing fields.
    TemplateOptions {
        value_maps,
        strict: false,
        ..TemplateOptions::default()
    }
}

fn env() -> TemplateEnv {
    TemplateEnv::new(options())
}

/// The same environment with every fast path off: each expression goes through minijinja.
fn minijinja_env() -> TemplateEnv {
    TemplateEnv::minijinja_only(options())
}

fn strict_options() -> TemplateOptions {
    TemplateOptions {
        strict: true,
        ..options()
    }
}

/// The default: reading a name that is not there fails the render.
fn strict_env() -> TemplateEnv {
    TemplateEnv::new(strict_options())
}

fn object(json: Json) -> Map<String, Json> {
    match json {
        Json::Object(map) => map,
        _ => panic!("not an object"),
    }
}

fn record() -> Json {
    json!({
        "no": 42,
        "qty": 3,
        "amount": "12.5",
        "code": "abc",
        "flag": true,
        "name": "Widget",
        "remark": null,
        "empty": "",
        "created": "2024-03-01T00:30:00Z",
        "customer": {"name": "ACME", "id": "C7", "tags": ["a", "b"]},
        "lines": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}],
        "names": ["x", "y"],
        "status": 1,
    })
}

fn scope() -> Scope {
    let mut vars = Map::new();
    vars.insert(
        "window".to_owned(),
        json!({"start": "2024-03-01 08:30:00", "end": 1709253000}),
    );
    vars.insert("now".to_owned(), json!("2024-03-01T00:30:00Z"));
    Scope {
        record: Some(Arc::new(record())),
        vars: Arc::new(vars),
        ..Scope::default()
    }
}

fn render(source: &str) -> Json {
    render_in(&env(), source, &scope())
}

fn render_in(env: &TemplateEnv, source: &str, scope: &Scope) -> Json {
    let template = env.compile(source).unwrap_or_else(|err| panic!("{source}: {err:?}"));
    template.render(scope).unwrap_or_else(|err| panic!("{source}: {err:?}"))
}

fn render_err(source: &str) -> TemplateError {
    render_err_in(&scope(), source)
}

fn render_err_in(scope: &Scope, source: &str) -> TemplateError {
    let template = env().compile(source).unwrap_or_else(|err| panic!("{source}: {err:?}"));
    match template.render(scope) {
        Ok(value) => panic!("{source} rendered {value} instead of failing"),
        Err(err) => err,
    }
}

fn compile_err(source: &str) -> TemplateError {
    match env().compile(source) {
        Ok(_) => panic!("{source} compiled"),
        Err(err) => err,
    }
}

#[test]
fn literal_renders_itself() {
    let template = env().compile("plain text 50%").unwrap();
    assert!(template.is_literal());
    assert_eq!(template.render(&Scope::default()).unwrap(), json!("plain text 50%"));
    assert_eq!(template.render_string(&Scope::default()).unwrap(), "plain text 50%");
    assert!(template.variables().is_empty());
    assert!(template.calls().is_empty());
    assert_eq!(template.source(), "plain text 50%");
    assert!(env().compile("a < b and c > d, 5% off").unwrap().is_literal());
    // Blocks and comments make a template even without `<<`.
    assert_eq!(render("<% if flag %>Y<% else %>N<% endif %>"), json!("Y"));
    assert_eq!(render("a<# note #>b"), json!("ab"));
}

#[test]
fn whole_template_keeps_its_type() {
    assert_eq!(render("<< amount | float >>"), json!(12.5));
    assert_eq!(render("<< qty >>"), json!(3));
    assert_eq!(render("  << qty >>\n"), json!(3));
    assert_eq!(render("<< flag >>"), json!(true));
    assert_eq!(render("<< qty > 2 >>"), json!(true));
    assert_eq!(render("<< {'q': qty, 'n': name} >>"), json!({"q": 3, "n": "Widget"}));
    assert_eq!(render("<< [1, qty, 'x'] >>"), json!([1, 3, "x"]));
    assert_eq!(
        render("<< customer >>"),
        json!({"name": "ACME", "id": "C7", "tags": ["a", "b"]})
    );
    assert_eq!(render("<< lines | first >>"), json!({"sku": "A", "qty": 1}));
    assert_eq!(render("<< remark >>"), Json::Null);
    assert_eq!(render("<< missing >>"), Json::Null);
    assert_eq!(render("<< none >>"), Json::Null);
    assert_eq!(render("<< customer.missing >>"), Json::Null);
    assert_eq!(render("<< 'text' >>"), json!("text"));
    assert_eq!(render("<< qty * 1.5 >>"), json!(4.5));
    let template = env().compile("<< qty >>").unwrap();
    assert!(!template.is_literal());
}

#[test]
fn interpolation_renders_text() {
    assert_eq!(render("SO-<< no >>-X"), json!("SO-42-X"));
    assert_eq!(render("<< no >><< qty >>"), json!("423"));
    assert_eq!(render("[<< remark >>][<< missing >>]"), json!("[][]"));
    assert_eq!(render("c=<< customer.tags >>"), json!("c=[\"a\",\"b\"]"));
    assert_eq!(render("<< flag >> << amount | float >>"), json!("true 12.5"));
    assert_eq!(render("a << qty >>\n"), json!("a 3\n"));
    assert_eq!(render("a <<- qty ->> b"), json!("a3b"));
    assert_eq!(render("x<# note #>-<< qty >>"), json!("x-3"));
    assert_eq!(
        render("<% if flag %>Y-<< name | upper >><% else %>N<% endif %>"),
        json!("Y-WIDGET")
    );
    assert_eq!(
        render("<% for line in lines %><< line.sku >>=<< line.qty >>;<% endfor %>"),
        json!("A=1;B=2;")
    );
    assert_eq!(
        render("<% if true %><< remark >>|<< customer.tags >><% endif %>"),
        json!("|[\"a\",\"b\"]")
    );
    let template = env().compile("id: << customer >>").unwrap();
    assert_eq!(
        template.render_string(&scope()).unwrap(),
        "id: {\"name\":\"ACME\",\"id\":\"C7\",\"tags\":[\"a\",\"b\"]}"
    );
}

#[test]
fn render_string_of_typed_values() {
    let text = |source: &str| env().compile(source).unwrap().render_string(&scope()).unwrap();
    assert_eq!(text("<< name >>"), "Widget");
    assert_eq!(text("<< qty >>"), "3");
    assert_eq!(text("<< remark >>"), "");
    assert_eq!(text("<< flag >>"), "true");
    assert_eq!(text("<< lines[1] >>"), "{\"sku\":\"B\",\"qty\":2}");
    assert_eq!(text("<< name ~ '!' >>"), "Widget!");
}

/// The fast path a compiled single-expression template took: its path and number of filters.
fn fast_shape(source: &str) -> Option<(Vec<String>, usize)> {
    let template = env().compile(source).unwrap_or_else(|err| panic!("{source}: {err:?}"));
    match &template.inner.body {
        Body::Typed(ExprPart { fast: Some(fast), .. }) => Some((fast.path.clone(), fast.steps.len())),
        Body::Typed(ExprPart { fast: None, .. }) => None,
        _ => panic!("{source} is not a single expression"),
    }
}

#[test]
fn fast_path_is_taken_only_for_dotted_names_and_native_filters() {
    let path = |names: &[&str]| names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>();
    assert_eq!(fast_shape("<< window.start >>"), Some((path(&["window", "start"]), 0)));
    assert_eq!(fast_shape("<< record >>"), Some((path(&["record"]), 0)));
    assert_eq!(fast_shape("<< (a) >>"), Some((path(&["a"]), 0)));
    assert_eq!(fast_shape("<< a.b | int >>"), Some((path(&["a", "b"]), 1)));
    assert_eq!(
        fast_shape("<< a | default('0', boolean=true) | trim | int | map('status') | upper >>"),
        Some((path(&["a"]), 5))
    );
    assert_eq!(
        fast_shape("<< a | d(-1) | decimal(scale=1) >>"),
        Some((path(&["a"]), 2))
    );
    assert_eq!(
        fast_shape("<< a | date('%d.%m.%Y', from='%Y%m%d', tz='UTC', from_tz='Asia/Tokyo') >>"),
        Some((path(&["a"]), 1))
    );
    for source in [
        "<< a[0] >>",
        "<< 1 >>",
        "<< none >>",
        "<< true >>",
        "<< range >>",
        "<< range | int >>",
        "<< 'x' | upper >>",
        "<< a | round >>",
        "<< a | int(1) >>",
        "<< a | upper(1) >>",
        "<< a | trim(chars='x') >>",
        "<< a | decimal('x') >>",
        "<< a | decimal(-1) >>",
        "<< a | default(b) >>",
        "<< a | default(boolean=1) >>",
        "<< a | datetime(tz=zone) >>",
        "<< a | datetime(tz='Mars/Base') >>",
        "<< a | iso(zone='UTC') >>",
        "<< a | timestamp('%Y') >>",
        "<< a | map(attribute='x') >>",
        "<< a | map('upper') >>",
        "<< a | map('status', 'x') >>",
        "<< a | int | round >>",
        "<< a + 1 | int >>",
        "<< a | int + 1 >>",
        "<< a is defined >>",
        "<< a | mapped_id('customer') >>",
        "<< a\n | int >>",
    ] {
        assert_eq!(fast_shape(source), None, "{source}");
    }
}

/// Asserts both renders agree: equal values, or errors with equal message and offset.
fn assert_same(source: &str, scope: &Scope, fast: &Template, slow: &Template) {
    match (fast.render(scope), slow.render(scope)) {
        (Ok(fast), Ok(slow)) => assert_eq!(fast, slow, "{source}"),
        (Err(fast), Err(slow)) => {
            assert_eq!(fast.message, slow.message, "{source}");
            assert_eq!(fast.offset, slow.offset, "{source}: {}", fast.message);
        }
        (fast, slow) => panic!("{source}: fast path gave {fast:?}, minijinja gave {slow:?}"),
    }
    match (fast.render_string(scope), slow.render_string(scope)) {
        (Ok(fast), Ok(slow)) => assert_eq!(fast, slow, "{source}"),
        (Err(fast), Err(slow)) => assert_eq!(fast.message, slow.message, "{source}"),
        (fast, slow) => panic!("{source}: fast path gave {fast:?}, minijinja gave {slow:?}"),
    }
}

#[test]
fn fast_path_matches_minijinja() {
    let mut scope = scope();
    scope.push_local("line", json!({"sku": "L", "qty": 9}));
    let paths = [
        "no",
        "name",
        "remark",
        "missing",
        "record",
        "record.no",
        "record.customer.name",
        "customer",
        "customer.name",
        "customer.missing",
        "customer.tags",
        "customer.tags.first",
        "lines",
        "lines.sku",
        "name.length",
        "qty.real",
        "remark.x",
        "window.start",
        "window.end",
        "now",
        "line",
        "line.qty",
        // Reading through an undefined value fails, with minijinja's message.
        "missing.x",
        "customer.missing.x",
        "remark.x.y",
    ];
    let (env, slow_env) = (env(), minijinja_env());
    for path in paths {
        for source in [format!("<< {path} >>"), format!("[<< {path} >>]")] {
            let fast = env.compile(&source).unwrap();
            let slow = slow_env.compile(&source).unwrap();
            assert!(matches!(
                slow.inner.body,
                Body::Typed(ExprPart { fast: None, .. }) | Body::Parts(_)
            ));
            assert_same(&source, &scope, &fast, &slow);
        }
        assert!(fast_shape(&format!("<< {path} >>")).is_some(), "{path}");
    }
    let err = env.compile("<< missing.x >>").unwrap().render(&scope).unwrap_err();
    assert!(err.message.starts_with("undefined value"), "{}", err.message);
}

/// Expressions over `v` that must all take the native filter path.
const NATIVE_EXPRESSIONS: &[&str] = &[
    "v | int",
    "v | float",
    "v | decimal",
    "v | decimal(2)",
    "v | decimal(0)",
    "v | decimal(scale=3)",
    "v | decimal(2, scale=1)",
    "v | decimal(29)",
    "v | string",
    "v | json",
    "v | md5",
    "v | sha256",
    "v | default('x')",
    "v | d(0)",
    "v | default",
    "v | default('x', true)",
    "v | default('x', boolean=true)",
    "v | default(7, boolean=false)",
    "v | default(none)",
    "v | default([])",
    "v | default(-1) | int",
    "v | upper",
    "v | lower",
    "v | trim",
    "v | trim('x ')",
    "v | string | upper",
    "v | map('status')",
    "v | map('strict')",
    "v | string | map('status')",
    "v | datetime",
    "v | datetime('%Y%m%d%H%M%S')",
    "v | datetime(format='%H:%M')",
    "v | datetime('%d', format='%H')",
    "v | datetime(tz='UTC')",
    "v | datetime(from_tz='UTC')",
    "v | datetime(tz='America/New_York')",
    "v | datetime('%Y-%')",
    "v | datetime(from='%Q')",
    "v | date",
    "v | date(from='%d/%m/%Y')",
    "v | date('%d.%m.%Y', from='%d/%m/%Y', tz='UTC')",
    "v | timestamp",
    "v | timestamp(tz='UTC')",
    "v | timestamp_ms",
    "v | timestamp_ms(from_tz='Asia/Tokyo')",
    "v | iso",
    "v | iso(tz='UTC')",
    "v | int | string",
    "v | float | decimal(1)",
    "v | default('2024-03-01') | date",
    "v | default(0) | int | map('status')",
    "v | trim | int",
    "v | json | md5",
    "v | timestamp | iso(tz='UTC')",
    "v | default('none', true) | upper",
    "obj.v | int",
    "obj.v | datetime",
    "v.x | default('gone')",
    "v | optional",
];

#[test]
fn every_native_filter_is_covered() {
    for name in native::NATIVE_FILTERS {
        assert!(FILTERS.contains(name), "{name}");
        let call = if *name == "map" {
            "map('status')".to_owned()
        } else {
            (*name).to_owned()
        };
        assert!(
            NATIVE_EXPRESSIONS
                .iter()
                .any(|expr| expr.contains(&format!("| {call}"))),
            "{name} is missing from NATIVE_EXPRESSIONS"
        );
        assert_eq!(
            fast_shape(&format!("<< v | {call} >>")).map(|(_, steps)| steps),
            Some(1),
            "{name}"
        );
    }
}

/// Values bound to `v` (and `obj.v`); `None` leaves them undefined.
fn equivalence_inputs() -> Vec<Option<Json>> {
    let values = [
        Json::Null,
        json!(""),
        json!("42"),
        json!(" 42 "),
        json!("12.00"),
        json!("12.5"),
        json!("-2.345"),
        json!("abc"),
        json!("1e3"),
        json!("x 1 x"),
        json!(" Mixed Case\t"),
        json!("ÄÖü ß"),
        json!(3),
        json!(-3.9),
        json!(0),
        json!(0.0),
        json!(-0.0),
        json!(12.345),
        json!(2.5),
        json!(1e20),
        json!(1e300),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(9_223_372_036_854_775_808.0),
        json!(true),
        json!(false),
        json!([1, 2]),
        json!([]),
        json!({"a": 1, "b": [true]}),
        json!({}),
        json!("2024-03-01 08:30:00"),
        json!("2024-03-01T00:30:00Z"),
        json!("2024-03-01T08:30:00.250+08:00"),
        json!("2024-03-01"),
        json!("2024/03/01 08:30"),
        json!("01/03/2024"),
        json!("2024-13-01"),
        json!("2024-03-10 02:30:00"),
        json!("1709253000"),
        json!(1_709_253_000),
        json!(1_709_253_000_000_i64),
        json!(1_709_253_000.5),
        json!(1),
        json!("2"),
        json!(9),
        json!("a"),
    ];
    std::iter::once(None).chain(values.into_iter().map(Some)).collect()
}

#[test]
fn native_filters_match_minijinja() {
    let (env, slow_env) = (env(), minijinja_env());
    let inputs = equivalence_inputs();
    let mut compared = 0;
    for expr in NATIVE_EXPRESSIONS {
        let typed = format!("<< {expr} >>");
        assert!(
            fast_shape(&typed).is_some_and(|(_, steps)| steps > 0),
            "{expr} should be native"
        );
        for source in [typed, format!("id-<< {expr} >>-x")] {
            let fast = env.compile(&source).unwrap();
            let slow = slow_env.compile(&source).unwrap();
            assert!(matches!(
                slow.inner.body,
                Body::Typed(ExprPart { fast: None, .. }) | Body::Parts(_)
            ));
            for input in &inputs {
                let mut record = Map::new();
                if let Some(value) = input {
                    record.insert("v".to_owned(), value.clone());
                    record.insert("obj".to_owned(), json!({ "v": value }));
                }
                let scope = Scope::for_record(Arc::new(Json::Object(record)));
                assert_same(&format!("{source} with v = {input:?}"), &scope, &fast, &slow);
                compared += 1;
            }
        }
    }
    assert_eq!(compared, NATIVE_EXPRESSIONS.len() * 2 * inputs.len());
}

#[test]
fn native_errors_quote_the_template_and_point_at_the_filter() {
    let template = env().compile("  << qty | default(0) | decimal(40) >>").unwrap();
    let err = template.render(&scope()).unwrap_err();
    assert_eq!(
        err.message,
        "decimal scale 40 is too large; the maximum is 28 (in template `  << qty | default(0) | decimal(40) >>`)"
    );
    assert_eq!(err.offset, Some(24));
    let err = render_err("SO-<< code | int >>");
    assert_eq!(
        err.message,
        "cannot convert \"abc\" to int (in template `SO-<< code | int >>`)"
    );
    assert_eq!(err.offset, Some(13));
}

#[test]
fn lookup_order_is_locals_then_vars_then_record() {
    let env = env();
    let mut vars = Map::new();
    vars.insert("a".to_owned(), json!("var"));
    let mut scope = Scope {
        record: Some(Arc::new(json!({"a": "rec", "b": "rec-b"}))),
        vars: Arc::new(vars),
        ..Scope::default()
    };
    scope.push_local("a", json!("outer"));
    scope.push_local("a", json!("inner"));
    for source in ["<< a >>", "<< a ~ '' >>"] {
        assert_eq!(render_in(&env, source, &scope), json!("inner"), "{source}");
    }
    assert_eq!(render_in(&env, "<< record.a >>", &scope), json!("rec"));
    assert_eq!(render_in(&env, "<< b >>", &scope), json!("rec-b"));
    assert_eq!(
        render_in(&env, "<< record >>", &scope),
        json!({"a": "rec", "b": "rec-b"})
    );
    scope.locals.clear();
    for source in ["<< a >>", "<< a ~ '' >>"] {
        assert_eq!(render_in(&env, source, &scope), json!("var"), "{source}");
    }
    scope.vars = Arc::new(Map::new());
    for source in ["<< a >>", "<< a ~ '' >>"] {
        assert_eq!(render_in(&env, source, &scope), json!("rec"), "{source}");
    }
    assert_eq!(scope.lookup("a"), Some(&json!("rec")));
    assert_eq!(render_in(&env, "<< record >>", &Scope::default()), Json::Null);
}

#[test]
fn lazy_json_views_behave_like_values() {
    assert_eq!(render("<< lines | length >>"), json!(2));
    assert_eq!(render("<< lines[0].qty >>"), json!(1));
    assert_eq!(render("<< lines[-1].sku >>"), json!("B"));
    assert_eq!(render("<< lines | map(attribute='qty') | sum >>"), json!(3));
    assert_eq!(
        render("<< lines | selectattr('qty', 'gt', 1) | map(attribute='sku') | list >>"),
        json!(["B"])
    );
    assert_eq!(render("<< customer | items | list | length >>"), json!(3));
    assert_eq!(render("<< customer.tags | join(',') >>"), json!("a,b"));
    assert_eq!(render("<< 'b' in customer.tags >>"), json!(true));
    assert_eq!(
        render("<< customer.name ~ '/' ~ customer.tags >>"),
        json!("ACME/[\"a\",\"b\"]")
    );
    assert_eq!(render("<< [] if lines else 'none' >>"), json!([]));
    assert_eq!(
        render("<< customer | tojson >>"),
        json!("{\"name\":\"ACME\",\"id\":\"C7\",\"tags\":[\"a\",\"b\"]}")
    );
}

#[test]
fn time_filters_use_the_zone() {
    assert_eq!(render("<< created | datetime >>"), json!("2024-03-01 08:30:00"));
    assert_eq!(
        render("<< created | datetime(tz='UTC') >>"),
        json!("2024-03-01 00:30:00")
    );
    assert_eq!(render("<< created | datetime('%Y%m%d%H%M') >>"), json!("202403010830"));
    assert_eq!(render("<< created | datetime(format='%H:%M') >>"), json!("08:30"));
    assert_eq!(render("<< '2024-03-01T20:00:00Z' | date >>"), json!("2024-03-02"));
    assert_eq!(
        render("<< '2024-03-01T20:00:00Z' | date(tz='UTC') >>"),
        json!("2024-03-01")
    );
    assert_eq!(
        render("<< '01/03/2024' | date(from='%d/%m/%Y') >>"),
        json!("2024-03-01")
    );
    assert_eq!(render("<< window.start | timestamp >>"), json!(1_709_253_000));
    assert_eq!(render("<< window.start | timestamp(tz='UTC') >>"), json!(1_709_281_800));
    assert_eq!(
        render("<< window.start | timestamp_ms >>"),
        json!(1_709_253_000_000_i64)
    );
    assert_eq!(render("<< window.end | iso >>"), json!("2024-03-01T08:30:00+08:00"));
    assert_eq!(
        render("<< window.end | iso(tz='UTC') >>"),
        json!("2024-03-01T00:30:00+00:00")
    );
    assert_eq!(
        render("<< '1709253000000' | iso >>"),
        json!("2024-03-01T08:30:00+08:00")
    );
    assert_eq!(
        render("<< '2024-03-01 08:30:00' | datetime(from_tz='UTC') >>"),
        json!("2024-03-01 16:30:00")
    );
    assert_eq!(
        render("<< '2024/03/01 08:30:00' | iso >>"),
        json!("2024-03-01T08:30:00+08:00")
    );
    assert_eq!(render("<< now | datetime >>"), json!("2024-03-01 08:30:00"));

    let utc = TemplateEnv::new(TemplateOptions {
        timezone: chrono_tz::UTC,
        ..TemplateOptions::default()
    });
    assert_eq!(
        render_in(&utc, "<< created | datetime >>", &scope()),
        json!("2024-03-01 00:30:00")
    );
    assert_eq!(
        render_in(&utc, "<< window.start | iso >>", &scope()),
        json!("2024-03-01T08:30:00+00:00")
    );
    assert_eq!(
        render_in(&utc, "<< window.start | timestamp >>", &scope()),
        json!(1_709_281_800)
    );
}

#[test]
fn time_filter_errors() {
    let err = render_err("<< code | datetime >>");
    assert!(
        err.message.starts_with("cannot read \"abc\" as a date/time"),
        "{}",
        err.message
    );
    assert!(render_err("<< remark | date >>")
        .message
        .starts_with("cannot read null as a date/time"));
    assert!(render_err("<< created | datetime(tz='Mars/Base') >>")
        .message
        .starts_with("unknown time zone \"Mars/Base\""));
    assert!(render_err("<< created | datetime('%Y-%') >>")
        .message
        .starts_with("invalid date format"));
    assert!(render_err("<< created | iso(zone='UTC') >>").message.contains("zone"));
}

#[test]
fn number_filters() {
    assert_eq!(render("<< ' 42 ' | int >>"), json!(42));
    assert_eq!(render("<< 3.9 | int >>"), json!(3));
    assert_eq!(render("<< flag | int >>"), json!(1));
    assert_eq!(render("<< amount | float >>"), json!(12.5));
    assert_eq!(render("<< qty | float >>"), json!(3.0));
    assert_eq!(render("<< amount | decimal >>"), json!("12.50"));
    assert_eq!(render("<< '2.345' | decimal(scale=2) >>"), json!("2.35"));
    assert_eq!(render("<< 2.5 | decimal(0) >>"), json!("3"));
    assert_eq!(render("<< -2.5 | decimal(scale=0) >>"), json!("-3"));
    assert_eq!(render("<< qty | string >>"), json!("3"));
    assert_eq!(render("<< remark | string >>"), json!(""));
    assert_eq!(render("<< customer.tags | string >>"), json!("[\"a\",\"b\"]"));

    let err = render_err("<< code | int >>");
    assert_eq!(
        err.message,
        "cannot convert \"abc\" to int (in template `<< code | int >>`)"
    );
    assert_eq!(err.offset, Some(10));
    assert!(render_err("<< remark | int >>")
        .message
        .starts_with("cannot convert null to int; use default(...)"));
    assert!(render_err("<< missing | int >>")
        .message
        .starts_with("cannot convert an undefined value to int"));
    assert!(render_err("<< code | float >>")
        .message
        .starts_with("cannot convert \"abc\" to float"));
    assert!(render_err("<< code | decimal >>")
        .message
        .starts_with("cannot convert \"abc\" to decimal"));
    assert!(render_err("<< lines | int >>").message.starts_with("cannot convert [{"));
}

#[test]
fn default_filter() {
    assert_eq!(render("<< missing | default('x') >>"), json!("x"));
    assert_eq!(render("<< remark | default('x') >>"), json!("x"));
    assert_eq!(render("<< remark | d(0) >>"), json!(0));
    assert_eq!(render("<< empty | default('x') >>"), json!(""));
    assert_eq!(render("<< empty | default('x', boolean=true) >>"), json!("x"));
    assert_eq!(render("<< false | default('x', true) >>"), json!("x"));
    assert_eq!(render("<< 0 | default(5, boolean=true) >>"), json!(5));
    assert_eq!(render("<< 0 | default(5) >>"), json!(0));
    assert_eq!(render("<< name | default('x', boolean=true) >>"), json!("Widget"));
    assert_eq!(render("<< missing | default >>"), json!(""));
}

#[test]
fn hash_filters() {
    assert_eq!(render("<< 'abc' | md5 >>"), json!("900150983cd24fb0d6963f7d28e17f72"));
    assert_eq!(
        render("<< 'abc' | sha256 >>"),
        json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!(render("<< qty | md5 >>"), render("<< '3' | md5 >>"));
    let fox = "'The quick brown fox jumps over the lazy dog'";
    assert_eq!(
        render(&format!("<< {fox} | hmac('key') >>")),
        json!("f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")
    );
    assert_eq!(
        render(&format!("<< {fox} | hmac('key', algo='sha1') >>")),
        json!("de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9")
    );
    assert_eq!(
        render(&format!("<< {fox} | hmac('key', 'md5') >>")),
        json!("80070713463e7749b90c2dc24911e275")
    );
    assert!(render_err("<< 'x' | hmac('key', algo='sha512') >>")
        .message
        .starts_with("unknown hmac algorithm \"sha512\""));
    assert!(render_err("<< remark | md5 >>").message.starts_with("cannot md5 null"));
    assert!(render_err("<< 'x' | hmac(missing) >>")
        .message
        .starts_with("hmac needs a key"));
    assert_eq!(render("<< name | upper >>-<< name | lower >>"), json!("WIDGET-widget"));
}

#[test]
fn json_filters() {
    assert_eq!(
        render("<< customer | json >>"),
        json!("{\"name\":\"ACME\",\"id\":\"C7\",\"tags\":[\"a\",\"b\"]}")
    );
    assert_eq!(render("<< qty | json >>"), json!("3"));
    assert_eq!(render("<< '{\"a\": [1, 2]}' | from_json >>"), json!({"a": [1, 2]}));
    assert_eq!(render("<< ('{\"a\": [1, 2]}' | from_json).a[1] >>"), json!(2));
    assert_eq!(render("<< '7' | from_json >>"), json!(7));
    assert!(render_err("<< '{' | from_json >>")
        .message
        .starts_with("from_json could not parse \"{\""));
    assert!(render_err("<< qty | from_json >>")
        .message
        .starts_with("from_json needs a string, got 3"));
}

#[test]
fn value_maps() {
    assert_eq!(render("<< status | map('status') >>"), json!("open"));
    assert_eq!(render("<< '2' | map('status') >>"), json!("closed"));
    assert_eq!(render("<< 9 | map('status') >>"), json!("other"));
    assert_eq!(render("<< 'a' | map('strict') >>"), json!(1));
    assert_eq!(render("<< flag | map('strict') >>"), json!("yes"));
    let err = render_err("<< 9 | map('strict') >>");
    assert_eq!(
        err.message,
        "value \"9\" is not in value map \"strict\" and the map has no default (in template `<< 9 | map('strict') >>`)"
    );
    let mut scope = scope();
    scope.push_local("which", json!("nope"));
    let err = render_err_in(&scope, "<< 1 | map(which) >>");
    assert!(
        err.message
            .starts_with("unknown value map \"nope\"; known maps: status, strict"),
        "{}",
        err.message
    );
    // The builtin behaviour stays for attributes and filter names.
    assert_eq!(render("<< names | map('upper') | join(',') >>"), json!("X,Y"));
    assert_eq!(render("<< lines | map(attribute='sku') | join >>"), json!("AB"));

    let err = compile_err("<< status | map('statuss') >>");
    assert_eq!(err.message, "unknown value map \"statuss\"; known maps: status, strict");
    assert_eq!(err.hint.as_deref(), Some("did you mean `status`?"));
    assert_eq!(err.offset, Some(16));
}

struct FakeIds(HashMap<(String, String), String>);

impl MappedIds for FakeIds {
    fn mapped_id(&self, object: &str, source_id: &str) -> Result<Option<String>, String> {
        if source_id == "boom" {
            return Err("database is locked".to_owned());
        }
        Ok(self.0.get(&(object.to_owned(), source_id.to_owned())).cloned())
    }
}

#[test]
fn mapped_id_filter_and_function() {
    let mut ids = HashMap::new();
    ids.insert(("customer".to_owned(), "C7".to_owned()), "900123".to_owned());
    ids.insert(("material".to_owned(), "3".to_owned()), "M-3".to_owned());
    let mut scope = scope();
    scope.mapped_ids = Some(Arc::new(FakeIds(ids)));
    let env = env();
    assert_eq!(
        render_in(&env, "<< customer.id | mapped_id('customer') >>", &scope),
        json!("900123")
    );
    assert_eq!(
        render_in(&env, "<< mapped_id('customer', customer.id) >>", &scope),
        json!("900123")
    );
    assert_eq!(
        render_in(&env, "<< qty | mapped_id('material') >>", &scope),
        json!("M-3")
    );
    assert_eq!(
        render_in(
            &env,
            "<% for l in lines %><< l.qty | string | mapped_id('material') if l.qty == 3 else '-' >><% endfor %>",
            &scope
        ),
        json!("--")
    );

    let err = render_err_in(&scope, "<< name | mapped_id('customer') >>");
    assert_eq!(
        err.message,
        "no mapping yet for customer source id Widget; run the scheme that creates customer first \
         (in template `<< name | mapped_id('customer') >>`)"
    );
    let err = render_err_in(&scope, "<< 'boom' | mapped_id('customer') >>");
    assert!(err.message.contains("failed: database is locked"), "{}", err.message);
    let err = render_err_in(&scope, "<< remark | mapped_id('customer') >>");
    assert!(
        err.message
            .starts_with("mapped_id for customer needs a source id, got null"),
        "{}",
        err.message
    );
    let err = render_err("<< customer.id | mapped_id('customer') >>");
    assert!(err.message.contains("needs the id-mapping store"), "{}", err.message);
}

#[test]
fn unknown_names_fail_at_compile_with_hints() {
    let err = compile_err("<< created | datetme >>");
    assert_eq!(err.message, "unknown filter `datetme`");
    assert_eq!(err.hint.as_deref(), Some("did you mean `datetime`?"));
    assert_eq!(err.offset, Some(13));
    assert_eq!(err.line_col("<< created | datetme >>"), Some((1, 14)));

    let err = compile_err("ok\n<% if x is numbr %>y<% endif %>");
    assert_eq!(err.message, "unknown test `numbr`");
    assert_eq!(err.hint.as_deref(), Some("did you mean `number`?"));
    assert_eq!(err.line_col("ok\n<% if x is numbr %>y<% endif %>"), Some((2, 12)));

    let err = compile_err("<< mapped_idd('customer', x) >>");
    assert_eq!(err.message, "unknown function `mapped_idd`");
    assert_eq!(err.hint.as_deref(), Some("did you mean `mapped_id`?"));
    assert_eq!(err.offset, Some(3));

    let err = compile_err("<< x | frobnicate_everything >>");
    assert!(err
        .hint
        .as_deref()
        .unwrap_or_default()
        .starts_with("known filters: datetime, date"));

    // The first problem in source order is reported.
    let err = compile_err("<< a | nope1 >> << b | nope2 >>");
    assert_eq!(err.message, "unknown filter `nope1`");
}

#[test]
fn syntax_errors_carry_offsets() {
    let source = "SO-<< no | >>";
    let err = compile_err(source);
    assert!(err.message.starts_with("syntax error"), "{}", err.message);
    assert_eq!(err.offset, Some(11));
    let source = "x <% if a %>";
    let err = compile_err(source);
    assert!(err.message.starts_with("syntax error"), "{}", err.message);
    assert!(err.offset.is_some());
    let err = compile_err("<< 'unterminated >>");
    assert!(err.message.starts_with("syntax error"), "{}", err.message);
}

#[test]
fn variables_and_calls() {
    let template = env().compile("<< window.start | datetime >>-<< record.no >>").unwrap();
    assert_eq!(template.variables(), set(&["record", "window"]));
    assert_eq!(template.calls(), set(&["datetime"]));

    let template = env()
        .compile("<% for l in lines if l is mapping %><< l.qty | int >><% endfor %><< range(2) | join >>")
        .unwrap();
    assert_eq!(template.variables(), set(&["lines"]));
    assert_eq!(template.calls(), set(&["int", "join", "mapping", "range"]));

    let template = env()
        .compile("<< mapped_id('customer', cid) ~ x | default('') >>")
        .unwrap();
    assert_eq!(template.variables(), set(&["cid", "x"]));
    assert_eq!(template.calls(), set(&["default", "mapped_id"]));
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

#[test]
fn name_tables_match_the_environment() {
    let env = env();
    for name in FILTERS {
        assert_eq!(
            render_in(&env, &format!("<< '{name}' is filter >>"), &Scope::default()),
            json!(true),
            "{name}"
        );
    }
    for name in TESTS {
        assert_eq!(
            render_in(&env, &format!("<< '{name}' is test >>"), &Scope::default()),
            json!(true),
            "{name}"
        );
    }
    for name in FUNCTIONS {
        assert_eq!(
            render_in(&env, &format!("<< {name} is defined >>"), &Scope::default()),
            json!(true),
            "{name}"
        );
    }
    assert_eq!(EXPR_PREFIX, format!("<% set {RESULT} = "));
}

#[test]
fn templates_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<TemplateEnv>();
    assert_send_sync::<Template>();
    assert_send_sync::<TemplateError>();
    let template = env().compile("<< name | upper >>").unwrap();
    let scope = scope();
    std::thread::scope(|threads| {
        for _ in 0..4 {
            threads.spawn(|| assert_eq!(template.render(&scope).unwrap(), json!("WIDGET")));
        }
    });
}

fn strict_err(scope: &Scope, source: &str) -> TemplateError {
    let template = strict_env()
        .compile(source)
        .unwrap_or_else(|err| panic!("{source}: {err:?}"));
    match template.render(scope) {
        Ok(value) => panic!("{source} rendered {value} instead of failing"),
        Err(err) => err,
    }
}

#[test]
fn strict_missing_fields_fail_and_name_the_field() {
    let scope = scope();
    for (source, missing) in [
        ("<< missing >>", vec!["missing"]),
        ("<< missing | int >>", vec!["missing"]),
        ("<< missing | upper >>", vec!["missing"]),
        ("<< missing | json >>", vec!["missing"]),
        ("<< customer.missing >>", vec!["customer.missing"]),
        ("<< record.missing >>", vec!["record.missing"]),
        ("<< missing.x >>", vec!["missing"]),
        ("<< lines[5].sku >>", vec!["lines[5]"]),
        ("<< lines[0].color >>", vec!["lines[0].color"]),
        ("SO-<< no >>-<< missing >>", vec!["missing"]),
        ("<< a1 ~ b2 >>", vec!["a1", "b2"]),
        ("<< [qty, gone] >>", vec!["gone"]),
        ("<< qty if gone else 0 >>", vec!["gone"]),
        ("<% for l in gone %>x<% endfor %>", vec!["gone"]),
        ("<% if true %><< gone >><% endif %>", vec!["gone"]),
        (
            "<< lines | map(attribute='color') | join(',') >>",
            vec!["lines[0].color", "lines[1].color"],
        ),
    ] {
        let err = strict_err(&scope, source);
        assert_eq!(err.missing, missing, "{source}: {}", err.message);
        assert!(err.message.starts_with("missing field"), "{source}: {}", err.message);
        assert!(err.message.contains(source), "{source}: {}", err.message);
        assert!(err.hint.as_deref().is_some_and(|h| h.contains("default")), "{source}");
    }
}

#[test]
fn strict_null_is_a_value_and_absence_can_be_handled() {
    let env = strict_env();
    let scope = scope();
    for (source, expected) in [
        // A key that is there with null is a value, not a missing field.
        ("<< remark >>", Json::Null),
        ("[<< remark >>]", json!("[]")),
        ("<< missing | default('x') >>", json!("x")),
        ("<< missing | d('x') >>", json!("x")),
        ("<< missing | default(remark) >>", Json::Null),
        ("<< name | default(gone) >>", json!("Widget")),
        ("<< missing | default(gone | default('y')) >>", json!("y")),
        ("<< missing | optional >>", Json::Null),
        ("<< customer.missing | optional >>", Json::Null),
        ("<< qty | optional >>", json!(3)),
        ("<< missing | optional | default('z') >>", json!("z")),
        ("<< missing is defined >>", json!(false)),
        ("<< missing is undefined >>", json!(true)),
        ("<< missing if missing is defined else 'n/a' >>", json!("n/a")),
        (
            "<% if gone is defined %><< gone >><% else %>none<% endif %>",
            json!("none"),
        ),
        ("<< customer.tags | join('-') >>", json!("a-b")),
        ("<< range(2) | list >>", json!([0, 1])),
        ("<< lines | map(attribute='sku') | join(',') >>", json!("A,B")),
    ] {
        assert_eq!(render_in(&env, source, &scope), expected, "{source}");
    }
    // A default that did not apply leaves other misses in place.
    let err = strict_err(&scope, "<< gone ~ (missing | default('')) >>");
    assert_eq!(err.missing, vec!["gone"]);
}

#[test]
fn strict_fast_path_matches_minijinja() {
    let (fast_env, slow_env) = (strict_env(), TemplateEnv::minijinja_only(strict_options()));
    let scope = scope();
    for source in [
        "<< missing >>",
        "<< customer.missing >>",
        "<< missing | int >>",
        "<< missing | default('q') | upper >>",
        "<< missing | optional >>",
        "<< name.length >>",
        "<< qty.real >>",
        "<< lines.sku >>",
        "[<< missing >>]",
        "<< remark >>",
    ] {
        let fast = fast_env.compile(source).unwrap();
        let slow = slow_env.compile(source).unwrap();
        match (fast.render(&scope), slow.render(&scope)) {
            (Ok(fast), Ok(slow)) => assert_eq!(fast, slow, "{source}"),
            (Err(fast), Err(slow)) => {
                assert_eq!(fast.message, slow.message, "{source}");
                assert_eq!(fast.missing, slow.missing, "{source}");
            }
            (fast, slow) => panic!("{source}: fast path gave {fast:?}, minijinja gave {slow:?}"),
        }
    }
    // An attribute of a scalar is no field at all: an error, not a silent null.
    let err = strict_err(&scope, "<< name.length >>");
    assert!(err.missing.is_empty());
    assert!(err.message.contains("undefined value"), "{}", err.message);
}

#[test]
fn lenient_reads_missing_fields_as_null() {
    let env = TemplateEnv::new(TemplateOptions {
        strict: false,
        ..TemplateOptions::default()
    });
    assert_eq!(render_in(&env, "<< missing >>", &scope()), Json::Null);
    assert_eq!(render_in(&env, "[<< missing >>]", &scope()), json!("[]"));
}
