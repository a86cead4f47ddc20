//! API tokens: `token create|list|revoke`, and how a presented secret becomes an
//! [`Actor`] with a grant. A secret is `tdm_`, 44 base62 characters (32 random bytes) and a
//! 6-character checksum, so scanners can recognise a leaked one and a mistyped one is
//! refused before any lookup. The catalog keeps only its SHA-256; the secret is shown once.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Core;
use crate::access::{self, Action, Grant, Role};
use crate::actor::{Actor, ActorKind};
use crate::catalog::tokens::TokenRecord;
use crate::error::{Error, ErrorKind, Result};

/// What every token secret starts with.
pub const PREFIX: &str = "tdm_";
/// How long a token lives unless told otherwise.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest lifetime a token may be given (a token that never expires needs
/// `never_expires`).
pub const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// How often a token's last use is written while it is used from one address.
pub const LAST_USE_EVERY_SECONDS: i64 = 60;

/// A lifetime as people say it: whole days as days.
fn spoken(d: Duration) -> String {
    const DAY: u64 = 24 * 3600;
    match d.as_secs() {
        s if s >= DAY && s % DAY == 0 => format!("{} days", s / DAY),
        _ => humantime::format_duration(d).to_string(),
    }
}

const BODY: usize = 44;
const CHECK: usize = 6;

fn checksum(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    format!("{:0>6}", base62::encode(n))
}

/// A new random secret.
fn new_secret() -> String {
    let (a, b) = (rand::random::<u128>(), rand::random::<u128>());
    let body = format!("{:0>22}{:0>22}", base62::encode(a), base62::encode(b));
    let check = checksum(&body);
    format!("{PREFIX}{body}{check}")
}

/// Whether `secret` has the shape of a token (prefix, length, alphabet, checksum).
pub fn well_formed(secret: &str) -> bool {
    let Some(rest) = secret.strip_prefix(PREFIX) else { return false };
    if rest.len() != BODY + CHECK || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (body, check) = rest.split_at(BODY);
    checksum(body).as_bytes().ct_eq(check.as_bytes()).into()
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// What `token create` takes.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreateOptions {
    /// 1-64 of `A-Za-z0-9_.-`.
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    pub name: String,
    pub role: Role,
    /// The workspaces it may touch (empty: all).
    #[serde(default)]
    pub workspaces: Vec<String>,
    /// How long it lives (default 7 days, at most 366).
    #[serde(default, with = "crate::config::optional_duration_text")]
    #[schema(value_type = Option<String>, example = "30d")]
    pub expires: Option<Duration>,
    /// A token that never expires (only when asked for).
    #[serde(default)]
    pub never_expires: bool,
    /// Addresses it may be used from (CIDR or one address; empty: all).
    #[serde(default)]
    pub allow_ips: Vec<String>,
}

/// A created token: its secret, shown this once, and what it is.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenCreated {
    pub secret: String,
    #[serde(flatten)]
    pub token: TokenRecord,
}

