//! Compile-time checks over the parsed template (minijinja's `machinery` AST).
//!
//! minijinja resolves filter, test and function names only when a template runs,
//! so a typo would surface record by record. This walk collects every name a
//! template calls, with its byte offset, and rejects unknown ones with a
//! did-you-mean hint before any run. It also checks literal value-map names:
//! `status | map('statuss')` fails here when the scheme has no such map.
//!
//! It also records every chain of constant members read from a top-level name
//! (`page.size`, `window['start']`, `run.id` inside a filter argument), so the scheme's
//! validation can reject a member the named value cannot have: minijinja reads a
//! missing member as undefined, which would render as nothing, record after record.
//! What each name holds is described by a [`Shape`]; see [`unknown_members`].
//! Names the template binds itself (`<% set %>`, `<% for %>`, `<% with %>`) are
//! never checked.
//!
//! The AST is minijinja's unstable machinery API (pinned through Cargo.lock). The
//! rejected alternative, a hand-written scanner over the source, would have to
//! re-implement string, comment and operator lexing to avoid false matches.

use std::collections::BTreeSet;

use minijinja::machinery::ast::{CallArg, Expr, Stmt};

use super::filters::unknown_value_map;
use super::{TemplateError, TemplateOptions, FILTERS, FUNCTIONS, TESTS};

/// A name used at a byte offset of the template source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Use {
    pub(crate) name: String,
    pub(crate) offset: usize,
}

/// Every call-like name one template uses.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    pub(crate) filters: Vec<Use>,
    pub(crate) tests: Vec<Use>,
    pub(crate) functions: Vec<Use>,
    /// Literal first arguments of `map(...)` that may name a value map.
    pub(crate) value_maps: Vec<Use>,
    /// Literal first arguments of `field_map(...)`: field mapping table names.
    pub(crate) field_tables: Vec<Use>,
    /// Every read of a top-level name, in source order.
    pub(crate) names: Vec<Use>,
    /// Constant member chains read from a top-level name (`page.size`, `a['b'].c`).
    pub(crate) reads: Vec<Read>,
    /// Names the template binds itself (loop variables, `set`, `with`).
    pub(crate) bound: BTreeSet<String>,
}

/// A chain of constant members read from a top-level name: `page.size` or `a['b'][0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Read {
    pub(crate) root: Use,
    /// Each member with the byte offset of its name (or of its subscript).
    pub(crate) members: Vec<Use>,
}

/// What Ferry knows about a value it puts into a template's scope.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Data whose members cannot be known in advance (a record, a vendor's answer).
    Open,
    /// One plain value; any member of it reads as nothing. The text says what it is
    /// (`"a number"`), for messages.
    Scalar(&'static str),
    /// A mapping with exactly these members.
    Map(Vec<(String, Shape)>),
    /// A list whose items all have this shape.
    List(Box<Shape>),
}

