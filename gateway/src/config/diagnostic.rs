//! What the loader tells the operator: located diagnostics, printed like a compiler's, and the
//! sink that collects every one of them in a single pass before anything is decided.

use std::fmt;
use std::path::PathBuf;

use super::yaml::{KeyPath, Mark, Node};

/// How bad a diagnostic is. `--strict` turns every warning into an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One finding about a config file, located by file, line, column and key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    /// 1-based; `None` when the finding is about the file as a whole.
    pub line: Option<usize>,
    /// 1-based.
    pub column: Option<usize>,
    /// `model_list[2].litellm_params.rpm`; empty for syntax errors.
    pub key_path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    /// `config.yaml:14:7: model_list[2].litellm_params.rpm: invalid type: string "ten", expected u32`
    /// with the hint, if any, on its own indented line. Warnings say so after the location.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        f.write_str(": ")?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if !self.key_path.is_empty() {
            write!(f, "{}: ", self.key_path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// A config that cannot be used: every error found, and the warnings found alongside.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_all(.errors, .warnings))]
pub struct ConfigErrors {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn render_all(errors: &[Diagnostic], warnings: &[Diagnostic]) -> String {
    let mut out = format!(
        "invalid config ({}, {})",
        plural(errors.len(), "error"),
        plural(warnings.len(), "warning")
    );
    for d in errors.iter().chain(warnings) {
        out.push('\n');
        out.push_str(&d.to_string());
    }
    out
}

/// "did you mean `x`?" for a misspelt key or name, when one candidate is close enough.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(score, c)| *score >= 0.85 && *c != word)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Sorted, comma-separated, at most `limit` names and a count of the rest.
pub(crate) fn list_names<'a>(names: impl IntoIterator<Item = &'a str>, limit: usize) -> String {
    let mut names: Vec<&str> = names.into_iter().collect();
    names.sort_unstable();
    names.dedup();
    if names.len() <= limit {
        names.join(", ")
    } else {
        format!(
            "{} (and {} more)",
            names[..limit].join(", "),
            names.len() - limit
        )
    }
}

/// One source file the loader read, kept so any key path can be turned into a line.
pub(crate) struct SourceFile {
    pub path: PathBuf,
    pub root: Option<Node>,
}

struct Pending {
    severity: Severity,
    file: usize,
    path: KeyPath,
    mark: Option<Mark>,
    message: String,
    hint: Option<String>,
}

/// Collects diagnostics during loading; locates and sorts them at the end.
#[derive(Default)]
pub(crate) struct Sink {
    files: Vec<SourceFile>,
    items: Vec<Pending>,
    /// Paths whose value was already reported as broken; follow-on findings below them are noise.
    suppressed: Vec<(usize, KeyPath)>,
}

impl Sink {
    pub fn add_file(&mut self, path: PathBuf, root: Option<Node>) -> usize {
        self.files.push(SourceFile { path, root });
        self.files.len() - 1
    }

    pub fn file(&self, index: usize) -> &SourceFile {
        &self.files[index]
    }

    pub fn set_root(&mut self, index: usize, root: Option<Node>) {
        self.files[index].root = root;
    }

    pub fn suppress(&mut self, file: usize, path: &KeyPath) {
        self.suppressed.push((file, path.clone()));
    }

    pub fn error(
        &mut self,
        file: usize,
        path: &KeyPath,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push(Severity::Error, file, path, None, message.into(), hint);
    }

    pub fn warn(
        &mut self,
        file: usize,
        path: &KeyPath,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push(Severity::Warning, file, path, None, message.into(), hint);
    }

    /// A finding with a position of its own (syntax errors), not derived from the key path.
    pub fn error_at(
        &mut self,
        file: usize,
        mark: Mark,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push(
            Severity::Error,
            file,
            &KeyPath::root(),
            Some(mark),
            message.into(),
            hint,
        );
    }

    /// A finding about the file as a whole (it could not be read).
    pub fn error_file(&mut self, file: usize, message: impl Into<String>) {
        self.items.push(Pending {
            severity: Severity::Error,
            file,
            path: KeyPath::root(),
            mark: None,
            message: message.into(),
            hint: None,
        });
    }

    fn push(
        &mut self,
        severity: Severity,
        file: usize,
        path: &KeyPath,
        mark: Option<Mark>,
        message: String,
        hint: Option<String>,
    ) {
        if self
            .suppressed
            .iter()
            .any(|(f, p)| *f == file && path.starts_with(p))
        {
            return;
        }
        let mark = mark.or_else(|| self.files[file].root.as_ref().map(|root| root.locate(path)));
        self.items.push(Pending {
            severity,
            file,
            path: path.clone(),
            mark,
            message,
            hint,
        });
    }

    /// Splits into (errors, warnings), each in file order then position order.
    pub fn finish(self, strict: bool) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
        let mut items = self.items;
        items.sort_by_key(|p| {
            let (line, col) = p.mark.map_or((0, 0), |m| (m.line, m.col));
            (p.file, line, col)
        });
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for p in items {
            let mut d = Diagnostic {
                severity: p.severity,
                file: self.files[p.file].path.clone(),
                line: p.mark.map(|m| m.line),
                column: p.mark.map(|m| m.col),
                key_path: p.path.to_string(),
                message: p.message,
                hint: p.hint,
            };
            if strict && d.severity == Severity::Warning {
                d.severity = Severity::Error;
                d.hint = Some(match d.hint {
                    Some(h) => format!("{h} (an error because of --strict)"),
                    None => "an error because of --strict".to_owned(),
                });
            }
            match d.severity {
                Severity::Error => errors.push(d),
                Severity::Warning => warnings.push(d),
            }
        }
        (errors, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_reads_like_a_compiler() {
        let d = Diagnostic {
            severity: Severity::Error,
            file: "config.yaml".into(),
            line: Some(14),
            column: Some(7),
            key_path: "model_list[2].litellm_params.rpm".into(),
            message: "invalid type: string \"ten\", expected u32".into(),
            hint: None,
        };
        assert_eq!(
            d.to_string(),
            "config.yaml:14:7: model_list[2].litellm_params.rpm: invalid type: string \"ten\", expected u32"
        );
        let w = Diagnostic {
            severity: Severity::Warning,
            hint: Some("did you mean `rpm`?".into()),
            ..d
        };
        assert_eq!(
            w.to_string(),
            "config.yaml:14:7: warning: model_list[2].litellm_params.rpm: invalid type: string \"ten\", expected u32\n  hint: did you mean `rpm`?"
        );
    }

    #[test]
    fn did_you_mean_picks_the_closest() {
        let keys = ["num_retries", "fallbacks", "timeout"];
        assert_eq!(did_you_mean("num_retires", keys), Some("num_retries"));
        assert_eq!(did_you_mean("fallback", keys), Some("fallbacks"));
        assert_eq!(did_you_mean("zzz", keys), None);
    }

    #[test]
    fn list_names_truncates() {
        assert_eq!(list_names(["b", "a"], 5), "a, b");
        assert_eq!(list_names(["c", "b", "a"], 2), "a, b (and 1 more)");
    }
}
