//! Rate limits (GCRA, the `governor` crate): per client address and per token, a much
//! stricter bucket for failed authentication (an address that keeps presenting bad tokens
//! is refused before any lookup), and a cap on heavy jobs (restores and drills) per
//! workspace and per token. A refusal is `429 Too Many Requests` with `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::ApiConfig;

/// The limits of one server.
pub struct Limits {
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_token: Option<DefaultKeyedRateLimiter<String>>,
    failed_auth: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Addresses refused after too many failed authentications, until then.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    heavy_per_workspace: u32,
    heavy_per_token: u32,
    /// Heavy jobs running, per workspace and per token.
    heavy: Mutex<Heavy>,
}

#[derive(Default)]
struct Heavy {
    workspaces: HashMap<String, u32>,
    tokens: HashMap<String, u32>,
}

/// Why a request is refused: wait this long.
pub struct TooMany(pub Duration, pub &'static str);

impl IntoResponse for TooMany {
    fn into_response(self) -> Response {
        let seconds = self.0.as_secs().max(1);
        let body = serde_json::json!({"error": {
            "kind": crate::error::ErrorKind::RateLimited.name(), "message": self.1,
            "temporary": crate::error::ErrorKind::RateLimited.is_temporary(), "retry_after_seconds": seconds,
        }});
        let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        response
    }
}

impl Limits {
    pub fn from_config(api: &ApiConfig) -> Limits {
        let rate = NonZeroU32::new(api.requests_per_second)
            .map(|n| Quota::per_second(n).allow_burst(n.saturating_mul(NonZeroU32::new(2).expect("2 is not zero"))));
        let failed = NonZeroU32::new(api.failed_auth_per_minute).map(Quota::per_minute);
        Limits {
            per_address: rate.map(RateLimiter::dashmap),
            per_token: rate.map(RateLimiter::dashmap),
            failed_auth: failed.map(RateLimiter::dashmap),
            blocked: Mutex::new(HashMap::new()),
            heavy_per_workspace: api.heavy_jobs_per_workspace,
            heavy_per_token: api.heavy_jobs_per_token,
            heavy: Mutex::new(Heavy::default()),
        }
    }

    fn wait<K: std::hash::Hash + Eq + Clone>(
        limiter: Option<&DefaultKeyedRateLimiter<K>>,
        key: &K,
    ) -> Option<Duration> {
        let limiter = limiter?;
        limiter.check_key(key).err().map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// A request from `client`. Errors: how long to wait.
    pub fn request(&self, client: IpAddr) -> Result<(), TooMany> {
        if let Some(until) = self.blocked.lock().expect("limits lock").get(&client).copied()
            && until > Instant::now()
        {
            return Err(TooMany(until - Instant::now(), "too many failed authentications from this address"));
        }
        match Self::wait(self.per_address.as_ref(), &client) {
            Some(d) => Err(TooMany(d, "too many requests from this address")),
            None => Ok(()),
        }
    }

    /// A request with token `id`. Errors: how long to wait.
    pub fn token(&self, id: &str) -> Result<(), TooMany> {
        match Self::wait(self.per_token.as_ref(), &id.to_string()) {
            Some(d) => Err(TooMany(d, "too many requests with this token")),
            None => Ok(()),
        }
    }

    /// A failed authentication from `client`: once its bucket is empty, the address is
    /// refused until the bucket refills.
    pub fn failed(&self, client: IpAddr) {
        if let Some(wait) = Self::wait(self.failed_auth.as_ref(), &client) {
            let until = Instant::now() + wait.max(Duration::from_secs(1));
            self.blocked.lock().expect("limits lock").insert(client, until);
        }
    }

    /// Takes a heavy-job slot of `workspace` for `token`; the guard gives it back.
    /// Errors: the workspace's cap, or the token's.
    pub fn heavy(self: &Arc<Self>, workspace: &str, token: &str) -> Result<HeavyJob, TooMany> {
        let mut running = self.heavy.lock().expect("limits lock");
        if running.workspaces.get(workspace).copied().unwrap_or(0) >= self.heavy_per_workspace {
            return Err(TooMany(
                Duration::from_secs(10),
                "this workspace already runs as many restores, drills and exports as allowed",
            ));
        }
        if running.tokens.get(token).copied().unwrap_or(0) >= self.heavy_per_token {
            return Err(TooMany(
                Duration::from_secs(10),
                "this token already runs as many restores, drills and exports as allowed",
            ));
        }
        *running.workspaces.entry(workspace.to_string()).or_insert(0) += 1;
        *running.tokens.entry(token.to_string()).or_insert(0) += 1;
        Ok(HeavyJob { limits: self.clone(), workspace: workspace.to_string(), token: token.to_string() })
    }
}

/// A heavy job's slot, given back when dropped.
pub struct HeavyJob {
    limits: Arc<Limits>,
    workspace: String,
    token: String,
}

impl Drop for HeavyJob {
    fn drop(&mut self) {
        let mut running = self.limits.heavy.lock().expect("limits lock");
        if let Some(n) = running.workspaces.get_mut(&self.workspace) {
            *n = n.saturating_sub(1);
        }
        if let Some(n) = running.tokens.get_mut(&self.token) {
            *n = n.saturating_sub(1);
        }
    }
}
