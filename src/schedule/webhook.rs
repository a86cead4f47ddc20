//! Job notifications: a JSON POST to the operator's webhook when a scheduled job fails
//! (and, if asked, when one succeeds), retried with backoff. The URL often carries a token,
//! so it is never logged and never part of an error.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::WebhookConfig;
use crate::error::{Error, Result};

/// The body of a notification.
#[derive(Debug, Clone, Serialize)]
pub struct JobEvent {
    /// `job.failed` or `job.succeeded`.
    pub event: &'static str,
    pub job_id: Option<i64>,
    pub workspace: String,
    pub policy: String,
    /// `snapshot` or `basebackup`.
    pub operation: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub trigger: &'static str,
    pub slot: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Where notifications go.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: reqwest::Url,
    pub on_success: bool,
    client: reqwest::Client,
    /// Deliveries tried per event, and the wait before the first retry (doubling).
    pub attempts: u32,
    pub backoff: Duration,
}

impl Webhook {
    /// Errors: `Config` when the URL's secret cannot be read or it is not an http(s) URL
    /// (the message never contains the URL).
    pub fn new(config: &WebhookConfig) -> Result<Webhook> {
        let text = config.url.resolve().map_err(|e| e.context("reading daemon.webhook.url"))?;
        let url = reqwest::Url::parse(&text)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| Error::config("daemon.webhook.url is not an http:// or https:// URL"))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| Error::internal(format!("cannot build the webhook HTTP client: {}", e.without_url())))?;
        Ok(Webhook { url, on_success: config.on_success, client, attempts: 4, backoff: Duration::from_secs(2) })
    }

    /// Delivers an event; returns whether a delivery was accepted (2xx). Failures are
    /// logged (without the URL), never raised: a webhook must not fail a backup.
    pub async fn notify(&self, event: &JobEvent) -> bool {
        let mut wait = self.backoff;
        let body = serde_json::to_vec(event).expect("an event serializes");
        for attempt in 1..=self.attempts.max(1) {
            let outcome = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let problem = match outcome {
                Ok(response) if response.status().is_success() => {
                    tracing::debug!(event = event.event, workspace = %event.workspace, "webhook delivered");
                    return true;
                }
                Ok(response) => format!("the webhook answered {}", response.status()),
                Err(e) => format!("the webhook could not be reached: {}", e.without_url()),
            };
            tracing::warn!(event = event.event, workspace = %event.workspace, attempt, "{problem}");
            if attempt < self.attempts {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        tracing::error!(event = event.event, workspace = %event.workspace, "webhook notification given up");
        false
    }
}
