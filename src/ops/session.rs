//! Web console sessions: a browser signs in with a token and is given a session, which it
//! holds as a cookie. The rules every front end of sessions keeps live here: how long a
//! session lasts (`[api] console-idle-timeout` without a person's request,
//! `console-session-lifetime` at most), that the token it was made from is checked again at
//! every request (revoking the token ends its sessions at once; its role and workspaces are
//! always the token's current ones), and that sign-in and sign-out are audited. A session
//! records how it signed in (`method`): a token today, single sign-on later; a method this
//! version does not know is refused, never read as a token.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::Core;
use crate::access::{self, Action};
use crate::actor::{Actor, ActorKind};
use crate::catalog::sessions::SessionRecord;
use crate::error::{Error, ErrorKind, Result};
use crate::operation::Operation;

/// What every session secret starts with (a session is not a token: `tdm_` never signs in
/// with it, nor does it pass as a bearer token).
pub const PREFIX: &str = "tdms_";

/// Signed in with an API token.
const BY_TOKEN: &str = "token";

/// What a sign-in takes.
pub struct SignInOptions {
    /// The token's secret, as the person typed it (never logged, never stored).
    pub secret: String,
    /// Where the browser is.
    pub address: Option<IpAddr>,
}

impl std::fmt::Debug for SignInOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInOptions").field("address", &self.address).finish_non_exhaustive()
    }
}

/// A session begun: its secret goes to the browser (and nowhere else).
pub struct SessionStarted {
    pub secret: String,
    pub session: Session,
}

/// A session that may be used now.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who it acts as: the token's actor, with the token's grant as it is now.
    pub actor: Actor,
    /// A short name for it (the start of the secret's digest): safe to show and to log.
    pub id: String,
    pub expires_at: DateTime<Utc>,
}

