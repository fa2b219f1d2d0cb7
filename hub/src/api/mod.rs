//! The JSON API under `/api/v1`, one module per resource.

pub mod agents;
pub mod alerts;
pub mod attacks;
pub mod auth;
pub mod commands;
pub mod cors;
pub mod dashboard;
pub mod devices;
pub mod fl;
pub mod predictions;
pub mod prevention;
pub mod settings;
pub mod traffic;

use chrono::{DateTime, Utc};
use rocket::form::Errors;
use rocket::http::Status;
use rocket::{Catcher, Request, Route};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

pub fn routes() -> Vec<Route> {
    let mut r = Vec::new();
    r.extend(auth::routes());
    r.extend(agents::routes());
    r.extend(commands::routes());
    r.extend(devices::routes());
    r.extend(traffic::routes());
    r.extend(predictions::routes());
    r.extend(alerts::routes());
    r.extend(attacks::routes());
    r.extend(prevention::routes());
    r.extend(fl::routes());
    r.extend(dashboard::routes());
    r.extend(settings::routes());
    r.extend(rocket::routes![cors::preflight]);
    r
}

pub fn catchers() -> Vec<Catcher> {
    rocket::catchers![default_catcher]
}

/// Renders the error a guard stashed, or a generic one in the same shape.
#[rocket::catch(default)]
fn default_catcher(status: Status, req: &Request<'_>) -> ApiError {
    if let Some(e) = ApiError::stashed(req) {
        return e;
    }
    match status.code {
        404 => ApiError::new(
            status,
            "not_found",
            format!("no route for {} {}", req.method(), req.uri().path()),
        ),
        413 => ApiError::new(status, "payload_too_large", "request body too large"),
        422 | 400 => ApiError::new(
            Status::UnprocessableEntity,
            "validation_failed",
            "a path or query parameter is not valid for this route",
        ),
        _ => ApiError::new(status, "error", status.reason_lossy().to_string()),
    }
}

/// Query parameters that every list accepts.
#[derive(Debug, Clone, Copy, rocket::FromForm)]
pub struct PageQuery {
    #[field(default = 1, validate = range(1..=1_000_000))]
    pub page: i64,
    #[field(default = 50, validate = range(1..=200))]
    pub size: i64,
}

impl PageQuery {
    pub fn offset(&self) -> i64 {
        (self.page - 1) * self.size
    }

    /// The page these parameters asked for, holding `items` of `total` matches.
    pub fn page_of<T>(&self, items: Vec<T>, total: i64) -> Page<T> {
        Page {
            items,
            total,
            page: self.page,
            size: self.size,
        }
    }
}

/// A page of results.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: i64,
    pub size: i64,
}

/// Converts form (query) errors into a 422 naming the parameter.
pub fn query<T>(q: Result<T, Errors<'_>>) -> Result<T, ApiError> {
    q.map_err(|errors| form_errors(&errors))
}

/// A 422 naming every field of a query or form that did not parse.
pub fn form_errors(errors: &Errors<'_>) -> ApiError {
    let mut err = ApiError::field("query", "invalid query parameters");
    err.fields.clear();
    for e in errors.iter() {
        let name = e.name.as_ref().map(|n| n.to_string()).unwrap_or_else(|| "query".into());
        err.fields.push(crate::error::FieldError {
            field: name,
            message: e.kind.to_string(),
        });
    }
    err.message = err
        .fields
        .iter()
        .map(|f| format!("{}: {}", f.field, f.message))
        .collect::<Vec<_>>()
        .join("; ");
    err
}

/// Parses an RFC 3339 time from a query parameter.
pub fn time_param(field: &str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.map(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| ApiError::field(field, "expected an RFC 3339 time like 2026-01-31T12:00:00Z"))
    })
    .transpose()
}

