//! A preseed's text through everything `microcloud preseed` does with it
//! before touching the machine: parse, static validation, the checks against
//! this machine's name, addresses and services, and the plan request.

#![no_main]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use microcloud::clients::microcluster::Service;
use microcloud::inputs;
use microcloud::preseed::Preseed;

fuzz_target!(|data: &[u8]| {
    // The CLI reads the file as UTF-8 and refuses anything else before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let preseed = match Preseed::parse(text, "fuzz.yaml") {
        Ok(preseed) => preseed,
        Err(err) => {
            assert!(!err.to_string().is_empty());
            return;
        }
    };

    // What `to_yaml` writes (an interactive run's saved preseed) reads back as
    // the same preseed, and validates the same way.
    let yaml = preseed.to_yaml();
    let again = Preseed::parse(&yaml, "again.yaml")
        .unwrap_or_else(|err| panic!("to_yaml wrote a preseed that does not parse: {err}\n{yaml}"));
    assert!(again == preseed, "to_yaml changed the preseed:\n{yaml}");
    let verdict = preseed.validate();
    let verdict_again = again.validate();
    // The same field is refused; the message may differ, as some hints
    // describe how the source was written (a key left without a value).
    assert_eq!(
        verdict.as_ref().map_err(|e| e.path()),
        verdict_again.as_ref().map_err(|e| e.path()),
        "validation differs after to_yaml:\n{yaml}"
    );
    if let Err(err) = verdict {
        assert!(!err.to_string().is_empty());
        return;
    }

    // The machine-facing checks, as the first listed system (or a stranger).
    let (name, address) = preseed
        .systems
        .first()
        .map_or(("stranger".to_owned(), None), |system| {
            (system.name.clone(), system.address)
        });
    let ips: Vec<IpAddr> = address.into_iter().collect();
    if preseed.is_bootstrap() {
        let _ = preseed.check_local_included(&name, &ips);
    }
    let _ = preseed.is_initiator(&name, &ips);
    for installed in [&[][..], &[Service::MicroCeph, Service::MicroOvn][..]] {
        let _ = preseed.check_services_available(&name, installed);
    }

    // Every filter passed validation, so the plan request cannot fail.
    let addresses: BTreeMap<String, IpAddr> = preseed
        .systems
        .iter()
        .map(|s| {
            let fallback = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
            (s.name.clone(), s.address.unwrap_or(fallback))
        })
        .collect();
    inputs::preseed::request(&preseed, &name, &addresses)
        .expect("a validated preseed's filters parse");
    let _ = (preseed.lookup_timeout(), preseed.session_timeout());
});
