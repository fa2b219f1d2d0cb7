//! WebSocket endpoints; the access token comes in the `token` query parameter.

use std::time::Duration;

use rocket::futures::{SinkExt, StreamExt};
use rocket::tokio::time::{interval_at, Instant, MissedTickBehavior};
use rocket::State;
use rocket_ws::{Channel, Message, WebSocket};
use uuid::Uuid;

use super::Topic;
use crate::auth::guard::authorize;
use crate::auth::Role;
use crate::error::ApiError;
use crate::App;

const PING_EVERY: Duration = Duration::from_secs(20);

fn open(ws: WebSocket, app: &App, token: Option<&str>, topic: Topic) -> Result<Channel<'static>, ApiError> {
    let claims = authorize(app, token, Role::Viewer)?;
    let subscription = app.events.subscribe(topic);
    tracing::debug!(user = %claims.sub, ?topic, "websocket subscribed");
    Ok(ws.channel(move |mut stream| {
        Box::pin(async move {
            let sub = subscription.sub.clone();
            let mut ping = interval_at(Instant::now() + PING_EVERY, PING_EVERY);
            ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut last_heard = Instant::now();
            loop {
                rocket::tokio::select! {
                    batch = sub.next_batch() => {
                        for event in batch {
                            stream.send(Message::Text(event.to_string())).await?;
                        }
                    }
                    incoming = stream.next() => match incoming {
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => last_heard = Instant::now(),
                    },
                    _ = ping.tick() => {
                        // A client that answered neither of the last two pings is gone.
                        if last_heard.elapsed() > PING_EVERY * 2 + Duration::from_secs(5) {
                            break;
                        }
                        stream.send(Message::Ping(Vec::new())).await?;
                    }
                }
            }
            drop(subscription);
            Ok(())
        })
    }))
}

#[rocket::get("/ws/live?<token>")]
pub fn live(ws: WebSocket, app: &State<App>, token: Option<&str>) -> Result<Channel<'static>, ApiError> {
    open(ws, app, token, Topic::Live)
}

#[rocket::get("/ws/device/<id>?<token>")]
pub fn device(ws: WebSocket, app: &State<App>, id: Uuid, token: Option<&str>) -> Result<Channel<'static>, ApiError> {
    open(ws, app, token, Topic::Device(id))
}

#[rocket::get("/ws/attacks/<session_id>?<token>")]
pub fn attacks(
    ws: WebSocket,
    app: &State<App>,
    session_id: Uuid,
    token: Option<&str>,
) -> Result<Channel<'static>, ApiError> {
    open(ws, app, token, Topic::Attack(session_id))
}

#[rocket::get("/ws/fl?<token>")]
pub fn fl(ws: WebSocket, app: &State<App>, token: Option<&str>) -> Result<Channel<'static>, ApiError> {
    open(ws, app, token, Topic::Fl)
}

#[rocket::get("/ws/alerts?<token>")]
pub fn alerts(ws: WebSocket, app: &State<App>, token: Option<&str>) -> Result<Channel<'static>, ApiError> {
    open(ws, app, token, Topic::Alerts)
}