/// Creates a token. The creator (the actor) cannot hand out more than it has: a role its
/// own allows entirely, within its own workspaces.
///
/// Errors: `Usage` for a bad name, lifetime or address; `NotFound` for an unknown
/// workspace; `Forbidden` for more than the creator has; `AlreadyExists` for a name a live
/// token has.
pub async fn create(core: &Core, opts: &TokenCreateOptions, actor: &Actor) -> Result<TokenCreated> {
    let creator = actor.grant();
    access::check(&creator, Action::ManageTokens, None)?;
    let name_ok = (1..=64).contains(&opts.name.len())
        && opts.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !name_ok {
        return Err(Error::usage("a token name has 1 to 64 letters, digits, '_', '.' or '-'"));
    }
    if !creator.role.may_grant(opts.role) {
        return Err(Error::new(
            ErrorKind::Forbidden,
            format!("a {} cannot make a token with more rights ({})", creator.role, opts.role),
        ));
    }
    for ws in &opts.workspaces {
        core.workspace(ws)?;
        access::check(&creator, Action::Read, Some(ws))?;
    }
    if opts.workspaces.is_empty() && !creator.workspaces.is_empty() {
        return Err(Error::new(ErrorKind::Forbidden, "a token limited to workspaces cannot make one for all"));
    }
    let allow_ips = opts.allow_ips.iter().map(|a| parse_net(a).map(|n| n.to_string())).collect::<Result<Vec<_>>>()?;
    let now = Utc::now();
    let policy = core.config.config.api.max_token_lifetime;
    let longest = policy.unwrap_or(MAX_LIFETIME).min(MAX_LIFETIME);
    let expires_at = match (opts.never_expires, opts.expires) {
        (true, Some(_)) => return Err(Error::usage("give a lifetime or never-expires, not both")),
        (true, None) if policy.is_some() => {
            return Err(Error::new(
                ErrorKind::Refused,
                format!("this server's api.max-token-lifetime is {}: a token cannot live forever", spoken(longest)),
            ));
        }
        (true, None) => None,
        (false, lifetime) => {
            // The default lifetime, shortened to the configured maximum.
            let lifetime = lifetime.unwrap_or(DEFAULT_LIFETIME.min(longest));
            if lifetime.is_zero() || lifetime > longest {
                let never = if policy.is_some() { "" } else { " (or never-expires)" };
                return Err(Error::usage(format!("a token lives up to {}{never}", spoken(longest))));
            }
            Some(now + chrono::Duration::from_std(lifetime).expect("at most a year"))
        }
    };
    let secret = new_secret();
    let token = TokenRecord {
        id: secret[..PREFIX.len() + 8].to_string(),
        name: opts.name.clone(),
        role: opts.role,
        workspaces: opts.workspaces.clone(),
        allow_ips,
        created_by: actor.to_string(),
        created_at: now,
        expires_at,
        last_used_at: None,
        last_used_address: None,
        revoked_at: None,
    };
    let stored = core.catalog().await?.insert_token(&token, &hash(&secret)).await;
    let details = serde_json::json!({"id": token.id, "role": token.role, "workspaces": token.workspaces});
    super::audit::record(
        core,
        actor,
        crate::operation::Operation::TokenCreate,
        &format!("token/{}", token.name),
        &stored,
        details,
    )
    .await;
    stored.map(|()| TokenCreated { secret, token })
}

fn parse_net(text: &str) -> Result<ipnet::IpNet> {
    access::parse_net(text)
        .ok_or_else(|| Error::usage(format!("{text:?} is not an address or CIDR range (10.1.0.0/16, 2001:db8::/32)")))
}

/// Every token the actor may manage, newest first, without secrets: a token limited to
/// some workspaces sees only the tokens limited to some of those.
///
/// Errors: `Forbidden` without the right.
pub async fn list(core: &Core, actor: &Actor) -> Result<Vec<TokenRecord>> {
    let grant = actor.grant();
    access::check(&grant, Action::ManageTokens, None)?;
    let tokens = core.catalog().await?.tokens().await?;
    Ok(tokens.into_iter().filter(|t| grant.covers(&t.workspaces)).collect())
}

/// What `token revoke` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenRevokeOptions {
    /// The token's name or display id (`tdm_xxxxxxxx`).
    pub token: String,
}

/// Revokes a token at once: one the actor may manage (see [`list`]).
///
/// Errors: `NotFound` (also for a token outside the actor's workspaces); `Forbidden`
/// without the right.
pub async fn revoke(core: &Core, opts: &TokenRevokeOptions, actor: &Actor) -> Result<TokenRecord> {
    let grant = actor.grant();
    access::check(&grant, Action::ManageTokens, None)?;
    let revoked = core.catalog().await?.revoke_token(&opts.token, Utc::now(), |t| grant.covers(&t.workspaces)).await;
    let target = format!("token/{}", opts.token);
    let details = match &revoked {
        Ok(t) => serde_json::json!({"id": t.id, "workspaces": t.workspaces}),
        // A scoped refusal is recorded in the caller's workspaces (its own admins see it).
        Err(_) => serde_json::json!({"workspaces": grant.workspaces}),
    };
    super::audit::record(core, actor, crate::operation::Operation::TokenRevoke, &target, &revoked, details).await;
    revoked
}

