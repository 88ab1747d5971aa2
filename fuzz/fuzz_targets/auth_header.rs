//! Any `Authorization` header value sent to the session port.

#![no_main]

use libfuzzer_sys::fuzz_target;
use microcloud::trust::hmac::{AUTH_SCHEME, HmacError, format_header, parse_header};

fuzz_target!(|data: &[u8]| {
    // The server reads the header as text and refuses anything else first.
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    match parse_header(header) {
        Ok((salt, mac)) => {
            // A header that parses is the scheme, then hex that formats back
            // to itself, up to the case of its digits.
            let (_, value) = header.split_once(' ').expect("a parsed header has a space");
            let formatted = format_header(&salt, &mac);
            assert_eq!(
                formatted,
                format!("{AUTH_SCHEME} {}", value.to_ascii_lowercase())
            );
            assert_eq!(
                parse_header(&formatted).expect("a formatted header parses"),
                (salt, mac)
            );
        }
        Err(err) => assert!(matches!(err, HmacError::Malformed(_)), "{err:?}"),
    }
});
