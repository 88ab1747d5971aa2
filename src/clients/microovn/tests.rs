//! The MicroOVN client against its golden fixture, and the northbound
//! connection built from its services.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::*;

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
