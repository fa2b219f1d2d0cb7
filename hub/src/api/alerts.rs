//! `/alerts`: list with filters, detail, acknowledge, resolve (an operator's verdict, which
//! goes to the agent's local training set), unread count, stats.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use diesel::dsl::count_star;
use diesel::prelude::*;
use rocket::form::Errors;
use rocket::serde::json::Json;
use rocket::State;
use serde::Serialize;
use uuid::Uuid;

use super::{query, time_param, AlertType, Count, Opt, Page, PageQuery, Severity};
use crate::auth::guard::{Auth, Operator, Viewer};
use crate::db::models::Alert;
use crate::db::schema::alerts;
use crate::error::{ApiError, ApiResult};
use crate::App;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![list, get, acknowledge, resolve, unread_count, stats]
}

#[derive(Debug, rocket::FromForm)]
pub struct AlertQuery {
    pub device_id: Opt<Uuid>,
    pub severity: Opt<Severity>,
    pub alert_type: Opt<AlertType>,
    pub acknowledged: Opt<bool>,
    pub from: Option<String>,
    pub to: Option<String>,
    #[field(default = 1, validate = range(1..=1_000_000))]
    pub page: i64,
    #[field(default = 50, validate = range(1..=200))]
    pub size: i64,
}

#[rocket::get("/alerts?<q..>")]
pub async fn list(
    _a: Auth<Viewer>,
    app: &State<App>,
    q: Result<AlertQuery, Errors<'_>>,
) -> ApiResult<Json<Page<Alert>>> {
    let q = query(q)?;
    let (from, to) = (
        time_param("from", q.from.as_deref())?,
        time_param("to", q.to.as_deref())?,
    );
    let page = PageQuery {
        page: q.page,
        size: q.size,
    };
    let (device, severity, kind, acked) = (q.device_id.0, q.severity.0, q.alert_type.0, q.acknowledged.0);
    let filter = move || {
        let mut f = alerts::table.into_boxed();
        if let Some(d) = device {
            f = f.filter(alerts::device_id.eq(d));
        }
        if let Some(s) = severity {
            f = f.filter(alerts::severity.eq(s.as_str()));
        }
        if let Some(k) = kind {
            f = f.filter(alerts::alert_type.eq(k.as_str()));
        }
        if let Some(a) = acked {
            f = f.filter(alerts::is_acknowledged.eq(a));
        }
        if let Some(t) = from {
            f = f.filter(alerts::ts.ge(t));
        }
        if let Some(t) = to {
            f = f.filter(alerts::ts.le(t));
        }
        f
    };
    let (items, total) = app
        .db
        .run(move |c| {
            let total = filter().count().get_result(c)?;
            let items = filter()
                .order((alerts::ts.desc(), alerts::id.asc()))
                .limit(page.size)
                .offset(page.offset())
                .select(Alert::as_select())
                .load(c)?;
            Ok((items, total))
        })
        .await?;
    Ok(Json(page.page_of(items, total)))
}

#[rocket::get("/alerts/<id>")]
pub async fn get(_a: Auth<Viewer>, app: &State<App>, id: Uuid) -> ApiResult<Json<Alert>> {
    let a = app
        .db
        .run(move |c| {
            alerts::table
                .find(id)
                .select(Alert::as_select())
                .first(c)
                .optional()?
                .ok_or_else(|| ApiError::not_found("alert"))
        })
        .await?;
    Ok(Json(a))
}

/// Acknowledging twice keeps the first acknowledgement.
#[rocket::patch("/alerts/<id>/acknowledge")]
pub async fn acknowledge(a: Auth<Operator>, app: &State<App>, id: Uuid) -> ApiResult<Json<Alert>> {
    let user = a.user_id();
    let alert = app
        .db
        .run(move |c| {
            diesel::update(alerts::table.find(id).filter(alerts::is_acknowledged.eq(false)))
                .set((
                    alerts::is_acknowledged.eq(true),
                    alerts::acknowledged_by.eq(user),
                    alerts::acknowledged_at.eq(Utc::now()),
                ))
                .execute(c)?;
            alerts::table
                .find(id)
                .select(Alert::as_select())
                .first(c)
                .optional()?
                .ok_or_else(|| ApiError::not_found("alert"))
        })
        .await?;
    Ok(Json(alert))
}

/// An operator's verdict on an alert.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveIn {
    /// `false_positive` or `confirmed`.
    pub verdict: String,
    /// The family a confirmed attack is (default: the one the model named).
    #[serde(default)]
    pub family: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Resolved {
    #[serde(flatten)]
    pub alert: Alert,
    /// Windows sent to the device's agent as labels for its local training set.
    pub windows_labelled: usize,
    /// Whether the label reached the fleet link (false: no agent, or federated learning
    /// needs the embedded fleet link).
    pub label_sent: bool,
}

