//! The client against the error fixtures and the in-memory daemon: every
//! error shape of spec §1.2/§1.7 the client can meet.

use std::collections::BTreeMap;

use reqwest::Method;

use super::*;
use crate::testing::FakeMicrocluster;

const ERROR_NOT_FOUND: &str =
    include_str!("../../../tests/fixtures/microcluster/error-not-found.json");
const ERROR_NOT_INITIALIZED: &str =
    include_str!("../../../tests/fixtures/microcluster/error-not-initialized.json");
const EMPTY_SYNC: &str = include_str!("../../../tests/fixtures/microcluster/empty-sync.json");
const TOKEN_ISSUED: &str = include_str!("../../../tests/fixtures/microcluster/token-issued.json");

fn transport() -> Transport {
    FakeMicrocluster::microceph().transport()
}

/// A fixture read as the answer to `GET path` with `status`.
fn answer(status: u16, fixture: &str) -> Result<serde_json::Value, MicroclusterError> {
    let transport = transport();
    let envelope = transport.decode(
        &Method::GET,
        "/core/1.0/cluster",
        status,
        fixture.as_bytes(),
    )?;
    Ok(transport.metadata(&Method::GET, "/core/1.0/cluster", envelope)?)
}

#[test]
fn error_fixtures_decode_to_typed_errors() {
    let err = answer(503, ERROR_NOT_INITIALIZED).unwrap_err();
    assert!(err.is_not_initialized(), "{err:?}");
    assert_eq!(err.status(), Some(503));
    let err = answer(404, ERROR_NOT_FOUND).unwrap_err();
    assert!(matches!(err, MicroclusterError::Api(_)), "{err:?}");
    assert_eq!(
        (err.status(), err.server_message()),
        (Some(404), Some("CoreTokenRecord not found"))
    );
    assert_eq!(answer(200, EMPTY_SYNC).unwrap(), serde_json::json!({}));
    assert_eq!(
        answer(200, TOKEN_ISSUED)
            .unwrap()
            .as_str()
            .map(|t| JoinToken::decode(t).is_ok()),
        Some(true)
    );
}

#[test]
fn other_503s_are_unavailable_but_not_uninitialized() {
    let unavailable = |message: &str| {
        let body = serde_json::json!({"type": "error", "error_code": 503, "error": message, "metadata": null});
        answer(503, &body.to_string()).unwrap_err()
    };
    for (message, reason) in [
        ("Database is still starting", Unavailable::Database),
        ("Database is offline", Unavailable::Database),
        ("Daemon is not ready yet", Unavailable::NotReady),
        ("Daemon is shutting down", Unavailable::ShuttingDown),
    ] {
        let err = unavailable(message);
        assert!(!err.is_not_initialized(), "{message}");
        assert!(
            matches!(err, MicroclusterError::Unavailable { reason: r, .. } if r == reason),
            "{message}: {err:?}"
        );
        assert!(err.to_string().contains(message), "{err}");
    }
    // Not JSON and not 200: upstream's `Failed to fetch` case, a plain status error.
    let err = answer(502, "<html>Bad Gateway</html>").unwrap_err();
    assert_eq!(err.status(), Some(502));
}

#[tokio::test]
async fn before_init_only_the_before_init_endpoints_answer() {
    let fake = FakeMicrocluster::microovn();
    let client = fake.client();
    let server = client.server().await.unwrap();
    assert_eq!((server.name.as_str(), server.address.as_str()), ("", ""));
    assert!(!server.ready);
    assert!(!client.is_initialized().await.unwrap());
    client.ready().await.unwrap();
    let refused = [
        client.members().await.map(drop).unwrap_err(),
        client.tokens().await.map(drop).unwrap_err(),
        client
            .issue_token("micro2", TOKEN_LIFETIME)
            .await
            .map(drop)
            .unwrap_err(),
        client.revoke_token("micro2").await.unwrap_err(),
        client.remove_member("micro2", false).await.unwrap_err(),
    ];
    for err in refused {
        assert!(err.is_not_initialized(), "{err:?}");
        assert_eq!(
            err.server_message(),
            Some("Database is not yet initialized")
        );
    }
}