/// The actor a presented secret stands for, with its grant, after every check: shape,
/// known (compared in constant time), not revoked, not expired, used from an allowed
/// address. The secret is never repeated in an error.
///
/// Errors: `Unauthenticated` for a missing, malformed, unknown, revoked or expired token;
/// `Forbidden` for an address outside its allow list.
pub async fn authenticate(core: &Core, secret: &str, address: Option<IpAddr>, now: DateTime<Utc>) -> Result<Actor> {
    let unauthenticated = |why: &str| Error::new(ErrorKind::Unauthenticated, format!("the token {why}"));
    if !well_formed(secret) {
        return Err(unauthenticated("is not a tidemark token (tdm_...)"));
    }
    let presented = hash(secret);
    let Some((token, stored)) = core.catalog().await?.token_by_hash(&presented).await? else {
        return Err(unauthenticated("is not known"));
    };
    if !bool::from(stored.as_bytes().ct_eq(presented.as_bytes())) {
        return Err(unauthenticated("is not known"));
    }
    admit(core, &token, address, now).await
}

/// The actor `token` stands for, if it may be used now from `address`: not revoked, not
/// expired, an allowed address (also what a console session asks of its token at every
/// request). Its last use is recorded.
///
/// Errors: those of [`authenticate`] (never naming a secret).
pub async fn admit(core: &Core, token: &TokenRecord, address: Option<IpAddr>, now: DateTime<Utc>) -> Result<Actor> {
    let unauthenticated = |why: &str| Error::new(ErrorKind::Unauthenticated, format!("the token {why}"));
    if token.revoked_at.is_some() {
        return Err(unauthenticated(&format!("{} was revoked", token.id)));
    }
    if token.expires_at.is_some_and(|t| t <= now) {
        return Err(unauthenticated(&format!("{} has expired", token.id)));
    }
    let address = address.map(access::canonical_ip);
    if !token.allow_ips.is_empty() {
        let allowed = address
            .is_some_and(|a| token.allow_ips.iter().filter_map(|n| access::parse_net(n)).any(|n| n.contains(&a)));
        if !allowed {
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!("token {} may not be used from this address", token.id),
            ));
        }
    }
    let shown = address.map(|a| a.to_string());
    // The last use is kept to the minute (and at once from a new address): a busy token
    // does not write the catalog on every request.
    let recent = token.last_used_at.is_some_and(|t| now - t < chrono::Duration::seconds(LAST_USE_EVERY_SECONDS));
    if !recent || token.last_used_address != shown {
        core.catalog().await?.token_used(&token.id, now, shown.as_deref()).await?;
    }
    Ok(Actor {
        kind: ActorKind::Api,
        name: token.name.clone(),
        token_id: Some(token.id.clone()),
        address: shown,
        grant: Some(Grant { role: token.role, workspaces: token.workspaces.clone() }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_a_recognisable_shape_and_a_checksum() {
        let s = new_secret();
        assert!(s.starts_with("tdm_") && s.len() == 4 + BODY + CHECK, "{s}");
        assert!(well_formed(&s));
        assert_ne!(new_secret(), s, "random");
        // One character changed: the checksum catches it.
        let mut chars: Vec<char> = s.chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        assert!(!well_formed(&chars.into_iter().collect::<String>()));
        for bad in ["", "tdm_", "xyz_aaaa", &s[..s.len() - 1], &format!("{s}0"), &s.replace("tdm_", "tdn_")] {
            assert!(!well_formed(bad), "{bad}");
        }
    }
}
