//! Live event fan-out to WebSocket clients. Publishing never waits on a client: each subscriber has a
//! bounded queue; when it is full the oldest event is dropped and counted.

pub mod routes;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rocket::tokio::sync::Notify;
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Live,
    Device(Uuid),
    Alerts,
    Attack(Uuid),
    /// Federated-learning run progress.
    Fl,
}

#[derive(Debug)]
pub struct Subscriber {
    topic: Topic,
    cap: usize,
    queue: Mutex<VecDeque<Arc<str>>>,
    notify: Notify,
    dropped: AtomicU64,
}

impl Subscriber {
    /// Waits for at least one event and takes all queued ones.
    pub async fn next_batch(&self) -> Vec<Arc<str>> {
        loop {
            let batch: Vec<Arc<str>> = match self.queue.lock() {
                Ok(mut q) => q.drain(..).collect(),
                Err(_) => Vec::new(),
            };
            if !batch.is_empty() {
                return batch;
            }
            self.notify.notified().await;
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn push(&self, event: &Arc<str>) -> bool {
        let Ok(mut q) = self.queue.lock() else { return false };
        let mut dropped = false;
        if q.len() >= self.cap {
            q.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
            dropped = true;
        }
        q.push_back(event.clone());
        drop(q);
        // notify_one stores a permit, so an event published between drain and wait is not missed.
        self.notify.notify_one();
        dropped
    }
}

/// The hub's broadcaster.
#[derive(Debug)]
pub struct Broadcaster {
    cap: usize,
    next_id: AtomicU64,
    subs: Mutex<HashMap<u64, Arc<Subscriber>>>,
    dropped_total: AtomicU64,
    published_total: AtomicU64,
}

/// Removes the subscriber when the connection ends.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    pub sub: Arc<Subscriber>,
    hub: Arc<Broadcaster>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut subs) = self.hub.subs.lock() {
            subs.remove(&self.id);
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a T,
}

impl Broadcaster {
    pub fn new(cap: usize) -> Arc<Broadcaster> {
        Arc::new(Broadcaster {
            cap: cap.max(1),
            next_id: AtomicU64::new(1),
            subs: Mutex::new(HashMap::new()),
            dropped_total: AtomicU64::new(0),
            published_total: AtomicU64::new(0),
        })
    }

    /// Connected clients, events published, events dropped for slow clients.
    pub fn counts(&self) -> (usize, u64, u64) {
        let clients = self
            .subs
            .lock()
            .map(|s| s.len())
            .unwrap_or_else(|p| p.into_inner().len());
        (
            clients,
            self.published_total.load(Ordering::Relaxed),
            self.dropped_total.load(Ordering::Relaxed),
        )
    }

    pub fn subscribe(self: &Arc<Self>, topic: Topic) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sub = Arc::new(Subscriber {
            topic,
            cap: self.cap,
            queue: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            dropped: AtomicU64::new(0),
        });
        if let Ok(mut subs) = self.subs.lock() {
            subs.insert(id, sub.clone());
        }
        Subscription {
            id,
            sub,
            hub: self.clone(),
        }
    }

    /// Sends `{"type": kind, "data": data}` to every subscriber of one of `topics`.
    pub fn publish<T: Serialize>(&self, kind: &str, data: &T, topics: &[Topic]) {
        let Ok(json) = serde_json::to_string(&Envelope { kind, data }) else {
            return;
        };
        let event: Arc<str> = Arc::from(json);
        let targets: Vec<Arc<Subscriber>> = match self.subs.lock() {
            Ok(subs) => subs.values().filter(|s| topics.contains(&s.topic)).cloned().collect(),
            Err(_) => return,
        };
        self.published_total.fetch_add(1, Ordering::Relaxed);
        for s in targets {
            if s.push(&event) {
                self.dropped_total.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn subscribers(&self) -> usize {
        self.subs.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rocket::async_test]
    async fn full_queue_drops_oldest_and_counts() {
        let hub = Broadcaster::new(2);
        let slow = hub.subscribe(Topic::Live);
        let other = hub.subscribe(Topic::Device(Uuid::nil()));
        for i in 0..5 {
            hub.publish("n", &i, &[Topic::Live]);
        }
        let got: Vec<String> = slow.sub.next_batch().await.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, vec![r#"{"type":"n","data":3}"#, r#"{"type":"n","data":4}"#]);
        assert_eq!(slow.sub.dropped(), 3);
        assert_eq!(hub.dropped_total(), 3);
        assert!(other.sub.queue.lock().map(|q| q.is_empty()).unwrap_or(false));
        drop(other);
        assert_eq!(hub.subscribers(), 1);
    }
}
