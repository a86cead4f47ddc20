//! Who asked: every operation is given an [`Actor`], and every job, drill and function-stack
//! change records it. Front ends make the actor (the command line: the OS user, or the CI
//! job it runs in; the daemon: the schedule; the API, later: the token), operations only
//! pass it on and record it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of front end asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ActorKind {
    /// A person at the command line.
    Cli,
    /// The daemon, for a schedule.
    Schedule,
    /// A caller of the HTTP API.
    Api,
    /// A CI job (the command line run with `CI=true`).
    Ci,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Cli => "cli",
            ActorKind::Schedule => "schedule",
            ActorKind::Api => "api",
            ActorKind::Ci => "ci",
        }
    }
}

/// Who asked for an operation. Recorded as `kind:name` (`cli:alice`, `schedule:nightly`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Actor {
    pub kind: ActorKind,
    /// The OS user, the schedule, the token's name, the CI pipeline.
    pub name: String,
    /// The API token's id (never its secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// The client's address (API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// What the actor may do: a token's grant. `None`: the host itself (the command line
    /// and the daemon run with the config and the keys, so with every right).
    #[serde(skip)]
    pub grant: Option<crate::access::Grant>,
}

impl Actor {
    pub fn new(kind: ActorKind, name: impl Into<String>) -> Actor {
        Actor { kind, name: name.into(), token_id: None, address: None, grant: None }
    }

    /// The command line: the OS user running it (from the process's uid, not `$USER`), or,
    /// under CI (`CI=true`), the CI job: `$GITHUB_WORKFLOW`, `$CI_JOB_NAME` or `ci`.
    pub fn command_line() -> Actor {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        if ci {
            let name = ["GITHUB_WORKFLOW", "CI_JOB_NAME"]
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
                .unwrap_or_else(|| "ci".into());
            return Actor::new(ActorKind::Ci, name);
        }
        Actor::new(ActorKind::Cli, crate::error::current_user())
    }

    /// What this actor may do (the host itself: everything).
    pub fn grant(&self) -> crate::access::Grant {
        self.grant.clone().unwrap_or(crate::access::Grant { role: crate::access::Role::Admin, workspaces: Vec::new() })
    }

    /// The daemon, running schedule `policy`.
    pub fn schedule(policy: &str) -> Actor {
        Actor::new(ActorKind::Schedule, policy)
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_read_as_kind_and_name_and_keep_no_empty_fields_in_json() {
        let a = Actor::schedule("nightly");
        assert_eq!(a.to_string(), "schedule:nightly");
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"{"kind":"schedule","name":"nightly"}"#);
        let api = Actor { token_id: Some("tok_1".into()), ..Actor::new(ActorKind::Api, "ci-drills") };
        let back: Actor = serde_json::from_str(&serde_json::to_string(&api).unwrap()).unwrap();
        assert_eq!(back, api);
    }
}
