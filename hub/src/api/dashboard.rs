//! `/dashboard`: aggregates for the overview page.

use chrono::{DateTime, Duration, DurationRound, Utc};
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Integer, Timestamptz};
use rocket::form::Errors;
use rocket::serde::json::Json;
use rocket::State;
use serde::Serialize;
use uuid::Uuid;

use super::{query, Opt};
use crate::auth::guard::{Auth, Viewer};
use crate::db::schema::{alerts, devices, predictions};
use crate::error::ApiResult;
use crate::App;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![stats, timeline, attack_distribution, device_health]
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DashboardStats {
    /// low / medium / high / critical from the share of attack predictions in the last hour.
    pub threat_level: &'static str,
    pub total_devices: i64,
    pub active_devices: i64,
    pub attacks_today: i64,
    pub predictions_today: i64,
    /// Share of benign predictions today, 0-1 (1 when there are none).
    pub benign_rate: f64,
    pub unacknowledged_alerts: i64,
}

fn threat_level(attack_share: f64) -> &'static str {
    match attack_share {
        s if s >= 0.5 => "critical",
        s if s >= 0.2 => "high",
        s if s >= 0.05 => "medium",
        _ => "low",
    }
}

fn midnight() -> DateTime<Utc> {
    Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or_else(Utc::now)
}

/// The start of the UTC hour `ago` before now: the hourly counts start on hour boundaries.
fn hour_start(ago: Duration) -> DateTime<Utc> {
    let t = Utc::now() - ago;
    t.duration_trunc(Duration::hours(1)).unwrap_or(t)
}

#[derive(QueryableByName)]
struct Counts {
    #[diesel(sql_type = BigInt)]
    predictions_today: i64,
    #[diesel(sql_type = BigInt)]
    attacks_today: i64,
    #[diesel(sql_type = BigInt)]
    recent_total: i64,
    #[diesel(sql_type = BigInt)]
    recent_attacks: i64,
}

/// Counts from the hourly table (`prediction_hours`, kept by a trigger): today since midnight
/// UTC, and the threat level from the share of attacks since the start of the previous hour.
#[rocket::get("/dashboard/stats")]
pub async fn stats(_a: Auth<Viewer>, app: &State<App>) -> ApiResult<Json<DashboardStats>> {
    let s = app
        .db
        .run(|c| {
            let n: Counts = diesel::sql_query(
                "SELECT coalesce(sum(predictions) FILTER (WHERE hour >= $1), 0)::bigint AS predictions_today, \
                 coalesce(sum(attacks) FILTER (WHERE hour >= $1), 0)::bigint AS attacks_today, \
                 coalesce(sum(predictions) FILTER (WHERE hour >= $2), 0)::bigint AS recent_total, \
                 coalesce(sum(attacks) FILTER (WHERE hour >= $2), 0)::bigint AS recent_attacks \
                 FROM prediction_hours WHERE hour >= least($1, $2)",
            )
            .bind::<Timestamptz, _>(midnight())
            .bind::<Timestamptz, _>(hour_start(Duration::hours(1)))
            .get_result(c)?;
            let total_devices = devices::table.count().get_result(c)?;
            let active_devices = devices::table
                .filter(devices::status.eq_any(["online", "under_attack"]))
                .count()
                .get_result(c)?;
            let unacknowledged_alerts = alerts::table
                .filter(alerts::is_acknowledged.eq(false))
                .count()
                .get_result(c)?;
            let share = if n.recent_total == 0 {
                0.0
            } else {
                n.recent_attacks as f64 / n.recent_total as f64
            };
            Ok(DashboardStats {
                threat_level: threat_level(share),
                total_devices,
                active_devices,
                attacks_today: n.attacks_today,
                predictions_today: n.predictions_today,
                benign_rate: if n.predictions_today == 0 {
                    1.0
                } else {
                    (n.predictions_today - n.attacks_today) as f64 / n.predictions_today as f64
                },
                unacknowledged_alerts,
            })
        })
        .await?;
    Ok(Json(s))
}

#[derive(Debug, rocket::FromForm)]
pub struct TimelineQuery {
    #[field(default = 24, validate = range(1..=24 * 90))]
    pub hours: i32,
    #[field(default = 15, validate = range(1..=1440))]
    pub bucket_minutes: i32,
    pub device_id: Opt<Uuid>,
}

#[derive(Debug, Serialize, QueryableByName, utoipa::ToSchema)]
pub struct TimelinePoint {
    #[diesel(sql_type = Timestamptz)]
    pub bucket: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    pub predictions: i64,
    #[diesel(sql_type = BigInt)]
    pub attacks: i64,
    #[diesel(sql_type = Double)]
    pub avg_score: f64,
    #[diesel(sql_type = Double)]
    pub max_score: f64,
}

