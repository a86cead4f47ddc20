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

/// What a notification says, and what its logs name.
pub trait Event: Serialize + Send + Sync + 'static {
    /// `job.failed`, `workspace.stale`, ...
    fn name(&self) -> &str;
    fn workspace(&self) -> &str;
}

impl Event for JobEvent {
    fn name(&self) -> &str {
        self.event
    }

    fn workspace(&self) -> &str {
        &self.workspace
    }
}

/// Where notifications go.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: reqwest::Url,
    pub on_success: bool,
    /// Whether freshness transitions are sent (`workspace.stale`, `workspace.recovered`).
    pub on_stale: bool,
    client: reqwest::Client,
    /// Deliveries tried per event, and the wait before the first retry (doubling).
    pub attempts: u32,
    pub backoff: Duration,
    /// How long a stopping daemon waits for queued notifications to be delivered.
    pub drain: Duration,
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
        // Short timeouts: a receiver that accepts connections and never answers costs a
        // delivery at most 10 s an attempt, and never a job slot (see [`Notifier`]).
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::internal(format!("cannot build the webhook HTTP client: {}", e.without_url())))?;
        Ok(Webhook {
            url,
            on_success: config.on_success,
            on_stale: config.on_stale,
            client,
            attempts: 4,
            backoff: Duration::from_secs(2),
            drain: Duration::from_secs(10),
        })
    }

    /// Delivers an event; returns whether a delivery was accepted (2xx). Failures are
    /// logged (without the URL), never raised: a webhook must not fail a backup.
    pub async fn notify<E: Event>(&self, event: &E) -> bool {
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
                    tracing::debug!(event = event.name(), workspace = %event.workspace(), "webhook delivered");
                    return true;
                }
                Ok(response) => format!("the webhook answered {}", response.status()),
                Err(e) => format!("the webhook could not be reached: {}", e.without_url()),
            };
            tracing::warn!(event = event.name(), workspace = %event.workspace(), attempt, "{problem}");
            if attempt < self.attempts {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        tracing::error!(event = event.name(), workspace = %event.workspace(), "webhook notification given up");
        false
    }
}

/// Events waiting for delivery at most; more are dropped (and logged) rather than held.
const QUEUE: usize = 256;

/// Delivers notifications off the job slots: jobs hand their event over and go on; one
/// task delivers them in order, with the webhook's own timeouts and retries, so a slow or
/// hanging receiver delays only later notifications, never a backup.
pub struct Notifier<E = JobEvent> {
    events: tokio::sync::mpsc::Sender<E>,
    pub on_success: bool,
}

/// The delivery task of a [`Notifier`]; [`Delivery::finish`] waits for the queue.
pub struct Delivery {
    task: tokio::task::JoinHandle<()>,
    drain: Duration,
}

impl<E: Event> Notifier<E> {
    pub fn start(webhook: Webhook) -> (Notifier<E>, Delivery) {
        let (events, mut queue) = tokio::sync::mpsc::channel::<E>(QUEUE);
        let (on_success, drain) = (webhook.on_success, webhook.drain);
        let task = tokio::spawn(async move {
            while let Some(event) = queue.recv().await {
                webhook.notify(&event).await;
            }
        });
        (Notifier { events, on_success }, Delivery { task, drain })
    }

    /// Queues an event; never waits.
    pub fn send(&self, event: E) {
        if let Err(e) = self.events.try_send(event) {
            let event = match &e {
                tokio::sync::mpsc::error::TrySendError::Full(ev)
                | tokio::sync::mpsc::error::TrySendError::Closed(ev) => ev,
            };
            tracing::error!(event = event.name(), workspace = %event.workspace(), "the webhook queue is full or closed; notification dropped");
        }
    }
}

impl Delivery {
    /// Once every [`Notifier`] is dropped: waits up to the drain time for the queued
    /// notifications, then gives up on the rest (logged).
    pub async fn finish(mut self) {
        if tokio::time::timeout(self.drain, &mut self.task).await.is_err() {
            self.task.abort();
            tracing::warn!("stopping with webhook notifications not delivered (the receiver does not answer)");
        }
    }
}