impl Shape {
    /// A mapping whose members are all plain values, each described by its text.
    pub fn scalars(members: &[(&str, &'static str)]) -> Shape {
        Shape::Map(
            members
                .iter()
                .map(|(name, what)| ((*name).to_owned(), Shape::Scalar(what)))
                .collect(),
        )
    }

    /// The names of a mapping's members (empty for other shapes).
    pub fn member_names(&self) -> Vec<&str> {
        match self {
            Shape::Map(members) => members.iter().map(|(name, _)| name.as_str()).collect(),
            _ => Vec::new(),
        }
    }
}

/// Every member read by `reads` that the value cannot have, as errors with the
/// offset of the member. `shape_of` says what a top-level name holds; names it does
/// not know (record fields, or names the caller reports itself) are not checked.
pub(crate) fn unknown_members(reads: &[Read], shape_of: &dyn Fn(&str) -> Option<Shape>) -> Vec<TemplateError> {
    let mut problems = Vec::new();
    for read in reads {
        let Some(mut shape) = shape_of(&read.root.name) else {
            continue;
        };
        let mut path = read.root.name.clone();
        for member in &read.members {
            let next = match &shape {
                Shape::Open => break,
                Shape::Map(members) => match members.iter().find(|(name, _)| *name == member.name) {
                    Some((_, inner)) => inner.clone(),
                    None => {
                        let known: Vec<&str> = members.iter().map(|(name, _)| name.as_str()).collect();
                        problems.push(unknown_member(&path, member, &known));
                        break;
                    }
                },
                Shape::List(item) if member.name.parse::<i64>().is_ok() => (**item).clone(),
                Shape::List(_) => {
                    problems.push(TemplateError {
                        message: format!("`{path}` is a list, so it has no member `{}`", member.name),
                        offset: Some(member.offset),
                        hint: Some(format!(
                            "read one item's, e.g. `{path}[0].{0}`, or every item's, e.g. `{path} | map(attribute='{0}')`",
                            member.name
                        )),
                        missing: Vec::new(),
                    });
                    break;
                }
                Shape::Scalar(what) => {
                    problems.push(TemplateError {
                        message: format!("`{path}` is {what}, so it has no member `{}`", member.name),
                        offset: Some(member.offset),
                        hint: Some(format!("read `{path}` itself, or transform it with a filter")),
                        missing: Vec::new(),
                    });
                    break;
                }
            };
            path = member_path(&path, &member.name);
            shape = next;
        }
    }
    problems
}

/// `page.size` for a name, `rows[0]` for an index.
fn member_path(path: &str, member: &str) -> String {
    if member.parse::<i64>().is_ok() {
        format!("{path}[{member}]")
    } else {
        format!("{path}.{member}")
    }
}

fn unknown_member(path: &str, member: &Use, known: &[&str]) -> TemplateError {
    let choices: Vec<String> = known.iter().map(|name| member_path(path, name)).collect();
    let hint = match crate::diag::did_you_mean(&member.name, known.iter().copied()) {
        Some(best) => format!(
            "did you mean `{}`? (choose from: {})",
            member_path(path, best),
            choices.join(", ")
        ),
        None => format!("choose from: {}", choices.join(", ")),
    };
    TemplateError {
        message: format!("unknown member `{}` of `{path}`", member.name),
        offset: Some(member.offset),
        hint: Some(hint),
        missing: Vec::new(),
    }
}

/// Names that minijinja binds itself and that may be called without being a function.
const SPECIAL_CALLABLES: &[&str] = &["loop", "caller", "super", "self", "varargs", "kwargs"];

impl Usage {
    /// Collects the names used anywhere in `stmt`.
    pub(crate) fn collect(stmt: &Stmt<'_>) -> Usage {
        let mut usage = Usage::default();
        usage.stmt(stmt);
        let bound = std::mem::take(&mut usage.bound);
        usage.reads.retain(|read| !bound.contains(&read.root.name));
        usage.names.retain(|used| !bound.contains(&used.name));
        usage.bound = bound;
        usage
    }

    /// Rejects unknown names; the first problem (in source order) wins.
    pub(crate) fn validate(&self, options: &TemplateOptions) -> Result<(), TemplateError> {
        let mut problems: Vec<TemplateError> = Vec::new();
        for used in &self.filters {
            if !FILTERS.contains(&used.name.as_str()) {
                problems.push(unknown("filter", used, FILTERS));
            }
        }
        for used in &self.tests {
            if !TESTS.contains(&used.name.as_str()) {
                problems.push(unknown("test", used, TESTS));
            }
        }
        for used in &self.functions {
            let name = used.name.as_str();
            if !FUNCTIONS.contains(&name) && !SPECIAL_CALLABLES.contains(&name) {
                problems.push(unknown("function", used, FUNCTIONS));
            }
        }
        for used in &self.value_maps {
            let name = used.name.as_str();
            if !options.value_maps.contains_key(name) && !FILTERS.contains(&name) {
                let known: Vec<&str> = options.value_maps.keys().map(String::as_str).collect();
                problems.push(TemplateError {
                    missing: Vec::new(),
                    message: unknown_value_map(options, name),
                    offset: Some(used.offset),
                    hint: did_you_mean(name, &known)
                        .or_else(|| Some("define it under `value_maps` in the scheme".to_owned())),
                });
            }
        }
        for used in &self.field_tables {
            if !options.field_tables.contains(&used.name) {
                let known: Vec<&str> = options.field_tables.iter().map(String::as_str).collect();
                let declared = if known.is_empty() {
                    "the scheme declares none".to_owned()
                } else {
                    format!("declared: {}", known.join(", "))
                };
                problems.push(TemplateError {
                    missing: Vec::new(),
                    message: format!("unknown field mapping table {:?}; {declared}", used.name),
                    offset: Some(used.offset),
                    hint: did_you_mean(&used.name, &known).or_else(|| {
                        Some(format!(
                            "declare it under `field_mappings` in the scheme, e.g. `field_mappings: {{{}: {{channel: ERP_K3CLOUD}}}}`",
                            used.name
                        ))
                    }),
                });
            }
        }
        match problems.into_iter().min_by_key(|problem| problem.offset) {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }

    fn stmts(&mut self, stmts: &[Stmt<'_>]) {
        for stmt in stmts {
            self.stmt(stmt);
        }
    }

    // Statement kinds behind minijinja features Ferry does not enable (macros,
    // multi_template, loop_controls) fall into the last arm if another crate
    // turns those features on.
    #[allow(unreachable_patterns)]
    fn stmt(&mut self, stmt: &Stmt<'_>) {
        match stmt {
            Stmt::Template(node) => self.stmts(&node.children),
            Stmt::EmitExpr(node) => self.expr(&node.expr),
            Stmt::EmitRaw(_) => {}
            Stmt::ForLoop(node) => {
                self.bind(&node.target);
                self.expr(&node.iter);
                self.opt_expr(node.filter_expr.as_ref());
                self.stmts(&node.body);
                self.stmts(&node.else_body);
            }
            Stmt::IfCond(node) => {
                self.expr(&node.expr);
                self.stmts(&node.true_body);
                self.stmts(&node.false_body);
            }
            Stmt::WithBlock(node) => {
                for (target, value) in &node.assignments {
                    self.bind(target);
                    self.expr(value);
                }
                self.stmts(&node.body);
            }
            Stmt::Set(node) => {
                self.bind(&node.target);
                self.expr(&node.expr);
            }
            Stmt::SetBlock(node) => {
                self.bind(&node.target);
                self.opt_expr(node.filter.as_ref());
                self.stmts(&node.body);
            }
            Stmt::AutoEscape(node) => {
                self.expr(&node.enabled);
                self.stmts(&node.body);
            }
            Stmt::FilterBlock(node) => {
                self.expr(&node.filter);
                self.stmts(&node.body);
            }
            Stmt::Do(node) => self.call(&node.call.expr, &node.call.args),
            _ => {}
        }
    }

    /// Remembers the names an assignment target binds (`x`, `(a, b)`); an attribute
    /// target (`ns.count`) binds nothing new.
    fn bind(&mut self, target: &Expr<'_>) {
        match target {
            Expr::Var(var) => {
                self.bound.insert(var.id.to_owned());
            }
            Expr::List(list) => {
                for item in &list.items {
                    self.bind(item);
                }
            }
            other => self.expr(other),
        }
    }

    /// The constant member chain `expr` reads, if it is one: a name followed by
    /// attributes and constant subscripts.
    fn chain(expr: &Expr<'_>) -> Option<Read> {
        match expr {
            Expr::Var(var) => Some(Read {
                root: Use {
                    name: var.id.to_owned(),
                    offset: offset_of(var.span().start_offset),
                },
                members: Vec::new(),
            }),
            Expr::GetAttr(node) => {
                let mut read = Usage::chain(&node.expr)?;
                let end = offset_of(node.span().end_offset);
                read.members.push(Use {
                    name: node.name.to_owned(),
                    offset: end.saturating_sub(node.name.len()),
                });
                Some(read)
            }
            Expr::GetItem(node) => {
                let Expr::Const(constant) = &node.subscript_expr else {
                    return None;
                };
                let name = match constant.value.as_str() {
                    Some(text) => text.to_owned(),
                    None if constant.value.is_integer() => constant.value.to_string(),
                    None => return None,
                };
                let mut read = Usage::chain(&node.expr)?;
                read.members.push(Use {
                    name,
                    offset: offset_of(constant.span().start_offset),
                });
                Some(read)
            }
            _ => None,
        }
    }

    /// Records a member chain once, at its outermost node.
    fn member_read(&mut self, expr: &Expr<'_>) -> bool {
        match Usage::chain(expr) {
            Some(read) => {
                self.names.push(read.root.clone());
                self.reads.push(read);
                true
            }
            None => false,
        }
    }

    fn opt_expr(&mut self, expr: Option<&Expr<'_>>) {
        if let Some(expr) = expr {
            self.expr(expr);
        }
    }

    fn expr(&mut self, expr: &Expr<'_>) {
        match expr {
            Expr::Var(var) => self.names.push(Use {
                name: var.id.to_owned(),
                offset: offset_of(var.span().start_offset),
            }),
            Expr::Const(_) => {}
            Expr::Slice(node) => {
                self.expr(&node.expr);
                self.opt_expr(node.start.as_ref());
                self.opt_expr(node.stop.as_ref());
                self.opt_expr(node.step.as_ref());
            }
            Expr::UnaryOp(node) => self.expr(&node.expr),
            Expr::BinOp(node) => {
                self.expr(&node.left);
                self.expr(&node.right);
            }
            Expr::Compare(node) => {
                self.expr(&node.expr);
                for op in &node.ops {
                    self.expr(&op.expr);
                }
            }
            Expr::IfExpr(node) => {
                self.expr(&node.test_expr);
                self.expr(&node.true_expr);
                self.opt_expr(node.false_expr.as_ref());
            }
            Expr::Filter(node) => {
                self.filters.push(Use {
                    name: node.name.to_owned(),
                    offset: offset_of(node.span().start_offset),
                });
                if node.name == "map" {
                    self.value_map_literal(&node.args);
                }
                if node.name == "field_map" {
                    self.field_table_literal(&node.args);
                }
                self.opt_expr(node.expr.as_ref());
                self.args(&node.args);
            }
            Expr::Test(node) => {
                self.tests.push(Use {
                    name: node.name.to_owned(),
                    offset: offset_of(node.span().start_offset),
                });
                self.expr(&node.expr);
                self.args(&node.args);
            }
            Expr::GetAttr(node) => {
                if !self.member_read(expr) {
                    self.expr(&node.expr);
                }
            }
            Expr::GetItem(node) => {
                if !self.member_read(expr) {
                    self.expr(&node.expr);
                    self.expr(&node.subscript_expr);
                }
            }
            Expr::Call(node) => self.call(&node.expr, &node.args),
            Expr::List(node) => {
                for item in &node.items {
                    self.expr(item);
                }
            }
            Expr::Map(node) => {
                for (key, value) in node.keys.iter().zip(&node.values) {
                    self.expr(key);
                    self.expr(value);
                }
            }
        }
    }

    fn call(&mut self, callee: &Expr<'_>, args: &[CallArg<'_>]) {
        match callee {
            Expr::Var(var) => self.functions.push(Use {
                name: var.id.to_owned(),
                offset: offset_of(var.span().start_offset),
            }),
            other => self.expr(other),
        }
        self.args(args);
    }

    fn args(&mut self, args: &[CallArg<'_>]) {
        for arg in args {
            match arg {
                CallArg::Pos(expr) | CallArg::Kwarg(_, expr) | CallArg::PosSplat(expr) | CallArg::KwargSplat(expr) => {
                    self.expr(expr)
                }
            }
        }
    }

    /// `field_map('name')` with a literal name: remember the name.
    fn field_table_literal(&mut self, args: &[CallArg<'_>]) {
        if let Some(CallArg::Pos(Expr::Const(constant))) = args.first() {
            if let Some(name) = constant.value.as_str() {
                self.field_tables.push(Use {
                    name: name.to_owned(),
                    offset: offset_of(constant.span().start_offset),
                });
            }
        }
    }

    /// `map('name')` with a literal name and no `attribute=`: remember the name.
    fn value_map_literal(&mut self, args: &[CallArg<'_>]) {
        if args
            .iter()
            .any(|arg| matches!(arg, CallArg::Kwarg(..) | CallArg::KwargSplat(_)))
        {
            return;
        }
        if let Some(CallArg::Pos(Expr::Const(constant))) = args.first() {
            if let Some(name) = constant.value.as_str() {
                self.value_maps.push(Use {
                    name: name.to_owned(),
                    offset: offset_of(constant.span().start_offset),
                });
            }
        }
    }
}

fn offset_of(offset: u32) -> usize {
    usize::try_from(offset).unwrap_or(usize::MAX)
}

fn unknown(kind: &str, used: &Use, known: &[&str]) -> TemplateError {
    TemplateError {
        missing: Vec::new(),
        message: format!("unknown {kind} `{}`", used.name),
        offset: Some(used.offset),
        hint: did_you_mean(&used.name, known).or_else(|| Some(format!("known {kind}s: {}", known.join(", ")))),
    }
}

/// "did you mean `x`?" for the closest known name, if it is close enough.
pub(crate) fn did_you_mean(name: &str, known: &[&str]) -> Option<String> {
    let limit = (name.chars().count() / 3).max(2);
    known
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), *candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| format!("did you mean `{candidate}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::TemplateEnv;

    fn page() -> Shape {
        Shape::scalars(&[
            ("index", "a number"),
            ("number", "a number"),
            ("offset", "a number"),
            ("size", "a number"),
            ("cursor", "text or nothing"),
        ])
    }

    fn known(name: &str) -> Option<Shape> {
        match name {
            "page" => Some(page()),
            "window" => Some(Shape::scalars(&[("start", "text"), ("end", "text")])),
            "run" => Some(Shape::scalars(&[
                ("id", "a number"),
                ("scheme", "text"),
                ("dry_run", "true or false"),
            ])),
            "now" => Some(Shape::Scalar("text")),
            "body" => Some(Shape::Open),
            "rows" => Some(Shape::List(Box::new(Shape::Map(vec![
                ("FName".into(), Shape::Open),
                ("FQty".into(), Shape::Open),
            ])))),
            _ => None,
        }
    }

    /// (message, hint, offset) of every unknown member in `source`.
    fn problems(source: &str) -> Vec<(String, String, usize)> {
        let template = TemplateEnv::default().compile(source).unwrap();
        template
            .unknown_members(&known)
            .into_iter()
            .map(|e| (e.message, e.hint.unwrap_or_default(), e.offset.unwrap()))
            .collect()
    }

    #[test]
    fn unknown_members_of_provided_names_are_found_at_the_member() {
        let found = problems("<< page.sise >>");
        assert_eq!(found.len(), 1, "{found:?}");
        let (message, hint, offset) = &found[0];
        assert_eq!(message, "unknown member `sise` of `page`");
        assert!(
            hint.starts_with("did you mean `page.size`? (choose from: page.index, page.number"),
            "{hint}"
        );
        assert_eq!(*offset, "<< page.".len());

        let found = problems("from=<< window.strat | datetime >>&to=<< window.end >>");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].1.contains("did you mean `window.start`?"), "{:?}", found[0]);
        assert_eq!(found[0].2, "from=<< window.".len());
    }

    #[test]
    fn subscripts_filter_arguments_tests_and_blocks_are_checked() {
        let found = problems("<< window['strat'] >>");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "unknown member `strat` of `window`");
        assert_eq!(found[0].2, "<< window[".len(), "the caret is on the subscript");

        let found = problems("<< note | default(run.idd) >>");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].1.contains("`run.id`"), "{:?}", found[0]);

        assert_eq!(problems("<< 1 if window.strat is defined else 2 >>").len(), 1);
        assert_eq!(problems("<% if page.nmber > 1 %>x<% endif %>").len(), 1);
        assert_eq!(problems("<< [page.size, page.ofset] | join(',') >>").len(), 1);
        assert_eq!(problems("<< mapped_id('c', run.schema) >>").len(), 1);
    }

    #[test]
    fn scalars_and_lists_have_no_members() {
        let found = problems("<< now.year >>");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "`now` is text, so it has no member `year`");
        let found = problems("<< page.size.value >>");
        assert_eq!(found[0].0, "`page.size` is a number, so it has no member `value`");
        let found = problems("<< rows.FName >>");
        assert_eq!(found[0].0, "`rows` is a list, so it has no member `FName`");
        let found = problems("<< rows[0].FNmae >>");
        assert_eq!(found[0].0, "unknown member `FNmae` of `rows[0]`");
        assert!(found[0].1.contains("did you mean `rows[0].FName`?"), "{:?}", found[0]);
        assert!(problems("<< rows[1].FQty >>").is_empty());
    }

    #[test]
    fn open_data_record_fields_and_local_names_are_not_checked() {
        assert!(problems("<< body.data.whatever[0].deep >>").is_empty());
        assert!(problems("<< order.sise >> << record.anything >>").is_empty());
        assert!(problems("<% for page in pages %><< page.anything >><% endfor %>").is_empty());
        assert!(problems("<% set window = {'a': 1} %><< window.a >>").is_empty());
        assert!(problems("<% with run = 1 %><< run.x >><% endwith %>").is_empty());
        // A computed subscript cannot be checked; what comes before it still is.
        assert!(problems("<< page[key].x >>").is_empty());
        assert_eq!(problems("<< page.sise[key] >>").len(), 1);
        assert!(problems("<< page.size >> << page['cursor'] >> << window.start >>").is_empty());
    }

    #[test]
    fn suggestions_pick_the_closest_name() {
        assert_eq!(
            did_you_mean("datetme", FILTERS).as_deref(),
            Some("did you mean `datetime`?")
        );
        assert_eq!(did_you_mean("lowr", FILTERS).as_deref(), Some("did you mean `lower`?"));
        assert_eq!(did_you_mean("completely_unrelated", FILTERS), None);
    }
}
