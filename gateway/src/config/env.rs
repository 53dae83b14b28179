//! `os.environ/NAME` references, LiteLLM's way of keeping secrets out of `config.yaml`.
//!
//! Pure functions over a lookup: the config's own `environment_variables` are consulted first
//! (LiteLLM exports them into the process environment before reading the rest), then the caller's
//! lookup. Nothing here reads or writes the real process environment, and no error ever carries a
//! variable's value.

use std::collections::BTreeMap;

/// LiteLLM's prefix; the reference must be the whole value.
pub(crate) const PREFIX: &str = "os.environ/";

/// Why a reference did not resolve. Messages name the variable, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvError {
    #[error("environment variable `{name}` is not set")]
    Missing { name: String },
    #[error("environment variable `{name}` contains a newline; refused")]
    Newline { name: String },
    #[error("`os.environ/` must be followed by a variable name")]
    EmptyName,
    #[error("`{name}` is not a valid environment variable name")]
    InvalidName { name: String },
}

impl EnvError {
    pub fn hint(&self) -> Option<String> {
        match self {
            EnvError::Missing { name } => Some(format!(
                "export {name}, or define it under `environment_variables`"
            )),
            EnvError::Newline { .. } => Some(
                "a value spanning lines is almost always a pasted file or a shell mistake"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}

/// The variable name when `value` is an `os.environ/NAME` reference.
pub(crate) fn reference(value: &str) -> Option<&str> {
    value.strip_prefix(PREFIX)
}

/// Resolves variable `name`: `environment_variables` from the config first, then `lookup`.
pub(crate) fn resolve(
    name: &str,
    config_vars: &BTreeMap<String, String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, EnvError> {
    if name.is_empty() {
        return Err(EnvError::EmptyName);
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c == '=' || c == '\0')
    {
        return Err(EnvError::InvalidName {
            name: name.to_owned(),
        });
    }
    let value = match config_vars.get(name) {
        Some(v) => v.clone(),
        None => lookup(name).ok_or_else(|| EnvError::Missing {
            name: name.to_owned(),
        })?,
    };
    if value.contains(['\n', '\r']) {
        return Err(EnvError::Newline {
            name: name.to_owned(),
        });
    }
    Ok(value)
}

/// The first of `names` that is set, from the same two sources; used for the provider
/// defaults LiteLLM reads implicitly (`OPENAI_API_KEY`, `AZURE_API_BASE`, ...).
pub(crate) fn first_set(
    names: &[&str],
    config_vars: &BTreeMap<String, String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<(String, String)> {
    names.iter().find_map(|name| {
        let value = config_vars.get(*name).cloned().or_else(|| lookup(name))?;
        (!value.is_empty() && !value.contains(['\n', '\r'])).then(|| ((*name).to_owned(), value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn only_whole_values_are_references() {
        assert_eq!(
            reference("os.environ/OPENAI_API_KEY"),
            Some("OPENAI_API_KEY")
        );
        assert_eq!(reference("https://os.environ/X"), None);
        assert_eq!(reference("sk-1234"), None);
    }

    #[test]
    fn config_variables_win_over_the_lookup() {
        let lookup = |name: &str| (name == "A").then(|| "from-env".to_owned());
        assert_eq!(
            resolve("A", &vars(&[("A", "from-config")]), &lookup).unwrap(),
            "from-config"
        );
        assert_eq!(resolve("A", &vars(&[]), &lookup).unwrap(), "from-env");
    }

    #[test]
    fn missing_and_malformed_references_name_the_variable_only() {
        let lookup = |name: &str| match name {
            "MULTI" => Some("line1\nline2".to_owned()),
            _ => None,
        };
        assert_eq!(
            resolve("NOPE", &vars(&[]), &lookup),
            Err(EnvError::Missing {
                name: "NOPE".into()
            })
        );
        let err = resolve("MULTI", &vars(&[]), &lookup).unwrap_err();
        assert_eq!(
            err,
            EnvError::Newline {
                name: "MULTI".into()
            }
        );
        assert!(!err.to_string().contains("line1"));
        assert_eq!(resolve("", &vars(&[]), &lookup), Err(EnvError::EmptyName));
        assert!(matches!(
            resolve("A B", &vars(&[]), &lookup),
            Err(EnvError::InvalidName { .. })
        ));
    }

    #[test]
    fn first_set_skips_unset_and_empty() {
        let lookup = |name: &str| match name {
            "EMPTY" => Some(String::new()),
            "B" => Some("b".to_owned()),
            _ => None,
        };
        assert_eq!(
            first_set(&["A", "EMPTY", "B"], &vars(&[]), &lookup),
            Some(("B".to_owned(), "b".to_owned()))
        );
        assert_eq!(first_set(&["A"], &vars(&[]), &lookup), None);
    }
}
