//! `/alerts`: list with filters, detail, acknowledge, unread count, stats.

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
    rocket::routes![list, get, acknowledge, unread_count, stats]
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