/// Whether a request is a person's (it keeps the session alive) or a page refreshing
/// itself (it does not: an open tab left alone still ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Person,
    Refresh,
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn new_secret() -> String {
    format!("{PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()))
}

fn well_formed(secret: &str) -> bool {
    secret.strip_prefix(PREFIX).is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The session's short name: the first 12 hex digits of its secret's digest.
fn short(id_sha256: &str) -> String {
    format!("session/{}", &id_sha256[..12])
}

/// Signs a browser in with a token: every check of [`super::token::authenticate`], and the
/// right to sign in. Audited, also when refused (without the secret).
///
/// Errors: those of `authenticate` (`Unauthenticated`, `Forbidden` for an address outside
/// the token's list); `Forbidden` for a role without `sign-in`; `Unavailable` for the
/// catalog.
pub async fn sign_in(core: &Core, opts: &SignInOptions, now: DateTime<Utc>) -> Result<SessionStarted> {
    let anonymous = Actor { address: opts.address.map(|a| a.to_string()), ..Actor::new(ActorKind::Api, "unknown") };
    let authenticated = super::token::authenticate(core, opts.secret.trim(), opts.address, now).await;
    if authenticated.is_err() {
        super::audit::record(core, &anonymous, Operation::SignIn, "console", &authenticated, serde_json::json!({}))
            .await;
    }
    let actor = authenticated?;
    let started = begin(core, &actor, opts.address, now).await;
    let target = started.as_ref().map_or_else(|_| "console".to_string(), |s| s.session.id.clone());
    let details = serde_json::json!({"token": actor.token_id, "method": BY_TOKEN});
    super::audit::record(core, &actor, Operation::SignIn, &target, &started, details).await;
    started
}

async fn begin(core: &Core, actor: &Actor, address: Option<IpAddr>, now: DateTime<Utc>) -> Result<SessionStarted> {
    access::check(&actor.grant(), Action::SignIn, None)?;
    let token_id = actor.token_id.clone().ok_or_else(|| Error::internal("a token's actor without its id"))?;
    let api = &core.config.config.api;
    let expires_at = now + lifetime(api.console_session_lifetime);
    let record = SessionRecord {
        method: BY_TOKEN.into(),
        token_id,
        address: address.map(|a| access::canonical_ip(a).to_string()),
        created_at: now,
        last_seen_at: now,
        expires_at,
        ended_at: None,
    };
    let secret = new_secret();
    let id = digest(&secret);
    core.catalog().await?.insert_session(&id, &record).await?;
    Ok(SessionStarted { secret, session: Session { actor: actor.clone(), id: short(&id), expires_at } })
}

fn lifetime(d: std::time::Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX)
}

/// The session a browser presents, if it may be used now from `address`: known, not signed
/// out, within its lifetime and its idle timeout, and its token still admitted (not
/// revoked, not expired, the address allowed). A person's request is recorded as activity
/// (to the tenth of the idle timeout, a minute at most: not a write per request).
///
/// Errors: `Unauthenticated` saying which end it reached; `Forbidden` for an address the
/// token may not be used from; `Unavailable` for the catalog.
pub async fn resume(
    core: &Core,
    secret: &str,
    address: Option<IpAddr>,
    now: DateTime<Utc>,
    activity: Activity,
) -> Result<Session> {
    let ended = |why: &str| Error::new(ErrorKind::Unauthenticated, format!("the session {why}: sign in again"));
    if !well_formed(secret) {
        return Err(ended("is not one of tidemark's"));
    }
    let id = digest(secret);
    let catalog = core.catalog().await?;
    let Some(record) = catalog.session(&id).await? else { return Err(ended("is not known")) };
    let api = &core.config.config.api;
    let idle = lifetime(api.console_idle_timeout);
    if record.ended_at.is_some() {
        return Err(ended("was signed out"));
    }
    if now >= record.expires_at {
        return Err(ended("has reached its lifetime (api.console-session-lifetime)"));
    }
    if now - record.last_seen_at >= idle {
        return Err(ended("was idle longer than api.console-idle-timeout"));
    }
    let actor = match record.method.as_str() {
        BY_TOKEN => {
            let Some(token) = catalog.token_by_id(&record.token_id).await? else {
                return Err(ended("belongs to a token that no longer exists"));
            };
            super::token::admit(core, &token, address, now).await.map_err(|e| match e.kind() {
                ErrorKind::Unauthenticated => ended(&format!("ended with its token ({})", e.message())),
                _ => e,
            })?
        }
        other => return Err(ended(&format!("was begun by {other:?}, which this version does not know"))),
    };
    let every = (idle / 10).min(chrono::TimeDelta::minutes(1));
    if activity == Activity::Person && now - record.last_seen_at >= every {
        catalog.session_seen(&id, now).await?;
    }
    Ok(Session { actor, id: short(&id), expires_at: record.expires_at })
}

/// Ends the session `secret` names (signing out); audited. A session already ended stays so.
///
/// Errors: `Unavailable` for the catalog.
pub async fn sign_out(core: &Core, secret: &str, actor: &Actor, now: DateTime<Utc>) -> Result<()> {
    if !well_formed(secret) {
        return Ok(());
    }
    let id = digest(secret);
    let ended = async { core.catalog().await?.end_session(&id, now).await }.await;
    super::audit::record(core, actor, Operation::SignOut, &short(&id), &ended, serde_json::json!({})).await;
    ended.map(|_| ())
}

/// A secret derived from the session's own, for a purpose (`csrf`): a page's forms carry it,
/// and a request that does not is refused. Only the holder of the session (the cookie, which
/// scripts cannot read) can compute it; it never leaks the session's secret.
pub fn derived(secret: &str, purpose: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"tidemark-console\0");
    h.update(purpose.as_bytes());
    h.update(b"\0");
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_secrets_have_their_own_shape_and_derive_distinct_values() {
        let s = new_secret();
        assert!(well_formed(&s) && !super::super::token::well_formed(&s), "{s}");
        assert_ne!(new_secret(), s);
        for bad in ["", PREFIX, "tdm_x", &s[..s.len() - 1], &format!("{s}0"), &s.replace('a', "g")] {
            assert!(!well_formed(bad) || bad == s, "{bad}");
        }
        let csrf = derived(&s, "csrf");
        assert_eq!(csrf, derived(&s, "csrf"));
        assert_ne!(csrf, derived(&s, "other"));
        assert_ne!(csrf, derived(&new_secret(), "csrf"));
        assert!(!csrf.contains(&s[PREFIX.len()..PREFIX.len() + 16]));
        assert!(format!("{:?}", SignInOptions { secret: s.clone(), address: None }).find(&s).is_none());
    }
}
