//! Row types. Rows that the API returns as-is also derive `Serialize` and the OpenAPI schema.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use ipnetwork::IpNetwork;
use serde::Serialize;
use uuid::Uuid;

use super::schema::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub hashed_password: String,
    pub role: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    /// Set on the first admin: the console asks for a new password before anything else.
    pub must_change_password: bool,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = devices)]
pub struct DeviceRow {
    pub id: Uuid,
    pub agent_id: Option<Uuid>,
    pub name: String,
    pub device_type: String,
    pub ip_address: IpNetwork,
    pub protocol: String,
    pub port: Option<i32>,
    pub status: String,
    pub traffic_source: String,
    pub description: Option<String>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub threat_count_today: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = traffic_logs)]
pub struct TrafficRow {
    pub id: Uuid,
    pub ts: DateTime<Utc>,
    pub device_id: Uuid,
    pub features: Vec<f32>,
    pub source_type: String,
    pub flow_index: Option<i32>,
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = predictions)]
pub struct Prediction {
    pub id: Uuid,
    pub device_id: Uuid,
    pub score: f64,
    pub label: String,
    pub confidence: f64,
    pub attack_type: Option<String>,
    pub model_version: String,
    pub window_start: Option<Uuid>,
    pub window_end: Option<Uuid>,
    pub feature_importance: Option<serde_json::Value>,
    pub inference_latency_ms: f64,
    #[serde(rename = "timestamp")]
    pub ts: DateTime<Utc>,
    /// The attack-simulation session whose simulated flows the window holds (a test, not an
    /// attack on the network).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attack_session_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attack_step: Option<i32>,
    /// Adversarial steps: the score before the FGSM perturbation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clean_score: Option<f64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = alerts)]
pub struct Alert {
    pub id: Uuid,
    pub device_id: Uuid,
    pub prediction_id: Option<Uuid>,
    pub alert_type: String,
    pub severity: String,
    pub message: String,
    pub is_acknowledged: bool,
    pub acknowledged_by: Option<Uuid>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub action_taken: Option<String>,
    #[serde(rename = "timestamp")]
    pub ts: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = attack_sessions)]
pub struct AttackSession {
    pub id: Uuid,
    pub device_id: Uuid,
    pub pipeline_config: serde_json::Value,
    pub status: String,
    pub progress_pct: f64,
    pub current_step: Option<i32>,
    pub results: Option<serde_json::Value>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    /// The model the agent scored the session with.
    pub model_version: Option<String>,
    /// Why it failed or was aborted, or its summary.
    pub message: Option<String>,
    /// The `attack.start` command that runs it.
    pub command_id: Option<Uuid>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = attack_steps)]
pub struct AttackStep {
    pub id: Uuid,
    pub session_id: Uuid,
    pub step_order: i32,
    pub attack_type: String,
    pub duration_seconds: i32,
    pub intensity: f64,
    pub variant: Option<String>,
    pub adversarial_enabled: bool,
    pub adversarial_epsilon: Option<f64>,
    pub status: String,
    pub detected: Option<bool>,
    pub avg_confidence: Option<f64>,
    pub detection_latency_ms: Option<f64>,
    pub auto_action_taken: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Windows that held the step's simulated flows.
    pub windows: Option<i32>,
    /// Of those, flagged as attacks (after FGSM on adversarial steps).
    pub attack_windows: Option<i32>,
    pub detection_rate: Option<f64>,
    /// Adversarial steps: the rate on the same windows unperturbed.
    pub clean_detection_rate: Option<f64>,
    pub avg_score: Option<f64>,
    /// Of the flagged windows, the share naming the step's attack family.
    pub family_accuracy: Option<f64>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, Serialize, utoipa::ToSchema)]
#[diesel(table_name = prevention_rules, treat_none_as_null = true)]
pub struct PreventionRule {
    pub id: Uuid,
    pub device_id: Option<Uuid>,
    pub rule_name: String,
    pub threshold: f64,
    pub action_type: String,
    pub is_enabled: bool,
    pub cooldown_seconds: i32,
    pub webhook_url: Option<String>,
    pub extra_config: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = prevention_logs)]
pub struct PreventionLog {
    pub id: Uuid,
    pub rule_id: Option<Uuid>,
    pub device_id: Uuid,
    pub prediction_id: Option<Uuid>,
    pub action_executed: String,
    pub success: bool,
    pub details: Option<serde_json::Value>,
    #[serde(rename = "timestamp")]
    pub ts: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = fl_rounds)]
pub struct FlRound {
    pub id: i32,
    pub round_number: i32,
    pub num_clients: i32,
    pub global_loss: Option<f64>,
    pub global_accuracy: Option<f64>,
    pub global_f1: Option<f64>,
    pub global_precision: Option<f64>,
    pub global_recall: Option<f64>,
    pub aggregation_method: String,
    pub he_scheme: Option<String>,
    pub he_poly_modulus: Option<i32>,
    pub duration_seconds: Option<f64>,
    pub model_checkpoint_path: Option<String>,
    #[serde(rename = "timestamp")]
    pub ts: DateTime<Utc>,
    pub run_id: Option<Uuid>,
    /// The round's number within its run (1-based).
    pub run_round: Option<i32>,
    /// `completed` or `failed` (see `reason`).
    pub status: String,
    pub reason: Option<String>,
    pub clients_selected: i32,
    pub clients_uploaded: i32,
    pub clients_dropped: i32,
    /// Updates refused (late, unsigned, wrong round or length, replayed).
    pub updates_rejected: i32,
    pub bytes_received: i64,
    /// The model version this round made.
    pub model_version: Option<String>,
    /// The global model the round started from.
    pub start_model: Option<String>,
    /// Weighted F1 of the starting model on the clients' validation windows.
    pub f1_before: Option<f64>,
    /// Whether this round's model was activated.
    pub activated: bool,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = fl_runs)]
pub struct FlRun {
    pub id: Uuid,
    pub status: String,
    pub params: serde_json::Value,
    pub start_model: String,
    pub epoch: i64,
    pub committee: serde_json::Value,
    pub rounds_done: i32,
    pub rounds_failed: i32,
    pub message: Option<String>,
    pub started_by: Option<Uuid>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = fl_client_metrics)]
pub struct FlClientMetric {
    pub id: i32,
    pub round_id: i32,
    pub client_id: String,
    pub local_loss: f64,
    pub local_accuracy: f64,
    pub num_samples: i32,
    pub training_time_sec: f64,
    pub encrypted: bool,
    /// `completed`, `straggler`, `dropped` or `rejected`.
    pub status: String,
    pub reason: Option<String>,
    pub loss_before: Option<f64>,
    pub accuracy_before: Option<f64>,
    pub f1_before: Option<f64>,
    pub f1_after: Option<f64>,
    pub validation_windows: i32,
    pub upload_bytes: i64,
    /// Per-family recall before and after, the local set's composition.
    pub details: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = system_settings)]
pub struct Setting {
    pub key: String,
    pub value: serde_json::Value,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Option<Uuid>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = agent_commands)]
pub struct NewCommand {
    pub id: Uuid,
    pub agent_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    pub command: String,
    pub payload: serde_json::Value,
    pub requested_by: Option<Uuid>,
}

/// An operator's request to an agent and how far it got.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = agent_commands)]
pub struct CommandRow {
    pub id: Uuid,
    pub agent_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    pub command: String,
    pub payload: serde_json::Value,
    pub status: String,
    pub result: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