#[tokio::test]
async fn bootstrap_creates_the_first_member_once() {
    let fake = FakeMicrocluster::microovn();
    let client = fake.client();
    let config = BTreeMap::from([("ovn-encap-ip".to_string(), "10.0.0.1".to_string())]);
    client
        .bootstrap("micro1", "10.0.0.1:6443", config.clone())
        .await
        .unwrap();
    assert!(client.is_initialized().await.unwrap());
    assert_eq!(fake.config(), config);
    let members = client.members().await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(
        (members[0].name.as_str(), members[0].address.as_str()),
        ("micro1", "10.0.0.1:6443")
    );
    let body = &fake.calls()[0].body;
    assert_eq!(body["bootstrap"], true);
    assert_eq!(body["join_token"], "");
    let again = client
        .bootstrap("micro1", "10.0.0.1:6443", BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(
        (again.status(), again.server_message()),
        (
            Some(500),
            Some("Unable to initialize cluster: Database is online")
        )
    );
}

#[tokio::test]
async fn control_requests_are_checked() {
    let client = FakeMicrocluster::microceph().client();
    let err = client
        .bootstrap("not_an fqdn", "10.0.0.1:7443", BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(
        err.server_message()
            .unwrap()
            .starts_with(r#"Cluster member name "not_an fqdn" is not a valid FQDN"#),
        "{err}"
    );
    // Both flags at once: only reachable with a hand-made request.
    let both = Control {
        bootstrap: true,
        join_token: "abc".into(),
        name: "micro1".into(),
        ..Default::default()
    };
    let err = client.control(both).await.unwrap_err();
    assert_eq!(
        (err.status(), err.server_message()),
        (
            Some(500),
            Some("Invalid options - received join token and bootstrap flag")
        )
    );
    let garbage = Secret::new("not a token".to_string());
    let err = client
        .join("micro1", "10.0.0.1:7443", &garbage, BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert!(!err.to_string().contains("not a token"), "{err}");
}

async fn bootstrapped(fake: &FakeMicrocluster) -> MicroclusterClient {
    let client = fake.client();
    client
        .bootstrap("micro1", "10.0.0.1:7443", BTreeMap::new())
        .await
        .unwrap();
    client
}

#[tokio::test]
async fn tokens_are_issued_listed_and_revoked() {
    let fake = FakeMicrocluster::microceph();
    let client = bootstrapped(&fake).await;
    let token = client.issue_token("micro2", TOKEN_LIFETIME).await.unwrap();
    assert_eq!(fake.calls()[1].body["expire_after"], 3_600_000_000_000u64);
    let decoded = JoinToken::decode(token.expose()).unwrap();
    assert_eq!(decoded.join_addresses, ["10.0.0.1:7443"]);
    assert_eq!(decoded.secret.len(), 64);
    client.issue_token("micro3", Duration::ZERO).await.unwrap();
    let records = client.tokens().await.unwrap();
    let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["micro2", "micro3"]);
    assert_eq!(records[1].expires_at, "0001-01-01T00:00:00Z");
    assert_ne!(records[0].expires_at, "0001-01-01T00:00:00Z");
    assert_eq!(&records[0].token, token.expose());

    let duplicate = client
        .issue_token("micro2", TOKEN_LIFETIME)
        .await
        .map(drop)
        .unwrap_err();
    assert_eq!(
        (duplicate.status(), duplicate.server_message()),
        (
            Some(500),
            Some(
                "Failed to create \"core_token_records\" entry: UNIQUE constraint failed: core_token_records.name"
            )
        )
    );
    let invalid = client
        .issue_token("-micro", TOKEN_LIFETIME)
        .await
        .map(drop)
        .unwrap_err();
    assert_eq!(invalid.status(), Some(400));

    client.revoke_token("micro2").await.unwrap();
    let unknown = client.revoke_token("micro2").await.unwrap_err();
    assert_eq!(
        (unknown.status(), unknown.server_message()),
        (Some(404), Some("CoreTokenRecord not found"))
    );
    assert!(!unknown.is_not_initialized());
    assert_eq!(client.tokens().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_join_redeems_a_token_issued_for_the_same_name() {
    let (micro1, micro2, micro3) = (
        FakeMicrocluster::microceph(),
        FakeMicrocluster::microceph(),
        FakeMicrocluster::microceph(),
    );
    FakeMicrocluster::link(&[&micro1, &micro2, &micro3]);
    let leader = bootstrapped(&micro1).await;
    let token = leader.issue_token("micro2", TOKEN_LIFETIME).await.unwrap();

    // The token admits only the name it was issued for.
    let err = micro3
        .client()
        .join("micro3", "10.0.0.3:7443", &token, BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.server_message(),
        Some(
            "1 join attempts were unsuccessful. Last error: Joining server certificate SAN does not contain join token name"
        )
    );

    let joiner = micro2.client();
    joiner
        .join("micro2", "10.0.0.2:7443", &token, BTreeMap::new())
        .await
        .unwrap();
    assert!(joiner.is_initialized().await.unwrap());
    let names = |members: Vec<ClusterMember>| -> Vec<String> {
        members.into_iter().map(|m| m.name).collect()
    };
    assert_eq!(names(leader.members().await.unwrap()), ["micro1", "micro2"]);
    assert_eq!(names(joiner.members().await.unwrap()), ["micro1", "micro2"]);
    assert!(
        leader.tokens().await.unwrap().is_empty(),
        "tokens are single-use"
    );

    // Used once, the token is gone: the issuer's 404 comes through the join.
    let err = micro3
        .client()
        .join("micro2", "10.0.0.3:7443", &token, BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.server_message()),
        (
            Some(404),
            Some("1 join attempts were unsuccessful. Last error: CoreTokenRecord not found")
        )
    );
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(token.expose()), "{shown}");
    let joined = &micro2.calls()[0].body;
    assert_eq!(
        (joined["bootstrap"].as_bool(), joined["name"].as_str()),
        (Some(false), Some("micro2"))
    );
}

#[tokio::test]
async fn members_are_removed_until_one_is_left() {
    let (micro1, micro2) = (FakeMicrocluster::microovn(), FakeMicrocluster::microovn());
    FakeMicrocluster::link(&[&micro1, &micro2]);
    let leader = bootstrapped(&micro1).await;
    let token = leader.issue_token("micro2", TOKEN_LIFETIME).await.unwrap();
    micro2
        .client()
        .join("micro2", "10.0.0.2:6443", &token, BTreeMap::new())
        .await
        .unwrap();
    let unknown = leader.remove_member("micro9", false).await.unwrap_err();
    assert_eq!(
        (unknown.status(), unknown.server_message()),
        (
            Some(500),
            Some(r#"No remote exists with the given name "micro9""#)
        )
    );
    leader.remove_member("micro2", true).await.unwrap();
    assert_eq!(
        micro1.calls().last().unwrap().path,
        "/core/1.0/cluster/micro2?force=1"
    );
    let last = leader.remove_member("micro1", false).await.unwrap_err();
    assert_eq!(
        (last.status(), last.server_message()),
        (Some(500), Some("Cannot leave a cluster with 1 members"))
    );
    assert_eq!(leader.members().await.unwrap().len(), 1);
}
