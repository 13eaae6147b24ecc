//! Audit events: who did what to whom, with what outcome. Never a secret.

use crate::service::RequestMeta;
use gatehouse_domain::ids::new_id;
use gatehouse_domain::model::AuditEvent;
use gatehouse_domain::{Id, Timestamp};

/// Starts an event for `action` from the request's context.
pub fn event(meta: &RequestMeta, now: Timestamp, action: &str, outcome: &str) -> AuditEvent {
    AuditEvent {
        id: new_id(),
        at: now,
        actor_id: None,
        action: action.to_string(),
        target_id: None,
        outcome: outcome.to_string(),
        reason: None,
        ip: meta.ip.clone(),
        user_agent: meta.user_agent.clone(),
        request_id: meta.request_id.clone(),
        details: serde_json::Value::Null,
    }
}

/// Builder-style setters.
pub trait AuditExt {
    fn actor(self, id: Option<Id>) -> Self;
    fn target(self, id: Option<Id>) -> Self;
    fn reason(self, reason: &str) -> Self;
    fn details(self, details: serde_json::Value) -> Self;
}

impl AuditExt for AuditEvent {
    fn actor(mut self, id: Option<Id>) -> Self {
        self.actor_id = id;
        self
    }
    fn target(mut self, id: Option<Id>) -> Self {
        self.target_id = id;
        self
    }
    fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_string());
        self
    }
    fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}
