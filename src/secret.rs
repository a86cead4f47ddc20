//! Secrets in the config and on the command line: a value read from the environment
//! (`env:NAME`), a file (`file:PATH`) or given as is. A secret never prints.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A secret value in the config: `env:NAME` reads an environment variable, `file:PATH` reads
/// a file (trailing newline trimmed), anything else is the value itself. It never prints.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn literal(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// A secret that comes from outside (a flag, an API request) by reference only:
    /// `env:VARIABLE` or `file:/path`, so the secret itself stays out of shell history,
    /// process lists, request logs and the config. `what` names it in the error, which
    /// never repeats the value (it may be the password itself).
    ///
    /// Errors: `Usage` for anything else.
    pub fn reference(what: &str, text: &str) -> Result<Secret> {
        if text.starts_with("env:") || text.starts_with("file:") {
            return Ok(Secret(text.to_string()));
        }
        Err(Error::usage(format!(
            "{what} takes env:VARIABLE or file:/path, so the password stays out of shell history, process lists \
             and the config"
        )))
    }

    /// As written in the config: the `env:`/`file:` reference, or the value itself (for
    /// writing the config back; never for messages).
    pub(crate) fn as_written(&self) -> &str {
        &self.0
    }

    /// The environment variable it is read from (`env:VARIABLE`), if any.
    pub fn env_var(&self) -> Option<&str> {
        self.0.strip_prefix("env:")
    }

    /// The secret's value. Errors name the variable or file, never the value.
    pub fn resolve(&self) -> Result<String> {
        if let Some(var) = self.0.strip_prefix("env:") {
            std::env::var(var)
                .map_err(|_| Error::config(format!("the environment variable {var} (named as env:{var}) is not set")))
        } else if let Some(path) = self.0.strip_prefix("file:") {
            fs_err::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| Error::config(format!("cannot read the secret file {path}: {e}")))
        } else {
            Ok(self.0.clone())
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.starts_with("env:") || self.0.starts_with("file:") {
            write!(f, "Secret({})", self.0)
        } else {
            f.write_str("Secret(<redacted>)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_from_outside_is_a_reference_and_a_refusal_never_repeats_it() {
        assert!(Secret::reference("--password", "env:PGPASSWORD").is_ok());
        assert!(Secret::reference("--password", "file:/run/secrets/pg").is_ok());
        let e = Secret::reference("--password", "hunter2").unwrap_err();
        assert!(!e.report().contains("hunter2") && e.message().contains("--password"), "{}", e.report());
        assert_eq!(format!("{:?}", Secret::literal("hunter2")), "Secret(<redacted>)");
    }

    /// Issue 31.10: a reference given on the command line is not said to come from the config.
    #[test]
    fn an_unset_variable_is_named_wherever_it_was_given() {
        let e =
            Secret::reference("--target-password", "env:TIDEMARK_TEST_SURELY_UNSET").unwrap().resolve().unwrap_err();
        assert!(e.message().contains("TIDEMARK_TEST_SURELY_UNSET") && !e.message().contains("tidemark.toml"), "{e:?}");
    }
}
