//! Any datagram on the discovery port, as the responder and the lookup read it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use microcloud::discovery::{decode_datagram, encode_datagram};

fuzz_target!(|data: &[u8]| {
    let Ok(info) = decode_datagram(data) else {
        return;
    };
    // What we send for a payload we read is read back as that payload.
    let encoded = encode_datagram(&info);
    let again = decode_datagram(&encoded).expect("an encoded payload decodes");
    assert_eq!(again, info);
    assert_eq!(encode_datagram(&again), encoded);
});
