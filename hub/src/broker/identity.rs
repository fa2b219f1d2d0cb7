//! Which agent certificates the hub trusts right now. TLS proves a certificate is from the
//! hub's CA; this registry says whether it is the agent's *current* certificate and whether
//! the agent is revoked. It is refreshed from PostgreSQL every [`REFRESH`] (so revocations
//! made by the CLI or another hub process take effect) and updated at once by the API; live
//! connections watch it and close when their agent loses trust.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use diesel::prelude::*;
use tokio::sync::watch;
use uuid::Uuid;

use crate::db::schema::agents;
use crate::db::Db;

pub const REFRESH: Duration = Duration::from_secs(2);

/// Why a certificate is not (or no longer) accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Distrust {
    #[error("no agent enrolled with this id")]
    Unknown,
    #[error("the agent is revoked")]
    Revoked,
    #[error("the agent has enrolled again since; this certificate is replaced")]
    Replaced,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Trust {
    fingerprint: String,
    revoked: bool,
}

#[derive(Debug)]
pub struct Registry {
    agents: RwLock<HashMap<Uuid, Trust>>,
    /// Bumped whenever trust is withdrawn; connections re-check on change.
    generation: watch::Sender<u64>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            agents: RwLock::default(),
            generation: watch::Sender::new(0),
        }
    }
}

impl Registry {
    /// Is this certificate (by fingerprint) the current one of a non-revoked agent?
    pub fn check(&self, agent: Uuid, fingerprint: &str) -> Result<(), Distrust> {
        let agents = self.agents.read().unwrap_or_else(|p| p.into_inner());
        match agents.get(&agent) {
            None => Err(Distrust::Unknown),
            Some(t) if t.revoked => Err(Distrust::Revoked),
            Some(t) if t.fingerprint != fingerprint => Err(Distrust::Replaced),
            Some(_) => Ok(()),
        }
    }

    /// A newly issued certificate.
    pub fn trust(&self, agent: Uuid, fingerprint: String) {
        let replaced = self
            .agents
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                agent,
                Trust {
                    fingerprint,
                    revoked: false,
                },
            )
            .is_some();
        if replaced {
            self.generation.send_modify(|g| *g += 1);
        }
    }

    pub fn revoke(&self, agent: Uuid) {
        if let Some(t) = self.agents.write().unwrap_or_else(|p| p.into_inner()).get_mut(&agent) {
            t.revoked = true;
        }
        self.generation.send_modify(|g| *g += 1);
    }

    /// Notified whenever some trust is withdrawn.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Replaces the registry with the database's view.
    pub fn reload(&self, conn: &mut PgConnection) -> QueryResult<()> {
        let rows: Vec<(Uuid, Option<String>, bool)> = agents::table
            .filter(agents::cert_fingerprint.is_not_null())
            .select((agents::id, agents::cert_fingerprint, agents::revoked_at.is_not_null()))
            .load(conn)?;
        let fresh: HashMap<Uuid, Trust> = rows
            .into_iter()
            .filter_map(|(id, fp, revoked)| fp.map(|fingerprint| (id, Trust { fingerprint, revoked })))
            .collect();
        let mut agents = self.agents.write().unwrap_or_else(|p| p.into_inner());
        let withdrawn = agents
            .iter()
            .any(|(id, old)| fresh.get(id).is_none_or(|new| new != old));
        *agents = fresh;
        drop(agents);
        if withdrawn {
            self.generation.send_modify(|g| *g += 1);
        }
        Ok(())
    }

    /// Keeps the registry in step with the database.
    pub async fn follow(self: std::sync::Arc<Self>, db: Db) {
        let mut tick = tokio::time::interval(REFRESH);
        loop {
            tick.tick().await;
            let (db, me) = (db.clone(), self.clone());
            let done = tokio::task::spawn_blocking(move || -> Result<(), String> {
                let mut conn = db.get().map_err(|e| e.to_string())?;
                me.reload(&mut conn).map_err(|e| e.to_string())
            })
            .await;
            if let Ok(Err(e)) | Err(e) = done.map_err(|e| e.to_string()) {
                tracing::warn!(error = %e, "reloading agent certificates failed; keeping the last view");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_current_certificate_of_a_trusted_agent_passes() {
        let registry = Registry::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut changes = registry.changes();
        registry.trust(a, "f1".into());
        assert_eq!(registry.check(a, "f1"), Ok(()));
        assert_eq!(registry.check(b, "f1"), Err(Distrust::Unknown));
        assert!(
            !changes.has_changed().unwrap_or(true),
            "a first certificate withdraws nothing"
        );
        registry.trust(a, "f2".into());
        assert_eq!(registry.check(a, "f1"), Err(Distrust::Replaced));
        assert!(changes.has_changed().unwrap_or(false));
        changes.mark_unchanged();
        registry.revoke(a);
        assert_eq!(registry.check(a, "f2"), Err(Distrust::Revoked));
        assert!(changes.has_changed().unwrap_or(false));
    }
}