/// Declares a string enumeration stored as checked TEXT: serde, query-form and OpenAPI support.
macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($var:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema, rocket::form::FromFormField)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $( #[field(value = $s)] $var ),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            pub fn as_str(self) -> &'static str { match self { $($name::$var => $s),+ } }
        }
    };
}

text_enum!(DeviceType { Camera => "camera", Sensor => "sensor", Gateway => "gateway", Actuator => "actuator", SmartPlug => "smart_plug", Custom => "custom" });
text_enum!(Protocol { Mqtt => "mqtt", Coap => "coap", Http => "http", Tcp => "tcp", Udp => "udp" });
text_enum!(DeviceStatus { Online => "online", Offline => "offline", Quarantined => "quarantined", UnderAttack => "under_attack" });
text_enum!(TrafficSource { LiveCapture => "live_capture", PcapUpload => "pcap_upload", Simulated => "simulated" });
text_enum!(FlowSource { Live => "live", Pcap => "pcap", Simulated => "simulated", AttackSim => "attack_sim" });
text_enum!(Label { Benign => "benign", Attack => "attack" });
text_enum!(AlertType { ThresholdBreach => "threshold_breach", SustainedAttack => "sustained_attack", NewAttackType => "new_attack_type", DeviceQuarantined => "device_quarantined" });
text_enum!(Severity { Low => "low", Medium => "medium", High => "high", Critical => "critical" });
text_enum!(AttackType { DdosFlood => "ddos_flood", SlowRate => "slow_rate", PortScan => "port_scan", BruteForceSsh => "brute_force_ssh", BruteForceFtp => "brute_force_ftp", BotnetBeacon => "botnet_beacon", DataExfiltration => "data_exfiltration", WebXss => "web_xss", WebSqli => "web_sqli", Hybrid => "hybrid" });
text_enum!(SessionStatus { Pending => "pending", Running => "running", Paused => "paused", Completed => "completed", Failed => "failed" });
text_enum!(DeviceSort { Created => "created", Name => "name", Status => "status", LastSeen => "last_seen", Threats => "threats" });
text_enum!(ActionType { BlockIp => "block_ip", RateLimit => "rate_limit", Quarantine => "quarantine", AlertOnly => "alert_only", Webhook => "webhook" });

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Count {
    pub count: i64,
}

/// An optional query parameter that, unlike `Option<T>` in Rocket forms, fails when present but invalid.
#[derive(Debug)]
pub struct Opt<T>(pub Option<T>);

#[rocket::async_trait]
impl<'v, T: rocket::form::FromForm<'v> + Send> rocket::form::FromForm<'v> for Opt<T> {
    type Context = (T::Context, bool);

    fn init(opts: rocket::form::Options) -> Self::Context {
        (T::init(opts), false)
    }

    fn push_value(ctxt: &mut Self::Context, field: rocket::form::ValueField<'v>) {
        ctxt.1 = true;
        T::push_value(&mut ctxt.0, field)
    }

    async fn push_data(ctxt: &mut Self::Context, field: rocket::form::DataField<'v, '_>) {
        ctxt.1 = true;
        T::push_data(&mut ctxt.0, field).await
    }

    fn finalize(ctxt: Self::Context) -> rocket::form::Result<'v, Self> {
        if !ctxt.1 {
            return Ok(Opt(None));
        }
        T::finalize(ctxt.0).map(|v| Opt(Some(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_strings_match_serde() {
        for v in DeviceType::ALL {
            assert_eq!(serde_json::to_value(v).ok(), Some(serde_json::Value::from(v.as_str())));
        }
        for v in AttackType::ALL {
            assert_eq!(serde_json::to_value(v).ok(), Some(serde_json::Value::from(v.as_str())));
        }
        for v in DeviceStatus::ALL {
            assert_eq!(serde_json::to_value(v).ok(), Some(serde_json::Value::from(v.as_str())));
        }
        for v in ActionType::ALL {
            assert_eq!(serde_json::to_value(v).ok(), Some(serde_json::Value::from(v.as_str())));
        }
    }
}
