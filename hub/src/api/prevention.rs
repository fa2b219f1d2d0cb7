//! `/prevention`: rules CRUD and toggle (admin), action logs.

use chrono::Utc;
use diesel::prelude::*;
use rocket::form::Errors;
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::State;
use serde::Deserialize;
use uuid::Uuid;

use super::{query, ActionType, Opt, Page, PageQuery};
use crate::auth::guard::{Admin, Auth, Body, Viewer};
use crate::db::models::{PreventionLog, PreventionRule};
use crate::db::schema::{devices, prevention_logs, prevention_rules};
use crate::error::{ApiError, ApiResult};
use crate::App;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![list, create, update, delete, toggle, logs]
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleIn {
    pub rule_name: String,
    /// Absent: a global rule.
    #[serde(default)]
    pub device_id: Option<Uuid>,
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    pub action_type: ActionType,
    #[serde(default = "default_true")]
    pub is_enabled: bool,
    #[serde(default = "default_cooldown")]
    pub cooldown_seconds: i32,
    #[serde(default)]
    pub webhook_url: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub extra_config: Option<serde_json::Value>,
}

fn default_threshold() -> f64 {
    0.5
}
fn default_true() -> bool {
    true
}
fn default_cooldown() -> i32 {
    60
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleUpdate {
    pub rule_name: Option<String>,
    pub device_id: Option<Uuid>,
    pub threshold: Option<f64>,
    pub action_type: Option<ActionType>,
    pub is_enabled: Option<bool>,
    pub cooldown_seconds: Option<i32>,
    pub webhook_url: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub extra_config: Option<serde_json::Value>,
}

fn validate(r: &PreventionRule) -> ApiResult<()> {
    if r.rule_name.trim().is_empty() || r.rule_name.chars().count() > 100 {
        return Err(ApiError::field("rule_name", "1-100 characters"));
    }
    if !(0.0..=1.0).contains(&r.threshold) {
        return Err(ApiError::field("threshold", "between 0 and 1"));
    }
    if !(0..=86_400 * 7).contains(&r.cooldown_seconds) {
        return Err(ApiError::field("cooldown_seconds", "0-604800 seconds"));
    }
    match (&r.webhook_url, r.action_type == "webhook") {
        (None, true) => return Err(ApiError::field("webhook_url", "required for the webhook action")),
        (Some(u), _) if u.len() > 500 || !(u.starts_with("http://") || u.starts_with("https://")) => {
            return Err(ApiError::field(
                "webhook_url",
                "an http(s) URL of at most 500 characters",
            ))
        }
        _ => {}
    }
    // What agents read from extra_config: checked here, not discovered on the gateway.
    use crate::broker::rules::{DURATION_RANGE, RATE_RANGE};
    for (key, range) in [("duration_seconds", DURATION_RANGE), ("rate_pps", RATE_RANGE)] {
        if let Some(v) = r.extra_config.as_ref().and_then(|c| c.get(key)) {
            if !v.as_u64().is_some_and(|n| range.contains(&n)) {
                return Err(ApiError::field(
                    format!("extra_config.{key}"),
                    format!("a whole number from {} to {}", range.start(), range.end()),
                ));
            }
        }
    }
    Ok(())
}

async fn check_device(app: &App, device: Option<Uuid>) -> ApiResult<()> {
    let Some(d) = device else { return Ok(()) };
    let n: i64 = app
        .db
        .run(move |c| Ok(devices::table.find(d).count().get_result(c)?))
        .await?;
    if n == 0 {
        return Err(ApiError::field("device_id", "no such device"));
    }
    Ok(())
}

#[derive(Debug, rocket::FromForm)]
pub struct RuleQuery {
    pub device_id: Opt<Uuid>,
    pub enabled: Opt<bool>,
}

#[rocket::get("/prevention/rules?<q..>")]
pub async fn list(
    _a: Auth<Viewer>,
    app: &State<App>,
    q: Result<RuleQuery, Errors<'_>>,
) -> ApiResult<Json<Vec<PreventionRule>>> {
    let q = query(q)?;
    let rules = app
        .db
        .run(move |c| {
            let mut f = prevention_rules::table.into_boxed();
            if let Some(d) = q.device_id.0 {
                f = f.filter(prevention_rules::device_id.eq(d));
            }
            if let Some(e) = q.enabled.0 {
                f = f.filter(prevention_rules::is_enabled.eq(e));
            }
            Ok(f.order(prevention_rules::created_at.asc())
                .select(PreventionRule::as_select())
                .load(c)?)
        })
        .await?;
    Ok(Json(rules))
}

#[rocket::post("/prevention/rules", data = "<body>")]
pub async fn create(
    _a: Auth<Admin>,
    app: &State<App>,
    body: Body<RuleIn>,
) -> ApiResult<(Status, Json<PreventionRule>)> {
    let r = body.0;
    let now = Utc::now();
    let rule = PreventionRule {
        id: Uuid::new_v4(),
        device_id: r.device_id,
        rule_name: r.rule_name.trim().to_string(),
        threshold: r.threshold,
        action_type: r.action_type.as_str().into(),
        is_enabled: r.is_enabled,
        cooldown_seconds: r.cooldown_seconds,
        webhook_url: r.webhook_url,
        extra_config: r.extra_config,
        created_at: now,
        updated_at: now,
    };
    validate(&rule)?;
    check_device(app, rule.device_id).await?;
    let rule = app
        .db
        .run(move |c| {
            Ok(diesel::insert_into(prevention_rules::table)
                .values(&rule)
                .returning(PreventionRule::as_returning())
                .get_result(c)?)
        })
        .await?;
    app.rules_changed.notify_one();
    Ok((Status::Created, Json(rule)))
}

async fn load(app: &App, id: Uuid) -> ApiResult<PreventionRule> {
    app.db
        .run(move |c| {
            prevention_rules::table
                .find(id)
                .select(PreventionRule::as_select())
                .first(c)
                .optional()?
                .ok_or_else(|| ApiError::not_found("prevention rule"))
        })
        .await
}

async fn save(app: &App, rule: PreventionRule) -> ApiResult<PreventionRule> {
    app.db
        .run(move |c| {
            Ok(diesel::update(prevention_rules::table.find(rule.id))
                .set(&rule)
                .returning(PreventionRule::as_returning())
                .get_result(c)?)
        })
        .await
}

#[rocket::put("/prevention/rules/<id>", data = "<body>")]
pub async fn update(
    _a: Auth<Admin>,
    app: &State<App>,
    id: Uuid,
    body: Body<RuleUpdate>,
) -> ApiResult<Json<PreventionRule>> {
    let u = body.0;
    let mut rule = load(app, id).await?;
    if let Some(v) = u.rule_name {
        rule.rule_name = v.trim().to_string();
    }
    if u.device_id.is_some() {
        check_device(app, u.device_id).await?;
        rule.device_id = u.device_id;
    }
    if let Some(v) = u.threshold {
        rule.threshold = v;
    }
    if let Some(v) = u.action_type {
        rule.action_type = v.as_str().into();
    }
    if let Some(v) = u.is_enabled {
        rule.is_enabled = v;
    }
    if let Some(v) = u.cooldown_seconds {
        rule.cooldown_seconds = v;
    }
    if u.webhook_url.is_some() {
        rule.webhook_url = u.webhook_url;
    }
    if u.extra_config.is_some() {
        rule.extra_config = u.extra_config;
    }
    rule.updated_at = Utc::now();
    validate(&rule)?;
    let rule = save(app, rule).await?;
    app.rules_changed.notify_one();
    Ok(Json(rule))
}

#[rocket::delete("/prevention/rules/<id>")]
pub async fn delete(_a: Auth<Admin>, app: &State<App>, id: Uuid) -> ApiResult<Status> {
    let n = app
        .db
        .run(move |c| Ok(diesel::delete(prevention_rules::table.find(id)).execute(c)?))
        .await?;
    if n == 0 {
        return Err(ApiError::not_found("prevention rule"));
    }
    app.rules_changed.notify_one();
    Ok(Status::NoContent)
}

#[rocket::post("/prevention/rules/<id>/toggle")]
pub async fn toggle(_a: Auth<Admin>, app: &State<App>, id: Uuid) -> ApiResult<Json<PreventionRule>> {
    let rule = app
        .db
        .run(move |c| {
            diesel::update(prevention_rules::table.find(id))
                .set((
                    prevention_rules::is_enabled.eq(diesel::dsl::not(prevention_rules::is_enabled)),
                    prevention_rules::updated_at.eq(Utc::now()),
                ))
                .returning(PreventionRule::as_returning())
                .get_result(c)
                .optional()?
                .ok_or_else(|| ApiError::not_found("prevention rule"))
        })
        .await?;
    app.rules_changed.notify_one();
    Ok(Json(rule))
}

#[derive(Debug, rocket::FromForm)]
pub struct LogQuery {
    pub device_id: Opt<Uuid>,
    pub rule_id: Opt<Uuid>,
    #[field(default = 1, validate = range(1..=1_000_000))]
    pub page: i64,
    #[field(default = 50, validate = range(1..=200))]
    pub size: i64,
}

#[rocket::get("/prevention/logs?<q..>")]
pub async fn logs(
    _a: Auth<Viewer>,
    app: &State<App>,
    q: Result<LogQuery, Errors<'_>>,
) -> ApiResult<Json<Page<PreventionLog>>> {
    let q = query(q)?;
    let page = PageQuery {
        page: q.page,
        size: q.size,
    };
    let (device, rule) = (q.device_id.0, q.rule_id.0);
    let filter = move || {
        let mut f = prevention_logs::table.into_boxed();
        if let Some(d) = device {
            f = f.filter(prevention_logs::device_id.eq(d));
        }
        if let Some(r) = rule {
            f = f.filter(prevention_logs::rule_id.eq(r));
        }
        f
    };
    let (items, total) = app
        .db
        .run(move |c| {
            let total = filter().count().get_result(c)?;
            let items = filter()
                .order((prevention_logs::ts.desc(), prevention_logs::id.asc()))
                .limit(page.size)
                .offset(page.offset())
                .select(PreventionLog::as_select())
                .load(c)?;
            Ok((items, total))
        })
        .await?;
    Ok(Json(page.page_of(items, total)))
}
