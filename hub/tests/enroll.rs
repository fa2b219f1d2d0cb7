//! Enrollment through the API: one-time tokens, CSRs, the certificates the CA issues, and
//! revocation. The TLS channels that use them are tested across processes in `tests/`.

mod common;

use common::Hub;
use diesel::prelude::*;
use gatewatch_hub::db::schema::{agents, enrollment_tokens};
use rocket::http::Status;
use serde_json::{json, Value};
use uuid::Uuid;

fn csr() -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    // Asks to be the hub; the CA ignores what a CSR asks for beyond its key.
    let mut params = rcgen::CertificateParams::new(vec!["gatewatch-hub".to_string()]).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gatewatch-hub");
    params.serialize_request(&key).expect("csr").pem().expect("pem")
}

async fn new_token(hub: &Hub) -> Value {
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/agents/enrollment-tokens",
            Some(&hub.admin),
            Some(json!({"ttl_minutes": 5})),
        )
        .await;
    assert_eq!(s, Status::Created, "{v}");
    v
}

async fn enroll(hub: &Hub, token: &str, agent: Uuid, name: &str, csr_pem: &str) -> (Status, Value) {
    hub.call(
        "POST",
        "/api/v1/agents/enroll",
        None,
        Some(json!({"token": token, "agent_id": agent, "name": name, "hostname": "gw-1", "csr_pem": csr_pem})),
    )
    .await
}

#[rocket::async_test]
async fn a_token_buys_one_client_certificate_for_the_agent_and_nothing_more() {
    let hub = Hub::start().await;
    let issued = new_token(&hub).await;
    let token = issued["token"].as_str().expect("token");
    let ca_sha256 = issued["ca_sha256"].as_str().expect("fingerprint");
    assert_eq!(ca_sha256, hub.app().ca.fingerprint());
    assert!(issued["enroll_command"].as_str().expect("command").contains(token));

    // A broken CSR is refused and does not spend the token.
    let agent = Uuid::now_v7();
    let (s, v) = enroll(
        &hub,
        token,
        agent,
        "porch",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n",
    )
    .await;
    assert_eq!(s, Status::UnprocessableEntity, "{v}");
    assert_eq!(v["error"]["fields"][0]["field"], "csr_pem", "{v}");

    let (s, v) = enroll(&hub, token, agent, "porch", &csr()).await;
    assert_eq!(s, Status::Ok, "{v}");
    assert_eq!(v["agent_id"], agent.to_string());
    assert_eq!(v["ca_sha256"], ca_sha256);
    assert!(v["mqtt_url"].as_str().expect("url").starts_with("mqtts://"), "{v}");

    // The certificate names the agent, is for client use only, not a CA, and carries no name the CSR asked for.
    let pem = v["certificate_pem"].as_str().expect("pem");
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).expect("der");
    let (who, fingerprint) = gatewatch_hub::pki::agent_of(&der).expect("identity");
    assert_eq!(who, agent);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
    assert!(!cert.is_ca());
    let eku = cert.extended_key_usage().expect("eku").expect("present").value;
    assert!(eku.client_auth && !eku.server_auth);
    assert!(cert.subject_alternative_name().expect("san").is_none());
    assert_eq!(hub.app().identities.check(agent, &fingerprint), Ok(()));

    let mut c = hub.db.conn();
    let (status, stored): (String, Option<String>) = agents::table
        .find(agent)
        .select((agents::status, agents::cert_fingerprint))
        .first(&mut c)
        .expect("agent row");
    assert_eq!(
        (status.as_str(), stored.as_deref()),
        ("offline", Some(fingerprint.as_str()))
    );
    let (s, list) = hub.call("GET", "/api/v1/agents", Some(&hub.viewer), None).await;
    assert_eq!(s, Status::Ok);
    assert_eq!(list[0]["name"], "porch");

    // Spent, unknown and expired tokens are all refused the same way.
    let (s, v) = enroll(&hub, token, Uuid::now_v7(), "second", &csr()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (Status::Unauthorized, Some("unauthorized")),
        "{v}"
    );
    let (s, _) = enroll(&hub, &"0".repeat(64), Uuid::now_v7(), "third", &csr()).await;
    assert_eq!(s, Status::Unauthorized);
    let stale = new_token(&hub).await;
    diesel::update(enrollment_tokens::table)
        .filter(enrollment_tokens::used_at.is_null())
        .set(enrollment_tokens::expires_at.eq(chrono::Utc::now() - chrono::Duration::seconds(1)))
        .execute(&mut c)
        .expect("expire");
    let (s, _) = enroll(
        &hub,
        stale["token"].as_str().expect("token"),
        Uuid::now_v7(),
        "late",
        &csr(),
    )
    .await;
    assert_eq!(s, Status::Unauthorized);

    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/agents/enrollment-tokens",
            Some(&hub.admin),
            Some(json!({"ttl_minutes": 0})),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity, "{v}");

    // Enrolling again replaces the certificate: the old one is no longer trusted.
    let again = new_token(&hub).await;
    let (s, v) = enroll(&hub, again["token"].as_str().expect("token"), agent, "porch", &csr()).await;
    assert_eq!(s, Status::Ok, "{v}");
    assert!(hub.app().identities.check(agent, &fingerprint).is_err());
}

#[rocket::async_test]
async fn a_revoked_agent_stays_out() {
    let hub = Hub::start().await;
    let agent = Uuid::now_v7();
    let token = new_token(&hub).await;
    let (s, v) = enroll(&hub, token["token"].as_str().expect("token"), agent, "shed", &csr()).await;
    assert_eq!(s, Status::Ok, "{v}");
    let pem = v["certificate_pem"].as_str().expect("pem");
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).expect("der");
    let (_, fingerprint) = gatewatch_hub::pki::agent_of(&der).expect("identity");

    let (s, v) = hub
        .call(
            "POST",
            &format!("/api/v1/agents/{agent}/revoke"),
            Some(&hub.admin),
            None,
        )
        .await;
    assert_eq!(s, Status::Ok, "{v}");
    assert_eq!(v["status"], "revoked");
    assert!(v["revoked_at"].is_string());
    assert_eq!(
        hub.app().identities.check(agent, &fingerprint),
        Err(gatewatch_hub::broker::identity::Distrust::Revoked)
    );
    // Trust is rebuilt from the database the same way (what a restarted hub sees).
    let fresh = gatewatch_hub::broker::identity::Registry::default();
    fresh.reload(&mut hub.db.conn()).expect("reload");
    assert!(fresh.check(agent, &fingerprint).is_err());

    let token = new_token(&hub).await;
    let (s, v) = enroll(&hub, token["token"].as_str().expect("token"), agent, "shed", &csr()).await;
    assert_eq!(s, Status::Conflict, "a revoked id cannot enroll again: {v}");
    let (s, _) = hub
        .call(
            "POST",
            &format!("/api/v1/agents/{}/revoke", Uuid::now_v7()),
            Some(&hub.admin),
            None,
        )
        .await;
    assert_eq!(s, Status::NotFound);
}