#[rocket::get("/dashboard/timeline?<q..>")]
pub async fn timeline(
    _a: Auth<Viewer>,
    app: &State<App>,
    q: Result<TimelineQuery, Errors<'_>>,
) -> ApiResult<Json<Vec<TimelinePoint>>> {
    let q = query(q)?;
    let since = Utc::now() - Duration::hours(i64::from(q.hours));
    let points = app
        .db
        .run(move |c| {
            Ok(diesel::sql_query(
                "SELECT date_bin(make_interval(mins => $1), ts, TIMESTAMPTZ '2000-01-01') AS bucket, \
                 count(*) AS predictions, count(*) FILTER (WHERE label = 'attack') AS attacks, \
                 avg(score) AS avg_score, max(score) AS max_score \
                 FROM predictions WHERE ts >= $2 AND ($3::uuid IS NULL OR device_id = $3) \
                 GROUP BY 1 ORDER BY 1",
            )
            .bind::<Integer, _>(q.bucket_minutes)
            .bind::<Timestamptz, _>(since)
            .bind::<diesel::sql_types::Nullable<diesel::sql_types::Uuid>, _>(q.device_id.0)
            .load(c)?)
        })
        .await?;
    Ok(Json(points))
}

#[derive(Debug, rocket::FromForm)]
pub struct WindowQuery {
    #[field(default = 24, validate = range(1..=24 * 365))]
    pub hours: i32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttackShare {
    pub attack_type: String,
    pub count: i64,
}

/// Attack predictions by type; predictions from the binary model without a type count as `unknown`.
#[rocket::get("/dashboard/attack-distribution?<q..>")]
pub async fn attack_distribution(
    _a: Auth<Viewer>,
    app: &State<App>,
    q: Result<WindowQuery, Errors<'_>>,
) -> ApiResult<Json<Vec<AttackShare>>> {
    let q = query(q)?;
    let since = Utc::now() - Duration::hours(i64::from(q.hours));
    let rows = app
        .db
        .run(move |c| {
            Ok(predictions::table
                .filter(predictions::label.eq("attack"))
                .filter(predictions::ts.ge(since))
                .group_by(predictions::attack_type)
                .select((predictions::attack_type, count_star()))
                .order(count_star().desc())
                .load::<(Option<String>, i64)>(c)?)
        })
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|(t, count)| AttackShare {
                attack_type: t.unwrap_or_else(|| "unknown".into()),
                count,
            })
            .collect(),
    ))
}

#[derive(Debug, Serialize, QueryableByName, utoipa::ToSchema)]
pub struct DeviceHealth {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub device_type: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub status: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<Timestamptz>)]
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Attack windows since the start of the UTC hour 24 h ago.
    #[diesel(sql_type = BigInt)]
    pub attacks_24h: i64,
    #[diesel(sql_type = BigInt)]
    pub unacknowledged_alerts: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<Double>)]
    pub last_score: Option<f64>,
}

#[rocket::get("/dashboard/device-health")]
pub async fn device_health(_a: Auth<Viewer>, app: &State<App>) -> ApiResult<Json<Vec<DeviceHealth>>> {
    // Whole hours: from the start of the hour 24 h ago (the hourly counts, not a day of rows).
    let since = hour_start(Duration::hours(24));
    let rows = app
        .db
        .run(move |c| {
            Ok(diesel::sql_query(
                "SELECT d.id, d.name::text AS name, d.device_type, d.status, d.last_seen_at, \
                 coalesce((SELECT sum(h.attacks) FROM prediction_hours h WHERE h.device_id = d.id AND h.hour >= $1), 0)::bigint AS attacks_24h, \
                 (SELECT count(*) FROM alerts a WHERE a.device_id = d.id AND NOT a.is_acknowledged) AS unacknowledged_alerts, \
                 (SELECT p.score FROM predictions p WHERE p.device_id = d.id ORDER BY p.ts DESC LIMIT 1) AS last_score \
                 FROM devices d ORDER BY d.name",
            )
            .bind::<Timestamptz, _>(since)
            .load(c)?)
        })
        .await?;
    Ok(Json(rows))
}

#[cfg(test)]
mod tests {
    #[test]
    fn threat_levels() {
        assert_eq!(super::threat_level(0.0), "low");
        assert_eq!(super::threat_level(0.1), "medium");
        assert_eq!(super::threat_level(0.3), "high");
        assert_eq!(super::threat_level(0.9), "critical");
    }
}