/// Resolves an alert as a false positive or a confirmed attack: the alert is marked, and the
/// windows it stands for (its prediction and the device's flagged windows of the minute
/// before) go to the device's agent as benign or as the family, for its local training set.
#[rocket::patch("/alerts/<id>/resolve", data = "<body>")]
pub async fn resolve(
    a: Auth<Operator>,
    app: &State<App>,
    id: Uuid,
    body: crate::auth::guard::Body<ResolveIn>,
) -> ApiResult<Json<Resolved>> {
    use crate::db::schema::{devices, predictions};
    let b = body.0;
    let benign = match b.verdict.as_str() {
        "false_positive" => true,
        "confirmed" => false,
        _ => return Err(ApiError::field("verdict", "false_positive or confirmed")),
    };
    if let Some(f) = &b.family {
        if benign
            || !gatewatch_models::FAMILIES
                .iter()
                .any(|x| x.is_attack() && x.name() == f)
        {
            return Err(ApiError::field("family", "an attack family, with verdict confirmed"));
        }
    }
    let user = a.user_id();
    let (alert, agent, windows, family) = app
        .db
        .run(move |c| {
            let alert: Alert = alerts::table
                .find(id)
                .select(Alert::as_select())
                .first(c)
                .optional()?
                .ok_or_else(|| ApiError::not_found("alert"))?;
            let (agent, ip): (Option<Uuid>, ipnetwork::IpNetwork) = devices::table
                .find(alert.device_id)
                .select((devices::agent_id, devices::ip_address))
                .first(c)?;
            let flagged: Option<(Option<String>, chrono::DateTime<Utc>)> = match alert.prediction_id {
                Some(p) => predictions::table
                    .find(p)
                    .select((predictions::attack_type, predictions::ts))
                    .first(c)
                    .optional()?,
                None => None,
            };
            // The window's time (data time), else the alert's.
            let at = flagged.as_ref().map_or(alert.ts, |f| f.1);
            let named = flagged.and_then(|f| f.0);
            let ends: Vec<chrono::DateTime<Utc>> = predictions::table
                .filter(predictions::device_id.eq(alert.device_id))
                .filter(predictions::label.eq("attack"))
                .filter(predictions::ts.between(at - Duration::seconds(60), at + Duration::seconds(5)))
                .filter(predictions::attack_session_id.is_null())
                .order(predictions::ts.desc())
                .limit(500)
                .select(predictions::ts)
                .load(c)?;
            let action = if benign {
                "resolved_false_positive"
            } else {
                "resolved_confirmed"
            };
            diesel::update(alerts::table.find(id))
                .set((
                    alerts::action_taken.eq(action),
                    alerts::is_acknowledged.eq(true),
                    alerts::acknowledged_by.eq(user),
                    alerts::acknowledged_at.eq(Utc::now()),
                ))
                .execute(c)?;
            let alert = alerts::table.find(id).select(Alert::as_select()).first(c)?;
            let family = if benign {
                "benign".to_string()
            } else {
                b.family.or(named).unwrap_or_else(|| "dos_ddos".into())
            };
            let windows: Vec<gatewatch_proto::fl::LabelledWindow> = ends
                .into_iter()
                .map(|ts| gatewatch_proto::fl::LabelledWindow {
                    device: ip.ip(),
                    end_ms: ts.timestamp_millis(),
                })
                .collect();
            Ok((alert, agent, windows, family))
        })
        .await?;
    let windows_labelled = windows.len();
    let label_sent = match agent {
        Some(agent) if !windows.is_empty() => {
            app.fl
                .send_label(agent, gatewatch_proto::fl::LabelOrder { windows, family })
                .await
        }
        _ => false,
    };
    tracing::info!(alert = %id, verdict = %b.verdict, windows_labelled, label_sent, "alert resolved");
    Ok(Json(Resolved {
        alert,
        windows_labelled,
        label_sent,
    }))
}

#[rocket::get("/alerts/unread-count")]
pub async fn unread_count(_a: Auth<Viewer>, app: &State<App>) -> ApiResult<Json<Count>> {
    let count = app
        .db
        .run(|c| {
            Ok(alerts::table
                .filter(alerts::is_acknowledged.eq(false))
                .count()
                .get_result(c)?)
        })
        .await?;
    Ok(Json(Count { count }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertStats {
    pub total: i64,
    pub unacknowledged: i64,
    pub last_24h: i64,
    pub by_type: BTreeMap<String, i64>,
    pub by_severity: BTreeMap<String, i64>,
}

#[rocket::get("/alerts/stats")]
pub async fn stats(_a: Auth<Viewer>, app: &State<App>) -> ApiResult<Json<AlertStats>> {
    let s = app
        .db
        .run(|c| {
            let total = alerts::table.count().get_result(c)?;
            let unacknowledged = alerts::table
                .filter(alerts::is_acknowledged.eq(false))
                .count()
                .get_result(c)?;
            let last_24h = alerts::table
                .filter(alerts::ts.ge(Utc::now() - Duration::hours(24)))
                .count()
                .get_result(c)?;
            let by_type = alerts::table
                .group_by(alerts::alert_type)
                .select((alerts::alert_type, count_star()))
                .load::<(String, i64)>(c)?
                .into_iter()
                .collect();
            let by_severity = alerts::table
                .group_by(alerts::severity)
                .select((alerts::severity, count_star()))
                .load::<(String, i64)>(c)?
                .into_iter()
                .collect();
            Ok(AlertStats {
                total,
                unacknowledged,
                last_24h,
                by_type,
                by_severity,
            })
        })
        .await?;
    Ok(Json(s))
}
