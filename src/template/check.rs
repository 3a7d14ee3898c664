//! Compile-time checks over the parsed template (minijinja's `machinery` AST).
//!
//! minijinja resolves filter, test and function names only when a template runs,
//! so a typo would surface record by record. This walk collects every name a
//! template calls, with its byte offset, and rejects unknown ones with a
//! did-you-mean hint before any run. It also checks literal value-map names:
//! `status | map('statuss')` fails here when the scheme has no such map.
//!
//! The AST is minijinja's unstable machinery API (pinned through Cargo.lock). The
//! rejected alternative, a hand-written scanner over the source, would have to
//! re-implement string, comment and operator lexing to avoid false matches.

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
}

/// Names that minijinja binds itself and that may be called without being a function.
const SPECIAL_CALLABLES: &[&str] = &["loop", "caller", "super", "self", "varargs", "kwargs"];

impl Usage {
    /// Collects the names used anywhere in `stmt`.
    pub(crate) fn collect(stmt: &Stmt<'_>) -> Usage {
        let mut usage = Usage::default();
        usage.stmt(stmt);
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
                self.expr(&node.target);
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
                    self.expr(target);
                    self.expr(value);
                }
                self.stmts(&node.body);
            }
            Stmt::Set(node) => {
                self.expr(&node.target);
                self.expr(&node.expr);
            }
            Stmt::SetBlock(node) => {
                self.expr(&node.target);
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

    fn opt_expr(&mut self, expr: Option<&Expr<'_>>) {
        if let Some(expr) = expr {
            self.expr(expr);
        }
    }

    fn expr(&mut self, expr: &Expr<'_>) {
        match expr {
            Expr::Var(_) | Expr::Const(_) => {}
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
            Expr::GetAttr(node) => self.expr(&node.expr),
            Expr::GetItem(node) => {
                self.expr(&node.expr);
                self.expr(&node.subscript_expr);
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
