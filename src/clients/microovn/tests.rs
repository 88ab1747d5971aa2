//! The MicroOVN client against its golden fixture and the in-memory daemon,
//! and the northbound connection built from its services.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::*;
use crate::clients::microcluster::Service;
use crate::testing::FakeMicrocluster;

const SERVICES: &str = include_str!("../../../tests/fixtures/microcluster/microovn-services.json");

fn fixture() -> Vec<ServiceLocation> {
    let envelope: serde_json::Value = serde_json::from_str(SERVICES).unwrap();
    serde_json::from_value(envelope["metadata"].clone()).unwrap()
}

fn addresses(pairs: &[(&str, &str)]) -> BTreeMap<String, IpAddr> {
    let parsed = pairs
        .iter()
        .map(|(m, ip)| (m.to_string(), ip.parse().unwrap()));
    parsed.collect()
}

#[test]
fn services_decode_to_known_names_and_keep_new_ones() {
    let services = fixture();
    assert_eq!(services.len(), 9);
    assert_eq!(services[0].service, OvnService::Central);
    assert_eq!(services[5].service, OvnService::Bgp);
    let future: ServiceLocation =
        serde_json::from_str(r#"{"service":"ovn-ic","location":"micro2"}"#).unwrap();
    assert_eq!(future.service, OvnService::Other("ovn-ic".into()));
    assert_eq!(
        serde_json::to_value(&future).unwrap(),
        serde_json::json!({"service": "ovn-ic", "location": "micro2"})
    );
    assert_eq!(OvnService::Switch.to_string(), "switch");
}

#[test]
fn the_northbound_connection_lists_every_central_in_order() {
    let services = fixture();
    let known = addresses(&[
        ("micro1", "10.0.0.1"),
        ("micro2", "10.0.0.2"),
        ("micro3", "fd00::3"),
    ]);
    assert_eq!(
        northbound_connection(&services, &known).unwrap(),
        "ssl:10.0.0.1:6641,ssl:[fd00::3]:6641"
    );
    // Where upstream would write `ssl::6641`.
    let partial = addresses(&[("micro1", "10.0.0.1")]);
    assert_eq!(
        northbound_connection(&services, &partial),
        Err(NorthboundError::UnknownMember("micro3".into()))
    );
    let no_central: Vec<ServiceLocation> = services
        .into_iter()
        .filter(|s| s.service != OvnService::Central)
        .collect();
    assert_eq!(
        northbound_connection(&no_central, &known),
        Err(NorthboundError::NoCentral)
    );
}

#[tokio::test]
async fn services_follow_upstream_placement() {
    let client = FakeMicrocluster::microovn().ovn_client();
    assert!(client.services().await.unwrap_err().is_not_initialized());

    let fakes = FakeMicrocluster::cluster(Service::MicroOvn, 4, BTreeMap::new()).await;
    let services = fakes[1].ovn_client().services().await.unwrap();
    let central: Vec<&str> = services
        .iter()
        .filter(|s| s.service == OvnService::Central)
        .map(|s| s.location.as_str())
        .collect();
    assert_eq!(central, ["micro1", "micro2", "micro3"]);
    let micro4: Vec<&OvnService> = services
        .iter()
        .filter(|s| s.location == "micro4")
        .map(|s| &s.service)
        .collect();
    assert_eq!(micro4, [&OvnService::Chassis, &OvnService::Switch]);
    let first: Vec<&str> = services[..3].iter().map(|s| s.service.as_str()).collect();
    assert_eq!(first, ["central", "chassis", "switch"]);
    let known = addresses(&[
        ("micro1", "10.0.0.1"),
        ("micro2", "10.0.0.2"),
        ("micro3", "10.0.0.3"),
    ]);
    assert_eq!(
        northbound_connection(&services, &known).unwrap(),
        "ssl:10.0.0.1:6641,ssl:10.0.0.2:6641,ssl:10.0.0.3:6641"
    );
}

#[tokio::test]
async fn requested_services_replace_the_defaults() {
    let fake = FakeMicrocluster::microovn();
    let config = BTreeMap::from([
        ("ovn-encap-ip".to_string(), "10.1.0.1".to_string()),
        ("ovn-services".to_string(), "chassis,switch".to_string()),
    ]);
    fake.client()
        .bootstrap("micro1", "10.0.0.1:6443", config.clone())
        .await
        .unwrap();
    assert_eq!(fake.config(), config);
    let services = fake.ovn_client().services().await.unwrap();
    assert!(services.iter().all(|s| s.service != OvnService::Central));
    assert_eq!(
        northbound_connection(&services, &addresses(&[("micro1", "10.0.0.1")])),
        Err(NorthboundError::NoCentral)
    );
}
